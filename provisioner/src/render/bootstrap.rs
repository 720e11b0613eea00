//! The bootstrap stack's typed context: one stack per app, account and region holding
//! the artifact bucket, the deployments table and the CloudFormation execution role.
//! Every environment of the app in that account and region shares it, so its context
//! reads only what they share (app, account, region), never one environment's settings,
//! with one exception: the deploy role CI assumes for the environment being
//! bootstrapped (its `ci:` section), beside the account's GitHub OIDC provider.

use serde::Serialize;

use super::context::Tag;
use crate::config::ci::{OidcProvider, GITHUB_OIDC_AUDIENCE, GITHUB_OIDC_HOST};
use crate::config::names::BootstrapNames;
use crate::config::Environment;

/// The template under `stacks/` (not listed in `stacks.yaml`: `deploy` never deploys it).
pub const TEMPLATE: &str = "bootstrap.yaml.tera";
/// Its id in findings and render output.
pub const STACK_ID: &str = "bootstrap";

/// The object tag that lets the bucket's lifecycle rule expire a release.
pub const RETENTION_TAG: &str = "provisioner:retention";
/// [`RETENTION_TAG`]'s value on releases no environment keeps.
pub const EXPIRABLE: &str = "expirable";
/// Releases of each environment's history kept (never tagged expirable): the running
/// one and the ones before it, so a rollback always finds its artifacts.
pub const KEEP_RELEASES: u32 = 10;

#[derive(Debug, Clone, Serialize)]
pub struct BootstrapContext {
    pub app: String,
    pub account_id: String,
    pub region: String,
    pub names: BootstrapNames,
    pub tags: Vec<Tag>,
    pub noncurrent_version_days: u32,
    pub keep_releases: u32,
    pub retention_tag: &'static str,
    pub expirable_value: &'static str,
    pub expirable_after_days: u32,
    /// The deploy role CI assumes for this environment, when it has `ci.deploy_from`.
    pub ci: Option<CiContext>,
}

/// GitHub's OIDC provider and the environment's deploy role.
#[derive(Debug, Clone, Serialize)]
pub struct CiContext {
    pub env: String,
    /// The stack holds the account's GitHub OIDC provider (`oidc_provider: create`
    /// outside an emulator, which does not create providers through CloudFormation).
    pub create_oidc_provider: bool,
    /// The provider's ARN when it exists already (`oidc_provider: <ARN>`).
    pub existing_oidc_provider: Option<String>,
    pub oidc_host: &'static str,
    pub audience: &'static str,
    /// The only `sub` claim the trust policy admits.
    pub subject: String,
    /// The `sub` claims the promotion-source role admits (`ci.promotion_readers`);
    /// without any, there is no such role.
    pub reader_subjects: Vec<String>,
    pub promotion_source_role: String,
    pub repository: String,
    pub deploy_role: String,
    /// `{app}-{env}`: the environment's stacks, alarms and secrets start with it.
    pub prefix: String,
    pub signing_secret: String,
    pub signing_parameter: String,
}

pub fn context(env: &Environment) -> BootstrapContext {
    let s = &env.settings;
    let tag = |key: &str, value: &str| Tag {
        key: key.into(),
        value: value.into(),
    };
    BootstrapContext {
        app: s.app.as_str().to_string(),
        account_id: s.account_id.as_str().to_string(),
        region: s.region.as_str().to_string(),
        names: env.names.bootstrap.clone(),
        tags: vec![
            tag("app", s.app.as_str()),
            tag("stack", STACK_ID),
            tag("managed-by", "provisioner"),
        ],
        noncurrent_version_days: 30,
        keep_releases: KEEP_RELEASES,
        retention_tag: RETENTION_TAG,
        expirable_value: EXPIRABLE,
        expirable_after_days: 30,
        ci: ci_context(env),
    }
}

fn ci_context(env: &Environment) -> Option<CiContext> {
    let ci = env.settings.ci.as_ref()?;
    let deploy_from = ci.deploy_from.as_ref()?;
    let github = &ci.github;
    let emulated = env.settings.endpoint_url.is_some();
    Some(CiContext {
        env: env.name.clone(),
        create_oidc_provider: github.oidc_provider == OidcProvider::Create && !emulated,
        existing_oidc_provider: match &github.oidc_provider {
            OidcProvider::Create => None,
            OidcProvider::Existing(arn) => Some(arn.clone()),
        },
        oidc_host: GITHUB_OIDC_HOST,
        audience: GITHUB_OIDC_AUDIENCE,
        subject: deploy_from.subject(&github.owner, &github.repo),
        reader_subjects: ci
            .promotion_readers
            .iter()
            .map(|reader| reader.subject(&github.owner, &github.repo))
            .collect(),
        promotion_source_role: env.names.promotion_source_role.clone(),
        repository: format!("{}/{}", github.owner, github.repo),
        deploy_role: env.names.deploy_role.clone(),
        prefix: env.names.prefix.clone(),
        signing_secret: env.names.signing_secret.clone(),
        signing_parameter: env.names.signing_parameter.clone(),
    })
}
