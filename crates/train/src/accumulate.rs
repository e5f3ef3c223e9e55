//! Gradient accumulation: the gradients of the parameters only (a backward pass also holds the
//! gradients of every intermediate tensor; those are dropped at once), summed over micro-batches.

use crate::Result;
use candle_core::backprop::GradStore;
use candle_core::Var;

#[derive(Default)]
pub struct Accumulated {
    grads: GradStore,
    pub micro_batches: usize,
}

impl Accumulated {
    /// Adds the parameter gradients of one backward pass.
    pub fn add(&mut self, params: &[Var], mut grads: GradStore) -> Result<()> {
        let mut kept = GradStore::default();
        for p in params {
            if let Some(g) = grads.remove(p.as_tensor()) {
                kept.insert(p.as_tensor(), g);
            }
        }
        drop(grads);
        self.grads.extend(kept)?;
        self.micro_batches += 1;
        Ok(())
    }

    pub fn grads(&self) -> &GradStore {
        &self.grads
    }
}
