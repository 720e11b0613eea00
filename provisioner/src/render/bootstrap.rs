//! The bootstrap stack's typed context: one stack per app, account and region holding
//! the artifact bucket, the deployments table and the CloudFormation execution role.
//! Every environment of the app in that account and region shares it, so its context
//! reads only what they share (app, account, region), never one environment's settings.

use serde::Serialize;

use super::context::Tag;
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
    }
}
