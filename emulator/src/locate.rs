//! Finds the `moto_server` binary: the `MOTO_SERVER` variable, then the repository's
//! `.venv/bin/moto_server` (searched upwards from a directory), then `PATH`.

use std::path::{Path, PathBuf};

use crate::EmulatorError;

/// Environment variable naming the moto_server binary explicitly.
pub const MOTO_SERVER_ENV: &str = "MOTO_SERVER";

const VENV_BINARY: &str = ".venv/bin/moto_server";

/// Finds moto_server starting from the current directory (and, as a last resort before
/// `PATH`, from the directory this crate was built in, so tests run from any directory).
pub fn locate_moto_server() -> Result<PathBuf, EmulatorError> {
    let current = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut roots = vec![current];
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    locate_in(
        std::env::var_os(MOTO_SERVER_ENV).map(PathBuf::from),
        &roots,
        std::env::var_os("PATH"),
    )
}

/// Finds moto_server for the repository containing `start` (then `PATH`), honouring
/// `MOTO_SERVER` first.
pub fn locate_moto_server_from(start: &Path) -> Result<PathBuf, EmulatorError> {
    locate_in(
        std::env::var_os(MOTO_SERVER_ENV).map(PathBuf::from),
        &[start.to_path_buf()],
        std::env::var_os("PATH"),
    )
}

fn locate_in(
    configured: Option<PathBuf>,
    roots: &[PathBuf],
    path_var: Option<std::ffi::OsString>,
) -> Result<PathBuf, EmulatorError> {
    if let Some(path) = configured.filter(|path| !path.as_os_str().is_empty()) {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(EmulatorError::ConfiguredBinaryMissing { path })
        };
    }
    let mut looked_at = vec![format!("${MOTO_SERVER_ENV} (unset)")];
    for root in roots {
        for dir in root.ancestors() {
            let candidate = dir.join(VENV_BINARY);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        looked_at.push(format!(
            "{VENV_BINARY} in {} and its parents",
            root.display()
        ));
    }
    if let Some(path_var) = path_var {
        for dir in std::env::split_paths(&path_var) {
            let candidate = dir.join("moto_server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    looked_at.push("moto_server on PATH".to_string());
    Err(EmulatorError::NotInstalled { looked_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("emulator-locate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_explicit_binary_wins_and_must_exist() {
        let dir = scratch_dir("explicit");
        let binary = dir.join("my_moto");
        std::fs::write(&binary, "").unwrap();
        assert_eq!(locate_in(Some(binary.clone()), &[], None).unwrap(), binary);
        let missing = dir.join("absent");
        let err = locate_in(Some(missing), &[], None).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn finds_the_venv_binary_from_a_subdirectory() {
        let repo = scratch_dir("venv");
        std::fs::create_dir_all(repo.join(".venv/bin")).unwrap();
        std::fs::create_dir_all(repo.join("functions/worker")).unwrap();
        std::fs::write(repo.join(VENV_BINARY), "").unwrap();
        let found = locate_in(None, &[repo.join("functions/worker")], None).unwrap();
        assert_eq!(found, repo.join(VENV_BINARY));
    }

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let empty = scratch_dir("missing");
        let err = locate_in(None, &[empty], Some("".into())).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("scripts/bootstrap"), "{message}");
        assert!(
            message.contains("pip install -r requirements.txt"),
            "{message}"
        );
    }
}
