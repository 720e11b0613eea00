//! `provisioner plan`: what `deploy` would do, without executing or writing anything.
//! Change sets are computed, shown and deleted (with the empty stack a CREATE change set
//! brings into being), so a plan leaves no trace in CloudFormation; nothing is uploaded
//! and no lock is taken.

use std::io::Write;

use crate::cli::{OutputFormat, PlanArgs};
use crate::commands::deploy::{request, write_report};
use crate::deploy::engine::Mode;
use crate::deploy::report::Verdict;
use crate::error::Error;
use crate::exit::Exit;
use crate::project::Project;
use crate::release::rollout;

/// The exit code of a plan: changes only count with `--detailed-exitcode`.
pub fn exit_code(verdict: Verdict, detailed: bool) -> Exit {
    verdict.exit(detailed)
}

pub fn run(
    project: &Project,
    args: &PlanArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let request = request(project, &args.change, Mode::Plan)?;
    let report = match rollout::run(project, &request, format, out)? {
        Ok(report) => report,
        Err(exit) => return Ok(exit),
    };
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
