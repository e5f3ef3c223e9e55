//! Learning-rate schedules as Hugging Face's trainer computes them: linear warmup from 0 over
//! ceil(warmup_ratio * total) steps, then cosine decay to 0 (or constant, or linear decay).

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Decay {
    Cosine,
    Linear,
    Constant,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub peak_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub decay: Decay,
}

impl Schedule {
    /// Warmup steps as transformers' `TrainingArguments.get_warmup_steps` rounds them: ceil.
    pub fn new(peak_lr: f64, warmup_ratio: f64, total_steps: u64, decay: Decay) -> Self {
        let warmup_steps = (warmup_ratio * total_steps as f64).ceil() as u64;
        Schedule { peak_lr, warmup_steps, total_steps, decay }
    }

    /// The multiplier of the peak rate for the update made at `step` (0-based), as
    /// `get_cosine_schedule_with_warmup` (num_cycles 0.5) and its linear/constant siblings.
    pub fn factor(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let progress = (step - self.warmup_steps) as f64 / (self.total_steps.saturating_sub(self.warmup_steps)).max(1) as f64;
        match self.decay {
            Decay::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
            Decay::Linear => (1.0 - progress).max(0.0),
            Decay::Constant => 1.0,
        }
    }

    pub fn lr(&self, step: u64) -> f64 {
        self.peak_lr * self.factor(step)
    }
}
