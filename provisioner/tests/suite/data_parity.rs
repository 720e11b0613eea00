//! Data export, verify and import against a moto server, through the CLI: an export of
//! two sources verified against the live tables, a record changed behind its back found
//! and named by source, the export imported into a second environment (another region)
//! twice and verified against it, and the bad inputs: an unknown or malformed export id
//! and a tampered export file.

use aws_sdk_dynamodb::types::AttributeValue;
use provisioner::exit::Exit;

use crate::deploy_cli::local_fixture;
use crate::releases::{add_environment, block_on, clients, commit_at, ok, run, write_zips};

const HRIS: usize = 200;
const CRM: usize = 100;
const LEDGER: usize = 50;

#[test]
fn an_export_is_verified_against_live_tables_and_imported_elsewhere_with_parity() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    add_environment(&fixture, "other", "us-west-2", "123456789012");
    write_zips(&fixture, "first");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    for env in ["local", "other"] {
        ok(&fixture, &["bootstrap", "--env", env, "--yes"]);
        ok(&fixture, &["deploy", "--env", env, "--yes"]);
    }
    let aws = block_on(clients(&moto, "us-east-1"));
    block_on(async {
        for i in 0..HRIS + CRM {
            let (source, entity) = if i < HRIS {
                ("hris", "employee")
            } else {
                ("crm", "contact")
            };
            aws.dynamodb
                .put_item()
                .table_name("datasync-local-records")
                .item("pk", AttributeValue::S(format!("{source}#R-{i}")))
                .item("sk", AttributeValue::S(entity.into()))
                .item("source", AttributeValue::S(source.into()))
                .item("external_id", AttributeValue::S(format!("R-{i}")))
                .item(
                    "source_version",
                    AttributeValue::N("123456789012345678901234567890".into()),
                )
                .item(
                    "fields",
                    AttributeValue::M(
                        [("name".to_string(), AttributeValue::S(format!("Person {i}")))].into(),
                    ),
                )
                .send()
                .await
                .expect("put record");
        }
        for i in 0..LEDGER {
            aws.dynamodb
                .put_item()
                .table_name("datasync-local-ledger")
                .item(
                    "idempotency_key",
                    AttributeValue::S(format!("hris#R-{i}#1#abc")),
                )
                .item("state", AttributeValue::S("COMPLETED".into()))
                .item("source", AttributeValue::S("hris".into()))
                .send()
                .await
                .expect("put ledger item");
        }
        // One still waiting for a retry: it belongs to this environment's queue.
        aws.dynamodb
            .put_item()
            .table_name("datasync-local-ledger")
            .item(
                "idempotency_key",
                AttributeValue::S("hris#R-999#1#abc".into()),
            )
            .item("state", AttributeValue::S("RETRY".into()))
            .item("source", AttributeValue::S("hris".into()))
            .send()
            .await
            .expect("put ledger item");
    });

    let manifest = ok(&fixture, &["data", "export", "--env", "local"]);
    let id = manifest["id"].as_str().expect("id").to_string();
    let records = &manifest["tables"]["records"];
    assert_eq!(records["total"]["items"], (HRIS + CRM) as u64);
    assert_eq!(records["per_source"]["hris"]["items"], HRIS as u64);
    assert_eq!(records["per_source"]["crm"]["items"], CRM as u64);
    assert_eq!(
        manifest["tables"]["ledger"]["total"]["items"],
        LEDGER as u64 + 1
    );
    assert!(manifest["release"].as_str().is_some(), "{manifest}");

    let same = ok(
        &fixture,
        &["data", "verify", "--env", "local", "--export", &id],
    );
    assert_eq!(same["differing"], serde_json::json!([]), "{same}");

    // One CRM record changes behind the export's back: the verify names its source.
    block_on(
        aws.dynamodb
            .put_item()
            .table_name("datasync-local-records")
            .item("pk", AttributeValue::S(format!("crm#R-{}", HRIS + 3)))
            .item("sk", AttributeValue::S("contact".into()))
            .item("source", AttributeValue::S("crm".into()))
            .item("external_id", AttributeValue::S(format!("R-{}", HRIS + 3)))
            .send(),
    )
    .expect("change a record");
    let changed = run(
        &fixture,
        &[
            "--output", "json", "data", "verify", "--env", "local", "--export", &id,
        ],
    );
    assert_eq!(changed.exit, Exit::Failed, "{}", changed.stdout);
    assert_eq!(
        changed.json()["differing"],
        serde_json::json!(["records/crm"])
    );

    // Into the other region, twice: the same items, parity with the export.
    for _ in 0..2 {
        let imported = ok(
            &fixture,
            &[
                "data",
                "import",
                "--env",
                "other",
                "--export",
                &id,
                "--from-env",
                "local",
            ],
        );
        assert_eq!(imported["written"]["records"], (HRIS + CRM) as u64);
        assert_eq!(imported["written"]["ledger"], LEDGER as u64);
        assert_eq!(
            imported["skipped"]["ledger"], 1,
            "the item waiting for a retry stays behind"
        );
        let parity = ok(
            &fixture,
            &[
                "data",
                "verify",
                "--env",
                "local",
                "--export",
                &id,
                "--against-env",
                "other",
            ],
        );
        assert_eq!(parity["differing"], serde_json::json!([]), "{parity}");
    }
    let other = block_on(clients(&moto, "us-west-2"));
    let item = block_on(
        other
            .dynamodb
            .get_item()
            .table_name("datasync-other-records")
            .key("pk", AttributeValue::S("hris#R-7".into()))
            .key("sk", AttributeValue::S("employee".into()))
            .send(),
    )
    .expect("get");
    assert_eq!(
        item.item().and_then(|i| i.get("source_version")),
        Some(&AttributeValue::N("123456789012345678901234567890".into())),
        "numbers arrive exact"
    );

    // Bad input.
    let unknown = run(
        &fixture,
        &[
            "data",
            "verify",
            "--env",
            "local",
            "--export",
            "20200101T000000Z",
        ],
    );
    assert_eq!(unknown.exit, Exit::Failed);
    assert!(
        unknown.error().contains("no export 20200101T000000Z")
            && unknown
                .error()
                .contains("provisioner data export --env local"),
        "{}",
        unknown.error()
    );
    let own = run(
        &fixture,
        &["data", "import", "--env", "local", "--export", &id],
    );
    assert_eq!(own.exit, Exit::NeedsConfirmation, "{}", own.error());
    assert!(own.error().contains("--yes"), "{}", own.error());
    let malformed = run(
        &fixture,
        &["data", "import", "--env", "other", "--export", "latest"],
    );
    assert!(
        malformed.error().contains("`latest` is not an export id"),
        "{}",
        malformed.error()
    );
    let bucket = manifest["bucket"].as_str().expect("bucket").to_string();
    let key = records["key"].as_str().expect("key").to_string();
    block_on(
        aws.s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"not the export",
            ))
            .send(),
    )
    .expect("tamper");
    let tampered = run(
        &fixture,
        &[
            "data",
            "import",
            "--env",
            "other",
            "--export",
            &id,
            "--from-env",
            "local",
        ],
    );
    assert_eq!(tampered.exit, Exit::Failed);
    assert!(
        tampered.error().contains("is damaged or was changed")
            && tampered.error().contains("sha256"),
        "{}",
        tampered.error()
    );
}
