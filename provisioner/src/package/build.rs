//! Building the functions: cargo-lambda (with the zig linker, both pinned in `.venv/`)
//! compiles each function's crate for Lambda's `provided.al2023` runtime, then every
//! binary is checked against the runtime's glibc and zipped deterministically.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::archive::zip_bootstrap;
use super::glibc;
use super::index::{Artifact, ArtifactIndex};
use super::PackageError;
use crate::render::FunctionSpec;

/// A Lambda instruction set, named as CloudFormation's `Architectures` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    /// Parses `x86_64` or `arm64`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "x86_64" => Some(Self::X86_64),
            "arm64" => Some(Self::Arm64),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        }
    }

    /// The Rust target triple cargo-lambda builds for.
    pub fn rust_target(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64-unknown-linux-gnu",
            Self::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    fn cargo_lambda_flag(self) -> &'static str {
        match self {
            Self::X86_64 => "--x86-64",
            Self::Arm64 => "--arm64",
        }
    }
}

impl From<crate::config::model::Architecture> for Arch {
    fn from(architecture: crate::config::model::Architecture) -> Self {
        match architecture {
            crate::config::model::Architecture::X86_64 => Self::X86_64,
            crate::config::model::Architecture::Arm64 => Self::Arm64,
        }
    }
}

/// What to build and where to put it.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    /// Repository root: the Cargo workspace holding the function crates.
    pub root: PathBuf,
    pub functions: Vec<FunctionSpec>,
    pub architectures: BTreeSet<Arch>,
    /// `build/functions`: zips go to `<arch>/<function>.zip`, the index next to them.
    pub out_dir: PathBuf,
}

/// Builds every function for every architecture, checks and zips the binaries, and
/// writes the artifact index. Progress goes to stderr.
pub fn build_all(plan: &BuildPlan) -> Result<ArtifactIndex, PackageError> {
    let mut index = ArtifactIndex::load(&plan.out_dir).unwrap_or_default();
    for &arch in &plan.architectures {
        ensure_target_installed(arch)?;
        let lambda_dir = plan.out_dir.join(arch.as_str()).join("bin");
        run_cargo_lambda(&plan.root, &plan.functions, arch, &lambda_dir)?;
        for function in &plan.functions {
            let binary = lambda_dir.join(&function.crate_name).join("bootstrap");
            let artifact = package_binary(&binary, &function.name, arch, &plan.out_dir)?;
            eprintln!(
                "packaged {} ({}): sha256 {} ({} bytes)",
                artifact.function, artifact.architecture, artifact.sha256, artifact.size
            );
            index.upsert(artifact);
        }
    }
    std::fs::create_dir_all(&plan.out_dir).map_err(|source| PackageError::Io {
        action: "create",
        path: plan.out_dir.clone(),
        source,
    })?;
    index.save(&plan.out_dir)?;
    Ok(index)
}

/// Checks `binary`'s glibc needs and zips it to `<out_dir>/<arch>/<function>.zip`.
pub fn package_binary(
    binary: &Path,
    function: &str,
    arch: Arch,
    out_dir: &Path,
) -> Result<Artifact, PackageError> {
    let bytes = std::fs::read(binary).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            PackageError::BinaryMissing {
                path: binary.to_path_buf(),
            }
        } else {
            PackageError::Io {
                action: "read",
                path: binary.to_path_buf(),
                source,
            }
        }
    })?;
    let newest_glibc = glibc::check(binary, &bytes)?;
    let zipped = zip_bootstrap(&bytes).map_err(|error| PackageError::Zip {
        path: binary.to_path_buf(),
        reason: error.to_string(),
    })?;
    let relative = format!("{}/{function}.zip", arch.as_str());
    let path = out_dir.join(&relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| PackageError::Io {
            action: "create",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(&path, &zipped.bytes).map_err(|source| PackageError::Io {
        action: "write",
        path: path.clone(),
        source,
    })?;
    Ok(Artifact {
        function: function.to_string(),
        architecture: arch.as_str().to_string(),
        file: relative,
        sha256: zipped.sha256,
        size: zipped.bytes.len() as u64,
        glibc: newest_glibc.map(|version| version.to_string()),
    })
}

fn ensure_target_installed(arch: Arch) -> Result<(), PackageError> {
    if arch == Arch::X86_64 && cfg!(target_arch = "x86_64") {
        return Ok(());
    }
    let output = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", arch.rust_target()])
        .output();
    let installed = output.ok().filter(|o| o.status.success()).is_some_and(|o| {
        let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
        Path::new(&dir).is_dir()
    });
    if installed {
        Ok(())
    } else {
        Err(PackageError::TargetMissing {
            target: arch.rust_target(),
            architecture: arch.as_str(),
        })
    }
}

/// The pinned cargo-lambda in the repository's virtualenv.
pub fn cargo_lambda_path(root: &Path) -> PathBuf {
    root.join(".venv").join("bin").join("cargo-lambda")
}

fn run_cargo_lambda(
    root: &Path,
    functions: &[FunctionSpec],
    arch: Arch,
    lambda_dir: &Path,
) -> Result<(), PackageError> {
    let tool = cargo_lambda_path(root);
    if !tool.is_file() {
        return Err(PackageError::CargoLambdaMissing { path: tool });
    }
    let venv_bin = root.join(".venv").join("bin");
    let path_var = match std::env::var_os("PATH") {
        Some(existing) => {
            let mut paths = vec![venv_bin];
            paths.extend(std::env::split_paths(&existing));
            std::env::join_paths(paths).unwrap_or(existing)
        }
        None => venv_bin.into_os_string(),
    };
    let mut command = Command::new(&tool);
    command
        .current_dir(root)
        .env("PATH", path_var)
        .args(["lambda", "build", "--release", arch.cargo_lambda_flag()])
        .arg("--lambda-dir")
        .arg(lambda_dir);
    for function in functions {
        command.args(["--package", &function.crate_name]);
    }
    let shown = format!(
        "cargo lambda build --release {} {}",
        arch.cargo_lambda_flag(),
        functions
            .iter()
            .map(|f| format!("--package {}", f.crate_name))
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("building functions for {}: {shown}", arch.as_str());
    let status = command.status().map_err(|source| PackageError::Io {
        action: "run",
        path: tool.clone(),
        source,
    })?;
    if !status.success() {
        return Err(PackageError::BuildFailed {
            command: shown,
            status: status.to_string(),
        });
    }
    Ok(())
}
