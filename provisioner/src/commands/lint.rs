//! `provisioner lint`: render in memory, run the built-in checks and the policy rules of
//! `stacks/policies/` (in-process, over all of an environment's stacks at once), then
//! cfn-lint (when it is installed) over the rendered templates. Any error, warning or
//! policy violation fails the command; waivers are listed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::cli::{LintArgs, OutputFormat};
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::render::checks::Finding;
use crate::render::policy::{PolicyReport, POLICY_RULE};
use crate::render::Renderer;

use super::render::{for_each_environment, selected, write_environment};

/// How to install the pinned linter.
pub const CFN_LINT_INSTALL: &str =
    "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt (installs the pinned cfn-lint into .venv/, which lint finds)";

/// One cfn-lint diagnostic.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LintMessage {
    pub file: String,
    pub line: u32,
    pub rule: String,
    pub message: String,
}

impl LintMessage {
    /// Errors (E) and warnings (W) fail the lint; informational (I) ones are shown.
    pub fn fails(&self) -> bool {
        self.rule.starts_with('E') || self.rule.starts_with('W')
    }
}

#[derive(Debug, Serialize)]
struct EnvironmentLint {
    env: String,
    findings: Vec<Finding>,
    /// The policy rules' outcome (their violations are also in `findings`).
    policy: PolicyReport,
    cfn_lint: Option<Vec<LintMessage>>,
}

/// cfn-lint on PATH, else the project's `.venv/bin/cfn-lint`.
pub fn find_cfn_lint(project: &Project) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("cfn-lint"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let venv = project.root().join(".venv/bin/cfn-lint");
        venv.is_file().then_some(venv)
    })
}

/// Parses `--format parseable` lines: `file:line:col:endline:endcol:RULE:message`.
pub fn parse_cfn_lint(output: &str) -> Vec<LintMessage> {
    output
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(7, ':');
            let file = parts.next()?.to_string();
            let line_no = parts.next()?.parse().ok()?;
            let (_col, _end_line, _end_col) = (parts.next()?, parts.next()?, parts.next()?);
            let rule = parts.next()?.to_string();
            let message = parts.next()?.to_string();
            Some(LintMessage {
                file,
                line: line_no,
                rule,
                message,
            })
        })
        .collect()
}

fn run_cfn_lint(
    cfn_lint: &Path,
    region: &str,
    files: &[PathBuf],
) -> Result<Vec<LintMessage>, Error> {
    let output = Command::new(cfn_lint)
        .arg("--format")
        .arg("parseable")
        .arg("--regions")
        .arg(region)
        .arg("--")
        .args(files)
        .output()
        .map_err(|source| Error::Io {
            action: "run".into(),
            path: cfn_lint.to_path_buf(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let messages = parse_cfn_lint(&stdout);
    // cfn-lint exits 0 when clean and with a bit mask (2 error, 4 warning, 8 info) otherwise;
    // anything else means it did not run properly.
    let code = output.status.code().unwrap_or(-1);
    if !(0..=14).contains(&code) || (code & 1) == 1 || (code != 0 && messages.is_empty()) {
        return Err(Error::Other {
            message: format!(
                "cfn-lint did not run properly (exit {code}): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            help: format!("reinstall it: {CFN_LINT_INSTALL}"),
        });
    }
    Ok(messages)
}

pub fn run(
    project: &Project,
    args: &LintArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let renderer = Renderer::load(project)?;
    let cfn_lint = if args.no_cfn_lint {
        None
    } else {
        find_cfn_lint(project)
    };
    if cfn_lint.is_none() && args.require_cfn_lint {
        return Err(Error::Other {
            message: "cfn-lint is not installed, and --require-cfn-lint asks for it".into(),
            help: CFN_LINT_INSTALL.into(),
        });
    }
    if cfn_lint.is_none() && !args.no_cfn_lint {
        eprintln!(
            "warning: cfn-lint is not installed, so only the built-in checks and the policy rules ran.\n  help: {CFN_LINT_INSTALL}, or pip install cfn-lint"
        );
    }
    let names = selected(project, &args.selection)?;
    let results = for_each_environment(&names, |name| {
        let env = renderer.load_environment(project, name)?;
        let rendered = renderer.render(&env)?;
        let findings = rendered.findings.clone();
        let policy = rendered.policy.clone();
        let dir = project.root().join("build").join(".lint").join(name);
        let manifest = write_environment(
            &rendered,
            findings.clone(),
            &dir,
            project.display_path(&dir),
        )?;
        let cfn = match &cfn_lint {
            Some(cfn_lint) => {
                let files: Vec<PathBuf> = manifest
                    .stacks
                    .iter()
                    .chain(std::iter::once(&manifest.bootstrap))
                    .map(|stack| dir.join(&stack.file))
                    .collect();
                let mut messages = run_cfn_lint(cfn_lint, env.settings.region.as_str(), &files)?;
                for message in &mut messages {
                    message.file = project.display_path(Path::new(&message.file));
                }
                Some(messages)
            }
            None => None,
        };
        Ok(EnvironmentLint {
            env: name.to_string(),
            findings,
            policy,
            cfn_lint: cfn,
        })
    })?;
    let failed = results.iter().any(EnvironmentLint::failed);
    match format {
        OutputFormat::Json => write_json(out, &results)?,
        OutputFormat::Text => {
            for result in &results {
                let linted = match &result.cfn_lint {
                    Some(messages) => format!("cfn-lint: {} messages", messages.len()),
                    None => "cfn-lint: not run".to_string(),
                };
                let verdict = if result.failed() { "FAILED" } else { "ok" };
                write_text(
                    out,
                    &format!(
                        "{}: {verdict} (built-in checks: {} findings; policy rules: {} violations of {} rules, {} waivers; {linted})",
                        result.env,
                        result
                            .findings
                            .iter()
                            .filter(|finding| finding.rule != POLICY_RULE)
                            .count(),
                        result.policy.violations.len(),
                        result.policy.rules,
                        result.policy.waivers.len(),
                    ),
                )?;
                for finding in &result.findings {
                    write_text(out, &format!("  {finding}"))?;
                }
                for waiver in &result.policy.waivers {
                    write_text(
                        out,
                        &format!(
                            "  waiver[{}] stack `{}` resource `{}`: {}",
                            waiver.rule, waiver.stack, waiver.resource, waiver.reason
                        ),
                    )?;
                }
                for message in result.cfn_lint.iter().flatten() {
                    write_text(
                        out,
                        &format!(
                            "  {}:{}: {} {}",
                            message.file, message.line, message.rule, message.message
                        ),
                    )?;
                }
            }
        }
    }
    Ok(if failed {
        Exit::ValidationFailed
    } else {
        Exit::Success
    })
}

impl EnvironmentLint {
    fn failed(&self) -> bool {
        !self.findings.is_empty() || self.cfn_lint.iter().flatten().any(LintMessage::fails)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parseable_output_and_fails_on_errors_and_warnings_only() {
        let output = "build/dev/data.yaml:12:5:12:20:E3012:Property Resources/Key/Properties/Enabled should be of type Boolean\n\
                      build/dev/data.yaml:30:1:30:9:I3042:ARN in Resource contains hardcoded Partition\n";
        let messages = parse_cfn_lint(output);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].rule, "E3012");
        assert_eq!(messages[0].line, 12);
        assert!(messages[0].message.contains("should be of type Boolean"));
        assert!(messages[0].fails());
        assert!(!messages[1].fails());
    }
}
