//! Rollback: the environment's previous successful release (or a named earlier one)
//! deployed again through the ordinary path, functions and infrastructure together, and
//! recorded in the history as a rollback. The stateful guard applies as to any deploy.

use crate::deploy::setup::runtime;
use crate::error::Error;
use crate::project::Project;
use crate::release::deployments::{or_not_bootstrapped, Deployments, EnvState};
use crate::release::{identity, rollout, ReleaseId};

/// The release a rollback of an environment in `state` goes to: `to` when given (it
/// must have run there), otherwise the newest one before the running release.
pub fn choose(env: &str, state: &EnvState, to: Option<&ReleaseId>) -> Result<ReleaseId, Error> {
    let running = state.release.as_deref();
    if let Some(to) = to {
        if running == Some(to.as_str()) {
            return Err(Error::Other {
                message: format!("`{env}` already runs {to}"),
                help: "name an earlier release with --to (`provisioner history` lists them)".into(),
            });
        }
        if !state.recent.iter().any(|r| r == to.as_str()) {
            return Err(Error::Other {
                message: format!(
                    "{to} is not among the releases `{env}` ran successfully ({})",
                    if state.recent.is_empty() {
                        "none".to_string()
                    } else {
                        state.recent.join(", ")
                    }
                ),
                help: format!(
                    "roll back to one of those, or deploy {to} on purpose with `provisioner \
                     deploy --env {env} --release {to} --allow-downgrade`"
                ),
            });
        }
        return Ok(to.clone());
    }
    // The newest release older than the running one; when the running one is itself a
    // downgrade, the release it replaced.
    let running_id = running.and_then(|r| ReleaseId::parse(r).ok());
    let candidates: Vec<ReleaseId> = state
        .recent
        .iter()
        .filter(|r| Some(r.as_str()) != running)
        .filter_map(|r| ReleaseId::parse(r).ok())
        .collect();
    let older = candidates
        .iter()
        .filter(|r| {
            running_id
                .as_ref()
                .is_none_or(|running| r.is_older_than(running))
        })
        .max()
        .cloned();
    let previous = older
        .or_else(|| candidates.first().cloned())
        .ok_or_else(|| Error::Other {
            message: format!("`{env}` has no earlier successful release to roll back to"),
            help: format!("`provisioner history --env {env}` shows what ran there"),
        })?;
    Ok(previous)
}

/// Reads `env_name`'s state and picks the release to roll back to.
pub fn target_release(
    project: &Project,
    env_name: &str,
    to: Option<&ReleaseId>,
) -> Result<ReleaseId, Error> {
    let (_, env) = rollout::locate(project, env_name)?;
    runtime()?.block_on(async {
        let (clients, _) = identity::connect_checked(&env, None).await?;
        let deployments = Deployments::new(
            clients.dynamodb.clone(),
            &env.names.bootstrap.deployments_table,
        );
        let state =
            or_not_bootstrapped(deployments.state(&env.name).await, &env)?.unwrap_or_default();
        choose(&env.name, &state, to)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> EnvState {
        EnvState {
            release: Some("20261201T120000Z-cccccccccccc".into()),
            recent: vec![
                "20261201T120000Z-cccccccccccc".into(),
                "20261130T120000Z-bbbbbbbbbbbb".into(),
                "20261129T120000Z-aaaaaaaaaaaa".into(),
            ],
            ..EnvState::default()
        }
    }

    #[test]
    fn a_rollback_goes_to_the_release_before_the_running_one_or_a_named_one_that_ran() {
        assert_eq!(
            choose("dev", &state(), None).unwrap().as_str(),
            "20261130T120000Z-bbbbbbbbbbbb"
        );
        let named = ReleaseId::parse("20261129T120000Z-aaaaaaaaaaaa").unwrap();
        assert_eq!(choose("dev", &state(), Some(&named)).unwrap(), named);
        let never = ReleaseId::parse("20261128T120000Z-dddddddddddd").unwrap();
        let error = choose("dev", &state(), Some(&never)).unwrap_err();
        assert!(error.to_string().contains("not among"), "{error}");
        // R1 -> R2 -> R3, rolled back to R2: a second rollback goes to R1, not to R3.
        let after_rollback = EnvState {
            release: Some("20261130T120000Z-bbbbbbbbbbbb".into()),
            recent: vec![
                "20261130T120000Z-bbbbbbbbbbbb".into(),
                "20261201T120000Z-cccccccccccc".into(),
                "20261129T120000Z-aaaaaaaaaaaa".into(),
            ],
            ..EnvState::default()
        };
        assert_eq!(
            choose("dev", &after_rollback, None).unwrap().as_str(),
            "20261129T120000Z-aaaaaaaaaaaa"
        );
        let only = EnvState {
            recent: vec!["20261201T120000Z-cccccccccccc".into()],
            ..state()
        };
        assert!(choose("dev", &only, None)
            .unwrap_err()
            .to_string()
            .contains("no earlier"));
    }
}
