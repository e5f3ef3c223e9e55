//! Contexts and continuations as lm-evaluation-harness builds them for a multiple-choice task:
//! the description, then the few-shot examples (each its context, the target delimiter " " and its
//! right choice) joined by blank lines, then the item's context; each continuation is " " + choice.

use sha2::{Digest, Sha256};

use super::McItem;

/// What the model is asked for one item: one context, one continuation per choice.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub context: String,
    pub continuations: Vec<String>,
}

const TARGET_DELIMITER: &str = " ";
const FEWSHOT_DELIMITER: &str = "\n\n";

/// One request per item, in the items' order, with `fewshot` examples of the item's task each.
/// With a separate `pool` (the harness's few-shot split, e.g. MMLU's dev files) the examples are
/// the pool's first ones of the task, as the harness's `first_n` sampler takes them. Without one
/// they are the other items of the same task, chosen by a hash of (seed, item, example) so that
/// an item's examples are fixed by the seed whatever else the file holds.
pub fn requests(items: &[McItem], pool: Option<&[McItem]>, fewshot: usize, seed: u64) -> Vec<Request> {
    items
        .iter()
        .map(|item| {
            let mut context = item.description.clone().unwrap_or_default();
            let shots = match pool {
                Some(pool) => pool.iter().filter(|o| o.task == item.task).take(fewshot).collect(),
                None => examples(items, item, fewshot, seed),
            };
            for ex in shots {
                context.push_str(&ex.context);
                context.push_str(TARGET_DELIMITER);
                context.push_str(&ex.choices[ex.gold]);
                context.push_str(FEWSHOT_DELIMITER);
            }
            context.push_str(&item.context);
            Request { context, continuations: item.choices.iter().map(|c| format!("{TARGET_DELIMITER}{c}")).collect() }
        })
        .collect()
}

fn examples<'a>(items: &'a [McItem], item: &McItem, k: usize, seed: u64) -> Vec<&'a McItem> {
    if k == 0 {
        return Vec::new();
    }
    let mut pool: Vec<(Vec<u8>, &McItem)> = items
        .iter()
        .filter(|o| o.task == item.task && o.id != item.id)
        .map(|o| (Sha256::digest(format!("{seed}\u{0}{}\u{0}{}", item.id, o.id).as_bytes()).to_vec(), o))
        .collect();
    pool.sort_by(|a, b| a.0.cmp(&b.0));
    pool.into_iter().take(k).map(|(_, o)| o).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, task: &str) -> McItem {
        McItem {
            id: id.into(),
            task: task.into(),
            context: format!("Question: q{id}\nAnswer:"),
            description: Some("About x.\n\n".into()),
            choices: vec![format!("yes{id}"), format!("no{id}")],
            gold: 1,
        }
    }

    #[test]
    fn zero_and_few_shot_contexts_are_laid_out_as_the_harness_does() {
        let items = vec![item("1", "t"), item("2", "t"), item("3", "u")];
        let zero = requests(&items, None, 0, 0);
        assert_eq!(zero[0].context, "About x.\n\nQuestion: q1\nAnswer:");
        assert_eq!(zero[0].continuations, vec![" yes1", " no1"]);
        // The only other item of task t is item 2; task u has none, so it stays zero-shot.
        let one = requests(&items, None, 3, 7);
        assert_eq!(one[0].context, "About x.\n\nQuestion: q2\nAnswer: no2\n\nQuestion: q1\nAnswer:");
        assert_eq!(one[2].context, zero[2].context);
        // A separate pool gives its first items of the task, in order.
        let pool = vec![item("8", "t"), item("9", "t")];
        let from_pool = requests(&items[..1], Some(&pool), 1, 0);
        assert_eq!(from_pool[0].context, "About x.\n\nQuestion: q8\nAnswer: no8\n\nQuestion: q1\nAnswer:");
    }
}
