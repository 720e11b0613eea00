//! `provisioner probe` against the whole platform on this machine: `provisioner up` on
//! free ports with the real functions, a probe that goes through every hop, and a probe
//! that names the hop that broke while the worker is stopped (its processes frozen with
//! SIGSTOP, then let go again), and a deploy baked with the probe in that state, rolled
//! back to the release before it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::Fixture;
use serde_json::Value;

fn provisioner() -> Command {
    common::provisioner_binary()
}

fn signal(pids: &[u32], signal: &str) {
    for pid in pids {
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }
}

fn probe(root: &std::path::Path, timeout: &str) -> (Option<i32>, Value, String) {
    let output = provisioner()
        .arg("--root")
        .arg(root)
        .args([
            "--output",
            "json",
            "probe",
            "--env",
            "probe",
            "--timeout",
            timeout,
        ])
        .output()
        .expect("probe runs");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "probe printed no JSON ({error}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (
        output.status.code(),
        report,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_probe_follows_a_record_through_every_hop_and_names_the_one_that_broke() {
    let root_repo = common::repo_root();
    let artifacts = root_repo.join("target/e2e-functions");
    let built = provisioner()
        .arg("--root")
        .arg(&root_repo)
        .args(["build", "--env", "local", "--out"])
        .arg(&artifacts)
        .stdout(Stdio::null())
        .status()
        .expect("provisioner build runs");
    assert!(built.success(), "provisioner build failed");

    let fixture = Fixture::new();
    let root = fixture.root().to_path_buf();
    let port = || emulator::free_port().expect("a free port");
    let (emulator, http, downstream) = (port(), port(), port());
    fixture.write_env(
        "probe",
        &format!(
            "extends: local\n\
             endpoint_url: http://127.0.0.1:{emulator}\n\
             function_host:\n  http_port: {http}\n  downstream_port: {downstream}\n\
             downstream:\n  url: http://127.0.0.1:{downstream}\n"
        ),
    );
    fixture.write_env(
        "mirror",
        &format!("extends: local\nregion: us-west-2\nendpoint_url: http://127.0.0.1:{emulator}\n"),
    );
    fixture.commit();
    let _down = common::LocalDown {
        root: root.clone(),
        env: "probe".into(),
    };
    let mut up = provisioner()
        .arg("--root")
        .arg(&root)
        .args(["up", "--env", "probe", "--no-build", "--artifacts"])
        .arg(&artifacts)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("up starts");
    let stderr = up.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let mut lines = BufReader::new(up.stdout.take().expect("stdout")).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("environment is up"));
    assert!(ready, "up stopped before it was ready: {:?}", {
        let _ = up.kill();
        log.join()
    });
    std::thread::spawn(move || lines.for_each(drop));

    let (code, report, stderr) = probe(&root, "60s");
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["removed"], true, "{report}");
    let hops: Vec<&str> = report["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .map(|h| h["hop"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        hops,
        [
            "ingest accepts the record",
            "worker writes the records table",
            "worker pushes it downstream"
        ]
    );
    assert!(report["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .all(|h| h["ok"] == true && h["millis"].is_u64()));

    // Freeze every worker process: the record is accepted and then goes nowhere.
    let workers =
        common::processes_mentioning(&format!("{}/.local/probe/functions/worker", root.display()));
    assert!(!workers.is_empty(), "the host runs the worker");
    signal(&workers, "-STOP");
    let (code, report, stderr) = probe(&root, "5s");
    // Promotion from an environment whose probe fails is refused.
    let bootstrap = provisioner()
        .arg("--root")
        .arg(&root)
        .args(["bootstrap", "--env", "mirror", "--yes"])
        .output()
        .expect("bootstrap runs");
    assert!(
        bootstrap.status.success(),
        "{}",
        String::from_utf8_lossy(&bootstrap.stderr)
    );
    let promote = provisioner()
        .arg("--root")
        .arg(&root)
        .args([
            "promote",
            "--from",
            "probe",
            "--to",
            "mirror",
            "--probe",
            "--probe-timeout",
            "3s",
            "--yes",
        ])
        .output()
        .expect("promote runs");
    // A deploy baked with the probe while the worker is stopped: the probe fails, and the
    // release the environment ran before is deployed again.
    let probe_env = fixture.read("environments/probe.yaml");
    fixture.write_env("probe", &format!("{probe_env}logs:\n  retention_days: 3\n"));
    let baked = provisioner()
        .arg("--root")
        .arg(&root)
        .args([
            "--output",
            "json",
            "deploy",
            "--env",
            "probe",
            "--yes",
            "--bake",
            "30s",
            "--probe",
            "--probe-timeout",
            "3s",
            "--artifacts",
        ])
        .arg(&artifacts)
        .output()
        .expect("deploy runs");
    fixture.write_env("probe", &probe_env);
    signal(&workers, "-CONT");
    let baked_report: Value = serde_json::from_slice(&baked.stdout).unwrap_or_else(|error| {
        panic!(
            "deploy printed no JSON ({error}): {}{}",
            String::from_utf8_lossy(&baked.stdout),
            String::from_utf8_lossy(&baked.stderr)
        )
    });
    assert_eq!(
        baked.status.code(),
        Some(12),
        "{baked_report}\n{}",
        String::from_utf8_lossy(&baked.stderr)
    );
    assert_eq!(baked_report["bake"]["probe_ok"], false, "{baked_report}");
    assert_eq!(baked_report["bake"]["failure"]["kind"], "probe");
    assert_eq!(
        baked_report["bake"]["failure"]["hop"],
        "worker writes the records table"
    );
    assert_eq!(baked_report["rollback"]["command"], "rollback");
    assert_eq!(baked_report["error"]["kind"], "rolled-back");
    let promote_stderr = String::from_utf8_lossy(&promote.stderr);
    assert_eq!(promote.status.code(), Some(9), "{promote_stderr}");
    assert!(
        promote_stderr.contains("probe: worker writes the records table"),
        "{promote_stderr}"
    );
    assert_eq!(code, Some(1), "{report}");
    let broken: Vec<&Value> = report["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .filter(|h| h["ok"] == false)
        .collect();
    assert_eq!(broken.len(), 1, "{report}");
    assert_eq!(broken[0]["hop"], "worker writes the records table");
    assert!(
        stderr.contains("the probe broke at `worker writes the records table`")
            && stderr.contains("the worker is not consuming"),
        "{stderr}"
    );
    assert_eq!(report["hops"][0]["ok"], true, "ingest still accepted it");

    let down = provisioner()
        .arg("--root")
        .arg(&root)
        .args(["local", "down", "--env", "probe"])
        .output()
        .expect("down runs");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let _ = up.wait();
}
