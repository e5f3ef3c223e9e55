//! What an experiment will cost, from its file alone (`run --dry-run`): per phase the updates
//! (from the data's size, epochs, batch and `max_steps`), the checkpoints to trace, and the
//! tokens to generate and judge calls to make at them, so a user can budget GPU hours first.

use valuedrift_train::presets::Algo;

/// One phase's shape, as the plan resolves it.
pub struct PhaseShape {
    pub algo: Algo,
    /// Records in the data file; None when the file is absent.
    pub rows: Option<usize>,
    pub epochs: u32,
    pub global_batch: usize,
    pub max_steps: Option<u64>,
    pub save_every: u64,
    /// PPO: new tokens per rollout.
    pub rollout_tokens: usize,
}

/// What tracing one checkpoint costs.
pub struct TracePerCheckpoint {
    pub answers: u64,
    pub max_new_tokens: u64,
    pub judge_orders: u64,
}

#[derive(Debug, PartialEq, Eq, Default, Clone, Copy)]
pub struct Budget {
    pub updates: u64,
    /// Checkpoints traced, the starting model (step 0) included; none for a reward model.
    pub checkpoints: u64,
    /// PPO's rollouts: prompts × new tokens per rollout, over the phase.
    pub rollout_tokens: u64,
    pub generated_tokens: u64,
    pub judge_calls: u64,
}

impl std::ops::AddAssign for Budget {
    fn add_assign(&mut self, o: Budget) {
        self.updates += o.updates;
        self.checkpoints += o.checkpoints;
        self.rollout_tokens += o.rollout_tokens;
        self.generated_tokens += o.generated_tokens;
        self.judge_calls += o.judge_calls;
    }
}

/// Updates as both trainers count them: every epoch in batches (the last one short), cut at
/// `max_steps`.
pub fn updates(rows: usize, epochs: u32, global_batch: usize, max_steps: Option<u64>) -> u64 {
    let all = rows.div_ceil(global_batch.max(1)) as u64 * epochs as u64;
    max_steps.map_or(all, |m| m.min(all))
}

/// Checkpoints written: every `save_every` updates and at the end.
pub fn saved_checkpoints(updates: u64, save_every: u64) -> u64 {
    updates.div_ceil(save_every.max(1))
}

/// The phase's budget; None when its data is absent (its size unknown).
pub fn phase(shape: &PhaseShape, trace: &TracePerCheckpoint) -> Option<Budget> {
    let updates = updates(shape.rows?, shape.epochs, shape.global_batch, shape.max_steps);
    let checkpoints = if shape.algo == Algo::Rm { 0 } else { 1 + saved_checkpoints(updates, shape.save_every) };
    let rollout_tokens = if shape.algo == Algo::Ppo { updates * shape.global_batch as u64 * shape.rollout_tokens as u64 } else { 0 };
    Some(Budget {
        updates,
        checkpoints,
        rollout_tokens,
        generated_tokens: checkpoints * trace.answers * trace.max_new_tokens,
        judge_calls: checkpoints * trace.answers * trace.judge_orders,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_and_checkpoints_count_as_the_trainer_does() {
        // 61,135 pairs, batch 32, 3 epochs: 1,911 batches an epoch, the last one short.
        assert_eq!(updates(61_135, 3, 32, None), 5_733);
        assert_eq!(updates(61_135, 3, 32, Some(100)), 100);
        assert_eq!(updates(4, 1, 4, Some(2)), 1, "max_steps never adds an epoch");
        assert_eq!((saved_checkpoints(5_733, 50), saved_checkpoints(100, 50), saved_checkpoints(0, 50)), (115, 2, 0));
    }

    #[test]
    fn a_phase_costs_its_checkpoints_times_the_eval() {
        let trace = TracePerCheckpoint { answers: 550 * 5, max_new_tokens: 256, judge_orders: 3 };
        let ppo = PhaseShape { algo: Algo::Ppo, rows: Some(64), epochs: 1, global_batch: 32, max_steps: None, save_every: 1, rollout_tokens: 1024 };
        let b = phase(&ppo, &trace).unwrap();
        assert_eq!(
            b,
            Budget { updates: 2, checkpoints: 3, rollout_tokens: 2 * 32 * 1024, generated_tokens: 3 * 2750 * 256, judge_calls: 3 * 2750 * 3 }
        );
        let rm = PhaseShape { algo: Algo::Rm, ..ppo };
        assert_eq!(phase(&rm, &trace).unwrap().checkpoints, 0, "reward models are not traced");
        assert_eq!(phase(&PhaseShape { rows: None, ..rm }, &trace), None);
    }
}
