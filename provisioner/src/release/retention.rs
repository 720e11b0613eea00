//! Which releases the artifact bucket keeps. The bootstrap stack's lifecycle rule
//! expires only objects tagged expirable; `release prune` tags a release so only when no
//! environment of the bucket runs it or ran it among its last N releases, and it is not
//! newer than every running release (a release published moments ago may be on its way
//! to an environment). Zips that a kept release also uses are never tagged.

use std::collections::BTreeSet;

use serde::Serialize;

use super::deployments::{Deployments, EnvState};
use super::id::ReleaseId;
use super::{identity, rollout, store};
use crate::deploy::clients::AwsClients;
use crate::deploy::setup::{runtime, target};
use crate::error::Error;
use crate::project::Project;

/// What pruning decided (and, unless a dry run, did).
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub bucket: String,
    pub keep: usize,
    pub kept: Vec<ReleaseId>,
    pub expirable: Vec<ReleaseId>,
    /// Objects tagged expirable (0 on a dry run).
    pub objects_tagged: usize,
    pub dry_run: bool,
}

/// Splits `published` into the releases to keep and those to tag expirable.
pub fn decide(
    published: &[ReleaseId],
    states: &[(String, EnvState)],
    keep: usize,
) -> (BTreeSet<ReleaseId>, Vec<ReleaseId>) {
    let mut kept = BTreeSet::new();
    let mut newest_running: Option<ReleaseId> = None;
    for (_, state) in states {
        let running = state
            .release
            .as_deref()
            .and_then(|r| ReleaseId::parse(r).ok());
        if let Some(running) = running {
            if newest_running.as_ref().is_none_or(|n| *n < running) {
                newest_running = Some(running.clone());
            }
            kept.insert(running);
        }
        kept.extend(
            state
                .recent
                .iter()
                .take(keep)
                .filter_map(|r| ReleaseId::parse(r).ok()),
        );
    }
    let Some(newest_running) = newest_running else {
        return (published.iter().cloned().collect(), Vec::new());
    };
    let mut expirable = Vec::new();
    for id in published {
        if kept.contains(id) || *id > newest_running {
            kept.insert(id.clone());
        } else {
            expirable.push(id.clone());
        }
    }
    (kept, expirable)
}

/// `release prune`: tags the releases of `env_name`'s bucket that no environment keeps.
pub fn prune(
    project: &Project,
    env_name: &str,
    keep: usize,
    dry_run: bool,
) -> Result<PruneReport, Error> {
    let (_, env) = rollout::locate(project, env_name)?;
    let bucket = env.names.bootstrap.artifact_bucket.clone();
    runtime()?.block_on(async {
        let clients = AwsClients::connect(&target(&env)).await;
        let caller = identity::caller_identity(&clients.sts).await?;
        identity::ensure_account(&env, &caller)?;
        rollout::ensure_bucket(&clients, &env).await?;
        let deployments = Deployments::new(
            clients.dynamodb.clone(),
            &env.names.bootstrap.deployments_table,
        );
        let states = deployments.states().await?;
        let published = store::list(&clients.s3, &bucket).await?;
        let (kept, expirable) = decide(&published, &states, keep);
        let mut objects_tagged = 0;
        if !dry_run {
            let mut zips_kept = BTreeSet::new();
            for id in &kept {
                if let Some(manifest) = store::read_manifest(&clients.s3, &bucket, id).await? {
                    zips_kept.extend(manifest.functions.iter().map(|f| f.key.clone()));
                    // Kept now: lift what an earlier prune (with a smaller --keep) tagged.
                    store::keep(&clients.s3, &bucket, &manifest).await?;
                }
            }
            for id in &expirable {
                if let Some(manifest) = store::read_manifest(&clients.s3, &bucket, id).await? {
                    objects_tagged +=
                        store::tag_expirable(&clients.s3, &bucket, &manifest, &zips_kept).await?;
                }
            }
        }
        Ok(PruneReport {
            bucket,
            keep,
            kept: kept.into_iter().collect(),
            expirable,
            objects_tagged,
            dry_run,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(day: u32) -> ReleaseId {
        ReleaseId::parse(&format!("202611{day:02}T100000Z-0123456789ab")).unwrap()
    }

    fn state(running: u32, recent: &[u32]) -> EnvState {
        EnvState {
            release: Some(id(running).to_string()),
            recent: recent.iter().map(|d| id(*d).to_string()).collect(),
            ..EnvState::default()
        }
    }

    #[test]
    fn only_releases_no_environment_keeps_and_none_newer_than_every_running_one_expire() {
        let published: Vec<ReleaseId> = (1..=9).map(id).collect();
        let states = vec![
            ("prod".to_string(), state(3, &[3, 2, 1])),
            ("dev".to_string(), state(7, &[7, 6, 5, 4])),
        ];
        let (kept, expirable) = decide(&published, &states, 2);
        let kept: Vec<ReleaseId> = kept.into_iter().collect();
        // prod keeps 3 and 2, dev 7 and 6; 8 and 9 are newer than anything running.
        assert_eq!(kept, [id(2), id(3), id(6), id(7), id(8), id(9)]);
        assert_eq!(expirable, [id(1), id(4), id(5)]);
        let (_, nothing) = decide(&published, &[], 2);
        assert!(nothing.is_empty(), "nothing expires before anything runs");
    }
}
