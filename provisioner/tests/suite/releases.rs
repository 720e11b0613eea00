//! Releases against a moto server, through the CLI in-process: bootstrap, publish once,
//! deploy a release from its bundle (not the checkout), promote between two emulated
//! environments, the account guard, the deploy lock under two deploys started at once,
//! older releases refused, stale locks and `unlock`, a stack changed behind the
//! provisioner's back detected and redeployed, `recover` under the lock and `drift` on an
//! emulator without DetectStackDrift, and the bad inputs a user can give.

use std::sync::{Arc, Barrier};

use base64::Engine as _;
use clap::Parser;
use provisioner::deploy::clients::{AwsClients, Target};
use provisioner::exit::Exit;
use provisioner::package::archive::zip_bootstrap;
use provisioner::package::index::{Artifact, ArtifactIndex};
use provisioner::release::deployments::{format_time, Deployments, HistoryEntry, LockHolder};
use serde_json::Value;

use crate::common::Fixture;
use crate::deploy_cli::local_fixture;

/// What one in-process run of the CLI ended with.
pub(crate) struct Outcome {
    pub exit: Exit,
    pub stdout: String,
    /// The error report (as the binary prints it on stderr), when the run failed.
    pub error: Option<String>,
}

impl Outcome {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.stdout))
    }

    pub(crate) fn error(&self) -> &str {
        self.error.as_deref().unwrap_or("")
    }
}

pub(crate) fn run(fixture: &Fixture, args: &[&str]) -> Outcome {
    let root = fixture.root().display().to_string();
    let mut argv = vec!["provisioner", "--root", root.as_str()];
    argv.extend_from_slice(args);
    let cli = provisioner::cli::Cli::try_parse_from(argv).expect("arguments parse");
    let mut out = Vec::new();
    let (exit, error) = match provisioner::run(cli, &mut out) {
        Ok(exit) => (exit, None),
        Err(error) => (error.exit(), Some(provisioner::error::report(&error))),
    };
    Outcome {
        exit,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        error,
    }
}

pub(crate) fn ok(fixture: &Fixture, args: &[&str]) -> Value {
    let mut with_json = vec!["--output", "json"];
    with_json.extend_from_slice(args);
    let outcome = run(fixture, &with_json);
    assert_eq!(
        outcome.exit,
        Exit::Success,
        "{args:?}: {}{}",
        outcome.stdout,
        outcome.error()
    );
    outcome.json()
}

/// Stand-in zips whose bytes depend on `tag`, indexed as `provisioner build` would.
pub(crate) fn write_zips(fixture: &Fixture, tag: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fixture.root().join("build/functions/x86_64");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let mut index = ArtifactIndex::default();
    let mut zips = Vec::new();
    for function in ["ingest", "worker", "reconciler"] {
        let zipped = zip_bootstrap(format!("{function} build {tag}").as_bytes()).expect("zip");
        std::fs::write(dir.join(format!("{function}.zip")), &zipped.bytes).expect("write zip");
        index.upsert(Artifact {
            function: function.into(),
            architecture: "x86_64".into(),
            file: format!("x86_64/{function}.zip"),
            sha256: zipped.sha256,
            size: zipped.bytes.len() as u64,
            glibc: None,
        });
        zips.push((function.to_string(), zipped.bytes));
    }
    index
        .save(&fixture.root().join("build/functions"))
        .expect("index");
    zips
}

/// Commits everything, with the committer date given (releases order by it).
pub(crate) fn commit_at(fixture: &Fixture, date: &str) {
    for args in [
        vec!["add", "-A", "environments", "stacks", "functions"],
        vec!["commit", "-q", "--allow-empty", "-m", "change"],
    ] {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(fixture.root())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(&args)
            .env("GIT_COMMITTER_DATE", date)
            .env("GIT_AUTHOR_DATE", date)
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    }
}

/// A second emulated environment on the same server, in another region (so another
/// bootstrap stack and another artifact bucket).
pub(crate) fn add_environment(fixture: &Fixture, name: &str, region: &str, account: &str) {
    let local = fixture.read("environments/local.yaml");
    let text = local
        .lines()
        .map(|line| {
            if line.starts_with("region:") {
                format!("region: {region}")
            } else if line.starts_with("account_id:") {
                format!("account_id: \"{account}\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fixture.write_env(name, &(text + "\n"));
}

pub(crate) async fn clients(moto: &emulator::MotoServer, region: &str) -> AwsClients {
    AwsClients::connect(&Target {
        region: region.into(),
        endpoint_url: Some(moto.endpoint_url()),
    })
    .await
}

pub(crate) async fn lambda(moto: &emulator::MotoServer, region: &str) -> aws_sdk_lambda::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(moto.endpoint_url())
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_lambda::Client::new(&config)
}

pub(crate) async fn code_sha256(
    moto: &emulator::MotoServer,
    region: &str,
    function: &str,
) -> String {
    lambda(moto, region)
        .await
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .expect("function")
        .code_sha256()
        .unwrap_or_default()
        .to_string()
}

/// Lambda's CodeSha256 of a zip: base64 of its sha256.
pub(crate) fn lambda_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

pub(crate) fn history(fixture: &Fixture, env: &str) -> Vec<Value> {
    ok(fixture, &["history", "--env", env])["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn bootstrap_creates_what_deploys_need_once_and_plan_and_deploy_require_it() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());

    for args in [
        &["plan", "--env", "local"][..],
        &["deploy", "--env", "local", "--yes"][..],
    ] {
        let refused = run(&fixture, args);
        assert_eq!(refused.exit, Exit::Failed, "{args:?}");
        assert!(
            refused
                .error()
                .contains("run `provisioner bootstrap --env local` first"),
            "{args:?}: {}",
            refused.error()
        );
    }
    let aws = block_on(clients(&moto, "us-east-1"));
    let buckets = block_on(aws.s3.list_buckets().send()).expect("buckets");
    assert!(
        buckets.buckets().is_empty(),
        "plan and a refused deploy create no bucket"
    );

    let first = ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    assert_eq!(first["result"], "deployed");
    assert_eq!(first["stack_name"], "datasync-bootstrap");
    let outputs = &first["outputs"];
    assert_eq!(
        outputs["ArtifactBucketName"],
        "datasync-artifacts-123456789012-us-east-1"
    );
    assert_eq!(outputs["DeploymentsTableName"], "datasync-deployments");
    assert!(outputs["ExecutionRoleArn"]
        .as_str()
        .is_some_and(|arn| arn.ends_with(":role/datasync-cfn-execution-us-east-1")));
    block_on(
        aws.s3
            .head_bucket()
            .bucket("datasync-artifacts-123456789012-us-east-1")
            .send(),
    )
    .expect("the artifact bucket exists");
    let table = block_on(
        aws.dynamodb
            .describe_table()
            .table_name("datasync-deployments")
            .send(),
    )
    .expect("the deployments table exists");
    let keys: Vec<String> = table
        .table()
        .map(|t| {
            t.key_schema()
                .iter()
                .map(|k| k.attribute_name().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(keys, ["pk", "sk"]);

    let again = ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    assert_eq!(again["result"], "no-changes", "{again}");

    let plan = ok(&fixture, &["plan", "--env", "local"]);
    assert_eq!(plan["result"], "changes-present", "{plan}");
    let objects = block_on(
        aws.s3
            .list_objects_v2()
            .bucket("datasync-artifacts-123456789012-us-east-1")
            .send(),
    )
    .expect("list");
    assert_eq!(objects.key_count(), Some(0), "plan uploads nothing");
    assert!(
        history(&fixture, "local").is_empty(),
        "plan records no history"
    );
}

#[test]
fn a_release_is_published_once_and_different_content_under_its_id_is_refused() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);

    let first = ok(&fixture, &["release", "publish", "--env", "local"]);
    assert_eq!(first["created"], true);
    assert_eq!(first["uploaded"].as_array().map(Vec::len), Some(3));
    let id = first["id"].as_str().expect("id").to_string();
    let second = ok(&fixture, &["release", "publish", "--env", "local"]);
    assert_eq!(second["id"], id.as_str());
    assert_eq!(
        second["created"], false,
        "the same content again is a no-op"
    );

    // Same commit, other zips: the same id with different content.
    write_zips(&fixture, "rebuilt differently");
    let refused = run(&fixture, &["release", "publish", "--env", "local"]);
    assert_eq!(refused.exit, Exit::Failed);
    assert!(
        refused.error().contains(&format!(
            "release {id} is already published with different content"
        )) && refused.error().contains("function worker (x86_64)")
            && refused.error().contains("new release"),
        "{}",
        refused.error()
    );

    let listed = ok(&fixture, &["release", "list", "--env", "local"]);
    assert_eq!(listed["releases"], serde_json::json!([id]));
    let shown = ok(&fixture, &["release", "show", "--env", "local", &id]);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["functions"].as_array().map(Vec::len), Some(3));
    assert!(shown["sources"]["files"]["environments/local.yaml"].is_string());
    assert!(shown["sources"]["files"]["stacks/compute.yaml.tera"].is_string());
    assert!(shown["environments"]["prod"]["stacks"].is_array());
}

#[test]
fn two_pipelines_publishing_one_commit_with_different_builds_at_once_create_it_once() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    // S3's conditional write is atomic; moto's threads are not (see emulator::serial).
    let strict = emulator::serial::SerialProxy::start(&moto.endpoint_url()).expect("proxy");
    let first = local_fixture(&strict.endpoint_url());
    ok(&first, &["bootstrap", "--env", "local", "--yes"]);
    // A second checkout of the very same commit, whose build came out differently.
    let second = Fixture {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", first.root().display()))
        .arg(second.root())
        .status()
        .expect("cp");
    assert!(status.success());
    write_zips(&second, "another toolchain");
    let barrier = Arc::new(Barrier::new(2));
    let fixtures = [Arc::new(first), Arc::new(second)];
    let handles: Vec<_> = fixtures
        .iter()
        .map(|fixture| {
            let fixture = Arc::clone(fixture);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                run(
                    &fixture,
                    &["--output", "json", "release", "publish", "--env", "local"],
                )
            })
        })
        .collect();
    let outcomes: Vec<Outcome> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let created: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.exit == Exit::Success && o.json()["created"] == true)
        .collect();
    assert_eq!(
        created.len(),
        1,
        "exactly one publisher creates the release"
    );
    let other = outcomes
        .iter()
        .find(|o| o.exit != Exit::Success || o.json()["created"] != true)
        .expect("the other publisher");
    assert_eq!(other.exit, Exit::Failed, "{}", other.stdout);
    assert!(
        other
            .error()
            .contains("already published with different content"),
        "{}",
        other.error()
    );
    let id = created[0].json()["id"].as_str().expect("id").to_string();
    let shown = ok(&fixtures[0], &["release", "show", "--env", "local", &id]);
    assert_eq!(
        shown,
        created[0].json()["manifest"],
        "the winner's manifest is the release"
    );
}

#[test]
fn a_release_deploys_its_own_templates_and_zips_whatever_the_checkout_holds_now() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    let original = write_zips(&fixture, "r1");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    let published = ok(&fixture, &["release", "publish", "--env", "local"]);
    let id = published["id"].as_str().expect("id").to_string();
    let manifest = &published["manifest"];

    // The checkout moves on: another setting, other zips, a new commit.
    let local = fixture.read("environments/local.yaml");
    fixture.write(
        "environments/local.yaml",
        &local.replace("retention_days: 1", "retention_days: 3"),
    );
    write_zips(&fixture, "r2");
    commit_at(&fixture, "2026-11-02T10:00:00Z");

    let deployed = ok(
        &fixture,
        &["deploy", "--env", "local", "--release", &id, "--yes"],
    );
    assert_eq!(deployed["result"], "deployed", "{deployed}");
    assert_eq!(deployed["release"], id.as_str());
    assert!(deployed.get("published").is_none(), "nothing is published");
    let aws = block_on(clients(&moto, "us-east-1"));
    let stacks = block_on(aws.cloudformation.describe_stacks().send()).expect("stacks");
    for stack in manifest["environments"]["local"]["stacks"]
        .as_array()
        .expect("stacks")
    {
        let name = stack["stack_name"].as_str().expect("name");
        let deployed = stacks
            .stacks()
            .iter()
            .find(|s| s.stack_name() == Some(name))
            .unwrap_or_else(|| panic!("{name} deployed"));
        let hash = deployed
            .tags()
            .iter()
            .find(|t| t.key() == Some(provisioner::deploy::TEMPLATE_HASH_TAG))
            .and_then(|t| t.value());
        assert_eq!(
            hash,
            stack["template_sha256"].as_str(),
            "{name} runs the release's template"
        );
    }
    for (function, bytes) in &original {
        assert_eq!(
            block_on(code_sha256(
                &moto,
                "us-east-1",
                &format!("datasync-local-{function}")
            )),
            lambda_digest(bytes),
            "{function} runs the release's zip, not the checkout's"
        );
    }

    // The same release again: nothing to do, in at most five AWS calls (identity, the
    // lock and history, the state, the stacks, the release of the lock) and, because
    // moto never reports LastUpdatedTime, one GetTemplate per stack (six).
    let again = ok(
        &fixture,
        &["deploy", "--env", "local", "--release", &id, "--yes"],
    );
    assert_eq!(again["result"], "no-changes");
    assert!(
        again["aws_requests"].as_u64().is_some_and(|n| n <= 5 + 6),
        "{}",
        again["aws_requests"]
    );
    let status = ok(&fixture, &["status", "--env", "local"]);
    assert_eq!(status["release"], id.as_str());
    let entries = history(&fixture, "local");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["result"], "no-changes");
    assert_eq!(entries[1]["result"], "deployed");
    assert_eq!(entries[1]["release"], id.as_str());
    assert_eq!(entries[1]["caller"], "arn:aws:sts::123456789012:user/moto");
    assert!(entries[1]["stacks_changed"]
        .as_array()
        .is_some_and(|s| s.len() == 6));
}

#[test]
fn promotion_deploys_the_identical_release_to_another_environment() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    add_environment(&fixture, "mirror", "us-west-2", "123456789012");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    ok(&fixture, &["bootstrap", "--env", "mirror", "--yes"]);
    let deployed = ok(&fixture, &["deploy", "--env", "local", "--yes"]);
    let id = deployed["release"].as_str().expect("release").to_string();

    let promoted = ok(
        &fixture,
        &["promote", "--from", "local", "--to", "mirror", "--yes"],
    );
    assert_eq!(promoted["release"], id.as_str());
    assert_eq!(promoted["deploy"]["result"], "deployed", "{promoted}");
    assert_eq!(promoted["copy"]["copied"], true);
    for pair in promoted["digests"].as_array().expect("digests") {
        assert_eq!(pair["source_sha256"], pair["target_sha256"], "{pair}");
    }
    for function in ["ingest", "worker", "reconciler"] {
        assert_eq!(
            block_on(code_sha256(
                &moto,
                "us-east-1",
                &format!("datasync-local-{function}")
            )),
            block_on(code_sha256(
                &moto,
                "us-west-2",
                &format!("datasync-mirror-{function}")
            )),
            "{function}: the same code in both environments"
        );
    }
    let entries = history(&fixture, "mirror");
    assert_eq!(entries[0]["kind"], "promote");
    assert_eq!(entries[0]["source_env"], "local");
    assert_eq!(entries[0]["release"], id.as_str());

    // Again: the release is in the target's bucket and deployed there.
    let again = ok(
        &fixture,
        &["promote", "--from", "local", "--to", "mirror", "--yes"],
    );
    assert_eq!(again["copy"]["copied"], false);
    assert_eq!(again["deploy"]["result"], "no-changes");
}

#[test]
fn promotion_is_refused_while_the_source_is_not_healthy() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    add_environment(&fixture, "mirror", "us-west-2", "123456789012");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    ok(&fixture, &["bootstrap", "--env", "mirror", "--yes"]);
    let promote = |extra: &[&str]| {
        let mut args = vec!["promote", "--from", "local", "--to", "mirror", "--yes"];
        args.extend_from_slice(extra);
        run(&fixture, &args)
    };

    let nothing = promote(&[]);
    assert_eq!(nothing.exit, Exit::PromotionRefused);
    assert!(
        nothing.error().contains("runs no release"),
        "{}",
        nothing.error()
    );

    let deployed = ok(&fixture, &["deploy", "--env", "local", "--yes"]);
    let id = deployed["release"].as_str().expect("release").to_string();

    let young = promote(&["--soak", "1h"]);
    assert_eq!(young.exit, Exit::PromotionRefused);
    assert!(
        young.error().contains("soak: running for") && !young.error().contains("alarms:"),
        "{}",
        young.error()
    );

    let aws = block_on(clients(&moto, "us-east-1"));
    block_on(
        aws.cloudwatch
            .put_metric_alarm()
            .alarm_name("datasync-local-dlq-depth")
            .namespace("AWS/SQS")
            .metric_name("ApproximateNumberOfMessagesVisible")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Maximum)
            .period(60)
            .evaluation_periods(1)
            .threshold(0.0)
            .comparison_operator(
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
            )
            .send(),
    )
    .expect("alarm");
    block_on(
        aws.cloudwatch
            .set_alarm_state()
            .alarm_name("datasync-local-dlq-depth")
            .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
            .state_reason("3 messages in the dead-letter queue")
            .send(),
    )
    .expect("alarm state");
    let alarmed = promote(&[]);
    assert_eq!(alarmed.exit, Exit::PromotionRefused);
    assert!(
        alarmed
            .error()
            .contains("datasync-local-dlq-depth is in ALARM (3 messages in the dead-letter queue)"),
        "{}",
        alarmed.error()
    );
    block_on(
        aws.cloudwatch
            .set_alarm_state()
            .alarm_name("datasync-local-dlq-depth")
            .state_value(aws_sdk_cloudwatch::types::StateValue::Ok)
            .state_reason("drained")
            .send(),
    )
    .expect("alarm state");

    // A release published but never deployed to the source cannot be promoted by name.
    write_zips(&fixture, "never deployed");
    commit_at(&fixture, "2026-11-02T10:00:00Z");
    let other = ok(&fixture, &["release", "publish", "--env", "local"]);
    let other_id = other["id"].as_str().expect("id").to_string();
    let never = promote(&["--release", &other_id]);
    assert_eq!(never.exit, Exit::PromotionRefused);
    assert!(
        never
            .error()
            .contains("never deployed successfully to local"),
        "{}",
        never.error()
    );

    // A stack of the source gone, and the last deploy there failed.
    block_on(
        aws.cloudformation
            .delete_stack()
            .stack_name("datasync-local-observability")
            .send(),
    )
    .expect("delete");
    let other_worker = other["manifest"]["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .find(|f| f["name"] == "worker")
        .and_then(|f| f["key"].as_str())
        .expect("worker key")
        .to_string();
    block_on(
        aws.s3
            .put_object()
            .bucket("datasync-artifacts-123456789012-us-east-1")
            .key(&other_worker)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"broken"))
            .send(),
    )
    .expect("tamper");
    let failed = run(
        &fixture,
        &["deploy", "--env", "local", "--release", &other_id, "--yes"],
    );
    assert_eq!(failed.exit, Exit::Failed, "{}", failed.error());
    let last = promote(&["--release", &other_id]);
    assert!(
        last.error().contains(&format!(
            "last deploy: the last deploy to local was {other_id}: failed"
        )),
        "{}",
        last.error()
    );
    let unsettled = promote(&["--release", &id]);
    assert_eq!(unsettled.exit, Exit::PromotionRefused);
    assert!(
        unsettled
            .error()
            .contains("datasync-local-observability is not deployed"),
        "{}",
        unsettled.error()
    );
    assert!(
        history(&fixture, "mirror").is_empty(),
        "nothing reached the target"
    );
}

#[test]
fn the_account_guard_refuses_credentials_of_another_account() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    add_environment(&fixture, "elsewhere", "us-east-1", "210987654321");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    for args in [
        &["bootstrap", "--env", "elsewhere", "--yes"][..],
        &["deploy", "--env", "elsewhere", "--yes"][..],
        &["plan", "--env", "elsewhere"][..],
        &["destroy", "--env", "elsewhere", "--yes"][..],
        &["unlock", "--env", "elsewhere", "--reason", "x"][..],
    ] {
        let refused = run(&fixture, args);
        assert_eq!(
            refused.exit,
            Exit::WrongAccount,
            "{args:?}: {}",
            refused.error()
        );
        let error = refused.error();
        assert!(
            error.contains("account 210987654321")
                && error.contains("account 123456789012")
                && error.contains("arn:aws:sts::123456789012:user/moto"),
            "{args:?}: {error}"
        );
    }
    // The real binary: its own exit code, and with --output json the failure on stdout.
    let output = assert_cmd::Command::cargo_bin("provisioner")
        .expect("binary")
        .args(["--root", &fixture.root().display().to_string()])
        .args(["--output", "json", "deploy", "--env", "elsewhere", "--yes"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(7));
    let document: Value = serde_json::from_slice(&output.stdout).expect("a JSON document");
    assert_eq!(document["error"]["kind"], "wrong-account");
    assert_eq!(document["error"]["exit_code"], 7);
    assert!(document["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("210987654321")));
    assert!(document["error"]["fix"]
        .as_str()
        .is_some_and(|f| f.contains("AWS_PROFILE")));
    let aws = block_on(clients(&moto, "us-east-1"));
    let stacks = block_on(aws.cloudformation.describe_stacks().send()).expect("stacks");
    assert!(stacks.stacks().is_empty(), "nothing was written");
}

#[test]
fn two_deploys_started_together_never_run_at_once() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    // DynamoDB's conditional writes are atomic; moto's threads are not (emulator::serial).
    let strict = emulator::serial::SerialProxy::start(&moto.endpoint_url()).expect("proxy");
    let fixture = Arc::new(local_fixture(&strict.endpoint_url()));
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    let published = ok(&fixture, &["release", "publish", "--env", "local"]);
    let id = published["id"].as_str().expect("id").to_string();

    let race = |extra: &'static [&'static str]| {
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let fixture = Arc::clone(&fixture);
                let barrier = Arc::clone(&barrier);
                let id = id.clone();
                std::thread::spawn(move || {
                    let mut args = vec![
                        "--output",
                        "json",
                        "deploy",
                        "--env",
                        "local",
                        "--release",
                        id.as_str(),
                        "--yes",
                    ];
                    args.extend_from_slice(extra);
                    barrier.wait();
                    run(&fixture, &args)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("deploy thread"))
            .collect::<Vec<_>>()
    };

    // Without --lock-timeout the second fails at once, naming the holder.
    let outcomes = race(&[]);
    let exits: Vec<Exit> = outcomes.iter().map(|o| o.exit).collect();
    assert!(
        exits.contains(&Exit::Success) && exits.contains(&Exit::Locked),
        "{exits:?}: {:?}",
        outcomes.iter().map(|o| o.error()).collect::<Vec<_>>()
    );
    let locked = outcomes
        .iter()
        .find(|o| o.exit == Exit::Locked)
        .expect("locked");
    assert!(
        locked
            .error()
            .contains("is being deployed by arn:aws:sts::123456789012:user/moto")
            && locked.error().contains(&format!("deploy of release {id}"))
            && locked.error().contains("--lock-timeout"),
        "{}",
        locked.error()
    );
    let status = ok(&fixture, &["status", "--env", "local"]);
    assert!(
        status["stacks"]
            .as_array()
            .expect("stacks")
            .iter()
            .all(|s| s["status"] == "CREATE_COMPLETE"),
        "every stack deployed once, completely: {status}"
    );
    let results: Vec<String> = history(&fixture, "local")
        .iter()
        .map(|e| e["result"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        results.iter().filter(|r| *r == "deployed").count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|r| *r == "locked").count(),
        1,
        "{results:?}"
    );

    // With --lock-timeout the second waits for the first and then finds nothing to do.
    let outcomes = race(&["--lock-timeout", "2m"]);
    for outcome in &outcomes {
        assert_eq!(outcome.exit, Exit::Success, "{}", outcome.error());
    }
    let results: Vec<String> = history(&fixture, "local")
        .iter()
        .take(2)
        .map(|e| e["result"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(results, ["no-changes", "no-changes"]);
}

#[test]
fn an_older_release_is_refused_unless_asked_for_and_rollback_goes_back() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    let older_zips = write_zips(&fixture, "older");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    let older = ok(&fixture, &["release", "publish", "--env", "local"])["id"]
        .as_str()
        .expect("id")
        .to_string();
    let newer_zips = write_zips(&fixture, "newer");
    commit_at(&fixture, "2026-11-02T10:00:00Z");
    let newer = ok(&fixture, &["release", "publish", "--env", "local"])["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(older < newer, "ids sort by commit: {older} {newer}");

    ok(
        &fixture,
        &["deploy", "--env", "local", "--release", &newer, "--yes"],
    );
    let late = run(
        &fixture,
        &["deploy", "--env", "local", "--release", &older, "--yes"],
    );
    assert_eq!(late.exit, Exit::OlderRelease, "{}", late.error());
    assert!(
        late.error()
            .contains(&format!("release {older} is older than {newer}"))
            && late.error().contains("--allow-downgrade"),
        "{}",
        late.error()
    );
    let worker = || block_on(code_sha256(&moto, "us-east-1", "datasync-local-worker"));
    assert_eq!(
        worker(),
        lambda_digest(&newer_zips[1].1),
        "nothing was reverted"
    );
    assert_eq!(history(&fixture, "local")[0]["result"], "older-release");

    ok(
        &fixture,
        &[
            "deploy",
            "--env",
            "local",
            "--release",
            &older,
            "--yes",
            "--allow-downgrade",
        ],
    );
    assert_eq!(worker(), lambda_digest(&older_zips[1].1));

    let rolled = ok(&fixture, &["rollback", "--env", "local", "--yes"]);
    assert_eq!(
        rolled["release"],
        newer.as_str(),
        "back to the previous release"
    );
    assert_eq!(rolled["command"], "rollback");
    assert_eq!(worker(), lambda_digest(&newer_zips[1].1), "{rolled}");
    let entry = &history(&fixture, "local")[0];
    assert_eq!(entry["kind"], "rollback");
    assert_eq!(entry["result"], "deployed");

    // Keeping one release per environment: the older one may expire, the running one not.
    let dry = ok(
        &fixture,
        &[
            "release",
            "prune",
            "--env",
            "local",
            "--keep",
            "1",
            "--dry-run",
        ],
    );
    assert_eq!(dry["expirable"], serde_json::json!([older]));
    assert_eq!(dry["objects_tagged"], 0);
    let pruned = ok(
        &fixture,
        &["release", "prune", "--env", "local", "--keep", "1"],
    );
    assert_eq!(pruned["kept"], serde_json::json!([newer]));
    assert_eq!(
        pruned["objects_tagged"], 5,
        "manifest, sources and three zips: {pruned}"
    );
    let aws = block_on(clients(&moto, "us-east-1"));
    let tags = |id: &str| {
        block_on(
            aws.s3
                .get_object_tagging()
                .bucket("datasync-artifacts-123456789012-us-east-1")
                .key(format!("releases/{id}/manifest.json"))
                .send(),
        )
        .expect("tagging")
        .tag_set()
        .iter()
        .map(|t| format!("{}={}", t.key(), t.value()))
        .collect::<Vec<_>>()
    };
    assert_eq!(tags(&older), ["provisioner:retention=expirable"]);
    assert!(
        tags(&newer).is_empty(),
        "the running release is never tagged"
    );
}

#[test]
fn a_lock_left_by_a_dead_process_is_refused_until_unlock_breaks_it_on_record() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    let aws = block_on(clients(&moto, "us-east-1"));
    let deployments = Deployments::new(aws.dynamodb.clone(), "datasync-deployments");
    let mut dead = LockHolder::this_process(
        "arn:aws:sts::123456789012:assumed-role/ci/run-41",
        "deploy",
        "20261101T100000Z-0123456789ab",
        std::time::Duration::from_secs(3600),
    );
    dead.pid = 4_194_303; // above any pid this machine hands out
    let entry = HistoryEntry::start("local", "deploy", Some(&dead.release), &dead.caller);
    block_on(deployments.acquire("local", &dead, &entry))
        .expect("write")
        .expect("the lock was free");

    let refused = run(&fixture, &["deploy", "--env", "local", "--yes"]);
    assert_eq!(refused.exit, Exit::Locked);
    assert!(
        refused.error().contains("stale deploy lock")
            && refused.error().contains("run-41")
            && refused.error().contains("no longer exists")
            && refused
                .error()
                .contains("provisioner unlock --env local --reason"),
        "{}",
        refused.error()
    );

    let unlocked = ok(
        &fixture,
        &[
            "unlock",
            "--env",
            "local",
            "--reason",
            "CI run 41 was killed",
        ],
    );
    assert_eq!(unlocked["unlocked"], true);
    let entries = history(&fixture, "local");
    let broken = entries
        .iter()
        .find(|e| e["kind"] == "unlock")
        .expect("unlock recorded");
    assert_eq!(broken["result"], "unlocked");
    assert!(broken["message"]
        .as_str()
        .is_some_and(|m| m.contains("CI run 41 was killed") && m.contains("run-41")));
    let deployed = ok(&fixture, &["deploy", "--env", "local", "--yes"]);
    assert_eq!(deployed["result"], "deployed");
    let nothing = ok(&fixture, &["unlock", "--env", "local", "--reason", "again"]);
    assert_eq!(nothing["unlocked"], false);

    // A lock whose lease is being renewed (this very process holds it) is alive: unlock
    // refuses it unless forced.
    let alive = LockHolder::this_process(
        "arn:aws:sts::123456789012:user/ops",
        "deploy",
        "r",
        std::time::Duration::from_secs(3600),
    );
    let entry = HistoryEntry::start("local", "deploy", None, &alive.caller);
    block_on(deployments.acquire("local", &alive, &entry))
        .expect("write")
        .expect("the lock was free");
    let refused = run(
        &fixture,
        &["unlock", "--env", "local", "--reason", "impatient"],
    );
    assert_eq!(refused.exit, Exit::Failed);
    assert!(
        refused.error().contains("is alive") && refused.error().contains("--force"),
        "{}",
        refused.error()
    );
    let forced = ok(
        &fixture,
        &[
            "unlock",
            "--env",
            "local",
            "--reason",
            "runner killed",
            "--force",
        ],
    );
    assert_eq!(forced["unlocked"], true);
    // The deploy that held it finds its lock gone: it records its end, and leaves the
    // state to whoever deploys next.
    let mut end = entry.clone();
    end.result = "deployed".into();
    let state = block_on(deployments.state("local"))
        .expect("state")
        .expect("a state");
    let kept = block_on(deployments.finish(
        "local",
        &alive.owner_id,
        &end,
        Some(&state.after("r", "deployed", "now", 10)),
    ))
    .expect("finish");
    assert!(!kept, "the lock had been broken");
    let after = block_on(deployments.state("local"))
        .expect("state")
        .expect("a state");
    assert_eq!(
        after, state,
        "a deploy that lost its lock does not overwrite the state"
    );

    // An expired lease (a holder on another machine that stopped its heartbeat).
    let mut gone = LockHolder::this_process(
        "arn:aws:sts::123456789012:user/ops",
        "deploy",
        "r",
        std::time::Duration::from_secs(1),
    );
    gone.host = "build-7".into();
    gone.lease_expires_at = format_time(chrono::Utc::now() - chrono::Duration::minutes(5));
    let entry = HistoryEntry::start("local", "deploy", None, &gone.caller);
    block_on(deployments.acquire("local", &gone, &entry))
        .expect("write")
        .expect("the lock was free");
    let refused = run(&fixture, &["deploy", "--env", "local", "--yes"]);
    assert_eq!(refused.exit, Exit::Locked);
    assert!(
        refused.error().contains("lease expired") && refused.error().contains("build-7"),
        "{}",
        refused.error()
    );
}

#[test]
fn bad_release_inputs_get_errors_that_name_the_fix() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);

    let malformed = run(
        &fixture,
        &["deploy", "--env", "local", "--release", "latest"],
    );
    assert_eq!(malformed.exit, Exit::Failed);
    assert!(
        malformed.error().contains("`latest` is not a release id")
            && malformed.error().contains("provisioner release list"),
        "{}",
        malformed.error()
    );
    let unknown = run(
        &fixture,
        &[
            "deploy",
            "--env",
            "local",
            "--release",
            "20250101T000000Z-0123456789ab",
            "--yes",
        ],
    );
    assert_eq!(unknown.exit, Exit::Failed);
    assert!(
        unknown
            .error()
            .contains("release 20250101T000000Z-0123456789ab is not published in s3://datasync-artifacts-123456789012-us-east-1")
            && unknown.error().contains("provisioner release publish --env local"),
        "{}",
        unknown.error()
    );

    // A zip overwritten in the bucket after publishing.
    let published = ok(&fixture, &["release", "publish", "--env", "local"]);
    let id = published["id"].as_str().expect("id").to_string();
    let worker_key = published["manifest"]["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .find(|f| f["name"] == "worker")
        .and_then(|f| f["key"].as_str())
        .expect("worker key")
        .to_string();
    let aws = block_on(clients(&moto, "us-east-1"));
    block_on(
        aws.s3
            .put_object()
            .bucket("datasync-artifacts-123456789012-us-east-1")
            .key(&worker_key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"not the worker",
            ))
            .send(),
    )
    .expect("tamper");
    let tampered = run(
        &fixture,
        &["deploy", "--env", "local", "--release", &id, "--yes"],
    );
    assert_eq!(tampered.exit, Exit::Failed);
    assert!(
        tampered.error().contains(&worker_key)
            && tampered
                .error()
                .contains("changed after the release was published")
            && tampered.error().contains("list-object-versions"),
        "{}",
        tampered.error()
    );
    let stacks = block_on(aws.cloudformation.describe_stacks().send()).expect("stacks");
    assert_eq!(
        stacks.stacks().len(),
        1,
        "only the bootstrap stack: nothing deployed"
    );
    assert_eq!(history(&fixture, "local")[0]["result"], "failed");

    // A manifest edited in the bucket (a zip's digest pointed elsewhere).
    let manifest_key = format!("releases/{id}/manifest.json");
    let mut edited = published["manifest"].clone();
    edited["functions"][1]["sha256"] = Value::from("0".repeat(64));
    block_on(
        aws.s3
            .put_object()
            .bucket("datasync-artifacts-123456789012-us-east-1")
            .key(&manifest_key)
            .body(aws_sdk_s3::primitives::ByteStream::from(
                serde_json::to_vec(&edited).expect("json"),
            ))
            .send(),
    )
    .expect("edit the manifest");
    let cache = fixture.root().join("build/releases");
    std::fs::remove_dir_all(&cache).expect("drop the local copy");
    let edited_run = run(
        &fixture,
        &["deploy", "--env", "local", "--release", &id, "--yes"],
    );
    assert_eq!(edited_run.exit, Exit::Failed);
    assert!(
        edited_run
            .error()
            .contains("manifest.json (its content digest)"),
        "{}",
        edited_run.error()
    );
    block_on(
        aws.s3
            .put_object()
            .bucket("datasync-artifacts-123456789012-us-east-1")
            .key(&manifest_key)
            .body(aws_sdk_s3::primitives::ByteStream::from(
                serde_json::to_vec(&published["manifest"]).expect("json"),
            ))
            .send(),
    )
    .expect("restore the manifest");

    // An environment the release does not have.
    add_environment(&fixture, "later", "us-east-1", "123456789012");
    commit_at(&fixture, "2030-01-01T00:00:00Z");
    let missing = run(
        &fixture,
        &["deploy", "--env", "later", "--release", &id, "--yes"],
    );
    assert_eq!(missing.exit, Exit::Failed);
    assert!(
        missing
            .error()
            .contains(&format!("release {id} has no environment `later`"))
            && missing.error().contains("environments/later.yaml"),
        "{}",
        missing.error()
    );

    // A dirty tree is refused for a real environment, before any AWS call.
    fixture.write(
        "environments/dev.yaml",
        &(fixture.read("environments/dev.yaml") + "\n# edited\n"),
    );
    let dirty = run(&fixture, &["deploy", "--env", "dev", "--yes"]);
    assert_eq!(dirty.exit, Exit::Failed);
    assert!(
        dirty.error().contains("uncommitted changes") && dirty.error().contains("--allow-dirty"),
        "{}",
        dirty.error()
    );
    let lock_timeout = provisioner::cli::Cli::try_parse_from([
        "provisioner",
        "deploy",
        "--env",
        "local",
        "--lock-timeout",
        "10 minutes",
    ]);
    assert!(lock_timeout
        .unwrap_err()
        .to_string()
        .contains("not a duration unit"));
}

#[test]
fn credential_problems_are_one_line_each() {
    let fixture = Fixture::new();
    write_zips(&fixture, "x");
    fixture.commit();
    let home = tempfile::tempdir().expect("home");
    let run_binary = |profile: Option<&str>| {
        let mut command = assert_cmd::Command::cargo_bin("provisioner").expect("binary");
        command
            .args([
                "--root",
                &fixture.root().display().to_string(),
                "plan",
                "--env",
                "dev",
            ])
            .env("HOME", home.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", home.path().join("config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                home.path().join("credentials"),
            );
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "RUST_LOG",
        ] {
            command.env_remove(name);
        }
        if let Some(profile) = profile {
            command.env("AWS_PROFILE", profile);
        }
        let output = command.output().expect("runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run_binary(None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: no AWS credentials found\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("AWS_PROFILE") && stderr.contains("aws sso login"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("ProviderError") && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
    assert!(stderr.lines().count() <= 2, "{stderr}");

    let (code, stderr) = run_binary(Some("nope"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: the AWS profile `nope` is not defined"),
        "{stderr}"
    );
    assert!(stderr.lines().count() <= 2, "{stderr}");
}

#[tokio::test]
async fn expired_credentials_say_how_to_refresh_them() {
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    let expired = mock!(aws_sdk_sts::Client::get_caller_identity).then_error(|| {
        aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError::generic(
            aws_sdk_sts::error::ErrorMetadata::builder()
                .code("ExpiredToken")
                .message("The security token included in the request is expired")
                .build(),
        )
    });
    let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, &[&expired]);
    let error = provisioner::release::identity::caller_identity(&sts)
        .await
        .expect_err("expired");
    let report = provisioner::error::report(&error);
    assert!(
        report.starts_with("error: the AWS credentials have expired"),
        "{report}"
    );
    assert!(report.contains("aws sso login"), "{report}");
    assert_eq!(report.lines().count(), 2, "{report}");
}

#[test]
fn a_stack_updated_behind_the_provisioners_back_is_detected_and_redeployed() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    write_zips(&fixture, "r1");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    let deployed = ok(&fixture, &["deploy", "--env", "local", "--yes"]);
    assert_eq!(deployed["result"], "deployed", "{deployed}");
    let status = ok(&fixture, &["status", "--env", "local"]);
    assert!(
        status["stacks"]
            .as_array()
            .expect("stacks")
            .iter()
            .all(|s| s["changed_outside"] == false),
        "{status}"
    );

    // Someone adds a topic to the messaging stack with the CLI: UpdateStack keeps the
    // stack's tags, template hash tag included.
    let stack = "datasync-local-messaging";
    let aws = block_on(clients(&moto, "us-east-1"));
    let template = block_on(aws.cloudformation.get_template().stack_name(stack).send())
        .expect("template")
        .template_body()
        .expect("body")
        .to_string();
    let edited = template.replacen(
        "Resources:\n",
        "Resources:\n  AddedBehindTheBack:\n    Type: AWS::SNS::Topic\n",
        1,
    );
    assert_ne!(edited, template, "the template has a Resources section");
    block_on(
        aws.cloudformation
            .update_stack()
            .stack_name(stack)
            .template_body(edited)
            .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
            .send(),
    )
    .expect("UpdateStack behind the provisioner's back");

    let status = run(&fixture, &["status", "--env", "local"]);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with(stack) && l.contains("changed outside the provisioner")),
        "{}",
        status.stdout
    );
    let planned = ok(&fixture, &["plan", "--env", "local"]);
    let stacks = planned["stacks"].as_array().expect("stacks");
    for planned_stack in stacks {
        let expected = if planned_stack["stack_name"] == stack {
            "planned"
        } else {
            "unchanged"
        };
        assert_eq!(planned_stack["result"], expected, "{planned_stack}");
    }
    let messaging = stacks
        .iter()
        .find(|s| s["stack_name"] == stack)
        .expect("messaging planned");
    assert!(
        messaging["notes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n
                .as_str()
                .is_some_and(|n| n.contains("changed outside the provisioner")))),
        "{messaging}"
    );

    let redeployed = ok(&fixture, &["deploy", "--env", "local", "--yes"]);
    assert_eq!(redeployed["result"], "deployed", "{redeployed}");
    let changed: Vec<&str> = redeployed["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .filter(|s| s["result"] == "deployed")
        .filter_map(|s| s["stack_name"].as_str())
        .collect();
    assert_eq!(
        changed,
        [stack],
        "only the stack changed outside is redeployed"
    );
    let running = block_on(aws.cloudformation.get_template().stack_name(stack).send())
        .expect("template")
        .template_body()
        .expect("body")
        .to_string();
    assert_eq!(running, template, "the provisioner's template is back");
    let status = ok(&fixture, &["status", "--env", "local"]);
    assert!(
        status["stacks"]
            .as_array()
            .expect("stacks")
            .iter()
            .all(|s| s["changed_outside"] == false),
        "{status}"
    );
}

#[test]
fn recover_acts_under_the_lock_on_record_and_drift_names_what_the_emulator_lacks() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    write_zips(&fixture, "r1");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    ok(&fixture, &["deploy", "--env", "local", "--yes"]);

    // Every stack settled: nothing to do, and the attempt is on record.
    let settled = ok(&fixture, &["recover", "--env", "local"]);
    assert_eq!(settled["settled"], true, "{settled}");
    assert!(settled["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .all(|s| s["result"] == "settled"));
    let text = run(&fixture, &["recover", "--env", "local"]);
    assert!(
        text.stdout
            .contains("every stack is settled; nothing to recover"),
        "{}",
        text.stdout
    );
    let entries = history(&fixture, "local");
    assert_eq!(entries[0]["kind"], "recover");
    assert_eq!(entries[0]["result"], "no-changes");

    // A --skip that names nothing to skip is refused, and the lock is released.
    let bad = run(
        &fixture,
        &["recover", "--env", "local", "--skip", "Records"],
    );
    assert_eq!(bad.exit, Exit::Failed);
    assert!(
        bad.error()
            .contains("--skip `Records`: no stack has a resource Records that failed to roll back")
            && bad
                .error()
                .contains("no stack of the environment is in UPDATE_ROLLBACK_FAILED"),
        "{}",
        bad.error()
    );
    assert_eq!(history(&fixture, "local")[0]["result"], "failed");

    // While a deploy holds the lock, recover does not touch the stacks.
    let aws = block_on(clients(&moto, "us-east-1"));
    let deployments = Deployments::new(aws.dynamodb.clone(), "datasync-deployments");
    let holder = LockHolder::this_process(
        "arn:aws:sts::123456789012:user/ci",
        "deploy",
        "r",
        std::time::Duration::from_secs(3600),
    );
    let entry = HistoryEntry::start("local", "deploy", Some("r"), &holder.caller);
    block_on(deployments.acquire("local", &holder, &entry))
        .expect("write")
        .expect("the lock was free");
    let locked = run(&fixture, &["recover", "--env", "local"]);
    assert_eq!(locked.exit, Exit::Locked, "{}", locked.error());
    assert!(
        locked.error().contains("is being deployed by"),
        "{}",
        locked.error()
    );
    block_on(deployments.finish("local", &holder.owner_id, &entry, None)).expect("released");

    // moto has no DetectStackDrift: drift says so instead of failing obscurely.
    let drift = run(&fixture, &["drift", "--env", "local"]);
    assert_eq!(drift.exit, Exit::Failed);
    assert!(
        drift
            .error()
            .contains("the emulator (moto) does not implement DetectStackDrift"),
        "{}",
        drift.error()
    );
}

#[test]
fn bootstrap_creates_the_deploy_role_of_an_environment_with_deploy_from_on_the_emulator() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    let local = fixture.read("environments/local.yaml");
    fixture.write_env(
        "local",
        &format!("{local}\nci:\n  deploy_from: environment:local\n"),
    );
    let report = ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    assert_eq!(report["result"], "deployed");
    // The emulator creates no OIDC provider through CloudFormation, so an emulated
    // environment's role names the account's provider by ARN and the stack has none.
    assert_eq!(
        report["outputs"]["DeployRoleArn"],
        "arn:aws:iam::123456789012:role/datasync-local-deploy"
    );
    assert!(report["outputs"].get("GitHubOidcProviderArn").is_none());
}

#[test]
fn bootstrap_refuses_to_drop_the_deploy_role_of_an_environment_sharing_its_account_and_region() {
    let fixture = crate::common::Fixture::new();
    fixture.write_env(
        "dev2",
        "extends: dev\nci:\n  deploy_from: environment:dev2\n",
    );
    let refused = run(&fixture, &["bootstrap", "--env", "dev", "--yes"]);
    assert_eq!(refused.exit, Exit::Failed);
    let error = refused.error();
    assert!(
        error.contains("shares account 210987654321 and region eu-west-1 with `dev2`"),
        "{error}"
    );
    assert!(
        error.contains("would remove or replace the other's role"),
        "{error}"
    );
    assert!(error.contains("its own account or region"), "{error}");
}
