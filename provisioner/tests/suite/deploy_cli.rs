//! The real rendered `local` environment through the CLI (in-process) against a moto
//! server: deploy from nothing, a no-change redeploy, `plan --detailed-exitcode`, a
//! one-setting change, `status`, an unconfirmed `destroy`. Function zips are real deterministic zips
//! of stand-in binaries (moto stores Lambda code without running it).

use crate::common;

use clap::Parser;
use common::Fixture;
use provisioner::exit::Exit;
use provisioner::package::archive::zip_bootstrap;
use provisioner::package::index::{Artifact, ArtifactIndex};
use serde_json::Value;

pub(crate) struct Run {
    pub exit: Exit,
    pub stdout: String,
}

pub(crate) fn provisioner(fixture: &Fixture, args: &[&str]) -> Run {
    let root = fixture.root().display().to_string();
    let mut argv = vec!["provisioner", "--root", root.as_str()];
    argv.extend_from_slice(args);
    let cli = provisioner::cli::Cli::try_parse_from(argv).expect("arguments parse");
    let mut out = Vec::new();
    let exit = match provisioner::run(cli, &mut out) {
        Ok(exit) => exit,
        Err(error) => panic!("{args:?} failed: {}", provisioner::error::report(&error)),
    };
    Run {
        exit,
        stdout: String::from_utf8_lossy(&out).into_owned(),
    }
}

pub(crate) fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", run.stdout))
}

pub(crate) fn results(report: &Value) -> Vec<(String, String)> {
    report["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or("").to_string(),
                s["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// A copy of the repository pointing `local` at `endpoint`, with packaged stand-in
/// functions and a git repository (the release version comes from git).
pub(crate) fn local_fixture(endpoint: &str) -> Fixture {
    let fixture = Fixture::new();
    let local = fixture.read("environments/local.yaml");
    let local = local
        .lines()
        .map(|line| {
            if line.starts_with("endpoint_url:") {
                format!("endpoint_url: {endpoint}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fixture.write("environments/local.yaml", &(local + "\n"));
    let dir = fixture.root().join("build/functions/x86_64");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let mut index = ArtifactIndex::default();
    for function in ["ingest", "worker", "reconciler"] {
        let zipped =
            zip_bootstrap(format!("stand-in bootstrap of {function}").as_bytes()).expect("zip");
        std::fs::write(dir.join(format!("{function}.zip")), &zipped.bytes).expect("write zip");
        index.upsert(Artifact {
            function: function.into(),
            architecture: "x86_64".into(),
            file: format!("x86_64/{function}.zip"),
            sha256: zipped.sha256,
            size: zipped.bytes.len() as u64,
            glibc: None,
        });
    }
    index
        .save(&fixture.root().join("build/functions"))
        .expect("index");
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(fixture.root())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    };
    std::fs::write(fixture.root().join(".gitignore"), "build/\n").expect(".gitignore");
    git(&["init", "-q"]);
    git(&["add", ".gitignore", "environments", "stacks", "functions"]);
    git(&["commit", "-q", "-m", "fixture"]);
    fixture
}

#[test]
fn the_local_environment_deploys_redeploys_unchanged_plans_updates_and_refuses_an_unconfirmed_destroy(
) {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());

    let bootstrap = provisioner(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    assert_eq!(bootstrap.exit, Exit::Success, "{}", bootstrap.stdout);
    // Nothing deployed yet: a gate on the environment's health fails, naming each stack.
    let unhealthy = provisioner(
        &fixture,
        &[
            "--output",
            "json",
            "status",
            "--env",
            "local",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(unhealthy.exit, Exit::Unhealthy, "{}", unhealthy.stdout);
    let document = json(&unhealthy);
    assert_eq!(document["healthy"], false);
    assert_eq!(document["error"]["kind"], "unhealthy");
    assert_eq!(document["error"]["exit_code"], 14);
    assert!(
        document["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("datasync-local-compute: not deployed")),
        "{}",
        unhealthy.stdout
    );
    assert!(
        provisioner(&fixture, &["status", "--env", "local"]).exit == Exit::Success,
        "without the flag, status only reports"
    );
    let first = provisioner(
        &fixture,
        &["--output", "json", "deploy", "--env", "local", "--yes"],
    );
    let report = json(&first);
    assert_eq!(first.exit, Exit::Success, "{}", first.stdout);
    assert_eq!(report["result"], "deployed");
    assert_eq!(report["published"]["created"], true);
    assert_eq!(
        report["published"]["uploaded"].as_array().map(Vec::len),
        Some(3),
        "every zip uploaded: {}",
        first.stdout
    );
    let ids: Vec<String> = results(&report).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        [
            "network",
            "data",
            "messaging",
            "security",
            "compute",
            "observability"
        ]
    );
    assert!(
        results(&report).iter().all(|(_, r)| r == "deployed"),
        "{}",
        first.stdout
    );

    let again = provisioner(&fixture, &["--output", "json", "deploy", "--env", "local"]);
    let report = json(&again);
    assert_eq!(again.exit, Exit::Success, "{}", again.stdout);
    assert_eq!(report["result"], "no-changes");
    assert!(
        results(&report).iter().all(|(_, r)| r == "unchanged"),
        "{}",
        again.stdout
    );
    assert_eq!(
        report["published"]["created"], false,
        "the same release again is not published twice: {}",
        again.stdout
    );

    let plan = provisioner(&fixture, &["plan", "--env", "local", "--detailed-exitcode"]);
    assert_eq!(plan.exit, Exit::Success, "no changes: {}", plan.stdout);

    // One setting that only the compute stack reads.
    let local = fixture.read("environments/local.yaml");
    fixture.write(
        "environments/local.yaml",
        &local.replace("retention_days: 1", "retention_days: 3"),
    );
    let plan = provisioner(&fixture, &["plan", "--env", "local", "--detailed-exitcode"]);
    assert_eq!(plan.exit, Exit::ChangesPresent, "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("datasync-local-compute: UPDATE change set"),
        "{}",
        plan.stdout
    );
    // No terminal and no --yes: nothing executed, an exit code of its own, the failure
    // as a JSON document.
    let unconfirmed = provisioner(&fixture, &["--output", "json", "deploy", "--env", "local"]);
    assert_eq!(
        unconfirmed.exit,
        Exit::NeedsConfirmation,
        "{}",
        unconfirmed.stdout
    );
    let document = json(&unconfirmed);
    assert_eq!(document["result"], "needs-confirmation");
    assert_eq!(document["error"]["kind"], "needs-confirmation");
    assert_eq!(document["error"]["exit_code"], 10);
    assert!(
        document["error"]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("--yes")),
        "{}",
        unconfirmed.stdout
    );
    let update = provisioner(
        &fixture,
        &["--output", "json", "deploy", "--env", "local", "--yes"],
    );
    let report = json(&update);
    assert_eq!(update.exit, Exit::Success, "{}", update.stdout);
    let changed: Vec<(String, String)> = results(&report)
        .into_iter()
        .filter(|(_, r)| r != "unchanged")
        .collect();
    assert!(
        !changed.is_empty()
            && changed
                .iter()
                .all(|(id, r)| r == "deployed"
                    && ["compute", "observability"].contains(&id.as_str())),
        "only stacks reading the log retention change: {changed:?}"
    );

    let status = provisioner(
        &fixture,
        &[
            "--output",
            "json",
            "status",
            "--env",
            "local",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(status.exit, Exit::Success, "{}", status.stdout);
    let report = json(&status);
    assert_eq!(report["healthy"], true);
    let stacks = report["stacks"].as_array().expect("stacks");
    assert_eq!(stacks.len(), 6);
    assert!(
        stacks
            .iter()
            .all(|s| s["deployed"] == true && s["release"].as_str().is_some()),
        "{}",
        status.stdout
    );
    let text = provisioner(&fixture, &["status", "--env", "local"]);
    assert!(
        text.stdout.starts_with("local runs release ") && text.stdout.contains("\nSTACK"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("datasync-local-network"),
        "{}",
        text.stdout
    );

    // Without a terminal and without --yes nothing is deleted. (Deleting these stacks
    // is covered on simpler stacks in deploy_moto.rs: moto cannot delete the network
    // stack's VPC through CloudFormation, it reports DependencyViolation.)
    let refused = provisioner(&fixture, &["destroy", "--env", "local"]);
    assert_eq!(refused.exit, Exit::NeedsConfirmation, "{}", refused.stdout);
    assert!(refused.stdout.contains("pass --yes"), "{}", refused.stdout);
    let after = provisioner(&fixture, &["--output", "json", "status", "--env", "local"]);
    assert!(json(&after)["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .all(|s| s["deployed"] == true));
}

#[test]
fn deploy_without_built_functions_says_to_build_them() {
    let fixture = Fixture::new();
    let root = fixture.root().display().to_string();
    let cli = provisioner::cli::Cli::try_parse_from([
        "provisioner",
        "--root",
        root.as_str(),
        "deploy",
        "--env",
        "dev",
    ])
    .expect("arguments parse");
    let error = provisioner::run(cli, &mut Vec::new()).expect_err("nothing was built");
    let report = provisioner::error::report(&error);
    assert!(report.contains("build/functions/index.json"), "{report}");
    assert!(report.contains("provisioner build"), "{report}");
}
