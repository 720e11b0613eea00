//! Packaging the Lambda functions: building each one for the `provided.al2023` runtime
//! with cargo-lambda, checking its glibc floor, zipping it deterministically, and
//! describing a release (git revision, zip digests, template digests) in a manifest.
//!
//! `provisioner build` writes `build/functions/<arch>/<function>.zip` and an index,
//! `build/functions/index.json`, that `deploy` and `release` read back.

pub mod archive;
pub mod build;
pub mod glibc;
pub mod index;
pub mod release;

use std::path::PathBuf;

/// The compute stack's parameter carrying a function's code key: `ingest` ->
/// `IngestCodeKey`.
pub fn code_key_parameter(function: &str) -> String {
    let mut chars = function.chars();
    let capitalized: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("{capitalized}CodeKey")
}

/// Everything that can go wrong while building, checking, zipping or describing functions.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cargo-lambda was not found at {path}")]
    CargoLambdaMissing { path: PathBuf },
    #[error(
        "the Rust target {target} is not installed, so {architecture} functions cannot be built"
    )]
    TargetMissing {
        target: &'static str,
        architecture: &'static str,
    },
    #[error("`{command}` failed ({status})")]
    BuildFailed { command: String, status: String },
    #[error("the build did not produce {path}")]
    BinaryMissing { path: PathBuf },
    #[error("{path} cannot be checked: {reason}")]
    UnreadableBinary { path: PathBuf, reason: String },
    #[error(
        "{path} needs {version} (symbol `{symbol}`{}), newer than the GLIBC_2.34 of Lambda's provided.al2023 runtime",
        if others.is_empty() { String::new() } else { format!("; also {}", others.join(", ")) }
    )]
    GlibcTooNew {
        path: PathBuf,
        symbol: String,
        version: String,
        others: Vec<String>,
    },
    #[error("could not zip {path}: {reason}")]
    Zip { path: PathBuf, reason: String },
    #[error("{path} is not a valid artifact index: {reason}")]
    BadIndex { path: PathBuf, reason: String },
    #[error("no built artifact for function `{function}` ({architecture}) in {index}")]
    ArtifactMissing {
        function: String,
        architecture: String,
        index: PathBuf,
    },
    #[error(
        "{path} changed since it was built: its sha256 is {actual}, the index says {expected}"
    )]
    ArtifactChanged {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("could not read the git revision: {reason}")]
    Git { reason: String },
}

impl PackageError {
    /// The next step a person should take.
    pub fn help(&self) -> Option<String> {
        let text = match self {
            Self::CargoLambdaMissing { .. } => {
                "install the pinned tools with `python3 -m venv .venv && .venv/bin/pip install -r requirements.txt`"
            }
            Self::TargetMissing { .. } => {
                "run `rustup target add aarch64-unknown-linux-gnu`, or set the function's `architecture: x86_64`"
            }
            Self::BuildFailed { .. } => "fix the compile errors shown above and run `provisioner build` again",
            Self::GlibcTooNew { .. } => {
                "avoid the symbol (or the crate feature that pulls it in), or build against an older glibc \
                 (cargo-lambda's zig linker targets one when given `--target x86_64-unknown-linux-gnu.2.34`)"
            }
            Self::ArtifactMissing { .. } | Self::ArtifactChanged { .. } | Self::BadIndex { .. } => {
                "run `provisioner build` (or pass --build) to package the functions"
            }
            _ => return None,
        };
        Some(text.to_string())
    }
}

impl From<PackageError> for crate::error::Error {
    fn from(error: PackageError) -> Self {
        let help = error.help().unwrap_or_default();
        crate::error::Error::Other {
            message: error_chain(&error),
            help,
        }
    }
}

/// An error and its sources on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(&format!(": {line}"));
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_code_key_parameter_of_each_function() {
        assert_eq!(super::code_key_parameter("ingest"), "IngestCodeKey");
        assert_eq!(super::code_key_parameter("reconciler"), "ReconcilerCodeKey");
    }
}
