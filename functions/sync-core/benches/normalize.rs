//! Worker CPU time per record for the pure part of its work on the happy path: normalize
//! the source record, derive the idempotency key, build the ledger claim and the
//! records-table write, the push lease's take and give-back, the target's URL and body,
//! and the ledger completion.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use sync_core::downstream::{target_body, target_url};
use sync_core::envelope::{read_message, QueueMessage, MESSAGE_FORMAT};
use sync_core::ledger::{claim, complete, ClaimRequest, Outcome};
use sync_core::push;
use sync_core::store::record_write;
use sync_core::Mappings;

fn body(source: &str, record: &str) -> String {
    serde_json::to_string(&QueueMessage {
        format: MESSAGE_FORMAT,
        source: source.to_string(),
        correlation_id: "7f1c9a52-0d7e-4c1e-9a57-1b2f3c4d5e6f".to_string(),
        batch_id: "b-1".to_string(),
        received_at: "2024-05-01T12:00:01Z".to_string(),
        record: serde_json::from_str(record).expect("fixture is JSON"),
    })
    .expect("serializable")
}

fn per_record(mappings: &Mappings, body: &str) -> usize {
    let read = read_message(mappings, body).expect("fixture is valid");
    let claim = claim(&ClaimRequest {
        key: &read.idempotency_key,
        source: &read.record.source,
        external_id: &read.record.external_id,
        source_version: read.record.source_version,
        operation: read.record.operation.as_str(),
        correlation_id: &read.message.correlation_id,
        body,
        claim_token: "token",
        message_id: "059f36b4-87a3-44ab-83d2-661975830a7d",
        now: 1_714_564_800,
        lease_seconds: 120,
        expires_at: 1_717_156_800,
    });
    let write = record_write(
        &read.record,
        &read.idempotency_key,
        &read.content_digest,
        &read.message.correlation_id,
        "2024-05-01T12:00:02Z",
    );
    let take = push::acquire(
        &write.pk,
        &write.sk,
        &read.idempotency_key,
        "token",
        1_714_564_800,
        120,
    );
    let url = target_url("http://127.0.0.1:9", &read.record);
    let target = target_body(&read.record, &read.idempotency_key);
    let give_back = push::release_pushed(
        &write.pk,
        &write.sk,
        "token",
        &read.idempotency_key,
        read.record.source_version,
    );
    let done = complete(
        &read.idempotency_key,
        "token",
        Outcome::Synced,
        1_714_564_802,
    );
    claim.values.len()
        + write.values.len()
        + take.values.len()
        + url.len()
        + target.len()
        + give_back.values.len()
        + done.values.len()
}

fn bench(c: &mut Criterion) {
    let mappings = Mappings::builtin().expect("builtin mappings load");
    let hris = body("hris", include_str!("../tests/fixtures/hris_employee.json"));
    let crm = body("crm", include_str!("../tests/fixtures/crm_contact.json"));
    c.bench_function("worker_pure_path/hris_employee", |b| {
        b.iter(|| per_record(&mappings, black_box(&hris)))
    });
    c.bench_function("worker_pure_path/crm_contact_with_phone", |b| {
        b.iter(|| per_record(&mappings, black_box(&crm)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
