//! The real `provisioner` binary: help, results on stdout, errors on stderr, exit codes.

use crate::common;

use assert_cmd::Command;
use common::Fixture;
use predicates::prelude::*;

fn provisioner(root: &std::path::Path) -> Command {
    let mut command = Command::cargo_bin("provisioner").expect("binary built");
    command.arg("--root").arg(root).env_remove("RUST_LOG");
    command
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let fixture = Fixture::new();
    provisioner(fixture.root())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("render"))
        .stdout(predicate::str::contains("lint"))
        .stdout(predicate::str::contains("env"))
        .stdout(predicate::str::contains("3 validation failed"))
        .stdout(predicate::str::contains("5 changes present"));
}

#[test]
fn render_needs_an_environment_or_all() {
    let fixture = Fixture::new();
    provisioner(fixture.root())
        .arg("render")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--env <ENV>").and(predicate::str::contains("--all")));
}

#[test]
fn render_all_writes_every_stack_and_a_manifest_per_environment() {
    let fixture = Fixture::new();
    let out = fixture.root().join("out");
    provisioner(fixture.root())
        .args(["render", "--all", "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("prod: 6 stacks"));
    for env in ["local", "dev", "staging", "prod"] {
        for stack in [
            "network",
            "data",
            "messaging",
            "security",
            "compute",
            "observability",
        ] {
            assert!(
                out.join(env).join(format!("{stack}.yaml")).is_file(),
                "{env}/{stack}"
            );
        }
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(env).join("manifest.json")).expect("manifest"),
        )
        .expect("manifest is JSON");
        assert_eq!(manifest["env"], env);
        assert_eq!(manifest["stacks"].as_array().map(Vec::len), Some(6));
        assert_eq!(manifest["stacks"][4]["parameters"][0], "ArtifactBucket");
        assert_eq!(manifest["findings"].as_array().map(Vec::len), Some(0));
    }
}

#[test]
fn render_one_environment_writes_into_the_directory_itself_and_json_output_is_one_document() {
    let fixture = Fixture::new();
    let out = fixture.root().join("dev-out");
    let output = provisioner(fixture.root())
        .args(["--output", "json", "render", "--env", "dev", "--out"])
        .arg(&out)
        .output()
        .expect("runs");
    assert!(output.status.success());
    let document: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    assert_eq!(document[0]["env"], "dev");
    assert!(out.join("compute.yaml").is_file());
}

#[test]
fn an_unknown_environment_fails_with_a_suggestion() {
    let fixture = Fixture::new();
    provisioner(fixture.root())
        .args(["render", "--env", "stagin"])
        .assert()
        .code(1)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(
            "error: there is no environment `stagin`",
        ))
        .stderr(predicate::str::contains("help: did you mean `staging`?"));
}

#[test]
fn a_config_error_names_file_key_problem_and_fix() {
    let fixture = Fixture::new();
    fixture.write_env("test", "extends: dev\nqueue:\n  max_receive_count: 0\n");
    provisioner(fixture.root())
        .args(["env", "show", "test"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "environments/test.yaml: queue.max_receive_count: 0 is outside maxReceiveCount's range 1-1000",
        ))
        .stderr(predicate::str::contains("help: set a value between 1 and 1000"));
}

#[test]
fn failed_render_checks_exit_with_the_validation_code() {
    let fixture = Fixture::new();
    let template = fixture.read("stacks/security.yaml.tera");
    fixture.write(
        "stacks/security.yaml.tera",
        &template.replace(
            "PermissionsBoundary: !Ref PermissionsBoundary",
            "PermissionsBoundary: !Ref Boundary",
        ),
    );
    provisioner(fixture.root())
        .args(["render", "--env", "dev", "--out"])
        .arg(fixture.root().join("out"))
        .assert()
        .code(3)
        .stdout(predicate::str::contains("Boundary"))
        .stderr(predicate::str::contains("failed their checks"));
}

#[test]
fn env_show_prints_the_resolved_configuration() {
    let fixture = Fixture::new();
    provisioner(fixture.root())
        .args(["env", "show", "prod"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "# environment `prod`, from environments/prod.yaml <- environments/staging.yaml <- environments/defaults.yaml",
        ))
        .stdout(predicate::str::contains("reserved_concurrency: 50"))
        .stdout(predicate::str::contains("memory_mb: 1024"));
}

#[test]
fn env_diff_lists_only_what_differs() {
    let fixture = Fixture::new();
    let output = provisioner(fixture.root())
        .args(["--output", "json", "env", "diff", "staging", "prod"])
        .output()
        .expect("runs");
    assert!(output.status.success());
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let differences = document["differences"].as_array().expect("differences");
    let keys: Vec<&str> = differences
        .iter()
        .filter_map(|d| d["key"].as_str())
        .collect();
    assert!(keys.contains(&"account_id"));
    assert!(keys.contains(&"functions.worker.reserved_concurrency"));
    assert!(keys.contains(&"network.subnets[0].private"));
    assert!(
        !keys.contains(&"functions.worker.memory_mb"),
        "same in both: {keys:?}"
    );
    let concurrency = differences
        .iter()
        .find(|d| d["key"] == "functions.worker.reserved_concurrency")
        .expect("listed");
    assert_eq!(concurrency["a"], "20");
    assert_eq!(concurrency["b"], "50");

    provisioner(fixture.root())
        .args(["env", "diff", "dev", "dev"])
        .assert()
        .success()
        .stdout(predicate::str::contains("resolve to the same settings"));
}

#[test]
fn env_list_shows_each_environment_and_its_chain() {
    let fixture = Fixture::new();
    provisioner(fixture.root())
        .args(["env", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("local").and(predicate::str::contains("emulator")))
        .stdout(predicate::str::contains("extends staging <- defaults"));
}

#[test]
fn lint_without_cfn_lint_runs_the_built_in_checks_and_says_how_to_install_it() {
    let fixture = Fixture::new();
    provisioner(fixture.root())
        .env("PATH", "/usr/bin:/bin")
        .args(["lint", "--env", "dev"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "dev: ok (built-in checks: 0 findings; policy rules: 0 violations of 23 rules, 3 waivers; cfn-lint: not run)",
        ))
        .stderr(predicate::str::contains("cfn-lint is not installed"))
        .stderr(predicate::str::contains("pip install -r requirements.txt"));
}

/// PATH with the project's pinned tools first (`scripts/bootstrap` installs them).
fn path_with_venv() -> String {
    let venv = common::repo_root().join(".venv/bin");
    assert!(
        venv.join("cfn-lint").is_file(),
        "cfn-lint is missing from .venv: run scripts/bootstrap (scripts/test does)"
    );
    format!("{}:/usr/bin:/bin", venv.display())
}

#[test]
fn cfn_lint_passes_on_every_environment() {
    let fixture = Fixture::new();
    provisioner(fixture.root())
        .env("PATH", path_with_venv())
        .args(["lint", "--all", "--require-cfn-lint"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "prod: ok (built-in checks: 0 findings; policy rules: 0 violations of 23 rules, 3 waivers; cfn-lint: 0 messages)",
        ))
        .stdout(predicate::str::contains(
            "local: ok (built-in checks: 0 findings; policy rules: 0 violations of 23 rules, 2 waivers; cfn-lint: 0 messages)",
        ));
}

#[test]
fn cfn_lint_findings_fail_the_lint_with_their_rule_and_line() {
    let fixture = Fixture::new();
    let template = fixture.read("stacks/messaging.yaml.tera");
    // A property the SQS schema does not have: invisible to the built-in checks.
    fixture.write(
        "stacks/messaging.yaml.tera",
        &template.replace(
            "      KmsDataKeyReusePeriodSeconds: 300\n      RedrivePolicy:",
            "      KmsDataKeyReusePeriod: 300\n      RedrivePolicy:",
        ),
    );
    provisioner(fixture.root())
        .env("PATH", path_with_venv())
        .args(["lint", "--env", "dev"])
        .assert()
        .code(3)
        .stdout(predicate::str::contains("dev: FAILED"))
        .stdout(predicate::str::contains("build/.lint/dev/messaging.yaml:"))
        .stdout(predicate::str::contains("E3002"));
}

#[test]
fn lint_can_insist_on_cfn_lint() {
    let fixture = Fixture::new();
    provisioner(fixture.root())
        .env("PATH", "/usr/bin:/bin")
        .args(["lint", "--env", "dev", "--require-cfn-lint"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--require-cfn-lint asks for it"));
}

#[test]
fn outside_the_repository_the_error_says_where_to_run() {
    let empty = tempfile::tempdir().expect("temp dir");
    provisioner(empty.path())
        .args(["env", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not the platform repository"))
        .stderr(predicate::str::contains("--root"));
}

/// Splits a shell command line into words: spaces separate, double and single quotes
/// group, `#` starts a comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[test]
fn every_command_the_runbooks_and_the_readme_quote_parses() {
    use clap::Parser as _;
    let root = common::repo_root();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("runbooks"))
        .expect("runbooks")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root.join("README.md"));
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let mut in_code = false;
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if !in_code {
                continue;
            }
            let command = trimmed.strip_prefix("target/release/").unwrap_or(trimmed);
            if !command.starts_with("provisioner ") {
                continue;
            }
            let words = shell_words(command);
            if let Err(error) = provisioner::cli::Cli::try_parse_from(&words) {
                panic!(
                    "{}:{}: `{command}` does not parse:\n{error}",
                    file.display(),
                    number + 1
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} commands found");
}

/// Every `provisioner ...` command of one workflow file's `run:` steps, with its line:
/// from `provisioner` to the first redirection, pipe or end of a command substitution.
fn workflow_commands(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        let line = line.strip_prefix("- ").unwrap_or(line);
        let line = line.strip_prefix("run:").unwrap_or(line).trim();
        let Some(start) = line.find("provisioner ") else {
            continue;
        };
        // `provisioner` as a command, not inside another word (`cargo build -p provisioner`).
        let before = &line[..start];
        if !(before.is_empty() || before.ends_with("$(")) {
            continue;
        }
        let command = &line[start..];
        let end = command.find(['>', '|', ')', ';']).unwrap_or(command.len());
        found.push((number + 1, command[..end].trim().to_string()));
    }
    found
}

#[test]
fn every_command_the_workflows_run_parses_and_the_deploy_steps_answer_in_json() {
    use clap::Parser as _;
    let root = common::repo_root();
    let dir = root.join(".github/workflows");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .expect(".github/workflows")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    let mut per_file = std::collections::BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let commands = workflow_commands(&text);
        for (number, command) in &commands {
            let words = shell_words(command);
            if let Err(error) = provisioner::cli::Cli::try_parse_from(&words) {
                panic!(
                    "{}:{number}: `{command}` does not parse:\n{error}",
                    file.display()
                );
            }
            assert!(
                command.contains("--output json"),
                "{}:{number}: `{command}` must answer with --output json",
                file.display()
            );
        }
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        per_file.insert(name, commands.len());
    }
    assert!(
        per_file.get("ci.yml").copied().unwrap_or(0) >= 2,
        "{per_file:?}"
    );
    assert!(
        per_file.get("deploy.yml").copied().unwrap_or(0) >= 10,
        "{per_file:?}"
    );
}

#[test]
fn workflow_commands_are_found_where_a_step_runs_them_and_nowhere_else() {
    let text = [
        "      - run: provisioner probe --env dev --output json > out/probe.json",
        "          cargo build --release -p provisioner",
        "          id=$(provisioner env show dev --output json | jq .)",
    ]
    .join("\n");
    let found = workflow_commands(&text);
    assert_eq!(
        found,
        [
            (1, "provisioner probe --env dev --output json".to_string()),
            (3, "provisioner env show dev --output json".to_string()),
        ]
    );
}
