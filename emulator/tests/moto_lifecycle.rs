//! Starts a real moto server and checks what callers rely on: it answers, a reset clears
//! its state, and it is gone after a drop or after the starting process exits.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use emulator::{is_answering, MotoOptions, MotoServer};

/// Sends an SQS Query-protocol call (the credential scope tells moto which service) and returns the response body.
fn sqs_query(endpoint: &str, form: &str) -> String {
    let address = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn list_queues(endpoint: &str) -> String {
    sqs_query(endpoint, "Action=ListQueues&Version=2012-11-05")
}

fn process_is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // A zombie has exited; only its parent has not collected it yet.
    stat.rsplit(')')
        .next()
        .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
}

fn wait_until_dead(pid: u32, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if !process_is_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !process_is_alive(pid)
}

#[test]
fn starts_answers_resets_and_dies_on_drop() {
    let moto = MotoServer::start().expect("moto_server starts (run scripts/bootstrap first)");
    let endpoint = moto.endpoint_url();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert!(is_answering(&endpoint));

    let created = sqs_query(
        &endpoint,
        "Action=CreateQueue&QueueName=emulator-reset-probe&Version=2012-11-05",
    );
    assert!(created.contains("emulator-reset-probe"), "{created}");
    assert!(list_queues(&endpoint).contains("emulator-reset-probe"));

    moto.reset().expect("reset succeeds");
    assert!(
        !list_queues(&endpoint).contains("emulator-reset-probe"),
        "reset must clear the queue"
    );

    let pid = moto.pid();
    let log_path = moto.log_path().to_path_buf();
    assert!(process_is_alive(pid));
    drop(moto);
    assert!(
        wait_until_dead(pid, Duration::from_secs(5)),
        "moto still runs after drop"
    );
    assert!(!is_answering(&endpoint), "nothing answers after drop");
    assert!(!log_path.exists(), "the default log file is removed");
}

#[test]
fn a_taken_port_is_reported_with_the_log_tail() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The port is bound but nobody answers HTTP on it: moto cannot bind and exits.
    let log_dir = std::env::temp_dir().join(format!("emulator-taken-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).unwrap();
    let options = MotoOptions {
        port: Some(port),
        log_path: Some(log_dir.join("moto.log")),
        startup_timeout: Duration::from_secs(30),
        ..MotoOptions::default()
    };
    let err = MotoServer::start_with(options).unwrap_err().to_string();
    assert!(err.contains(&port.to_string()), "{err}");
    assert!(err.contains("last lines of"), "{err}");
    let _ = std::fs::remove_dir_all(&log_dir);
}

#[test]
fn nothing_answers_on_a_closed_port() {
    let port = emulator::free_port().unwrap();
    assert!(!is_answering(&format!("http://127.0.0.1:{port}")));
    assert!(!is_answering("not a url"));
}

const ORPHAN_ENV: &str = "EMULATOR_TEST_START_AND_EXIT";

#[test]
fn the_server_dies_when_the_starting_process_exits_without_dropping_it() {
    if std::env::var_os(ORPHAN_ENV).is_some() {
        // Child mode: start a server, report its pid, exit without running destructors.
        let moto = MotoServer::start().unwrap();
        println!("PID={}", moto.pid());
        std::mem::forget(moto);
        std::process::exit(0);
    }
    let this_test = std::env::current_exe().unwrap();
    let output = std::process::Command::new(&this_test)
        .args([
            "--exact",
            "the_server_dies_when_the_starting_process_exits_without_dropping_it",
            "--nocapture",
        ])
        .env(ORPHAN_ENV, "1")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let pid: u32 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("PID="))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("child printed no pid: {stdout}"));
    assert!(
        wait_until_dead(pid, Duration::from_secs(10)),
        "moto {pid} outlived the process that started it"
    );
}
