//! Errors and exit statuses: 0 ok, 1 a `--fail-if` gate failed, 2 anything that stopped the
//! command (bad arguments or files, privileges, the kernel, the environment). Every message
//! says what failed, why, and what to do.

/// Bad arguments or input files: the message names the problem and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// A `compare --fail-if` rule held: the command did its job and the answer is "regression".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GateFailed(pub String);

/// Exit status of a failed command: 1 when a gate failed, 2 for every error.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| c.downcast_ref::<GateFailed>().is_some()) {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failed_gate_exits_1() {
        let gate = anyhow::Error::new(GateFailed("flushes_per_reclaimed_folio>1.5".into()));
        assert_eq!(exit_code(&gate), 1);
        assert_eq!(exit_code(&gate.context("compare")), 1);
        assert_eq!(exit_code(&anyhow::Error::new(BadInput("x".into()))), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("tracefs is not mounted")), 2);
    }
}
