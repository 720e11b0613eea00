//! `replay` against a moto server, through the CLI: FAILED ledger items counted with
//! `--dry-run`, replayed for one source (their bodies back on the records queue with
//! their attributes, the items claimable again), the rest replayed by two replays racing
//! each other (through the one-request-at-a-time proxy) with every item taken once, and
//! the bad inputs.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use std::collections::BTreeMap;

use crate::deploy_cli::local_fixture;
use crate::releases::{block_on, clients, commit_at, ok, run, write_zips};

fn body(source: &str, i: usize) -> String {
    json!({
        "format": 1,
        "source": source,
        "correlation_id": format!("corr-{source}-{i}"),
        "batch_id": "batch-1",
        "received_at": "2026-11-01T09:30:01Z",
        "record": {"id": format!("{source}-{i}")}
    })
    .to_string()
}

#[test]
fn failed_records_are_replayed_once_each_and_can_be_claimed_again() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let serial = emulator::serial::SerialProxy::start(&moto.endpoint_url()).expect("proxy");
    let fixture = local_fixture(&serial.endpoint_url());
    write_zips(&fixture, "first");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    ok(&fixture, &["deploy", "--env", "local", "--yes"]);
    let aws = block_on(clients(&moto, "us-east-1"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut bodies = BTreeMap::new();
    block_on(async {
        for (source, state, count) in [
            ("hris", "FAILED", 6),
            ("crm", "FAILED", 3),
            ("hris", "COMPLETED", 2),
        ] {
            for i in 0..count {
                let key = format!("{source}#{state}#{i}#digest");
                let text = body(source, i);
                if state == "FAILED" {
                    bodies.insert(text.clone(), source);
                }
                aws.dynamodb
                    .put_item()
                    .table_name("datasync-local-ledger")
                    .item("idempotency_key", AttributeValue::S(key.clone()))
                    .item("state", AttributeValue::S(state.into()))
                    .item(
                        "state_shard",
                        AttributeValue::S(sync_core::ledger::state_shard(state, &key)),
                    )
                    .item(
                        "next_attempt_at",
                        AttributeValue::N((now - 100).to_string()),
                    )
                    .item("source", AttributeValue::S(source.into()))
                    .item("body", AttributeValue::S(text))
                    .item(
                        "correlation_id",
                        AttributeValue::S(format!("corr-{source}-{i}")),
                    )
                    .item(
                        "reason",
                        AttributeValue::S("downstream answered 422".into()),
                    )
                    .send()
                    .await
                    .expect("ledger item");
            }
        }
    });

    let dry = ok(
        &fixture,
        &["replay", "--env", "local", "--state", "FAILED", "--dry-run"],
    );
    assert_eq!(dry["found"], json!({"crm": 3, "hris": 6}), "{dry}");
    assert_eq!(dry["replayed"], json!({}));

    let hris = ok(
        &fixture,
        &[
            "replay", "--env", "local", "--state", "FAILED", "--source", "hris", "--since", "1h",
        ],
    );
    assert_eq!(hris["replayed"], json!({"hris": 6}), "{hris}");

    // Two operators replay the rest at the same time: each item once.
    let racing: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| ok(&fixture, &["replay", "--env", "local", "--state", "FAILED"]))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("replay"))
            .collect()
    });
    let replayed: u64 = racing
        .iter()
        .filter_map(|r| r["replayed"]["crm"].as_u64())
        .sum();
    assert_eq!(replayed, 3, "{racing:?}");
    let nothing = ok(&fixture, &["replay", "--env", "local", "--state", "FAILED"]);
    assert_eq!(nothing["found"], json!({}), "{nothing}");

    // The replayed items wait for a worker again; the completed ones were not touched.
    let retry = ok(
        &fixture,
        &["replay", "--env", "local", "--state", "RETRY", "--dry-run"],
    );
    assert_eq!(retry["found"], json!({"crm": 3, "hris": 6}), "{retry}");

    // Every failed body is on the records queue once, with its attributes.
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
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for message in crate::dead_letters::drain(&sqs, &queue) {
        let attributes = message.message_attributes().expect("attributes");
        let text = message.body().unwrap_or_default().to_string();
        assert_eq!(
            attributes.get("source").and_then(|v| v.string_value()),
            bodies.get(&text).copied()
        );
        assert!(attributes.contains_key("correlation_id"));
        *found.entry(text).or_default() += 1;
    }
    assert_eq!(found.len(), bodies.len());
    assert!(found.values().all(|&n| n == 1), "{found:?}");

    let bad = run(
        &fixture,
        &[
            "replay",
            "--env",
            "local",
            "--state",
            "FAILED",
            "--since",
            "yesterday",
        ],
    );
    assert!(
        bad.error().contains("--since yesterday") && bad.error().contains("24h"),
        "{}",
        bad.error()
    );
    use clap::Parser;
    assert!(provisioner::cli::Cli::try_parse_from([
        "provisioner",
        "replay",
        "--env",
        "local",
        "--state",
        "DONE"
    ])
    .is_err());
}
