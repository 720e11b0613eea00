//! What a plan or deploy did to each stack, as text for people and as one JSON document
//! for machines, and the console reviewer that shows diffs and asks for confirmation.

use std::io::{BufRead, Write};

use serde::Serialize;

use super::changeset::{format_changes, ResourceChange};
use super::events::StackEvent;
use super::guard::Refusal;
use crate::exit::Exit;

/// The end state of one stack in a plan or deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StackResult {
    /// Template hash, parameters and tags already deployed: no change set was made.
    Unchanged,
    /// A change set was made and CloudFormation found nothing to change.
    NoChanges,
    /// Plan: a change set with changes was computed (and deleted).
    Planned,
    /// Plan: the change set cannot be computed until an upstream stack is deployed.
    PendingUpstream,
    /// The change set was executed and the stack reached a successful state.
    Deployed,
    /// The stateful-resource guard refused the change set.
    Refused,
    /// Nobody could confirm the change set: no terminal and no `--yes`.
    NotConfirmed,
    /// The person answered no at the prompt.
    Declined,
    /// The change set was executed and CloudFormation rolled the update back (a
    /// resource failed, or a rollback trigger alarm fired): the stack runs what it ran.
    RolledBack,
    /// Not started, or its change set not executed, because the run was interrupted.
    Interrupted,
    /// Something failed; see `message` and `root_cause`.
    Failed,
    /// Not attempted because a stack it depends on did not deploy.
    Blocked,
}

impl StackResult {
    /// Changes exist that are not deployed yet.
    pub fn has_changes(self) -> bool {
        matches!(
            self,
            Self::Planned
                | Self::PendingUpstream
                | Self::Refused
                | Self::NotConfirmed
                | Self::Declined
                | Self::Interrupted
        )
    }

    /// The stack is in the desired state.
    pub fn is_ok(self) -> bool {
        matches!(self, Self::Unchanged | Self::NoChanges | Self::Deployed)
    }

    fn label(self) -> &'static str {
        match self {
            Self::Unchanged => "no changes (template, parameters and tags already deployed)",
            Self::NoChanges => "no changes (CloudFormation found none)",
            Self::Planned => "changes planned",
            Self::PendingUpstream => "changes pending an upstream stack",
            Self::Deployed => "deployed",
            Self::Refused => "REFUSED",
            Self::NotConfirmed => "not executed",
            Self::Declined => "declined",
            Self::RolledBack => "ROLLED BACK",
            Self::Interrupted => "interrupted",
            Self::Failed => "FAILED",
            Self::Blocked => "not attempted",
        }
    }
}

/// One stack's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackOutcome {
    pub id: String,
    pub stack_name: String,
    pub result: StackResult,
    /// `CREATE` or `UPDATE` when a change set was made.
    pub change_set_type: Option<String>,
    /// The change set kept for a plan file, or executed from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_set_id: Option<String>,
    /// The stack's id, when a kept change set created or names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_id: Option<String>,
    pub changes: Vec<ResourceChange>,
    pub refused: Vec<Refusal>,
    /// The stack's status after executing.
    pub status: Option<String>,
    /// What the stack was left with, when this run deployed it or verified that it runs
    /// the wanted template (recorded in the environment's state).
    #[serde(skip)]
    pub seen: Option<super::stacks::SeenStack>,
    pub root_cause: Option<StackEvent>,
    pub message: Option<String>,
    pub notes: Vec<String>,
}

impl StackOutcome {
    pub fn new(id: &str, stack_name: &str, result: StackResult) -> Self {
        Self {
            id: id.to_string(),
            stack_name: stack_name.to_string(),
            result,
            change_set_type: None,
            change_set_id: None,
            stack_id: None,
            changes: Vec::new(),
            refused: Vec::new(),
            status: None,
            seen: None,
            root_cause: None,
            message: None,
            notes: Vec::new(),
        }
    }

    /// One line: stack name, result, and why.
    pub fn summary(&self) -> String {
        let mut line = self.result.label().to_string();
        if let Some(status) = &self.status {
            line.push_str(&format!(" ({status})"));
        }
        if let Some(message) = &self.message {
            line.push_str(&format!(": {message}"));
        }
        line
    }
}

/// Every stack's outcome, in dependency order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunOutcome {
    pub stacks: Vec<StackOutcome>,
    /// Ctrl-C was pressed during the run, even if every stack had already started.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// How a whole run ended, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Failed,
    RolledBack,
    Interrupted,
    Refused,
    NeedsConfirmation,
    Declined,
    ChangesPresent,
    Deployed,
    NoChanges,
}

impl Verdict {
    /// The exit code a deploy (or, with `detailed`, a plan) ends with.
    pub fn exit(self, detailed: bool) -> Exit {
        match self {
            Self::Failed => Exit::Failed,
            Self::RolledBack => Exit::RolledBack,
            Self::Interrupted => Exit::Interrupted,
            Self::Refused => Exit::Refused,
            Self::NeedsConfirmation => Exit::NeedsConfirmation,
            Self::Declined => Exit::Declined,
            Self::ChangesPresent | Self::Deployed if detailed => Exit::ChangesPresent,
            Self::ChangesPresent | Self::Deployed | Self::NoChanges => Exit::Success,
        }
    }

    /// The stable word for this verdict (`--output json`, the history).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::RolledBack => "rolled-back",
            Self::Interrupted => "interrupted",
            Self::Refused => "refused",
            Self::NeedsConfirmation => "needs-confirmation",
            Self::Declined => "declined",
            Self::ChangesPresent => "changes-present",
            Self::Deployed => "deployed",
            Self::NoChanges => "no-changes",
        }
    }

    /// What to do next, for the verdicts that are failures.
    pub fn fix(self) -> Option<&'static str> {
        Some(match self {
            Self::Failed => "read each failed stack's root cause above, fix it, and deploy again",
            Self::RolledBack => {
                "the stacks run what they ran before; read the root cause (a failed resource \
                 or the alarm that fired), fix it, and deploy again"
            }
            Self::Interrupted => {
                "run the same command again to finish; `provisioner status` shows each stack"
            }
            Self::Refused => {
                "a resource holding data would be removed or replaced; if that is intended, \
                 pass --allow-replace <stack>/<LogicalId> for each one named"
            }
            Self::NeedsConfirmation => {
                "run it on a terminal to review and confirm, or pass --yes (CI) to execute \
                 without a prompt"
            }
            Self::Declined => "nothing was executed; run the command again when ready",
            Self::ChangesPresent | Self::Deployed | Self::NoChanges => return None,
        })
    }
}

impl RunOutcome {
    pub fn verdict(&self) -> Verdict {
        let any = |f: &dyn Fn(StackResult) -> bool| self.stacks.iter().any(|s| f(s.result));
        if any(&|r| r == StackResult::Failed) {
            Verdict::Failed
        } else if any(&|r| r == StackResult::RolledBack) {
            Verdict::RolledBack
        } else if self.interrupted || any(&|r| r == StackResult::Interrupted) {
            Verdict::Interrupted
        } else if any(&|r| r == StackResult::Refused) {
            Verdict::Refused
        } else if any(&|r| r == StackResult::NotConfirmed) {
            Verdict::NeedsConfirmation
        } else if any(&|r| r == StackResult::Declined) {
            Verdict::Declined
        } else if any(&StackResult::has_changes) {
            Verdict::ChangesPresent
        } else if any(&|r| r == StackResult::Deployed) {
            Verdict::Deployed
        } else {
            Verdict::NoChanges
        }
    }

    /// The per-stack summary, with root causes and refusals spelled out.
    pub fn to_text(&self) -> String {
        let width = self
            .stacks
            .iter()
            .map(|s| s.stack_name.len())
            .max()
            .unwrap_or(0);
        let mut text = String::new();
        for stack in &self.stacks {
            text.push_str(&format!(
                "{:<width$}  {}\n",
                stack.stack_name,
                stack.summary()
            ));
            if let Some(cause) = &stack.root_cause {
                text.push_str(&format!(
                    "{:width$}  root cause: {} ({}) {}: {}\n",
                    "",
                    cause.logical_id,
                    cause.resource_type,
                    cause.status,
                    cause.reason.as_deref().unwrap_or("no reason given")
                ));
            }
            for refusal in &stack.refused {
                text.push_str(&format!("{:width$}  refused: {}\n", "", refusal.explain()));
            }
            for note in &stack.notes {
                text.push_str(&format!("{:width$}  note: {note}\n", ""));
            }
        }
        text
    }
}

/// The `change_set_type` of a review that asks to delete a new stack its failed first
/// create left in ROLLBACK_COMPLETE; its `changes` are the resources that create left
/// behind (action `Retained`), which deleting the stack does not remove.
pub const DELETE_REVIEW: &str = "DELETE";

/// A computed change set waiting for a decision (or, see [`DELETE_REVIEW`], a stack
/// waiting to be deleted).
#[derive(Debug, Clone)]
pub struct Review {
    pub stack_name: String,
    pub change_set_type: String,
    pub changes: Vec<ResourceChange>,
    pub refusals: Vec<Refusal>,
}

impl Review {
    /// The diff with a heading and the guard's refusals.
    pub fn to_text(&self, colour: bool) -> String {
        if self.is_deletion() {
            return self.deletion_text();
        }
        let mut text = format!(
            "{}: {} change set, {} resource change(s)\n",
            self.stack_name,
            self.change_set_type,
            self.changes.len()
        );
        if self.changes.is_empty() {
            text.push_str("  (no resource-level changes: only stack parameters or tags differ)\n");
        }
        text.push_str(&format_changes(&self.changes, colour));
        for refusal in &self.refusals {
            text.push_str(&format!("  refused: {}\n", refusal.explain()));
        }
        text
    }
}

impl Review {
    /// Asks to delete a stack left in ROLLBACK_COMPLETE, not to execute a change set.
    pub fn is_deletion(&self) -> bool {
        self.change_set_type == DELETE_REVIEW
    }

    fn deletion_text(&self) -> String {
        let mut text = format!(
            "{}: left in ROLLBACK_COMPLETE by a failed first create; it must be deleted before \
             it can be created again\n",
            self.stack_name
        );
        if self.changes.is_empty() {
            text.push_str("  the failed create left no resources behind\n");
            return text;
        }
        text.push_str(&format!(
            "  {} resource(s) left behind by the failed create (deleting the stack does not \
             remove them; creating it again fails on any that has a fixed name):\n",
            self.changes.len()
        ));
        for change in &self.changes {
            text.push_str(&format!(
                "    {}  {}  {}\n",
                change.logical_id,
                change.resource_type,
                change.physical_id.as_deref().unwrap_or("-")
            ));
        }
        text
    }
}

/// Shows diffs and asks whether to execute.
pub trait Reviewer {
    /// Shows a computed change set, as soon as it is ready.
    fn show(&mut self, review: &Review);
    /// Asks a person whether to execute it (only called on a terminal without `--yes`).
    fn confirm(&mut self, review: &Review) -> bool;
}

/// Diffs to the results writer (text output) or stderr (JSON output, so stdout stays
/// one document); confirmation on the terminal.
pub struct ConsoleReviewer<'a> {
    pub out: &'a mut dyn Write,
    /// Write diffs to `out`; otherwise to stderr.
    pub diffs_to_out: bool,
    pub colour: bool,
}

impl Reviewer for ConsoleReviewer<'_> {
    fn show(&mut self, review: &Review) {
        let text = review.to_text(self.colour);
        if self.diffs_to_out {
            let _ = writeln!(self.out, "{text}");
            let _ = self.out.flush();
        } else {
            eprintln!("{text}");
        }
    }

    fn confirm(&mut self, review: &Review) -> bool {
        if review.is_deletion() {
            eprint!(
                "Delete the stack {} and create it again? [y/N] ",
                review.stack_name
            );
        } else {
            eprint!("Execute the change set on {}? [y/N] ", review.stack_name);
        }
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err() {
            return false;
        }
        matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_puts_failure_before_refusal_before_changes() {
        let run = |results: &[StackResult]| RunOutcome {
            stacks: results
                .iter()
                .map(|r| StackOutcome::new("a", "a", *r))
                .collect(),
            interrupted: false,
        };
        assert_eq!(
            run(&[StackResult::Refused, StackResult::Failed]).verdict(),
            Verdict::Failed
        );
        assert_eq!(
            run(&[StackResult::Planned, StackResult::Refused]).verdict(),
            Verdict::Refused
        );
        assert_eq!(
            run(&[StackResult::Unchanged, StackResult::Planned]).verdict(),
            Verdict::ChangesPresent
        );
        assert_eq!(
            run(&[StackResult::Unchanged, StackResult::Deployed]).verdict(),
            Verdict::Deployed
        );
        assert_eq!(
            run(&[StackResult::Unchanged, StackResult::NoChanges]).verdict(),
            Verdict::NoChanges
        );
    }
}
