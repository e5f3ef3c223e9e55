//! Progress bars (on stderr) kept apart from the work they report on.

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(&format!("{what} {{bar:30}} {{pos}}/{{len}} [{{elapsed_precise}} < {{eta_precise}}] {{msg}}"))
            .expect("valid template"),
    );
    pb
}

/// Reports the tracer's stages as progress bars: one bar per stage, a plain line for stages
/// without a count (such as "now at checkpoint N").
#[derive(Default)]
pub struct Bars {
    current: Option<ProgressBar>,
}

impl valuedrift_trace::pipeline::Observer for Bars {
    fn stage(&mut self, name: &str, total: u64) {
        if total == 0 {
            eprintln!("{name}");
        } else {
            self.current = Some(bar(total, &format!("  {name:8}")));
        }
    }

    fn advance(&mut self, n: u64, message: &str) {
        if let Some(pb) = &self.current {
            pb.inc(n);
            if !message.is_empty() {
                pb.set_message(message.to_string());
            }
        }
    }

    fn finish_stage(&mut self) {
        if let Some(pb) = self.current.take() {
            pb.finish();
        }
    }
}

/// A progress bar with the loss and ETA; checkpoint paths as lines above it.
#[derive(Default)]
pub struct TrainBar(Option<ProgressBar>);

impl valuedrift_train::trainer::Progress for TrainBar {
    fn start(&mut self, total: u64, done: u64) {
        let pb = bar(total, "train");
        pb.set_position(done);
        if done > 0 {
            pb.println(format!("resuming at step {done} of {total}"));
        }
        self.0 = Some(pb);
    }

    fn step(&mut self, _: u64, m: &serde_json::Value) {
        if let Some(pb) = &self.0 {
            pb.inc(1);
            pb.set_message(format!("loss {:.4}", m["loss"].as_f64().unwrap_or(f64::NAN)));
        }
    }

    fn saved(&mut self, dir: &std::path::Path) {
        if let Some(pb) = &self.0 {
            pb.println(format!("saved {}", dir.display()));
        }
    }
}

/// First and last logged loss, and where the checkpoints are.
pub fn summarize_training(log: &[serde_json::Value], out: &std::path::Path) {
    let loss = |e: Option<&serde_json::Value>| e.and_then(|e| e["loss"].as_f64()).unwrap_or(f64::NAN);
    println!("{} updates; loss {:.4} at the first, {:.4} at the last", log.len(), loss(log.first()), loss(log.last()));
    let dirs: Vec<String> = valuedrift_train::checkpoint::list(out).into_iter().map(|(s, _)| s.to_string()).collect();
    eprintln!("checkpoints in {}: steps {}", out.display(), dirs.join(", "));
}
