//! The deploy's safety nets against a moto server: the bake after a deploy (an alarm
//! that fired before the deploy is reported and ignored; one that fires during the bake
//! rolls the environment back to the previous release, exit 12), and Ctrl-C sent to the
//! real binary while it waits for another deploy's lock (exit 130, the failure as JSON,
//! the attempt in the history), plan files executed as reviewed and refused when stale,
//! and the real binary's exit code and JSON document for each way a deploy stops.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use provisioner::exit::Exit;
use provisioner::release::deployments::{Deployments, HistoryEntry, LockHolder};
use serde_json::Value;

use crate::common::provisioner_binary;
use crate::deploy_cli::local_fixture;
use crate::releases::{
    block_on, clients, code_sha256, commit_at, history, lambda_digest, ok, run, write_zips,
};

/// Creates `name` in the emulator's CloudWatch and puts it in ALARM.
async fn fire_alarm(aws: &provisioner::deploy::clients::AwsClients, name: &str) {
    aws.cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("AWS/Lambda")
        .metric_name("Errors")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(
            aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold,
        )
        .send()
        .await
        .expect("PutMetricAlarm");
    aws.cloudwatch
        .set_alarm_state()
        .alarm_name(name)
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("Threshold Crossed: 3 errors")
        .send()
        .await
        .expect("SetAlarmState");
}

#[test]
fn a_bake_that_sees_an_alarm_fire_rolls_back_to_the_previous_release() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    write_zips(&fixture, "first");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    ok(&fixture, &["deploy", "--env", "local", "--yes"]);

    // A backlog alarm firing since before the deploy is reported, not held against it.
    let aws = block_on(clients(&moto, "us-east-1"));
    block_on(fire_alarm(&aws, "datasync-local-dlq-depth"));
    std::thread::sleep(Duration::from_millis(1_100));
    let second_zips = write_zips(&fixture, "second");
    commit_at(&fixture, "2026-11-02T10:00:00Z");
    let passed = ok(
        &fixture,
        &["deploy", "--env", "local", "--yes", "--bake", "2s"],
    );
    let second = passed["release"].as_str().expect("release").to_string();
    assert_eq!(passed["result"], "deployed");
    assert!(passed["bake"]["failure"].is_null(), "{passed}");
    assert_eq!(
        passed["bake"]["already_firing"][0]["name"],
        "datasync-local-dlq-depth"
    );
    assert!(passed.get("error").is_none(), "{passed}");

    // The third release breaks the worker: its errors alarm fires during the bake.
    write_zips(&fixture, "third");
    commit_at(&fixture, "2026-11-03T10:00:00Z");
    let endpoint = moto.endpoint_url();
    let saboteur = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        block_on(async {
            let aws = provisioner::deploy::clients::AwsClients::connect(
                &provisioner::deploy::clients::Target {
                    region: "us-east-1".into(),
                    endpoint_url: Some(endpoint),
                },
            )
            .await;
            fire_alarm(&aws, "datasync-local-worker-errors").await;
        });
    });
    let baked = run(
        &fixture,
        &[
            "--output", "json", "deploy", "--env", "local", "--yes", "--bake", "60s",
        ],
    );
    saboteur.join().expect("the alarm was set");
    assert_eq!(
        baked.exit,
        Exit::RolledBack,
        "{}{}",
        baked.stdout,
        baked.error()
    );
    let document = baked.json();
    assert_eq!(document["error"]["kind"], "rolled-back");
    assert_eq!(document["error"]["exit_code"], 12);
    assert!(
        document["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("datasync-local-worker-errors")
                && m.contains(&format!("rolled back to {second}"))),
        "{document}"
    );
    assert_eq!(
        document["bake"]["failure"]["alarms"][0]["name"],
        "datasync-local-worker-errors"
    );
    assert_eq!(document["rollback"]["release"], second.as_str());
    assert_eq!(document["rollback"]["command"], "rollback");
    assert_eq!(
        block_on(code_sha256(&moto, "us-east-1", "datasync-local-worker")),
        lambda_digest(&second_zips[1].1),
        "the worker runs the second release's code again"
    );
    let entries = history(&fixture, "local");
    assert_eq!(entries[0]["kind"], "rollback");
    assert_eq!(entries[0]["result"], "deployed");
    assert_eq!(entries[0]["release"], second.as_str());
    assert_eq!(entries[1]["kind"], "deploy");
    assert_eq!(entries[1]["result"], "deployed");
    let status = ok(&fixture, &["status", "--env", "local"]);
    assert_eq!(status["release"], second.as_str());
}

#[test]
fn ctrl_c_while_waiting_for_the_lock_exits_130_with_its_json_and_history() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    write_zips(&fixture, "first");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    let aws = block_on(clients(&moto, "us-east-1"));
    let deployments = Deployments::new(aws.dynamodb.clone(), "datasync-deployments");
    let other = LockHolder::this_process(
        "arn:aws:sts::123456789012:assumed-role/ci/run-7",
        "deploy",
        "20261101T100000Z-0123456789ab",
        Duration::from_secs(3600),
    );
    let entry = HistoryEntry::start("local", "deploy", Some(&other.release), &other.caller);
    block_on(deployments.acquire("local", &other, &entry))
        .expect("write")
        .expect("the lock was free");

    let root = fixture.root().display().to_string();
    let mut child = provisioner_binary()
        .args([
            "--root",
            &root,
            "--output",
            "json",
            "deploy",
            "--env",
            "local",
            "--yes",
            "--lock-timeout",
            "2m",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let (waiting_tx, waiting_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("waiting for the lock") {
                let _ = waiting_tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    waiting_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the deploy waits for the lock");
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let output = child.wait_with_output().expect("the binary ends");
    let stderr = reader.join().expect("stderr read");
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let document: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON document on stdout");
    assert_eq!(document["error"]["kind"], "interrupted", "{document}");
    assert_eq!(document["error"]["exit_code"], 130);
    assert!(
        document["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing was deployed")),
        "{document}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    let entries = history(&fixture, "local");
    assert_eq!(entries[0]["result"], "interrupted", "{entries:?}");
}

#[test]
fn deploy_plan_executes_the_reviewed_change_sets_and_refuses_a_stale_plan() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    write_zips(&fixture, "first");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    ok(&fixture, &["deploy", "--env", "local", "--yes"]);

    // One setting only the compute and observability stacks read.
    let set_retention = |days: u32| {
        let local = fixture.read("environments/local.yaml");
        let line = local
            .lines()
            .find(|l| l.trim_start().starts_with("retention_days:"))
            .expect("a retention line")
            .to_string();
        let indent = &line[..line.len() - line.trim_start().len()];
        fixture.write(
            "environments/local.yaml",
            &local.replace(&line, &format!("{indent}retention_days: {days}")),
        );
    };
    set_retention(3);
    commit_at(&fixture, "2026-11-02T10:00:00Z");
    let second = ok(&fixture, &["release", "publish", "--env", "local"])["id"]
        .as_str()
        .expect("id")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let plan_path = dir.path().join("plan.json");
    let plan_arg = plan_path.display().to_string();
    let planned = ok(
        &fixture,
        &[
            "plan",
            "--env",
            "local",
            "--release",
            &second,
            "--out",
            &plan_arg,
        ],
    );
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_path).expect("plan file"))
            .expect("plan JSON");
    assert_eq!(plan["release"], second.as_str());
    let kept: Vec<(String, String)> = plan["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .filter(|s| !s["change_set"].is_null())
        .map(|s| {
            (
                s["stack_name"].as_str().unwrap_or("").to_string(),
                s["change_set"]["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        kept.iter()
            .any(|(name, _)| name == "datasync-local-compute"),
        "{plan}\n{planned}"
    );

    let deployed = ok(
        &fixture,
        &["deploy", "--env", "local", "--plan", &plan_arg, "--yes"],
    );
    assert_eq!(deployed["release"], second.as_str());
    for stack in deployed["stacks"].as_array().expect("stacks") {
        let name = stack["stack_name"].as_str().unwrap_or("");
        match kept.iter().find(|(kept, _)| kept == name) {
            Some((_, change_set)) => {
                assert_eq!(stack["result"], "deployed", "{stack}");
                assert_eq!(stack["change_set_id"], change_set.as_str(), "{stack}");
            }
            None => assert_eq!(stack["result"], "unchanged", "{stack}"),
        }
    }

    // A plan whose stacks moved on before it was deployed is refused whole.
    set_retention(5);
    commit_at(&fixture, "2026-11-03T10:00:00Z");
    let third = ok(&fixture, &["release", "publish", "--env", "local"])["id"]
        .as_str()
        .expect("id")
        .to_string();
    ok(
        &fixture,
        &[
            "plan",
            "--env",
            "local",
            "--release",
            &third,
            "--out",
            &plan_arg,
        ],
    );
    // Another pipeline deploys the same release first: the stacks moved on.
    ok(
        &fixture,
        &["deploy", "--env", "local", "--release", &third, "--yes"],
    );
    let stale = run(
        &fixture,
        &["deploy", "--env", "local", "--plan", &plan_arg, "--yes"],
    );
    assert_eq!(stale.exit, Exit::Failed, "{}", stale.stdout);
    assert!(
        stale
            .error()
            .contains("the plan is stale, nothing was executed")
            && stale.error().contains("datasync-local-compute")
            && stale.error().contains("plan --release <id> --out <file>"),
        "{}",
        stale.error()
    );
    let wrong = run(
        &fixture,
        &["deploy", "--env", "other", "--plan", &plan_arg, "--yes"],
    );
    assert_eq!(wrong.exit, Exit::Failed);
}

/// Runs the real binary on `fixture` with `args`, stdin closed: (exit code, stdout).
fn binary(fixture: &crate::common::Fixture, args: &[&str]) -> (Option<i32>, Value, String) {
    let output = provisioner_binary()
        .arg("--root")
        .arg(fixture.root())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let document = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        output.status.code(),
        document,
        format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
    )
}

#[test]
fn the_real_binary_ends_each_stop_with_its_own_exit_code_and_json_document() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    write_zips(&fixture, "first");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    let expect = |args: &[&str], code: i32, kind: &str| {
        let (exit, document, all) = binary(&fixture, args);
        assert_eq!(exit, Some(code), "{args:?}: {all}");
        assert_eq!(document["error"]["kind"], kind, "{args:?}: {all}");
        assert_eq!(document["error"]["exit_code"], code, "{args:?}: {all}");
        assert!(
            document["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
                && document["error"]["fix"]
                    .as_str()
                    .is_some_and(|f| !f.is_empty()),
            "{args:?}: {all}"
        );
    };
    // Nothing deployed yet: unhealthy.
    expect(
        &[
            "--output",
            "json",
            "status",
            "--env",
            "local",
            "--detailed-exitcode",
        ],
        14,
        "unhealthy",
    );
    // Changes to execute, no terminal and no --yes.
    expect(
        &["--output", "json", "deploy", "--env", "local"],
        10,
        "needs-confirmation",
    );
    // A person on a terminal answers no (`script` gives the binary one).
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok()
    {
        use std::io::Write as _;
        let command = format!(
            "{} --root {} deploy --env local",
            env!("CARGO_BIN_EXE_provisioner"),
            fixture.root().display()
        );
        let venv = crate::common::repo_root().join(".venv/bin");
        let mut child = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    venv.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script runs");
        let mut stdin = child.stdin.take().expect("stdin");
        let answers = std::thread::spawn(move || {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(500));
                if stdin.write_all(b"n\n").is_err() {
                    break;
                }
            }
        });
        let output = child.wait_with_output().expect("script ends");
        let _ = answers.join();
        let shown = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(11), "{shown}");
        assert!(shown.contains("declined"), "{shown}");
    }
    // Another deploy holds the lock.
    let aws = block_on(clients(&moto, "us-east-1"));
    let deployments = Deployments::new(aws.dynamodb.clone(), "datasync-deployments");
    let other = LockHolder::this_process(
        "arn:aws:sts::123456789012:assumed-role/ci/run-9",
        "deploy",
        "20261101T100000Z-0123456789ab",
        Duration::from_secs(3600),
    );
    let entry = HistoryEntry::start("local", "deploy", Some(&other.release), &other.caller);
    block_on(deployments.acquire("local", &other, &entry))
        .expect("write")
        .expect("the lock was free");
    expect(
        &["--output", "json", "deploy", "--env", "local", "--yes"],
        6,
        "locked",
    );
}
