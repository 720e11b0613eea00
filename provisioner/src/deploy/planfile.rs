//! Plan files: `plan --release <id> --out <file>` keeps the change sets it computed and
//! records them, with each stack as it was when planned; `deploy --plan <file>` executes
//! exactly those change sets, so what was reviewed is what runs. A plan is refused when
//! any of its stacks moved on since (another update, a console change), when it was made
//! for another environment or release, or when a stack could not be planned in full.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::stacks::DeployedStack;
use crate::error::Error;

/// The plan file format this provisioner writes and reads.
pub const FORMAT: u32 = 1;

/// A change set a plan kept, to be executed by `deploy --plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedChangeSet {
    pub id: String,
    pub stack_id: String,
    /// `CREATE` or `UPDATE`.
    pub kind: String,
}

/// One stack of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStack {
    pub stack_name: String,
    /// The stack's status when planned (`None`: it did not exist).
    pub status: Option<String>,
    /// Its LastUpdatedTime (or creation time) when planned.
    pub last_updated: Option<String>,
    /// The id of its newest stack event when planned.
    pub last_event: Option<String>,
    /// The plan's result for it (`planned`, `unchanged`, `no-changes`, ...).
    pub result: String,
    /// The change set to execute, when there are changes.
    pub change_set: Option<PlannedChangeSet>,
}

/// A whole plan file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanFile {
    pub format: u32,
    pub env: String,
    pub release: String,
    pub created_at: String,
    pub stacks: Vec<PlannedStack>,
}

impl PlanFile {
    /// Writes the plan as JSON.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).map_err(|error| Error::Other {
            message: format!("could not encode the plan: {error}"),
            help: String::new(),
        })?;
        std::fs::write(path, text + "\n").map_err(|source| Error::Io {
            action: "write the plan file".into(),
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a plan file, checking it is one this provisioner can execute.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            action: "read the plan file".into(),
            path: path.to_path_buf(),
            source,
        })?;
        let plan: PlanFile = serde_json::from_str(&text).map_err(|error| Error::Other {
            message: format!("{} is not a plan file: {error}", path.display()),
            help: "pass the file `provisioner plan --release <id> --out <file>` wrote".into(),
        })?;
        if plan.format != FORMAT {
            return Err(Error::Other {
                message: format!(
                    "{} has plan format {}; this provisioner reads format {FORMAT}",
                    path.display(),
                    plan.format
                ),
                help: "make the plan again with this provisioner".into(),
            });
        }
        Ok(plan)
    }

    /// The change sets to execute, by stack name.
    pub fn change_sets(&self) -> BTreeMap<String, PlannedChangeSet> {
        self.stacks
            .iter()
            .filter_map(|s| s.change_set.clone().map(|c| (s.stack_name.clone(), c)))
            .collect()
    }

    /// Refuses a plan for another environment, one with stacks it could not plan in
    /// full, and one whose stacks moved on since it was made (`deployed`: the stacks
    /// now; `events`: the newest event id of each).
    pub fn check(
        &self,
        env: &str,
        deployed: &BTreeMap<String, DeployedStack>,
        events: &BTreeMap<String, Option<String>>,
    ) -> Result<(), Error> {
        if self.env != env {
            return Err(Error::Other {
                message: format!("the plan is for environment `{}`, not `{env}`", self.env),
                help: format!("deploy it with --env {}", self.env),
            });
        }
        let unfinished: Vec<String> = self
            .stacks
            .iter()
            .filter(|s| {
                !matches!(s.result.as_str(), "planned" | "unchanged" | "no-changes")
                    || (s.result == "planned" && s.change_set.is_none())
            })
            .map(|s| format!("{} ({})", s.stack_name, s.result))
            .collect();
        if !unfinished.is_empty() {
            return Err(Error::Other {
                message: format!(
                    "the plan cannot be executed as reviewed: {}",
                    unfinished.join(", ")
                ),
                help: "deploy without --plan (changes pending an upstream stack are computed \
                       once it is deployed), or fix what was refused and plan again"
                    .into(),
            });
        }
        let moved: Vec<String> = self
            .stacks
            .iter()
            .filter_map(|planned| {
                let now = deployed.get(&planned.stack_name);
                let status = now.map(|s| s.status.clone());
                let updated = now.and_then(|s| s.last_updated.clone());
                // A CREATE change set leaves its stack in REVIEW_IN_PROGRESS: that is the
                // state the plan made, not a move.
                let event = events.get(&planned.stack_name).cloned().flatten();
                let same = (status == planned.status
                    && updated == planned.last_updated
                    && event == planned.last_event)
                    || (planned.status.is_none()
                        && status.as_deref() == Some("REVIEW_IN_PROGRESS"));
                (!same).then(|| {
                    format!(
                        "{} was {} (updated {}) when planned, is {} (updated {}) now",
                        planned.stack_name,
                        planned.status.as_deref().unwrap_or("absent"),
                        planned.last_updated.as_deref().unwrap_or("never"),
                        status.as_deref().unwrap_or("absent"),
                        updated.as_deref().unwrap_or("never")
                    ) + if event != planned.last_event && status == planned.status {
                        ", with stack events since"
                    } else {
                        ""
                    }
                })
            })
            .collect();
        if !moved.is_empty() {
            return Err(Error::Other {
                message: format!(
                    "the plan is stale, nothing was executed: {}",
                    moved.join("; ")
                ),
                help: "make a new plan with `provisioner plan --release <id> --out <file>`, \
                       review it, and deploy that"
                    .into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployed(status: &str, updated: &str) -> DeployedStack {
        DeployedStack {
            name: "app-dev-data".into(),
            stack_id: "id".into(),
            status: status.into(),
            status_reason: None,
            parameters: BTreeMap::new(),
            tags: BTreeMap::new(),
            outputs: BTreeMap::new(),
            last_updated: Some(updated.into()),
            termination_protection: false,
        }
    }

    fn plan(result: &str, change_set: bool) -> PlanFile {
        PlanFile {
            format: FORMAT,
            env: "dev".into(),
            release: "20261101T100000Z-0123456789ab".into(),
            created_at: "2026-11-01T10:00:00Z".into(),
            stacks: vec![PlannedStack {
                stack_name: "app-dev-data".into(),
                status: Some("UPDATE_COMPLETE".into()),
                last_updated: Some("2026-11-01T09:00:00Z".into()),
                last_event: Some("event-1".into()),
                result: result.into(),
                change_set: change_set.then(|| PlannedChangeSet {
                    id: "cs".into(),
                    stack_id: "id".into(),
                    kind: "UPDATE".into(),
                }),
            }],
        }
    }

    #[test]
    fn a_plan_runs_only_on_its_environment_with_its_stacks_unmoved() {
        let now = BTreeMap::from([(
            "app-dev-data".to_string(),
            deployed("UPDATE_COMPLETE", "2026-11-01T09:00:00Z"),
        )]);
        let events = BTreeMap::from([("app-dev-data".to_string(), Some("event-1".to_string()))]);
        assert!(plan("planned", true).check("dev", &now, &events).is_ok());
        let error = plan("planned", true)
            .check("prod", &now, &events)
            .unwrap_err();
        assert!(
            error.to_string().contains("for environment `dev`"),
            "{error}"
        );
        let moved = BTreeMap::from([(
            "app-dev-data".to_string(),
            deployed("UPDATE_COMPLETE", "2026-11-01T11:00:00Z"),
        )]);
        let error = plan("planned", true)
            .check("dev", &moved, &events)
            .unwrap_err();
        assert!(
            error.to_string().contains("stale")
                && error.to_string().contains("updated 2026-11-01T11:00:00Z"),
            "{error}"
        );
        let error = plan("pending-upstream", false)
            .check("dev", &now, &events)
            .unwrap_err();
        assert!(error.to_string().contains("pending-upstream"), "{error}");
        // Same status and time, but something happened to the stack since.
        let later = BTreeMap::from([("app-dev-data".to_string(), Some("event-9".to_string()))]);
        let error = plan("planned", true)
            .check("dev", &now, &later)
            .unwrap_err();
        assert!(
            error.to_string().contains("with stack events since"),
            "{error}"
        );
    }

    #[test]
    fn bad_plan_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plan.json");
        std::fs::write(&path, "{\"format\": 1}").expect("write");
        let error = PlanFile::load(&path).unwrap_err();
        assert!(error.to_string().contains("is not a plan file"), "{error}");
        let mut future = plan("planned", true);
        future.format = 9;
        future.save(&path).expect("save");
        let error = PlanFile::load(&path).unwrap_err();
        assert!(error.to_string().contains("plan format 9"), "{error}");
        let error = PlanFile::load(&dir.path().join("missing.json")).unwrap_err();
        assert!(error.to_string().contains("read the plan file"), "{error}");
        plan("planned", true).save(&path).expect("save");
        assert_eq!(PlanFile::load(&path).expect("load"), plan("planned", true));
    }
}
