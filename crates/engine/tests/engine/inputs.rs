//! Model files in other encodings and bad model files: f32 and bf16 GGUF files (written here
//! from the real quantized file) load and agree with it; missing, truncated and unknown files
//! give clear errors.

use crate::common::*;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use valuedrift_engine::{LanguageModel, Mode};

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("valuedrift-test-{}-{name}", std::process::id()))
}

/// Rewrites a GGUF file with every tensor stored as `dtype` (same names, layout and metadata).
fn reencode(src: &Path, dst: &Path, dtype: GgmlDType, patch: impl Fn(&str, &gguf_file::Value) -> gguf_file::Value) {
    let mut f = std::fs::File::open(src).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(String, QTensor)> = names
        .iter()
        .map(|n| {
            let t = content.tensor(&mut f, n, &Device::Cpu).unwrap().dequantize(&Device::Cpu).unwrap();
            (n.to_string(), QTensor::quantize(&t, dtype).unwrap())
        })
        .collect();
    let metadata: Vec<(String, gguf_file::Value)> = content.metadata.iter().map(|(k, v)| (k.clone(), patch(k, v))).collect();
    let md: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut std::fs::File::create(dst).unwrap(), &md, &ts).unwrap();
}

fn logits(lm: &LanguageModel, ids: &[u32]) -> Tensor {
    let x = Tensor::from_vec(ids.to_vec(), (1, ids.len()), lm.model.device()).unwrap();
    lm.model.forward_logits(&x, Mode::Infer).unwrap().to_dtype(DType::F32).unwrap()
}

#[test]
fn f32_and_bf16_gguf_files_load_and_agree() {
    let src = model_path(SMOLLM2);
    let original = load(SMOLLM2);
    let ids = original.tokenizer.encode("Values drift while models are post-trained.", true).unwrap();
    let want = logits(&original, &ids);
    let keep = |_: &str, v: &gguf_file::Value| v.clone();
    for (dtype, tolerance) in [(GgmlDType::F32, 0.0f32), (GgmlDType::BF16, 0.5)] {
        let path = temp(&format!("{dtype:?}.gguf"));
        reencode(&src, &path, dtype, keep);
        let lm = LanguageModel::load(&path, &device(), DType::F32).unwrap();
        let diff = (logits(&lm, &ids) - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        // f32 holds the dequantized values exactly; bf16 rounds every weight.
        assert!(diff <= tolerance, "{dtype:?}: max logit difference {diff}");
        std::fs::remove_file(&path).ok();
    }
}

#[test]
fn unknown_architecture_is_named() {
    let path = temp("mamba.gguf");
    reencode(&model_path(SMOLLM2), &path, GgmlDType::F32, |k, v| {
        if k == "general.architecture" {
            gguf_file::Value::String("mamba".into())
        } else {
            v.clone()
        }
    });
    let err = LanguageModel::load(&path, &Device::Cpu, DType::F32).err().expect("must fail").to_string();
    assert!(err.contains("unknown architecture 'mamba'") && err.contains("mamba.gguf"), "{err}");
    std::fs::remove_file(&path).ok();
}

#[test]
fn missing_truncated_and_wrong_files_give_clear_errors() {
    let err = |p: &Path| LanguageModel::load(p, &Device::Cpu, DType::F32).err().expect("must fail").to_string();
    let missing = temp("missing.gguf");
    assert!(err(&missing).contains("no such file"), "{}", err(&missing));

    let truncated = temp("truncated.gguf");
    let bytes = std::fs::read(model_path(SMOLLM2)).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = err(&truncated);
    assert!(e.contains("truncated") && e.contains("truncated.gguf"), "{e}");
    std::fs::write(&truncated, &bytes[..1000]).unwrap();
    assert!(err(&truncated).contains("truncated.gguf"), "{}", err(&truncated));
    std::fs::remove_file(&truncated).ok();

    let not_gguf = temp("notes.gguf");
    std::fs::write(&not_gguf, "just some text").unwrap();
    assert!(err(&not_gguf).contains("not a readable GGUF file"), "{}", err(&not_gguf));
    std::fs::remove_file(&not_gguf).ok();

    let dir = temp("not-a-model");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(err(&dir).contains("config.json"), "{}", err(&dir));
    std::fs::write(dir.join("config.json"), r#"{"model_type": "llama", "hidden_size": 8}"#).unwrap();
    assert!(err(&dir).contains("num_attention_heads"), "{}", err(&dir));
    std::fs::remove_dir_all(&dir).ok();
}
