//! The documented process exit codes, so that CI can tell "changes found" from "failed".

use std::process::ExitCode;

/// Every exit code the provisioner returns. The numbers are part of the interface:
/// scripts depend on them, so they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what it was asked; for `plan --detailed-exitcode`, no changes.
    Success = 0,
    /// Something failed: bad input, an AWS error, a failed deployment.
    Failed = 1,
    /// Arguments could not be parsed (clap's own code).
    Usage = 2,
    /// Rendered templates failed validation (render checks or cfn-lint).
    ValidationFailed = 3,
    /// The stateful guard refused a change set: it would remove or replace a resource
    /// holding data (`--allow-replace stack/LogicalId` lets one through).
    Refused = 4,
    /// `plan --detailed-exitcode` found changes to apply.
    ChangesPresent = 5,
    /// Another deploy holds the environment's lock (and `--lock-timeout` ran out), or
    /// a stale lock must be broken with `provisioner unlock` first.
    Locked = 6,
    /// The caller's AWS account is not the environment's `account_id`.
    WrongAccount = 7,
    /// The release is older than the one the environment runs (no `--allow-downgrade`).
    OlderRelease = 8,
    /// `promote` refused: the source environment is not healthy enough to promote from.
    PromotionRefused = 9,
    /// A change set needs confirmation and there is no terminal to ask on and no `--yes`.
    NeedsConfirmation = 10,
    /// The person answered no at the confirmation prompt.
    Declined = 11,
    /// The deploy was rolled back: CloudFormation rolled a stack update back (a resource
    /// failed or a rollback trigger alarm fired), or the bake saw an alarm and the
    /// previous release was deployed again.
    RolledBack = 12,
    /// `drift` found resources changed outside the provisioner.
    Drifted = 13,
    /// `status --detailed-exitcode`: a stack is not in a settled, healthy state.
    Unhealthy = 14,
    /// Interrupted (Ctrl-C / SIGINT): what was running was let finish or cancelled, and
    /// the lock released. The shell's convention for SIGINT.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}
