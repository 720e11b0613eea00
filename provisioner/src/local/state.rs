//! What `provisioner up` started, remembered under `.local/` so that a second `up` can
//! tell one is running and `provisioner local down` stops exactly that and nothing else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::LocalError;

/// A process `up` started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    /// A word its command line contains, so a recycled pid is not mistaken for it.
    pub marker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
}

impl Started {
    /// True while the process is alive and still the one that was started.
    pub fn is_alive(&self) -> bool {
        std::fs::read(format!("/proc/{}/cmdline", self.pid))
            .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(&self.marker))
            .unwrap_or(false)
    }

    /// Asks the process to stop (SIGTERM), then insists (SIGKILL) after `grace`.
    pub fn stop(&self, grace: Duration) -> bool {
        if !self.is_alive() {
            return false;
        }
        let signal = |name: &str| {
            let _ = std::process::Command::new("kill")
                .args([name, &self.pid.to_string()])
                .status();
        };
        signal("-TERM");
        let deadline = std::time::Instant::now() + grace;
        while self.is_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.is_alive() {
            signal("-KILL");
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }
}

/// Everything `up` started for one environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LocalState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<Started>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Started>,
}

/// `.local/<env>/` under the repository root.
pub fn state_dir(root: &Path, env: &str) -> PathBuf {
    root.join(".local").join(env)
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

impl LocalState {
    pub fn load(dir: &Path) -> Self {
        std::fs::read_to_string(state_file(dir))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, dir: &Path) -> Result<(), LocalError> {
        let io = |source| LocalError::Io {
            action: "write".into(),
            path: state_file(dir),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(state_file(dir), text + "\n").map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_alive_only_while_its_pid_runs_the_marked_command() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let started = Started {
            pid: child.id(),
            marker: "sleep".into(),
            port: None,
            log: None,
        };
        // Until the child has exec'd, its command line is still the test's own.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !started.is_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(started.is_alive());
        let impostor = Started {
            marker: "moto_server".into(),
            ..started.clone()
        };
        assert!(
            !impostor.is_alive(),
            "a pid running something else is not ours"
        );
        assert!(started.stop(Duration::from_secs(5)));
        let _ = child.wait();
        assert!(!started.is_alive());
    }

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = LocalState {
            emulator: Some(Started {
                pid: 42,
                marker: "moto_server".into(),
                port: Some(5055),
                log: Some(dir.path().join("emulator.log")),
            }),
            host: None,
        };
        state.save(dir.path()).expect("saves");
        assert_eq!(LocalState::load(dir.path()), state);
        assert_eq!(
            LocalState::load(&dir.path().join("missing")),
            LocalState::default()
        );
    }
}
