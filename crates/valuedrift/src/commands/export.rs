use crate::cli::ExportArgs;
use anyhow::Result;

pub fn run(args: ExportArgs) -> Result<()> {
    let lm = super::load_model_full(&args.model)?;
    lm.save_hf(&args.out)?;
    eprintln!("saved {} as a Hugging Face directory in {}", args.model.model.display(), args.out.display());
    Ok(())
}
