//! `status`: each stack of an environment as deployed (status, the release that last
//! changed it, when, its outputs), whether its template is the one rendered now, and
//! whether it was changed outside the provisioner since its last recorded deploy.

use std::collections::BTreeMap;

use serde::Serialize;

use super::clients::AwsClients;
use sha2::{Digest, Sha256};

use super::stacks::{self, SeenStack};
use super::{DeployError, StackSpec};

/// One stack's deployed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackStatus {
    pub id: String,
    pub stack_name: String,
    pub deployed: bool,
    pub status: Option<String>,
    pub release: Option<String>,
    pub template_sha256: Option<String>,
    /// True when the deployed template hash is the one rendered from this checkout.
    pub template_current: bool,
    pub last_updated: Option<String>,
    pub termination_protection: bool,
    pub outputs: BTreeMap<String, String>,
    /// Updated since the last recorded deploy, and now running a template other than
    /// the one that deploy left it with: someone changed it outside the provisioner.
    pub changed_outside: bool,
}

impl StackStatus {
    /// Why the stack is not healthy, or `None` when it is deployed and settled in a
    /// state it can be updated from and that runs a whole template: CREATE_COMPLETE,
    /// UPDATE_COMPLETE, IMPORT_COMPLETE, or UPDATE_ROLLBACK_COMPLETE (the previous
    /// template, intact, after a failed update).
    pub fn unhealthy(&self) -> Option<String> {
        match self.status.as_deref() {
            None => Some("not deployed".into()),
            Some(
                "CREATE_COMPLETE"
                | "UPDATE_COMPLETE"
                | "IMPORT_COMPLETE"
                | "UPDATE_ROLLBACK_COMPLETE",
            ) => None,
            Some(status) if status.ends_with("_IN_PROGRESS") => {
                Some(format!("{status}: an operation is still running"))
            }
            Some(status) => Some(format!(
                "{status}: see runbooks/stuck-stack.md (`provisioner recover`)"
            )),
        }
    }
}

/// Reads every stack of `specs` (one DescribeStacks call on a small account).
pub async fn read(
    clients: &AwsClients,
    specs: &[StackSpec],
) -> Result<Vec<StackStatus>, DeployError> {
    let names: Vec<String> = specs.iter().map(|s| s.stack_name.clone()).collect();
    let deployed = stacks::describe_many(&clients.cloudformation, &names).await?;
    Ok(specs
        .iter()
        .map(|spec| match deployed.get(&spec.stack_name) {
            Some(stack) => StackStatus {
                id: spec.id.clone(),
                stack_name: spec.stack_name.clone(),
                deployed: true,
                status: Some(stack.status.clone()),
                release: stack.release().map(str::to_string),
                template_sha256: stack.template_sha256().map(str::to_string),
                template_current: stack.template_sha256() == Some(spec.template_sha256.as_str()),
                last_updated: stack.last_updated.clone(),
                termination_protection: stack.termination_protection,
                outputs: stack.outputs.clone(),
                changed_outside: false,
            },
            None => StackStatus {
                id: spec.id.clone(),
                stack_name: spec.stack_name.clone(),
                deployed: false,
                status: None,
                release: None,
                template_sha256: None,
                template_current: false,
                last_updated: None,
                termination_protection: false,
                outputs: BTreeMap::new(),
                changed_outside: false,
            },
        })
        .collect())
}

/// Marks the rows of stacks changed outside the provisioner: those whose LastUpdatedTime
/// moved since the last recorded deploy (every recorded stack on an emulator, which
/// never reports LastUpdatedTime) and whose template, fetched, is not the one recorded.
/// Stacks without a record are left unmarked.
pub async fn mark_changed_outside(
    clients: &AwsClients,
    rows: &mut [StackStatus],
    seen: &BTreeMap<String, SeenStack>,
    emulator: bool,
) -> Result<(), DeployError> {
    for row in rows.iter_mut().filter(|row| row.deployed) {
        let Some(recorded) = seen.get(&row.stack_name) else {
            continue;
        };
        if !emulator && recorded.last_updated == row.last_updated {
            continue;
        }
        let output = clients
            .cloudformation
            .get_template()
            .stack_name(&row.stack_name)
            .send()
            .await
            .map_err(|error| DeployError::aws(format!("GetTemplate {}", row.stack_name), &error))?;
        let running = hex::encode(Sha256::digest(
            output.template_body().unwrap_or_default().as_bytes(),
        ));
        row.changed_outside = running != recorded.template_sha256;
    }
    Ok(())
}

/// An aligned table, each stack's outputs indented under it.
pub fn to_text(rows: &[StackStatus]) -> String {
    let width = rows
        .iter()
        .map(|r| r.stack_name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let release_width = rows
        .iter()
        .filter_map(|r| r.release.as_deref().map(str::len))
        .max()
        .unwrap_or(18)
        .max(18);
    let mut text = format!(
        "{:<width$}  {:<24}  {:<release_width$}  {:<27}  TEMPLATE\n",
        "STACK", "STATUS", "CHANGED BY RELEASE", "LAST UPDATE"
    );
    for row in rows {
        let template = match (row.deployed, row.template_current) {
            (false, _) => "-",
            _ if row.changed_outside => "changed outside the provisioner",
            (true, true) => "current",
            (true, false) => "differs from this checkout",
        };
        text.push_str(&format!(
            "{:<width$}  {:<24}  {:<release_width$}  {:<27}  {template}\n",
            row.stack_name,
            row.status.as_deref().unwrap_or("NOT DEPLOYED"),
            row.release.as_deref().unwrap_or("-"),
            row.last_updated.as_deref().unwrap_or("-"),
        ));
        for (key, value) in &row.outputs {
            text.push_str(&format!("{:width$}    {key} = {value}\n", ""));
        }
    }
    text
}
