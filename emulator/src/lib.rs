//! Starts, resets and stops a local moto server, the AWS API emulator that the `local`
//! environment and the tests point their SDK clients at.
//!
//! ```no_run
//! let moto = emulator::MotoServer::start()?;
//! let endpoint = moto.endpoint_url(); // e.g. http://127.0.0.1:40123
//! moto.reset()?; // clears every table, queue, secret, stack...
//! drop(moto); // kills the server
//! # Ok::<(), emulator::EmulatorError>(())
//! ```
//!
//! The server binary is found through [`locate_moto_server`]: the `MOTO_SERVER` variable,
//! then `.venv/bin/moto_server` in the repository, then `PATH`. A watchdog process ends
//! the server when the process that started it exits without dropping it (for example a
//! server kept in a `static` for a whole test binary).

mod http;
mod locate;
pub mod serial;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub use locate::{locate_moto_server, locate_moto_server_from, MOTO_SERVER_ENV};

/// Everything that can go wrong while starting or talking to the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// No `moto_server` binary was found anywhere it is looked for.
    #[error(
        "moto_server was not found (looked at: {}). Install the emulator into the \
         repository's virtualenv with `scripts/bootstrap` (or `python3 -m venv .venv && \
         .venv/bin/pip install -r requirements.txt`), or set {MOTO_SERVER_ENV} to the \
         path of a moto_server binary",
        looked_at.join(", ")
    )]
    NotInstalled {
        /// The places that were checked, in order.
        looked_at: Vec<String>,
    },
    /// `MOTO_SERVER` names a file that does not exist.
    #[error(
        "{MOTO_SERVER_ENV} is set to {path}, which does not exist; point it at a moto_server \
         binary or unset it to use .venv/bin/moto_server"
    )]
    ConfiguredBinaryMissing {
        /// The path from the environment variable.
        path: PathBuf,
    },
    /// No free TCP port could be reserved on 127.0.0.1.
    #[error("could not reserve a free port on 127.0.0.1: {0}")]
    NoFreePort(#[source] std::io::Error),
    /// The log file could not be created.
    #[error("could not create the emulator log file {path}: {source}")]
    LogFile {
        /// The log file path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The process could not be spawned.
    #[error("could not start {binary}: {source}")]
    Spawn {
        /// The binary that was run.
        binary: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server exited before it answered.
    #[error(
        "moto_server exited ({status}) before answering on port {port}; last lines of {}:\n{log_tail}",
        log_path.display()
    )]
    ExitedEarly {
        /// The port it was asked to listen on.
        port: u16,
        /// Its exit status.
        status: String,
        /// Where its output went.
        log_path: PathBuf,
        /// The end of that output.
        log_tail: String,
    },
    /// The server did not answer within the startup timeout.
    #[error(
        "moto_server did not answer on {endpoint} within {waited:?}; last lines of {}:\n{log_tail}",
        log_path.display()
    )]
    StartupTimeout {
        /// The endpoint that was polled.
        endpoint: String,
        /// How long it was polled.
        waited: Duration,
        /// Where its output went.
        log_path: PathBuf,
        /// The end of that output.
        log_tail: String,
    },
    /// A URL given to this library is not `http://host:port`.
    #[error("{url} is not a usable emulator URL: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `POST /moto-api/reset` failed.
    #[error("resetting the emulator at {endpoint} failed: {reason}")]
    Reset {
        /// The emulator endpoint.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
}

/// How to start the emulator; [`Default`] picks a free port and a log file in the
/// system temp directory.
#[derive(Debug, Clone)]
pub struct MotoOptions {
    /// Port to listen on; `None` picks a free one.
    pub port: Option<u16>,
    /// The binary to run; `None` uses [`locate_moto_server`].
    pub binary: Option<PathBuf>,
    /// Where the server's output goes; `None` uses a file in the temp directory that is
    /// removed when the server is dropped.
    pub log_path: Option<PathBuf>,
    /// How long to wait for the server to answer.
    pub startup_timeout: Duration,
}

impl Default for MotoOptions {
    fn default() -> Self {
        Self {
            port: None,
            binary: None,
            log_path: None,
            startup_timeout: Duration::from_secs(60),
        }
    }
}

/// A running moto server; killed when dropped.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    watchdog: Option<(Child, ChildStdin)>,
    port: u16,
    log_path: PathBuf,
    remove_log_on_drop: bool,
}

impl MotoServer {
    /// Starts a server on a free port of 127.0.0.1 and waits until it answers.
    pub fn start() -> Result<Self, EmulatorError> {
        Self::start_with(MotoOptions::default())
    }

    /// Starts a server as `options` say and waits until it answers.
    pub fn start_with(options: MotoOptions) -> Result<Self, EmulatorError> {
        let binary = match &options.binary {
            Some(binary) => binary.clone(),
            None => locate_moto_server()?,
        };
        // A port picked here can be taken by someone else before moto binds it: try a
        // few ports before giving up, unless the caller asked for a specific one.
        let attempts = if options.port.is_some() { 1 } else { 3 };
        let mut last_error = None;
        for _ in 0..attempts {
            let port = match options.port {
                Some(port) => port,
                None => free_port()?,
            };
            match Self::spawn_and_wait(&binary, port, &options) {
                Ok(server) => return Ok(server),
                Err(error @ EmulatorError::ExitedEarly { .. }) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(
            last_error.unwrap_or(EmulatorError::NoFreePort(std::io::Error::other(
                "no attempt was made",
            ))),
        )
    }

    fn spawn_and_wait(
        binary: &Path,
        port: u16,
        options: &MotoOptions,
    ) -> Result<Self, EmulatorError> {
        let (log_path, remove_log_on_drop) = match &options.log_path {
            Some(path) => (path.clone(), false),
            None => (
                std::env::temp_dir().join(format!("moto-server-{}-{port}.log", std::process::id())),
                true,
            ),
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| EmulatorError::LogFile {
                path: log_path.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| EmulatorError::LogFile {
            path: log_path.clone(),
            source,
        })?;
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| EmulatorError::Spawn {
                binary: binary.to_path_buf(),
                source,
            })?;
        let watchdog = spawn_watchdog(child.id());
        let mut server = Self {
            child,
            watchdog,
            port,
            log_path,
            remove_log_on_drop,
        };
        server.wait_until_answering(options.startup_timeout)?;
        Ok(server)
    }

    fn wait_until_answering(&mut self, timeout: Duration) -> Result<(), EmulatorError> {
        let started = Instant::now();
        let endpoint = self.endpoint_url();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(EmulatorError::ExitedEarly {
                    port: self.port,
                    status: status.to_string(),
                    log_path: self.log_path.clone(),
                    log_tail: log_tail(&self.log_path),
                });
            }
            if is_answering(&endpoint) {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(EmulatorError::StartupTimeout {
                    endpoint,
                    waited: started.elapsed(),
                    log_path: self.log_path.clone(),
                    log_tail: log_tail(&self.log_path),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`, to give SDK clients as their endpoint URL.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the server's output goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Clears all emulator state (`POST /moto-api/reset`).
    pub fn reset(&self) -> Result<(), EmulatorError> {
        reset(&self.endpoint_url())
    }

    /// Stops the server now (the same as dropping it).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Errors here mean the process is already gone, which is the goal.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if self.remove_log_on_drop {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

/// A small `sh` process that kills the server when this process goes away: its stdin is
/// a pipe from us, which the kernel closes when we exit, however we exit.
fn spawn_watchdog(server_pid: u32) -> Option<(Child, ChildStdin)> {
    let mut watchdog = Command::new("sh")
        .args([
            "-c",
            "read -r _line; kill \"$1\" 2>/dev/null; exit 0",
            "moto-watchdog",
            &server_pid.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdin = watchdog.stdin.take()?;
    Some((watchdog, stdin))
}

/// Reserves a free TCP port on 127.0.0.1 (by binding port 0 and releasing it).
pub fn free_port() -> Result<u16, EmulatorError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(EmulatorError::NoFreePort)?;
    let port = listener
        .local_addr()
        .map_err(EmulatorError::NoFreePort)?
        .port();
    Ok(port)
}

/// Whether an HTTP server answers at `url` (`http://host:port`): used to tell that an
/// emulator is already running there before starting another one.
pub fn is_answering(url: &str) -> bool {
    let Ok(target) = http::HttpTarget::parse(url) else {
        return false;
    };
    http::request_status(&target, "GET", "/", Duration::from_secs(2)).is_ok()
}

/// Clears all state of the emulator at `url` (`POST /moto-api/reset`).
pub fn reset(url: &str) -> Result<(), EmulatorError> {
    let target = http::HttpTarget::parse(url)?;
    let failed = |reason: String| EmulatorError::Reset {
        endpoint: url.to_string(),
        reason,
    };
    match http::request_status(&target, "POST", "/moto-api/reset", Duration::from_secs(30)) {
        Ok(200) => Ok(()),
        Ok(status) => Err(failed(format!(
            "it answered HTTP {status}; is this a moto server?"
        ))),
        Err(error) => Err(failed(error.to_string())),
    }
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    const TAIL_BYTES: u64 = 4096;
    let Ok(mut file) = File::open(path) else {
        return "(no log written)".to_string();
    };
    let length = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let tail = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = tail.lines().collect();
    let start = lines.len().saturating_sub(20);
    if lines.is_empty() {
        "(log is empty)".to_string()
    } else {
        lines[start..].join("\n")
    }
}
