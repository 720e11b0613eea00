//! `decommission` against a moto server, through the CLI, on an environment that keeps
//! its stateful resources: bad confirmations and a held lock change nothing; the dry run
//! plans every phase; stop-traffic really stops ingest and the schedule, and its gate
//! refuses while a message is queued and a ledger item waits for a retry; `--until`
//! stops between phases and the next run resumes; the hold refuses without an export
//! (and with an unknown one), passes with a verified export and a forced window; the
//! last phase deletes the stacks and the retained tables and queues; every step is in
//! the history; deploys are refused from the first step on.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::deploy_cli::local_fixture;
use crate::releases::{block_on, clients, commit_at, lambda, ok, run, write_zips};
use provisioner::exit::Exit;

const ENV: &str = "local";

fn decommission(fixture: &crate::common::Fixture, extra: &[&str]) -> (Exit, Value, String) {
    let mut args = vec!["--output", "json", "decommission", "--env", ENV];
    args.extend_from_slice(extra);
    let outcome = run(fixture, &args);
    let json = serde_json::from_str(&outcome.stdout).unwrap_or(Value::Null);
    (outcome.exit, json, outcome.error().to_string())
}

fn phase<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["phases"]
        .as_array()
        .and_then(|phases| phases.iter().find(|p| p["phase"] == name))
        .unwrap_or_else(|| panic!("no phase {name}: {report}"))
}

fn gate<'a>(report: &'a Value, phase_name: &str, gate: &str) -> &'a Value {
    phase(report, phase_name)["gates"]
        .as_array()
        .and_then(|gates| gates.iter().find(|g| g["name"] == gate))
        .unwrap_or_else(|| panic!("no gate {gate} in {phase_name}: {report}"))
}

fn history(fixture: &crate::common::Fixture) -> Vec<Value> {
    ok(fixture, &["history", "--env", ENV, "--limit", "100"])["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn stack_names(aws: &provisioner::deploy::clients::AwsClients) -> Vec<String> {
    block_on(aws.cloudformation.describe_stacks().send())
        .expect("stacks")
        .stacks()
        .iter()
        .filter_map(|s| s.stack_name().map(str::to_string))
        .collect()
}

#[test]
fn a_decommission_runs_its_phases_behind_their_gates_resumes_and_records_every_step() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    let local = fixture.read("environments/local.yaml");
    fixture.write(
        "environments/local.yaml",
        &format!(
            "{local}\nretain_stateful_resources: true\ndecommission:\n  quiet_window: 0s\n  hold: 1h\n"
        ),
    );
    write_zips(&fixture, "first");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", ENV, "--yes"]);
    ok(&fixture, &["deploy", "--env", ENV, "--yes"]);
    let aws = block_on(clients(&moto, "us-east-1"));
    let lambda = block_on(lambda(&moto, "us-east-1"));
    let stopped_since = || {
        block_on(
            lambda
                .get_function_configuration()
                .function_name("datasync-local-ingest")
                .send(),
        )
        .expect("ingest configuration")
        .environment()
        .and_then(|e| e.variables())
        .and_then(|v| v.get("STOPPED_SINCE").cloned())
    };
    assert_eq!(
        stopped_since().as_deref(),
        Some(""),
        "a deploy leaves traffic open"
    );

    // Bad input changes nothing: no terminal and no --confirm, a wrong name, a bad id.
    let (exit, report, _) = decommission(&fixture, &[]);
    assert_eq!(exit, Exit::NeedsConfirmation, "{report}");
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("--confirm local"),
        "{report}"
    );
    let (exit, report, _) = decommission(&fixture, &["--confirm", "prod"]);
    assert_eq!(exit, Exit::Declined, "{report}");
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("`prod` is not `local`"),
        "{report}"
    );
    let (exit, _, error) = decommission(&fixture, &["--confirm", ENV, "--export", "latest"]);
    assert_eq!(exit, Exit::Failed);
    assert!(error.contains("not an export id"), "{error}");
    // Another command holds the deploy lock.
    let deployments = "datasync-deployments";
    block_on(
        aws.dynamodb
            .put_item()
            .table_name(deployments)
            .item("pk", AttributeValue::S("env#local".into()))
            .item("sk", AttributeValue::S("lock".into()))
            .item("owner_id", AttributeValue::S("someone-else".into()))
            .item(
                "caller",
                AttributeValue::S("arn:aws:iam::123456789012:user/ci".into()),
            )
            .item("command", AttributeValue::S("deploy".into()))
            .item("release", AttributeValue::S("r".into()))
            .item(
                "lease_expires_at",
                AttributeValue::S("2999-01-01T00:00:00.000Z".into()),
            )
            .send(),
    )
    .expect("a held lock");
    let (exit, _, error) = decommission(&fixture, &["--confirm", ENV]);
    assert_eq!(exit, Exit::Locked, "{error}");
    block_on(
        aws.dynamodb
            .delete_item()
            .table_name(deployments)
            .key("pk", AttributeValue::S("env#local".into()))
            .key("sk", AttributeValue::S("lock".into()))
            .send(),
    )
    .expect("lock released");
    assert_eq!(stopped_since().as_deref(), Some(""), "nothing changed");

    // The dry run: every phase with its gates, nothing changed.
    let (exit, plan, _) = decommission(&fixture, &["--dry-run"]);
    assert_eq!(exit, Exit::Success, "{plan}");
    assert_eq!(plan["result"], "planned");
    assert_eq!(phase(&plan, "stop-traffic")["status"], "next");
    assert_eq!(
        gate(&plan, "hold", "hold-window")["needs"],
        "1h after compute was removed"
    );
    assert!(gate(&plan, "stop-traffic", "queue")["value"]
        .as_str()
        .is_some());
    assert_eq!(
        stopped_since().as_deref(),
        Some(""),
        "a dry run changes nothing"
    );

    // Work still in the pipeline: a queued message and an item waiting for a retry.
    let sqs = aws_sdk_sqs::Client::new(&aws.config);
    let queue = block_on(
        sqs.get_queue_url()
            .queue_name("datasync-local-records")
            .send(),
    )
    .expect("queue")
    .queue_url()
    .unwrap_or_default()
    .to_string();
    block_on(
        sqs.send_message()
            .queue_url(&queue)
            .message_body("{}")
            .send(),
    )
    .expect("send");
    let key = "hris#E-1#1#abc";
    let put_ledger = |state: &str| {
        block_on(
            aws.dynamodb
                .put_item()
                .table_name("datasync-local-ledger")
                .item("idempotency_key", AttributeValue::S(key.into()))
                .item("state", AttributeValue::S(state.into()))
                .item(
                    "state_shard",
                    AttributeValue::S(sync_core::ledger::state_shard(state, key)),
                )
                .item("next_attempt_at", AttributeValue::N("1800000000".into()))
                .item("source", AttributeValue::S("hris".into()))
                .send(),
        )
        .expect("ledger item");
    };
    put_ledger("RETRY");
    let (exit, report, error) = decommission(&fixture, &["--confirm", ENV]);
    assert_eq!(exit, Exit::Refused, "{report}{error}");
    assert_eq!(phase(&report, "stop-traffic")["status"], "refused");
    assert_eq!(gate(&report, "stop-traffic", "queue")["passed"], false);
    assert!(gate(&report, "stop-traffic", "queue")["value"]
        .as_str()
        .unwrap()
        .starts_with("1 waiting"));
    let ledger = gate(&report, "stop-traffic", "ledger-in-flight");
    assert_eq!(ledger["passed"], false);
    assert!(
        ledger["value"].as_str().unwrap().contains("RETRY 1"),
        "{ledger}"
    );
    assert!(ledger["fix"]
        .as_str()
        .unwrap()
        .contains("replay --env local --state RETRY"));
    assert_eq!(
        gate(&report, "stop-traffic", "dead-letter-queue")["passed"],
        true
    );
    assert_eq!(
        gate(&report, "stop-traffic", "ingest-invocations")["passed"],
        true
    );
    // Traffic really stopped: ingest refuses records, the schedule is off.
    let since = stopped_since().expect("set");
    assert!(since.starts_with("20"), "{since}");
    assert_eq!(report["state"]["traffic_stopped_at"], since.as_str());
    let events = aws_sdk_eventbridge::Client::new(&aws.config);
    let rule = block_on(
        events
            .describe_rule()
            .name("datasync-local-reconciler-schedule")
            .send(),
    )
    .expect("rule");
    assert_eq!(rule.state().map(|s| s.as_str()), Some("DISABLED"));
    // No deploy may start traffic again.
    let deploy = run(&fixture, &["deploy", "--env", ENV, "--yes"]);
    assert_eq!(deploy.exit, Exit::Refused, "{}", deploy.error());
    assert!(
        deploy.error().contains("being decommissioned"),
        "{}",
        deploy.error()
    );

    // The pipeline drains: the gate passes; --until stops after compute is removed.
    let received = block_on(
        sqs.receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .send(),
    )
    .expect("receive");
    for message in received.messages() {
        block_on(
            sqs.delete_message()
                .queue_url(&queue)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send(),
        )
        .expect("delete");
    }
    put_ledger("COMPLETED");
    let (exit, report, error) =
        decommission(&fixture, &["--confirm", ENV, "--until", "remove-compute"]);
    assert_eq!(exit, Exit::Success, "{report}{error}");
    assert_eq!(report["result"], "stopped");
    assert_eq!(phase(&report, "stop-traffic")["status"], "ran");
    assert_eq!(phase(&report, "remove-compute")["status"], "ran");
    assert_eq!(phase(&report, "hold")["status"], "pending");
    let stacks = stack_names(&aws);
    assert!(
        !stacks
            .iter()
            .any(|s| s.ends_with("-compute") || s.ends_with("-observability")),
        "{stacks:?}"
    );
    assert!(
        stacks.iter().any(|s| s == "datasync-local-data"),
        "{stacks:?}"
    );
    // Compute's log groups outlive it, and say how to delete them.
    assert!(report["kept"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["resource_type"] == "AWS::Logs::LogGroup"
            && k["delete_with"]
                .as_str()
                .unwrap()
                .starts_with("aws logs delete-log-group")));

    // Resumed: the hold refuses without an export, and names an unknown one.
    let (exit, report, _) = decommission(&fixture, &["--confirm", ENV]);
    assert_eq!(exit, Exit::Refused, "{report}");
    assert_eq!(phase(&report, "remove-compute")["status"], "done");
    assert_eq!(gate(&report, "hold", "hold-window")["passed"], false);
    let export_gate = gate(&report, "hold", "verified-export");
    assert_eq!(export_gate["passed"], false);
    assert!(export_gate["fix"]
        .as_str()
        .unwrap()
        .contains("data export --env local"));
    let (exit, _, error) = decommission(
        &fixture,
        &["--confirm", ENV, "--export", "20200101T000000Z"],
    );
    assert_eq!(exit, Exit::Failed);
    assert!(error.contains("no export 20200101T000000Z"), "{error}");

    // An export after traffic stopped, a window ended early on purpose: the rest runs.
    let export = ok(&fixture, &["data", "export", "--env", ENV]);
    let id = export["id"].as_str().expect("export id").to_string();
    let without_reason = <provisioner::cli::Cli as clap::Parser>::try_parse_from([
        "provisioner",
        "decommission",
        "--env",
        ENV,
        "--force-window",
    ])
    .expect_err("--force-window needs --reason");
    assert!(
        without_reason.to_string().contains("--reason"),
        "{without_reason}"
    );
    let (exit, report, error) = decommission(
        &fixture,
        &[
            "--confirm",
            ENV,
            "--force-window",
            "--reason",
            "region migration verified by the data owner",
            "--delete-retained",
        ],
    );
    assert_eq!(exit, Exit::Success, "{report}{error}");
    assert_eq!(report["result"], "decommissioned");
    assert_eq!(report["state"]["export_id"], id.as_str());
    assert!(gate(&report, "hold", "hold-window")["value"]
        .as_str()
        .unwrap()
        .contains("region migration verified by the data owner"));
    let stacks = stack_names(&aws);
    assert!(
        stacks.iter().all(|s| s == "datasync-bootstrap"),
        "only the bootstrap stack is left: {stacks:?}"
    );
    let kept = report["kept"].as_array().unwrap();
    for table in ["datasync-local-records", "datasync-local-ledger"] {
        assert!(
            kept.iter()
                .any(|k| k["physical_id"] == table && k["deleted"] == true),
            "{table}: {kept:?}"
        );
        assert!(block_on(aws.dynamodb.describe_table().table_name(table).send()).is_err());
    }
    assert!(kept.iter().any(|k| k["resource_type"] == "AWS::KMS::Key"
        && k["deleted"] == false
        && k["delete_with"]
            .as_str()
            .unwrap()
            .contains("schedule-key-deletion")));

    // Done is done; every step is in the history.
    let (exit, report, _) = decommission(&fixture, &["--confirm", ENV]);
    assert_eq!(exit, Exit::Success);
    assert!(report["message"]
        .as_str()
        .unwrap()
        .contains("already decommissioned"));
    let steps: Vec<(String, String)> = history(&fixture)
        .iter()
        .filter(|e| e["kind"] == "decommission" && e.get("phase").is_some())
        .map(|e| {
            (
                e["phase"].as_str().unwrap_or_default().to_string(),
                e["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for step in [
        ("stop-traffic", "traffic-stopped"),
        ("stop-traffic", "gate-refused"),
        ("stop-traffic", "passed"),
        ("remove-compute", "done"),
        ("hold", "gate-refused"),
        ("hold", "passed"),
        ("remove-data", "done"),
    ] {
        assert!(
            steps.iter().any(|(p, r)| p == step.0 && r == step.1),
            "{step:?} in {steps:?}"
        );
    }
    let entries = history(&fixture);
    let refused = entries
        .iter()
        .find(|e| e["phase"] == "stop-traffic" && e["result"] == "gate-refused")
        .expect("the refused gate");
    assert!(refused["gates"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g.as_str().unwrap().starts_with("queue: 1 waiting")));
    assert!(entries
        .iter()
        .all(|e| e["caller"].as_str().is_some_and(|c| !c.is_empty())));
}
