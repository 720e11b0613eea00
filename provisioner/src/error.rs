//! The provisioner's top-level error, and how it is reported to a person.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::exit::Exit;
use crate::render::RenderError;

/// Everything that can stop a command. Each variant carries what a person needs to act.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
    #[error("{path} is not the platform repository: it has no `environments/` and `stacks/` directories")]
    NotARepository { path: PathBuf },
    #[error("could not {action} {path}: {source}")]
    Io {
        action: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{message}")]
    Other { message: String, help: String },
    /// A guard refused to go on; its exit code says which one.
    #[error("{message}")]
    Refused {
        refusal: Refusal,
        message: String,
        help: String,
    },
}

/// The stops that have exit codes of their own: guards that refused, and a person who
/// interrupted, declined or could not be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    WrongAccount,
    Locked,
    OlderRelease,
    PromotionRefused,
    Interrupted,
    NeedsConfirmation,
    Declined,
    /// The environment is being decommissioned: nothing is deployed to it.
    Decommissioning,
}

impl Refusal {
    pub fn exit(self) -> Exit {
        match self {
            Self::WrongAccount => Exit::WrongAccount,
            Self::Locked => Exit::Locked,
            Self::OlderRelease => Exit::OlderRelease,
            Self::PromotionRefused => Exit::PromotionRefused,
            Self::Interrupted => Exit::Interrupted,
            Self::NeedsConfirmation => Exit::NeedsConfirmation,
            Self::Declined => Exit::Declined,
            Self::Decommissioning => Exit::Refused,
        }
    }

    /// A stable name for machines (`--output json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongAccount => "wrong-account",
            Self::Locked => "locked",
            Self::OlderRelease => "older-release",
            Self::PromotionRefused => "promotion-refused",
            Self::Interrupted => "interrupted",
            Self::NeedsConfirmation => "needs-confirmation",
            Self::Declined => "declined",
            Self::Decommissioning => "decommissioning",
        }
    }
}

impl Error {
    /// The next step a person should take, when there is one to suggest.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::Config(error) => error.help(),
            Error::Render(error) => error.help(),
            Error::Local(error) => error.help(),
            Error::NotARepository { .. } => Some(
                "run the command inside a checkout of the repository, or pass --root <DIR> \
                 (or set PROVISIONER_ROOT)"
                    .into(),
            ),
            Error::Io { .. } => None,
            Error::Other { help, .. } | Error::Refused { help, .. } => {
                Some(help.clone()).filter(|help| !help.is_empty())
            }
        }
    }

    /// The process exit code this error ends a command with.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Refused { refusal, .. } => refusal.exit(),
            _ => Exit::Failed,
        }
    }
}

/// The JSON document of a failure (`--output json`): what kind, what happened, the fix
/// and the exit code, so CI reads failures from stdout as it reads results.
#[derive(Debug, serde::Serialize)]
pub struct ErrorDocument {
    pub error: ErrorBody,
}

#[derive(Debug, serde::Serialize)]
pub struct ErrorBody {
    /// `failed`, or the guard that refused (`locked`, `wrong-account`, ...).
    pub kind: &'static str,
    pub message: String,
    pub fix: Option<String>,
    pub exit_code: u8,
}

impl Error {
    pub fn document(&self) -> ErrorDocument {
        let mut message = report(self);
        if let Some(rest) = message.strip_prefix("error: ") {
            message = rest.to_string();
        }
        let message = message
            .split("\n  help: ")
            .next()
            .unwrap_or_default()
            .to_string();
        ErrorDocument {
            error: ErrorBody {
                kind: match self {
                    Error::Refused { refusal, .. } => refusal.as_str(),
                    _ => "failed",
                },
                message,
                fix: self.help(),
                exit_code: self.exit() as u8,
            },
        }
    }
}

/// Formats an error with its whole cause chain and its help, for stderr.
pub fn report(error: &Error) -> String {
    let mut text = format!("error: {error}");
    let mut source = std::error::Error::source(error);
    let mut seen = vec![error.to_string()];
    while let Some(cause) = source {
        let line = cause.to_string();
        if !seen.iter().any(|earlier| earlier.contains(&line)) {
            text.push_str(&format!("\n  caused by: {line}"));
            seen.push(line);
        }
        source = cause.source();
    }
    if let Some(help) = error.help() {
        text.push_str(&format!("\n  help: {help}"));
    }
    text
}
