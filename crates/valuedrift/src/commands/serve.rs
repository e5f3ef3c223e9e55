//! `valuedrift serve`: a model behind the OpenAI API (crates/remote/src/serve).

use crate::cli::ServeArgs;
use anyhow::Result;
use valuedrift_remote::serve::{serve, ServeOptions};

pub fn run(args: ServeArgs) -> Result<()> {
    let lm = super::load_model(&args.model)?;
    let name =
        args.name.clone().unwrap_or_else(|| args.model.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()));
    let opts = ServeOptions {
        host: args.host,
        port: args.port,
        model_name: name,
        batch_size: args.batch_size,
        max_connections: args.max_connections,
        read_timeout: std::time::Duration::try_from_secs_f64(args.read_timeout_s)
            .map_err(|e| anyhow::anyhow!("--read-timeout-s {}: {e}", args.read_timeout_s))?,
        max_body_bytes: args.max_body_mib << 20,
        ..ServeOptions::default()
    };
    let embedder = match &args.embedder {
        Some(dir) => Some(valuedrift_engine::embed::SentenceEmbedder::load(dir, &super::device(&args.model.device)?)?),
        None => None,
    };
    serve(lm, &opts, embedder, |addr| eprintln!("serving {} on http://{addr}/v1 (OpenAI API)", opts.model_name))?;
    Ok(())
}
