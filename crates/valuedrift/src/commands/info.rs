use crate::cli::InfoArgs;
use anyhow::Result;

pub fn run(args: InfoArgs) -> Result<()> {
    let lm = super::load_model(&args.model)?;
    let c = lm.config();
    println!("family: {}", c.family.name());
    println!("parameters: {}", c.num_params());
    println!(
        "layers: {}, hidden: {}, heads: {} (kv {}), head_dim: {}, ffn: {}",
        c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
    );
    println!("vocab: {}, context: {}, tied embeddings: {}", c.vocab_size, c.max_position_embeddings, c.tie_word_embeddings);
    if let Some(w) = c.sliding_window {
        let n = c.sliding_layers.iter().filter(|&&s| s).count();
        println!("sliding window: {w} on {n} of {} layers", c.num_layers);
    }
    let stops: Vec<String> = lm.stop_ids().iter().map(|&i| format!("{i} {:?}", lm.tokenizer.id_to_token(i).unwrap_or_default())).collect();
    println!("stop tokens: {}", stops.join(", "));
    let example = lm.chat.render(&[valuedrift_engine::Message::user("QUESTION")], true)?;
    println!("prompt format:\n{example}");
    Ok(())
}
