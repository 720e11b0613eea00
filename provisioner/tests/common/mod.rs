//! Shared test fixtures: a throwaway copy of the repository's environments, stacks and
//! function manifest that a test may edit freely.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository this test suite belongs to.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the provisioner crate lives inside the repository")
        .to_path_buf()
}

/// A temporary copy of the repository's configuration.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = repo_root();
        for sub in ["environments", "stacks"] {
            copy_dir(&root.join(sub), &dir.path().join(sub));
        }
        std::fs::create_dir_all(dir.path().join("functions")).expect("functions dir");
        std::fs::copy(
            root.join("functions/manifest.yaml"),
            dir.path().join("functions/manifest.yaml"),
        )
        .expect("copy manifest");
        Self { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn project(&self) -> provisioner::project::Project {
        provisioner::project::Project::at(self.root())
    }

    /// Writes `environments/<name>.yaml`.
    pub fn write_env(&self, name: &str, text: &str) {
        std::fs::write(
            self.root()
                .join("environments")
                .join(format!("{name}.yaml")),
            text,
        )
        .expect("write environment");
    }

    /// Writes a file relative to the fixture root.
    pub fn write(&self, relative: &str, text: &str) {
        std::fs::write(self.root().join(relative), text).expect("write file");
    }

    /// Makes the fixture a git repository with one commit (a release's version is its
    /// git revision).
    pub fn commit(&self) {
        let git = |args: &[&str]| {
            let status = std::process::Command::new("git")
                .arg("-C")
                .arg(self.root())
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .stdout(std::process::Stdio::null())
                .status()
                .expect("git runs");
            assert!(status.success(), "git {args:?}");
        };
        git(&["init", "-q"]);
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "fixture"]);
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.root().join(relative)).expect("read file")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy file");
        }
    }
}

/// The real `provisioner` binary, with the pinned tools of `.venv/` on its PATH.
pub fn provisioner_binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_provisioner"));
    let venv = repo_root().join(".venv/bin");
    let path = std::env::var("PATH").unwrap_or_default();
    command
        .env("PATH", format!("{}:{path}", venv.display()))
        .env_remove("RUST_LOG");
    command
}

/// Runs `provisioner local down --env <env>` when dropped, so a failing test leaves
/// nothing running.
pub struct LocalDown {
    pub root: PathBuf,
    pub env: String,
}

impl Drop for LocalDown {
    fn drop(&mut self) {
        let _ = provisioner_binary()
            .arg("--root")
            .arg(&self.root)
            .args(["local", "down", "--env", &self.env])
            .output();
    }
}

/// Processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            (pid != std::process::id() && String::from_utf8_lossy(&cmdline).contains(needle))
                .then_some(pid)
        })
        .collect()
}
