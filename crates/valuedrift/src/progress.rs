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
