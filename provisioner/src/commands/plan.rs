//! `provisioner plan`: what `deploy` would do, without executing or writing anything.
//! Change sets are computed, shown and deleted (with the empty stack a CREATE change set
//! brings into being), so a plan leaves no trace in CloudFormation; nothing is uploaded
//! and no lock is taken. With `--release <id> --out <file>` the change sets are kept and
//! recorded in a plan file for `deploy --plan` to execute.

use std::io::Write;

use crate::cli::{OutputFormat, PlanArgs};
use crate::commands::deploy::{request, write_report};
use crate::deploy::engine::Mode;
use crate::deploy::planfile::{self, PlanFile, PlannedChangeSet, PlannedStack};
use crate::deploy::report::Verdict;
use crate::error::Error;
use crate::exit::Exit;
use crate::project::Project;
use crate::release::rollout::{self, Report};

/// The exit code of a plan: changes only count with `--detailed-exitcode`.
pub fn exit_code(verdict: Verdict, detailed: bool) -> Exit {
    verdict.exit(detailed)
}

/// The plan file of a plan that kept its change sets.
fn plan_file(report: &Report) -> PlanFile {
    PlanFile {
        format: planfile::FORMAT,
        env: report.env.clone(),
        release: report.release.clone(),
        created_at: crate::release::deployments::now(),
        stacks: report
            .stacks
            .iter()
            .map(|stack| {
                let (status, last_updated, last_event) = report
                    .planned_against
                    .get(&stack.stack_name)
                    .cloned()
                    .unwrap_or((None, None, None));
                PlannedStack {
                    stack_name: stack.stack_name.clone(),
                    status,
                    last_updated,
                    last_event,
                    result: serde_json::to_value(stack.result)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    change_set: stack.change_set_id.clone().map(|id| PlannedChangeSet {
                        id,
                        stack_id: stack.stack_id.clone().unwrap_or_default(),
                        kind: stack.change_set_type.clone().unwrap_or_default(),
                    }),
                }
            })
            .collect(),
    }
}

pub fn run(
    project: &Project,
    args: &PlanArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let mut request = request(project, &args.change, Mode::Plan)?;
    request.keep_change_sets = args.out.is_some();
    let report = match rollout::run(project, &request, format, out)? {
        Ok(report) => report,
        Err(exit) => return Ok(exit),
    };
    if let Some(path) = &args.out {
        plan_file(&report).save(path)?;
        eprintln!(
            "plan written to {}: `provisioner deploy --env {} --plan {}` executes exactly it",
            path.display(),
            report.env,
            path.display()
        );
    }
    let exit = exit_code(report.result, args.detailed_exitcode);
    write_report(&report, exit, format, out)?;
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_detailed_plan_exits_non_zero_on_changes() {
        assert_eq!(
            exit_code(Verdict::ChangesPresent, true),
            Exit::ChangesPresent
        );
        assert_eq!(exit_code(Verdict::ChangesPresent, false), Exit::Success);
        assert_eq!(exit_code(Verdict::NoChanges, true), Exit::Success);
        assert_eq!(exit_code(Verdict::Refused, true), Exit::Refused);
        assert_eq!(exit_code(Verdict::Failed, false), Exit::Failed);
    }
}
