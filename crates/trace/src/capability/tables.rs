//! The capability part of a run's report: accuracies per checkpoint (capability.csv) and each
//! phase's change with its paired test (capability.md).

use std::fmt::Write;

use super::traced::{CapabilityChange, CheckpointCapability};

pub fn capability_csv(table: &[CheckpointCapability]) -> String {
    let mut out = String::from("phase,step,task,n,chance,acc,acc_lo,acc_hi,acc_norm,acc_norm_lo,acc_norm_hi\n");
    for ck in table {
        for s in &ck.tasks {
            let (lo, hi) = s.acc_interval();
            let (nlo, nhi) = s.acc_norm_interval();
            let _ = writeln!(
                out,
                "{},{},{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4}",
                ck.checkpoint.phase,
                ck.checkpoint.step,
                s.task,
                s.n,
                s.chance,
                s.acc(),
                lo,
                hi,
                s.acc_norm(),
                nlo,
                nhi
            );
        }
    }
    out
}

pub fn capability_markdown(table: &[CheckpointCapability], changes: &[CapabilityChange]) -> String {
    let mut out = String::from("# Capability along the run\n\nAccuracy (acc, lm-evaluation-harness's multiple-choice log-likelihood) per checkpoint, with Wilson 95% intervals.\n\n");
    let mut tasks: Vec<&str> = table.iter().flat_map(|c| c.tasks.iter().map(|t| t.task.as_str())).collect();
    tasks.sort();
    tasks.dedup();
    let _ = writeln!(out, "| phase | step | {} |", tasks.join(" | "));
    let _ = writeln!(out, "|---|---|{}", "---|".repeat(tasks.len()));
    for ck in table {
        let cells: Vec<String> = tasks
            .iter()
            .map(|t| match ck.tasks.iter().find(|s| s.task == *t) {
                Some(s) => {
                    let (lo, hi) = s.acc_interval();
                    format!("{:.2} [{:.2}, {:.2}]", s.acc(), lo, hi)
                }
                None => "–".into(),
            })
            .collect();
        let _ = writeln!(out, "| {} | {} | {} |", ck.checkpoint.phase, ck.checkpoint.step, cells.join(" | "));
    }
    out.push_str(
        "\n## Change over each phase\n\nFirst against last checkpoint of the phase on the same items: items lost (right, then wrong) and \
         gained, exact McNemar p-value, Benjamini-Hochberg adjusted across this table; `*` marks adjusted p < 0.05.\n\n",
    );
    out.push_str("| phase | task | n | acc start | acc end | lost | gained | p | p adj |\n|---|---|---|---|---|---|---|---|---|\n");
    for c in changes {
        let mark = if c.significant() { " *" } else { "" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} | {:.3}{mark} | {} | {} | {:.3} | {:.3} |",
            c.phase, c.task, c.n, c.acc_start, c.acc_end, c.lost, c.gained, c.p, c.p_adjusted
        );
    }
    if changes.is_empty() {
        out.push_str("\n(no phase has two checkpoints with capability results)\n");
    }
    out
}
