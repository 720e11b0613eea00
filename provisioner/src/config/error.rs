//! Configuration errors: each names the file, the key path, what is wrong and the fix.

use std::fmt;
use std::path::PathBuf;

/// One problem at one key of one environment file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    /// The file that sets the offending key, relative to the repository root.
    pub file: String,
    /// Dotted key path, e.g. `network.subnets[1].private`; empty for the whole file.
    pub key: String,
    pub message: String,
    pub help: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)?;
        }
        if !self.help.is_empty() {
            write!(f, "\n    help: {}", self.help)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("there is no environment `{name}` (known: {})", known.join(", "))]
    UnknownEnvironment {
        name: String,
        known: Vec<String>,
        suggestion: Option<String>,
    },
    #[error("`{name}` is the shared base of the environments, not an environment of its own")]
    BaseIsNotAnEnvironment { name: String, known: Vec<String> },
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", issues_text(.issues))]
    Invalid { issues: Vec<Issue> },
}

fn issues_text(issues: &[Issue]) -> String {
    match issues {
        [one] => format!("invalid environment configuration\n  {one}"),
        many => {
            let mut text = format!(
                "invalid environment configuration ({} problems)",
                many.len()
            );
            for issue in many {
                text.push_str(&format!("\n  {issue}"));
            }
            text
        }
    }
}

impl ConfigError {
    pub fn help(&self) -> Option<String> {
        match self {
            ConfigError::UnknownEnvironment { suggestion, .. } => Some(match suggestion {
                Some(near) => format!("did you mean `{near}`?"),
                None => {
                    "create environments/<name>.yaml with `extends: defaults`, or pick a known one"
                        .to_string()
                }
            }),
            ConfigError::BaseIsNotAnEnvironment { known, .. } => {
                Some(format!("choose one of: {}", known.join(", ")))
            }
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { .. } => None,
        }
    }

    /// A single-issue error.
    pub fn issue(
        file: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            issues: vec![Issue {
                file: file.into(),
                key: key.into(),
                message: message.into(),
                help: help.into(),
            }],
        }
    }
}
