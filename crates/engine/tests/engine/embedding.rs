//! Sentence embeddings against transformers' BertModel and MPNetModel with the
//! sentence-transformers pipeline (scripts/reference/make_embed_fixtures.py).

use crate::common::{device, fixture, model_path, paired};
use valuedrift_engine::embed::{cosine, EncoderKind, SentenceEmbedder};

fn check_against_reference(dir: &str, kind: EncoderKind) {
    let embedder = SentenceEmbedder::load(&model_path(dir), &device()).expect("embedder loads");
    assert_eq!(embedder.kind, kind);
    let reference = fixture("reference/embed.json");
    let rows = reference[dir].as_array().expect("rows");
    let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
    // A small batch budget forces several batches and padding inside each.
    let got = embedder.embed(&texts, 200).expect("embeds");
    for (row, v) in paired(rows, &got) {
        let text = row["text"].as_str().unwrap();
        assert_eq!(embedder.encode(text).unwrap().len() as u64, row["n_tokens"].as_u64().unwrap(), "token count of {text:?}");
        let want: Vec<f32> = row["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let worst = paired(v, &want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 2e-5, "{dir}: {text:?} differs from transformers by {worst}");
        assert!((cosine(v, v) - 1.0).abs() < 1e-5);
    }
    // Alone or batched with longer texts, a text embeds the same (padding is masked).
    let alone = embedder.embed(&texts[..1], 4096).unwrap();
    let worst = paired(&alone[0], &got[0]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-5, "{dir}: padding changed an embedding by {worst}");
}

#[test]
fn minilm_matches_transformers() {
    check_against_reference("all-minilm-l6-v2", EncoderKind::Bert);
}

#[test]
fn mpnet_matches_transformers() {
    check_against_reference("all-mpnet-base-v2", EncoderKind::Mpnet);
}

#[test]
fn unsupported_encoder_is_named() {
    let dir =
        tempdir_with_config(r#"{"model_type": "gpt2", "hidden_size": 8, "num_attention_heads": 1, "num_hidden_layers": 1, "layer_norm_eps": 1e-5}"#);
    let err = SentenceEmbedder::load(&dir, &device()).err().expect("refused").to_string();
    assert!(err.contains("config.json") && err.contains("gpt2"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempdir_with_config(config: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vd-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    dir
}

#[test]
fn a_max_seq_length_without_room_for_a_token_is_named() {
    let source = model_path("all-minilm-l6-v2");
    let dir = std::env::temp_dir().join(format!("vd-embed-maxlen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            // The weights by link: the test changes one small file.
            let to = dir.join(path.file_name().unwrap());
            std::os::unix::fs::symlink(&path, &to).unwrap();
        }
    }
    std::fs::remove_file(dir.join("sentence_bert_config.json")).ok();
    std::fs::write(dir.join("sentence_bert_config.json"), r#"{"max_seq_length": 0, "do_lower_case": false}"#).unwrap();
    let err = SentenceEmbedder::load(&dir, &device()).err().expect("refused").to_string();
    assert!(err.contains("sentence_bert_config.json") && err.contains("max_seq_length 0"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
