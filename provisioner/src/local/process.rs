//! Runs a function's real `bootstrap` binary as a child process against its Runtime API,
//! with the environment Lambda would give it, streams its output with the function's
//! name in front, and restarts it when it exits (as Lambda replaces a failed sandbox).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::runtime_api::RuntimeApi;

/// What a function process needs to start.
#[derive(Debug, Clone)]
pub struct FunctionLaunch {
    /// Short name (`worker`), shown in front of its output.
    pub name: String,
    pub function_name: String,
    pub binary: PathBuf,
    pub memory_mb: i32,
    pub timeout: Duration,
    /// Variables from the deployed configuration, plus the endpoint and credentials.
    pub environment: Vec<(String, String)>,
}

/// The variables Lambda sets for every function, next to the deployed ones.
pub fn runtime_environment(
    launch: &FunctionLaunch,
    api: &RuntimeApi,
    region: &str,
) -> Vec<(String, String)> {
    let log_group = format!("/aws/lambda/{}", launch.function_name);
    let mut variables = vec![
        ("AWS_LAMBDA_RUNTIME_API".to_string(), api.address()),
        (
            "AWS_LAMBDA_FUNCTION_NAME".to_string(),
            launch.function_name.clone(),
        ),
        (
            "AWS_LAMBDA_FUNCTION_VERSION".to_string(),
            "$LATEST".to_string(),
        ),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_string(),
            launch.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_LOG_GROUP_NAME".to_string(), log_group),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME".to_string(),
            "local/[$LATEST]host".to_string(),
        ),
        ("AWS_REGION".to_string(), region.to_string()),
        ("AWS_DEFAULT_REGION".to_string(), region.to_string()),
        ("_HANDLER".to_string(), "bootstrap".to_string()),
        ("LAMBDA_TASK_ROOT".to_string(), "/var/task".to_string()),
        ("TZ".to_string(), ":UTC".to_string()),
    ];
    variables.extend(launch.environment.iter().cloned());
    variables
}

/// Keeps one process of the function running until `stop` turns true.
pub async fn supervise(
    launch: FunctionLaunch,
    api: RuntimeApi,
    region: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut restarts: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let mut child = match spawn(&launch, &api, &region) {
            Ok(child) => child,
            Err(error) => {
                eprintln!(
                    "[{}] could not start {}: {error}",
                    launch.name,
                    launch.binary.display()
                );
                return;
            }
        };
        tokio::select! {
            status = child.wait() => {
                let reason = match status {
                    Ok(status) => format!("exited ({status})"),
                    Err(error) => format!("could not be waited for: {error}"),
                };
                api.fail_in_flight(&reason);
                restarts += 1;
                eprintln!("[{}] process {reason}; starting a new one", launch.name);
                // Back off when it keeps failing at start-up.
                tokio::time::sleep(Duration::from_millis(200 * u64::from(restarts.min(10)))).await;
            }
            _ = api.restart_requested() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                api.fail_in_flight("timed out");
                eprintln!("[{}] invocation timed out; replacing the process", launch.name);
            }
            _ = stop.changed() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return;
            }
        }
    }
}

fn spawn(launch: &FunctionLaunch, api: &RuntimeApi, region: &str) -> std::io::Result<Child> {
    let mut command = Command::new(&launch.binary);
    command
        .env_clear()
        .envs(runtime_environment(launch, api, region))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let mut child = command.spawn()?;
    for stream in [
        child
            .stdout
            .take()
            .map(|out| Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|err| Box::new(err) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let name = launch.name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{name}] {line}");
            }
        });
    }
    Ok(child)
}
