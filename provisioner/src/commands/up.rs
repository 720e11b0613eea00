//! `provisioner up`: the whole platform on this machine. Starts the emulator unless one
//! answers already, bootstraps the emulated account, builds the functions and deploys
//! every stack to it through the ordinary release path (publish, lock, change sets),
//! then hosts the functions in the foreground until Ctrl-C.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::cli::{BootstrapArgs, ChangeArgs, DeployArgs, OutputFormat, UpArgs};
use crate::config::model::FunctionHost;
use crate::config::types::HttpUrl;
use crate::config::Environment;
use crate::error::Error;
use crate::exit::Exit;
use crate::local::host::{Host, HostOptions};
use crate::local::state::{state_dir, LocalState, Started};
use crate::local::LocalError;
use crate::output::write_text;
use crate::project::Project;
use crate::render::Renderer;

/// The word in the emulator's command line that identifies it.
const EMULATOR_MARKER: &str = "moto_server";

/// Loads `name` and its emulator endpoint and function host settings; an environment
/// without them is not one the platform can run locally.
pub fn local_environment(
    project: &Project,
    name: &str,
) -> Result<(Environment, HttpUrl, FunctionHost), Error> {
    let env = Renderer::load(project)?.load_environment(project, name)?;
    match (
        env.settings.endpoint_url.clone(),
        env.settings.function_host.clone(),
    ) {
        (Some(endpoint), Some(host)) => Ok((env, endpoint, host)),
        _ => Err(LocalError::NotLocal {
            env: env.name.clone(),
        }
        .into()),
    }
}

pub fn run(
    project: &Project,
    args: &UpArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let (env, endpoint, function_host) = local_environment(project, &args.env)?;
    let dir = state_dir(project.root(), &env.name);
    let mut state = LocalState::load(&dir);
    if let Some(host) = state.host.as_ref().filter(|host| host.is_alive()) {
        return Err(LocalError::AlreadyRunning { pid: host.pid }.into());
    }

    // 1. The emulator.
    if emulator::is_answering(endpoint.as_str()) {
        eprintln!("Using the emulator already answering at {endpoint}.");
    } else {
        let started = start_emulator(project, endpoint.port(), &dir)?;
        eprintln!(
            "Started the emulator at {endpoint} (pid {}, log {}).",
            started.pid,
            project.display_path(started.log.as_deref().unwrap_or(Path::new("")))
        );
        state.emulator = Some(started);
        state.save(&dir)?;
    }

    // 2. Bootstrap the emulated account, then build, publish and deploy the checkout
    // as a release, the same way as to AWS.
    let mut report = Vec::new();
    let bootstrap = BootstrapArgs {
        env: env.name.clone(),
        yes: true,
    };
    let exit = super::bootstrap::run(project, &bootstrap, OutputFormat::Text, &mut report)?;
    std::io::stderr().write_all(&report).ok();
    if exit != Exit::Success {
        return Ok(exit);
    }
    let deploy = DeployArgs {
        change: ChangeArgs {
            env: env.name.clone(),
            allow_replace: Vec::new(),
            build: !args.no_build,
            artifacts: args.artifacts.clone(),
            release: None,
            allow_dirty: true,
        },
        yes: true,
        allow_downgrade: false,
        lock_timeout: Duration::ZERO,
        plan: None,
        bake: None,
        probe: false,
        probe_timeout: Duration::from_secs(60),
    };
    let mut deploy_report = Vec::new();
    let exit = super::deploy::run(project, &deploy, OutputFormat::Text, &mut deploy_report)?;
    std::io::stderr().write_all(&deploy_report).ok();
    if exit != Exit::Success {
        return Ok(exit);
    }

    // 3. The function host, in the foreground.
    let runtime = crate::deploy::setup::runtime()?;
    runtime.block_on(async {
        let options = HostOptions {
            endpoint_url: endpoint.to_string(),
            http_port: function_host.http_port,
            downstream_port: function_host.downstream_port,
            build_dir: super::build::resolve(project, &args.artifacts),
            work_dir: dir.join("functions"),
        };
        let mut host = Host::start(&env, &options).await?;
        state.host = Some(Started {
            pid: std::process::id(),
            marker: "provisioner".into(),
            port: Some(function_host.http_port),
            log: None,
        });
        state.save(&dir)?;
        print_where_things_are(&env, &host, format, out)?;
        // A deploy or a decommission step changes what runs: the host follows it.
        tokio::select! {
            _ = wait_for_stop_signal() => {}
            result = host.follow() => result?,
        }
        eprintln!("Stopping the function host...");
        host.shutdown(Duration::from_secs(10)).await;
        let mut state = LocalState::load(&dir);
        state.host = None;
        state.save(&dir)?;
        eprintln!("Stopped. The emulator keeps the deployment; `provisioner local down` stops it.");
        Ok::<_, Error>(())
    })?;
    Ok(Exit::Success)
}

async fn wait_for_stop_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

fn print_where_things_are(
    env: &Environment,
    host: &Host,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let info = &host.info;
    let secret = match env.settings.signing_secret.store {
        crate::config::model::SecretStore::Ssm => {
            format!("SSM parameter {}", env.names.signing_parameter)
        }
        crate::config::model::SecretStore::Secretsmanager => {
            format!("secret {}", env.names.signing_secret)
        }
    };
    if format == OutputFormat::Json {
        return crate::output::write_json(
            out,
            &serde_json::json!({
                "env": env.name,
                "ingest_url": info.ingest_url,
                "downstream_url": info.downstream_url,
                "signing_secret": secret,
                "functions": info.deployment.functions.iter().map(|f| &f.function_name).collect::<Vec<_>>(),
                "queue_url": info.deployment.queue.queue_url,
                "schedule": info.deployment.schedule.expression,
            }),
        );
    }
    let mut lines = vec![
        format!("The {} environment is up.", env.name),
        format!("  ingest         POST {}", info.ingest_url),
        format!("  signing key    {secret}"),
        format!(
            "  queue          {} -> worker",
            info.deployment.queue.queue_url
        ),
        format!(
            "  schedule       {} -> reconciler",
            info.deployment.schedule.expression
        ),
    ];
    if let Some(url) = &info.downstream_url {
        lines.push(format!(
            "  downstream     {url} (GET {url}/_control/received shows what arrived)"
        ));
    }
    lines.extend([
        String::new(),
        "Send records:   provisioner local send examples/hris-employees.json".to_string(),
        format!("See them:       provisioner status --env {}", env.name),
        "Stop:           Ctrl-C here (the emulator keeps running; `provisioner local down` stops it)".to_string(),
    ]);
    write_text(out, &lines.join("\n"))?;
    out.flush().ok();
    Ok(())
}

/// Starts a moto server on `port`, in its own process group so Ctrl-C in this terminal
/// leaves it running, and waits until it answers.
fn start_emulator(project: &Project, port: u16, dir: &Path) -> Result<Started, Error> {
    use std::os::unix::process::CommandExt;
    let binary = emulator::locate_moto_server_from(project.root()).map_err(|error| {
        LocalError::EmulatorStart {
            message: error.to_string(),
            log: None,
        }
    })?;
    std::fs::create_dir_all(dir).map_err(|source| LocalError::Io {
        action: "create".into(),
        path: dir.to_path_buf(),
        source,
    })?;
    let log_path = dir.join("emulator.log");
    let log = std::fs::File::create(&log_path).map_err(|source| LocalError::Io {
        action: "create".into(),
        path: log_path.clone(),
        source,
    })?;
    let log_err = log.try_clone().map_err(|source| LocalError::Io {
        action: "open".into(),
        path: log_path.clone(),
        source,
    })?;
    let mut child = std::process::Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|error| LocalError::EmulatorStart {
            message: format!("{}: {error}", binary.display()),
            log: None,
        })?;
    let started = Started {
        pid: child.id(),
        marker: EMULATOR_MARKER.into(),
        port: Some(port),
        log: Some(log_path.clone()),
    };
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !emulator::is_answering(&url) {
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        if exited || std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LocalError::EmulatorStart {
                message: format!("it did not answer at {url}"),
                log: Some(log_path),
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(started)
}
