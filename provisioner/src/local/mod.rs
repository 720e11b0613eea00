//! The local environment: the AWS emulator (a moto server) and the function host that
//! runs each function's real binary against the deployed event sources, so the whole
//! platform runs on one machine without an AWS account.

pub mod counts;
pub mod discover;
pub mod downstream;
pub mod host;
pub mod pool;
pub mod process;
pub mod runtime_api;
pub mod sources;
pub mod state;

use std::path::PathBuf;

/// What can go wrong running the platform locally.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("the emulator has no {what}")]
    NotDeployed { what: String },
    #[error("could not {action} on the emulator: {message}")]
    Emulator { action: String, message: String },
    #[error("{what} is not supported locally")]
    Unsupported { what: String, help: String },
    #[error("the code deployed for {function} (CodeSha256 {code_sha256}) is not among the built zips in build/functions/")]
    CodeNotBuilt {
        function: String,
        code_sha256: String,
    },
    #[error("could not start the emulator: {message}")]
    EmulatorStart {
        message: String,
        log: Option<PathBuf>,
    },
    #[error("`provisioner up` is already running (pid {pid})")]
    AlreadyRunning { pid: u32 },
    #[error("port {port} on 127.0.0.1 is taken, so the {what} cannot listen there")]
    PortTaken { port: u16, what: String },
    #[error("environment `{env}` has no function_host settings")]
    NotLocal { env: String },
    #[error("could not {action} {path}: {source}")]
    Io {
        action: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LocalError {
    pub fn help(&self) -> Option<String> {
        Some(match self {
            LocalError::NotDeployed { .. } => "deploy first: `provisioner up` deploys every stack before hosting the functions".into(),
            LocalError::Emulator { .. } => "is the emulator still running? `provisioner local down` then `provisioner up` starts afresh".into(),
            LocalError::Unsupported { help, .. } => help.clone(),
            LocalError::CodeNotBuilt { .. } => "run `provisioner up` again: it builds the functions and redeploys what changed".into(),
            LocalError::EmulatorStart { log: Some(log), .. } => format!("see its log, {}", log.display()),
            LocalError::EmulatorStart { log: None, .. } => "install the pinned tools: scripts/bootstrap".into(),
            LocalError::AlreadyRunning { .. } => {
                "use the running one (Ctrl-C in its terminal stops it), or `provisioner local down`".into()
            }
            LocalError::PortTaken { .. } => {
                "stop what listens there, or choose other ports under function_host in the environment file".into()
            }
            LocalError::NotLocal { .. } => {
                "the function host runs emulated environments: add endpoint_url and function_host (see environments/local.yaml)".into()
            }
            LocalError::Io { .. } => return None,
        })
    }
}
