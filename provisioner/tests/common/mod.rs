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
