//! The whole platform on this machine, end to end: `provisioner up` in the background on
//! free ports, a few hundred records with duplicates, out-of-order versions, deletes and
//! invalid ones sent with `provisioner local send` while the downstream target fails for
//! a while; then the tables, the downstream target and the queues are checked, the
//! environment is decommissioned under the running host, and `provisioner local down`
//! must leave no process behind. A second run puts records in the dead-letter queue and
//! in FAILED through a failing downstream, and gets them synced with `redrive` and
//! `replay`. The two runs take turns (each runs a whole platform on this machine).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Fixture;
use serde_json::{json, Value};

fn provisioner() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_provisioner"));
    let venv = common::repo_root().join(".venv/bin");
    let path = std::env::var("PATH").unwrap_or_default();
    command
        .env("PATH", format!("{}:{path}", venv.display()))
        .env_remove("RUST_LOG");
    command
}

/// Builds the real functions once (cargo-lambda, release) into the workspace target dir.
fn built_functions() -> PathBuf {
    let root = common::repo_root();
    let out = root.join("target/e2e-functions");
    let status = provisioner()
        .arg("--root")
        .arg(&root)
        .args(["build", "--env", "local", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("provisioner build runs");
    assert!(status.success(), "provisioner build failed");
    out
}

fn free_port() -> u16 {
    emulator::free_port().expect("a free port")
}

struct Ports {
    emulator: u16,
    http: u16,
    downstream: u16,
}

fn write_environment(fixture: &Fixture, name: &str, ports: &Ports, max_receive_count: u32) {
    fixture.write_env(
        name,
        &format!(
            "extends: local\n\
             endpoint_url: http://127.0.0.1:{emulator}\n\
             function_host:\n  http_port: {http}\n  downstream_port: {downstream}\n\
             downstream:\n  url: http://127.0.0.1:{downstream}\n  timeout_ms: 1000\n\
             functions:\n  worker:\n    timeout_seconds: 6\n\
             queue:\n  visibility_timeout_seconds: 36\n  max_receive_count: {max_receive_count}\n\
             decommission:\n  quiet_window: 0s\n  hold: 1h\n",
            emulator = ports.emulator,
            http = ports.http,
            downstream = ports.downstream,
        ),
    );
}

fn employee(id: usize, day: u32, department: &str) -> Value {
    json!({
        "employee_id": format!("E-{id:05}"),
        "email": format!("  Person.{id}@Example.COM "),
        "first_name": "Person",
        "last_name": format!("Number{id}"),
        "department": department,
        "employment_status": "active",
        "hire_date": "2020-01-15",
        "updated_at": format!("2026-11-{day:02}T09:00:00Z"),
    })
}

/// The feeds, in the order they are sent, and what each id must end as.
struct Feeds {
    first: Vec<Value>,
    newer: Vec<Value>,
    late_older: Vec<Value>,
    deletes: Vec<Value>,
    /// id -> (department, deleted) of the newest version.
    expected: BTreeMap<String, (String, bool)>,
    invalid: usize,
}

fn feeds() -> Feeds {
    let mut expected = BTreeMap::new();
    let mut first = Vec::new();
    for id in 0..200 {
        first.push(employee(id, 10, "Engineering"));
        expected.insert(
            format!("hris:E-{id:05}"),
            ("Engineering".to_string(), false),
        );
    }
    // Duplicates: the same records again.
    for id in 0..40 {
        first.push(employee(id, 10, "Engineering"));
    }
    // Invalid ones, each for a different reason.
    let mut invalid = 0;
    for n in 0..20 {
        let mut record = employee(900 + n, 10, "Engineering");
        match n % 4 {
            0 => record.as_object_mut().map(|r| r.remove("email")),
            1 => record
                .as_object_mut()
                .map(|r| r.insert("employment_status".into(), json!("retired-ish"))),
            2 => record
                .as_object_mut()
                .map(|r| r.insert("hire_date".into(), json!("31/02/2020"))),
            _ => record.as_object_mut().map(|r| r.remove("employee_id")),
        };
        first.insert(n * 11, record);
        invalid += 1;
    }
    let mut newer = Vec::new();
    for id in 40..70 {
        newer.push(employee(id, 15, "Research"));
        expected.insert(format!("hris:E-{id:05}"), ("Research".to_string(), false));
    }
    // Older versions of records that already have a newer one, arriving last.
    let late_older: Vec<Value> = (40..70).map(|id| employee(id, 1, "Archive")).collect();
    let mut deletes = Vec::new();
    for id in 100..110 {
        let mut record = employee(id, 20, "Engineering");
        record["deleted"] = json!(true);
        deletes.push(record);
        expected.insert(format!("hris:E-{id:05}"), ("Engineering".to_string(), true));
    }
    Feeds {
        first,
        newer,
        late_older,
        deletes,
        expected,
        invalid,
    }
}

fn send(root: &Path, dir: &Path, name: &str, records: &[Value]) -> Value {
    send_to(root, "e2e", dir, name, records)
}

fn send_to(root: &Path, env: &str, dir: &Path, name: &str, records: &[Value]) -> Value {
    let file = dir.join(format!("hris-{name}.json"));
    std::fs::write(
        &file,
        serde_json::to_string(&json!({ "records": records })).expect("JSON"),
    )
    .expect("write feed");
    let output = provisioner()
        .arg("--root")
        .arg(root)
        .args([
            "--output", "json", "local", "send", "--env", env, "--batch", "50",
        ])
        .arg(&file)
        .output()
        .expect("local send runs");
    assert!(
        output.status.success(),
        "local send failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("send prints one JSON document")
}

fn http(method: &str, url: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let address = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port")
        .to_string();
    let path = format!(
        "/{}",
        url.trim_start_matches("http://")
            .split_once('/')
            .map(|(_, p)| p)
            .unwrap_or("")
    );
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

struct Emulator {
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    runtime: tokio::runtime::Runtime,
}

impl Emulator {
    fn connect(port: u16) -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let config = runtime.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(format!("http://127.0.0.1:{port}"))
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "t", "t", None, None, "test",
                ))
                .load(),
        );
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            runtime,
        }
    }

    fn scan(
        &self,
        table: &str,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.runtime.block_on(async {
            let mut items = Vec::new();
            let mut start = None;
            loop {
                let page = self
                    .dynamodb
                    .scan()
                    .table_name(table)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .expect("scan");
                items.extend(page.items().iter().cloned());
                start = page.last_evaluated_key().cloned();
                if start.is_none() {
                    return items;
                }
            }
        })
    }

    fn queue_depth(&self, port: u16, queue: &str) -> (u64, u64) {
        self.runtime.block_on(async {
            let attributes = self
                .sqs
                .get_queue_attributes()
                .queue_url(format!("http://127.0.0.1:{port}/123456789012/{queue}"))
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                .send()
                .await
                .expect("queue attributes");
            let get = |name: aws_sdk_sqs::types::QueueAttributeName| {
                attributes
                    .attributes()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(u64::MAX)
            };
            (
                get(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
                get(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            )
        })
    }
}

fn text(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    key: &str,
) -> String {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(needle) {
                found.push(pid);
            }
        }
    }
    found
}

/// Runs `provisioner local down` when dropped, so a failing test leaves nothing running.
struct Down(PathBuf, &'static str);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = provisioner()
            .arg("--root")
            .arg(&self.0)
            .args(["local", "down", "--env", self.1])
            .output();
    }
}

/// One platform (and one build of the functions) at a time on this machine.
static ONE_PLATFORM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The host's log (`up`'s stderr), as far as it has come.
type HostLog = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

fn log_text(log: &HostLog) -> String {
    log.lock().map(|lines| lines.join("\n")).unwrap_or_default()
}

/// `provisioner up --env <env>` in the background, once it says it is up; with its
/// stderr (the host's log) collected as it comes.
fn start_up(root: &Path, env: &str, artifacts: &Path) -> (std::process::Child, HostLog) {
    let mut up = provisioner()
        .arg("--root")
        .arg(root)
        .args(["up", "--env", env, "--no-build", "--artifacts"])
        .arg(artifacts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("up starts");
    let stdout = BufReader::new(up.stdout.take().expect("stdout"));
    let stderr = up.stderr.take().expect("stderr");
    let host_log = HostLog::default();
    let collected = host_log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut lines) = collected.lock() {
                lines.push(line);
            }
        }
    });
    let mut lines = stdout.lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("environment is up"));
    if !ready {
        let _ = up.kill();
        let _ = up.wait();
        std::thread::sleep(Duration::from_millis(200));
        panic!("up stopped before it was ready: {}", log_text(&host_log));
    }
    std::thread::spawn(move || lines.for_each(drop));
    (up, host_log)
}

/// One environment of a fixture, run with `up` on free ports: taken in turns, and
/// stopped (`local down`) whatever happens.
struct Platform {
    root: PathBuf,
    ports: Ports,
    artifacts: PathBuf,
    up: std::process::Child,
    host_log: HostLog,
    // Dropped in this order: `local down` runs while the fixture still exists and
    // before the next platform may start.
    _down: Down,
    _fixture: Fixture,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Platform {
    fn start(env: &'static str, max_receive_count: u32) -> Self {
        let one = ONE_PLATFORM.lock().unwrap_or_else(|e| e.into_inner());
        let artifacts = built_functions();
        let fixture = Fixture::new();
        let root = fixture.root().to_path_buf();
        let ports = Ports {
            emulator: free_port(),
            http: free_port(),
            downstream: free_port(),
        };
        write_environment(&fixture, env, &ports, max_receive_count);
        fixture.commit();
        let down = Down(root.clone(), env);
        let (up, host_log) = start_up(&root, env, &artifacts);
        Self {
            root,
            ports,
            artifacts,
            up,
            host_log,
            _down: down,
            _fixture: fixture,
            _one: one,
        }
    }
}

#[test]
fn the_local_platform_syncs_a_feed_end_to_end() {
    let mut platform = Platform::start("e2e", 10);
    let root = platform.root.clone();
    let artifacts = platform.artifacts.clone();
    let ports = &platform.ports;

    // A second `up` while this one runs says so.
    let second = provisioner()
        .arg("--root")
        .arg(&root)
        .args(["up", "--env", "e2e", "--no-build", "--artifacts"])
        .arg(&artifacts)
        .output()
        .expect("second up runs");
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("is already running"));

    // The downstream target fails for a while: 429 with Retry-After, then 503s.
    let downstream = format!("http://127.0.0.1:{}", ports.downstream);
    http(
        "POST",
        &format!("{downstream}/_control/fail"),
        r#"{"status":429,"count":5,"retry_after":1}"#,
    );

    let feeds = feeds();
    let sent_dir = tempfile::tempdir().expect("temp dir");
    let first = send(&root, sent_dir.path(), "first", &feeds.first);
    let failures_seen = || -> usize {
        let received: Value =
            serde_json::from_str(&http("GET", &format!("{downstream}/_control/received"), ""))
                .unwrap_or_default();
        received["pushes"]
            .as_array()
            .map(|p| p.iter().filter(|p| p["status"] != 200).count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while failures_seen() < 5 {
        assert!(
            Instant::now() < deadline,
            "the worker never pushed downstream"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // As Lambda scales the queue's consumer, the host runs the event source's maximum
    // concurrency (5, from defaults.yaml) of worker instances at once.
    let instances = processes_mentioning("functions/worker-");
    assert_eq!(instances.len(), 5, "worker processes: {instances:?}");
    http(
        "POST",
        &format!("{downstream}/_control/fail"),
        r#"{"status":503,"count":25}"#,
    );
    let newer = send(&root, sent_dir.path(), "newer", &feeds.newer);
    let older = send(&root, sent_dir.path(), "older", &feeds.late_older);
    let deletes = send(&root, sent_dir.path(), "deletes", &feeds.deletes);

    // Invalid records are rejected with their reasons; everything else is accepted.
    assert_eq!(first["rejected"], feeds.invalid);
    assert_eq!(first["accepted"], feeds.first.len() - feeds.invalid);
    for error in first["errors"].as_array().expect("errors") {
        assert_eq!(error["code"], "invalid_record", "{error}");
        assert!(
            !error["field_errors"]
                .as_array()
                .map(Vec::is_empty)
                .unwrap_or(true)
                || error["message"].as_str().is_some()
        );
    }
    for report in [&newer, &older, &deletes] {
        assert_eq!(report["rejected"], 0, "{report}");
    }
    let accepted: u64 = [&first, &newer, &older, &deletes]
        .iter()
        .map(|r| r["accepted"].as_u64().unwrap_or(0))
        .sum();

    // Wait until nothing is in flight and the ledger has settled.
    let emulator = Emulator::connect(ports.emulator);
    let deadline = Instant::now() + Duration::from_secs(300);
    let (records, ledger) = loop {
        let queue = emulator.queue_depth(ports.emulator, "datasync-e2e-records");
        let records = emulator.scan("datasync-e2e-records");
        let ledger = emulator.scan("datasync-e2e-ledger");
        let settled = ledger
            .iter()
            .all(|item| matches!(text(item, "state").as_str(), "COMPLETED" | "FAILED"));
        if queue == (0, 0) && settled && records.len() == feeds.expected.len() {
            break (records, ledger);
        }
        assert!(
            Instant::now() < deadline,
            "not settled in time: queue {queue:?}, {} records, ledger states {:?}",
            records.len(),
            ledger
                .iter()
                .map(|i| text(i, "state"))
                .collect::<BTreeSet<_>>()
        );
        std::thread::sleep(Duration::from_secs(2));
    };

    // The tables hold exactly the expected records: the newest version, deletes as tombstones.
    let mut stored = BTreeMap::new();
    for item in &records {
        let id = format!("{}:{}", text(item, "source"), text(item, "external_id"));
        let deleted = item
            .get("deleted")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false);
        let department = item
            .get("fields")
            .and_then(|f| f.as_m().ok())
            .and_then(|f| f.get("department"))
            .and_then(|d| d.as_s().ok())
            .cloned()
            .unwrap_or_else(|| "Engineering".into());
        stored.insert(id, (department, deleted));
    }
    assert_eq!(stored, feeds.expected);

    // Nothing failed and nothing is left behind.
    assert!(
        ledger.iter().all(|item| text(item, "state") == "COMPLETED"),
        "a record failed"
    );
    assert_eq!(
        emulator.queue_depth(ports.emulator, "datasync-e2e-records-dlq"),
        (0, 0)
    );

    // Conservation: every accepted record is synced, stale or a duplicate. The ledger has
    // one item per distinct (source, id, version, operation); the 40 resent copies share one.
    let synced = ledger
        .iter()
        .filter(|i| text(i, "outcome") == "synced")
        .count() as u64;
    let stale = ledger
        .iter()
        .filter(|i| text(i, "outcome") == "stale")
        .count() as u64;
    assert_eq!(ledger.len(), 270);
    assert_eq!(synced + stale, 270);
    assert!(
        stale >= feeds.late_older.len() as u64,
        "every late older version is stale ({stale})"
    );
    assert_eq!(
        accepted,
        synced + stale + 40,
        "accepted = synced + stale + duplicates"
    );

    // Downstream: the newest version of every record, no version pushed twice.
    let received: Value =
        serde_json::from_str(&http("GET", &format!("{downstream}/_control/received"), ""))
            .expect("JSON");
    let mut delivered = BTreeMap::new();
    let mut failed_pushes = 0;
    for push in received["pushes"].as_array().expect("pushes") {
        if push["status"] != 200 {
            failed_pushes += 1;
            continue;
        }
        let key = (
            push["id"].as_str().unwrap_or_default().to_string(),
            push["body"]["source_version"].as_i64(),
        );
        *delivered.entry(key).or_insert(0) += 1;
    }
    assert_eq!(
        failed_pushes, 30,
        "every injected failure (5 x 429, 25 x 503) was met and retried"
    );
    let twice: Vec<_> = delivered.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "pushed more than once: {twice:?}");
    let latest = received["latest"].as_object().expect("latest");
    assert_eq!(latest.len(), feeds.expected.len());
    for (id, (department, deleted)) in &feeds.expected {
        let body = &latest[id];
        assert_eq!(body["operation"] == "delete", *deleted, "{id}: {body}");
        if !deleted {
            assert_eq!(
                body["fields"]["department"],
                department.as_str(),
                "{id}: {body}"
            );
        }
    }

    // Decommission while `up` runs: the host follows the compute stack. Once traffic is
    // stopped, ingest (restarted from the new configuration) answers senders 410.
    let decommission = |until: &str| {
        provisioner()
            .arg("--root")
            .arg(&root)
            .args([
                "--output",
                "json",
                "decommission",
                "--env",
                "e2e",
                "--confirm",
                "e2e",
                "--until",
                until,
            ])
            .output()
            .expect("decommission runs")
    };
    let stopped = decommission("stop-traffic");
    assert!(
        stopped.status.success(),
        "{}{}",
        String::from_utf8_lossy(&stopped.stdout),
        String::from_utf8_lossy(&stopped.stderr)
    );
    // The host picks the change up within its follow period; wait until it has.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log_text(&platform.host_log).contains("(traffic stopped at") {
        assert!(
            Instant::now() < deadline,
            "the host never restarted the functions after traffic stopped: {}",
            log_text(&platform.host_log)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let feed = sent_dir.path().join("hris-after-stop.json");
    std::fs::write(
        &feed,
        serde_json::to_string(&json!({ "records": [employee(90_001, 20, "Finance")] }))
            .expect("JSON"),
    )
    .expect("write feed");
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let output = provisioner()
            .arg("--root")
            .arg(&root)
            .args(["--output", "json", "local", "send", "--env", "e2e"])
            .arg(&feed)
            .output()
            .expect("local send runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if said.contains("decommissioned") {
            break said;
        }
        assert!(
            Instant::now() < deadline,
            "ingest never answered 410 after traffic stopped: {said}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(refused.contains("410"), "{refused}");
    assert!(
        !emulator
            .scan("datasync-e2e-ledger")
            .iter()
            .any(|item| text(item, "external_id") == "E-90001"),
        "nothing sent after the stop is accepted"
    );
    // Compute removed: the host stops the functions and closes the route.
    let removed = decommission("remove-compute");
    assert!(
        removed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&removed.stdout),
        String::from_utf8_lossy(&removed.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_mentioning("functions/ingest-").is_empty() {
        assert!(
            Instant::now() < deadline,
            "ingest still runs without its stack"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // `local down` stops what `up` started and leaves no process behind.
    let down = provisioner()
        .arg("--root")
        .arg(&root)
        .args(["local", "down", "--env", "e2e"])
        .output()
        .expect("down runs");
    assert!(down.status.success());
    assert!(String::from_utf8_lossy(&down.stdout).contains("Stopped function host"));
    let _ = platform.up.wait();
    let leftovers = processes_mentioning(&root.display().to_string());
    assert!(leftovers.is_empty(), "processes left behind: {leftovers:?}");
    assert!(!emulator::is_answering(&format!(
        "http://127.0.0.1:{}",
        ports.emulator
    )));
    std::thread::sleep(Duration::from_millis(200));
    let host_log = log_text(&platform.host_log);
    assert!(
        host_log.contains("functions restarted from what is deployed (traffic stopped at"),
        "{host_log}"
    );
    assert!(host_log.contains("the compute stack is gone"), "{host_log}");
}

#[test]
fn dead_letters_and_failed_records_are_synced_again_with_redrive_and_replay() {
    // One failed delivery dead-letters a message (it comes back after the worker's
    // 30 s backoff, its second receive moves it).
    let mut platform = Platform::start("ops", 1);
    let root = platform.root.clone();
    let ports = &platform.ports;
    let host_log = platform.host_log.clone();
    let emulator = Emulator::connect(ports.emulator);
    let downstream = format!("http://127.0.0.1:{}", ports.downstream);
    let run = |args: &[&str]| -> Value {
        let output = provisioner()
            .arg("--root")
            .arg(&root)
            .args(["--output", "json"])
            .args(args)
            .output()
            .expect("provisioner runs");
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("one JSON document")
    };
    let ledger_state = |id: &str| -> Option<String> {
        emulator
            .scan("datasync-ops-ledger")
            .iter()
            .find(|item| text(item, "external_id") == id)
            .map(|item| text(item, "state"))
    };
    let delivered = |id: &str| -> bool {
        let received: Value =
            serde_json::from_str(&http("GET", &format!("{downstream}/_control/received"), ""))
                .unwrap_or_default();
        received["latest"].get(format!("hris:{id}")).is_some()
    };
    let wait_for = |what: &str, limit: u64, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(limit);
        while !done() {
            if Instant::now() > deadline {
                let ledger: Vec<String> = emulator
                    .scan("datasync-ops-ledger")
                    .iter()
                    .map(|item| {
                        format!(
                            "{} {} {}",
                            text(item, "external_id"),
                            text(item, "state"),
                            text(item, "reason")
                        )
                    })
                    .collect();
                panic!(
                    "timed out waiting for {what}; ledger: {ledger:?}; host log:\n{}",
                    log_text(&host_log)
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let sent = tempfile::tempdir().expect("temp dir");

    // The downstream refuses one record for good (422): the ledger marks it FAILED.
    http(
        "POST",
        &format!("{downstream}/_control/fail"),
        r#"{"status":422,"count":1}"#,
    );
    send_to(
        &root,
        "ops",
        sent.path(),
        "refused",
        &[employee(70_001, 3, "Legal")],
    );
    wait_for("the refused record to be FAILED", 60, &|| {
        ledger_state("E-70001").as_deref() == Some("FAILED")
    });
    // The downstream is down (503 until recovered): the next record is dead-lettered.
    http(
        "POST",
        &format!("{downstream}/_control/fail"),
        r#"{"status":503}"#,
    );
    send_to(
        &root,
        "ops",
        sent.path(),
        "unavailable",
        &[employee(70_002, 3, "Legal")],
    );
    wait_for("the record to be dead-lettered", 150, &|| {
        emulator.queue_depth(ports.emulator, "datasync-ops-records-dlq") == (1, 0)
    });
    let peeked = run(&["dlq", "peek", "--env", "ops"]);
    let messages = peeked["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{peeked}");
    assert_eq!(messages[0]["record_id"], "E-70002", "{peeked}");
    assert!(
        messages[0].get("payload").is_none(),
        "no payload unless asked"
    );

    // The downstream is fixed: redrive and replay get both records synced.
    http("POST", &format!("{downstream}/_control/recover"), "");
    let redriven = run(&["redrive", "--env", "ops"]);
    assert_eq!(redriven["moved"], 1, "{redriven}");
    assert_eq!(
        redriven["before"]["dead_letter_queue"]["waiting"], 1,
        "{redriven}"
    );
    assert_eq!(
        redriven["after"]["dead_letter_queue"]["waiting"], 0,
        "{redriven}"
    );
    wait_for("the redriven record downstream", 120, &|| {
        delivered("E-70002")
    });
    let replayed = run(&["replay", "--env", "ops", "--state", "FAILED"]);
    assert_eq!(replayed["replayed"]["hris"], 1, "{replayed}");
    wait_for("the replayed record downstream", 120, &|| {
        delivered("E-70001")
    });
    wait_for("both records COMPLETED", 60, &|| {
        ledger_state("E-70001").as_deref() == Some("COMPLETED")
            && ledger_state("E-70002").as_deref() == Some("COMPLETED")
    });
    // Both safe to run again: nothing left to move or replay.
    assert_eq!(run(&["redrive", "--env", "ops"])["moved"], 0);
    let again = run(&["replay", "--env", "ops", "--state", "FAILED"]);
    assert!(
        again["replayed"].as_object().is_none_or(|r| r.is_empty()),
        "{again}"
    );

    let down = provisioner()
        .arg("--root")
        .arg(&root)
        .args(["local", "down", "--env", "ops"])
        .output()
        .expect("down runs");
    assert!(down.status.success());
    let _ = platform.up.wait();
}
