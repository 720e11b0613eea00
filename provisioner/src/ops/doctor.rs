//! `doctor`: can the credentials in use deploy this environment? Checks, in order, who
//! the caller is and in which account, the region every client uses, the bootstrap
//! stack and its outputs, and every permission the deploy path (deploy, promote,
//! rollback, probe) needs, through IAM policy simulation where the endpoint has it.
//! Each problem is reported with its fix; nothing is written.

use std::collections::BTreeMap;

use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use crate::config::model::SecretStore;
use crate::config::Environment;
use crate::deploy::clients::AwsClients;
use crate::deploy::stacks::{self, DeployedStack};
use crate::release::identity::{self, CallerIdentity};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Something the deploy path needs is missing: the fix says what to do.
    Missing,
    /// This endpoint or caller cannot answer the question; the detail says why.
    CannotCheck,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// For `permissions`: each action and resource the caller may not use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<Denied>,
}

/// An action the simulation did not allow on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denied {
    pub action: String,
    pub resource: String,
    /// IAM's decision: `implicitDeny` (nothing allows it) or `explicitDeny`.
    pub decision: String,
}

/// Everything `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub env: String,
    pub account: String,
    pub region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    pub checks: Vec<Check>,
    /// How many checks found something missing (0: a clean bill).
    pub missing: usize,
}

impl DoctorReport {
    pub fn clean(&self) -> bool {
        self.missing == 0
    }

    pub fn to_text(&self) -> String {
        let mut text = format!(
            "doctor for `{}` (account {}, {}){}\n",
            self.env,
            self.account,
            self.region,
            self.caller
                .as_deref()
                .map(|c| format!(" as {c}"))
                .unwrap_or_default()
        );
        for check in &self.checks {
            let mark = match check.status {
                Status::Ok => "ok",
                Status::Missing => "MISSING",
                Status::CannotCheck => "cannot check",
            };
            text.push_str(&format!(
                "  {:<12} {:<13} {}\n",
                check.check, mark, check.detail
            ));
            for denied in &check.denied {
                text.push_str(&format!(
                    "      {} on {} ({})\n",
                    denied.action, denied.resource, denied.decision
                ));
            }
            if let Some(fix) = &check.fix {
                text.push_str(&format!("      fix: {fix}\n"));
            }
        }
        if self.clean() {
            text.push_str("nothing missing\n");
        } else {
            text.push_str(&format!(
                "{} check(s) found something missing\n",
                self.missing
            ));
        }
        text
    }
}

fn check(check: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        check,
        status,
        detail: detail.into(),
        fix: None,
        denied: Vec::new(),
    }
}

fn with_fix(mut item: Check, fix: impl Into<String>) -> Check {
    item.fix = Some(fix.into());
    item
}

/// Outputs the deploy path reads from the bootstrap stack.
pub const BOOTSTRAP_OUTPUTS: [&str; 4] = [
    "ArtifactBucketName",
    "ArtifactKeyArn",
    "DeploymentsTableName",
    "ExecutionRoleArn",
];

/// Runs every check for `env` with `clients` (and `iam` for the simulation).
pub async fn run(
    clients: &AwsClients,
    iam: &aws_sdk_iam::Client,
    env: &Environment,
    stack_ids: &[String],
) -> DoctorReport {
    let mut checks = Vec::new();
    let caller = identity::caller_identity(&clients.sts).await;
    let caller = match caller {
        Ok(caller) => {
            checks.push(check("identity", Status::Ok, caller.arn.clone()));
            Some(caller)
        }
        Err(error) => {
            checks.push(with_fix(
                check("identity", Status::Missing, error.to_string()),
                error
                    .help()
                    .unwrap_or_else(|| "configure AWS credentials for the account".into()),
            ));
            None
        }
    };
    checks.push(account_check(env, caller.as_ref()));
    checks.push(region_check(env, clients));
    let bootstrap = match caller {
        Some(_) => {
            let (item, found) = bootstrap_check(clients, env).await;
            checks.push(item);
            found
        }
        None => {
            checks.push(check(
                "bootstrap",
                Status::CannotCheck,
                "not checked: no identity to ask with",
            ));
            None
        }
    };
    checks.push(match (&caller, &bootstrap) {
        (Some(caller), Some(found)) => {
            let requirements = requirements(env, stack_ids, found, partition(&caller.arn));
            permissions_check(iam, caller, &requirements).await
        }
        (None, _) => check(
            "permissions",
            Status::CannotCheck,
            "not checked: no identity to simulate",
        ),
        (Some(_), None) => check(
            "permissions",
            Status::CannotCheck,
            "not checked: the bootstrap stack's resources they are on do not exist yet",
        ),
    });
    let missing = checks
        .iter()
        .filter(|c| c.status == Status::Missing)
        .count();
    DoctorReport {
        env: env.name.clone(),
        account: env.settings.account_id.as_str().to_string(),
        region: env.settings.region.as_str().to_string(),
        caller: caller.map(|c| c.arn),
        checks,
        missing,
    }
}

fn account_check(env: &Environment, caller: Option<&CallerIdentity>) -> Check {
    let Some(caller) = caller else {
        return check("account", Status::CannotCheck, "not checked: no identity");
    };
    match identity::ensure_account(env, caller) {
        Ok(()) => check("account", Status::Ok, caller.account.clone()),
        Err(error) => with_fix(
            check("account", Status::Missing, error.to_string()),
            error.help().unwrap_or_default(),
        ),
    }
}

fn region_check(env: &Environment, clients: &AwsClients) -> Check {
    let wanted = env.settings.region.as_str();
    let ambient = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .ok();
    let configured = clients.config.region().map(|r| r.to_string());
    let mut detail = format!("{wanted} (from the environment's files; every client uses it)");
    if let Some(ambient) = ambient.filter(|a| a != wanted) {
        detail.push_str(&format!("; AWS_REGION says {ambient}, which is not used"));
    }
    match configured {
        Some(region) if region != wanted => with_fix(
            check(
                "region",
                Status::Missing,
                format!("the clients use {region}, not the environment's {wanted}"),
            ),
            format!("set region: {wanted} in the environment's file"),
        ),
        _ => check("region", Status::Ok, detail),
    }
}

async fn bootstrap_check(
    clients: &AwsClients,
    env: &Environment,
) -> (Check, Option<DeployedStack>) {
    let name = &env.names.bootstrap.stack;
    let fix = format!("run `provisioner bootstrap --env {}`", env.name);
    let stack = match stacks::describe(&clients.cloudformation, name).await {
        Ok(Some(stack)) => stack,
        Ok(None) => {
            let item = check(
                "bootstrap",
                Status::Missing,
                format!(
                    "stack {name} does not exist in account {} {}",
                    env.settings.account_id, env.settings.region
                ),
            );
            return (with_fix(item, fix), None);
        }
        Err(error) => {
            let item = check(
                "bootstrap",
                Status::Missing,
                format!("cannot describe stack {name}: {error}"),
            );
            return (
                with_fix(
                    item,
                    "grant cloudformation:DescribeStacks on it, then retry",
                ),
                None,
            );
        }
    };
    let settled = stack.status.ends_with("_COMPLETE")
        && !stack.status.contains("ROLLBACK")
        && !stack.status.starts_with("DELETE");
    if !settled {
        let item = check(
            "bootstrap",
            Status::Missing,
            format!("stack {name} is {}", stack.status),
        );
        return (
            with_fix(item, format!("{fix} again once the stack has settled")),
            Some(stack),
        );
    }
    let mut wanted: Vec<&str> = BOOTSTRAP_OUTPUTS.to_vec();
    if env
        .settings
        .ci
        .as_ref()
        .is_some_and(|ci| ci.deploy_from.is_some())
    {
        wanted.push("DeployRoleArn");
    }
    let absent: Vec<&str> = wanted
        .into_iter()
        .filter(|key| !stack.outputs.contains_key(*key))
        .collect();
    if !absent.is_empty() {
        let item = check(
            "bootstrap",
            Status::Missing,
            format!(
                "stack {name} lacks the output(s) {} (it predates this provisioner)",
                absent.join(", ")
            ),
        );
        return (with_fix(item, fix), Some(stack));
    }
    let outputs: Vec<String> = stack
        .outputs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let item = check(
        "bootstrap",
        Status::Ok,
        format!("{name} {}: {}", stack.status, outputs.join(", ")),
    );
    (item, Some(stack))
}

/// `aws`, `aws-cn` or `aws-us-gov`, from an ARN.
fn partition(arn: &str) -> &str {
    arn.split(':')
        .nth(1)
        .filter(|p| !p.is_empty())
        .unwrap_or("aws")
}

/// Actions on resources the deploy path needs, simulated together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub actions: Vec<&'static str>,
    pub resources: Vec<String>,
    /// Condition keys the real calls carry (`iam:PassedToService` for PassRole).
    pub context: Vec<(&'static str, &'static str)>,
}

/// What CloudFormation calls deploy, promote, rollback and recover make on a stack.
pub const STACK_ACTIONS: &[&str] = &[
    "cloudformation:CreateChangeSet",
    "cloudformation:DescribeChangeSet",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:DeleteChangeSet",
    "cloudformation:ListChangeSets",
    "cloudformation:CreateStack",
    "cloudformation:UpdateStack",
    "cloudformation:CancelUpdateStack",
    "cloudformation:ContinueUpdateRollback",
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
    "cloudformation:DescribeStackResources",
    "cloudformation:GetTemplate",
    "cloudformation:DetectStackDrift",
    "cloudformation:DescribeStackDriftDetectionStatus",
    "cloudformation:DescribeStackResourceDrifts",
];

/// Every permission the deploy path needs for `env`, on the resources the bootstrap
/// stack `bootstrap` holds. The deploy role of the bootstrap stack grants exactly these.
pub fn requirements(
    env: &Environment,
    stack_ids: &[String],
    bootstrap: &DeployedStack,
    partition: &str,
) -> Vec<Requirement> {
    let account = env.settings.account_id.as_str();
    let region = env.settings.region.as_str();
    let names = &env.names;
    let output = |key: &str| bootstrap.outputs.get(key).cloned().unwrap_or_default();
    let need = |actions: &[&'static str], resources: Vec<String>| Requirement {
        actions: actions.to_vec(),
        resources,
        context: Vec::new(),
    };
    let stack_arn = |name: &str| {
        format!("arn:{partition}:cloudformation:{region}:{account}:stack/{name}/00000000-0000-0000-0000-000000000000")
    };
    let bucket = output("ArtifactBucketName");
    let table = output("DeploymentsTableName");
    let mut needs = vec![
        need(
            STACK_ACTIONS,
            stack_ids
                .iter()
                .map(|id| stack_arn(&names.stack(id)))
                .collect(),
        ),
        need(
            &["cloudformation:DescribeStacks"],
            vec![bootstrap.stack_id.clone()],
        ),
        Requirement {
            actions: vec!["iam:PassRole"],
            resources: vec![output("ExecutionRoleArn")],
            context: vec![("iam:PassedToService", "cloudformation.amazonaws.com")],
        },
        need(
            &[
                "s3:GetObject",
                "s3:PutObject",
                "s3:GetObjectTagging",
                "s3:PutObjectTagging",
                "s3:DeleteObjectTagging",
            ],
            vec![format!(
                "arn:{partition}:s3:::{bucket}/releases/manifest.json"
            )],
        ),
        need(
            &["s3:ListBucket"],
            vec![format!("arn:{partition}:s3:::{bucket}")],
        ),
        need(
            &[
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:Query",
                "dynamodb:ConditionCheckItem",
            ],
            vec![format!(
                "arn:{partition}:dynamodb:{region}:{account}:table/{table}"
            )],
        ),
        need(
            &["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
            vec![output("ArtifactKeyArn")],
        ),
        need(
            &["cloudwatch:DescribeAlarms"],
            vec![format!(
                "arn:{partition}:cloudwatch:{region}:{account}:alarm:{}",
                names.deploy_health_alarm
            )],
        ),
        need(&["sts:GetCallerIdentity"], vec!["*".to_string()]),
    ];
    needs.push(match env.settings.signing_secret.store {
        SecretStore::Secretsmanager => need(
            &["secretsmanager:GetSecretValue"],
            vec![format!(
                "arn:{partition}:secretsmanager:{region}:{account}:secret:{}-AbCdEf",
                names.signing_secret
            )],
        ),
        SecretStore::Ssm => need(
            &["ssm:GetParameter"],
            vec![format!(
                "arn:{partition}:ssm:{region}:{account}:parameter{}",
                names.signing_parameter
            )],
        ),
    });
    needs
}

/// The IAM principal to simulate for a caller: an assumed role's session is simulated
/// as its role (IAM simulates users and roles, not sessions).
pub fn principal_arn(caller_arn: &str) -> Option<String> {
    let (prefix, resource) = caller_arn.split_once(":assumed-role/")?;
    let role = resource.split('/').next()?;
    let (partition_part, account) = prefix.rsplit_once(':')?;
    let partition = partition_part.split(':').nth(1)?;
    Some(format!("arn:{partition}:iam::{account}:role/{role}"))
}

/// Simulates every requirement for `caller` and reports what is denied.
pub async fn permissions_check(
    iam: &aws_sdk_iam::Client,
    caller: &CallerIdentity,
    requirements: &[Requirement],
) -> Check {
    let principal = principal_arn(&caller.arn).unwrap_or_else(|| caller.arn.clone());
    if principal.ends_with(":root") {
        return check(
            "permissions",
            Status::CannotCheck,
            "cannot check permissions here: IAM does not simulate the account's root user \
             (which may do everything)",
        );
    }
    let mut denied = Vec::new();
    let mut simulated = 0usize;
    for requirement in requirements {
        let mut request = iam
            .simulate_principal_policy()
            .policy_source_arn(&principal)
            .set_action_names(Some(
                requirement.actions.iter().map(|a| a.to_string()).collect(),
            ))
            .set_resource_arns(Some(requirement.resources.clone()));
        for (key, value) in &requirement.context {
            request = request.context_entries(
                aws_sdk_iam::types::ContextEntry::builder()
                    .context_key_name(*key)
                    .context_key_type(aws_sdk_iam::types::ContextKeyTypeEnum::String)
                    .context_key_values(*value)
                    .build(),
            );
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(error) => {
                let code = error.code().unwrap_or("no error code").to_string();
                let why = match code.as_str() {
                    "AccessDenied" | "AccessDeniedException" => format!(
                        "{principal} may not call iam:SimulatePrincipalPolicy on itself ({code})"
                    ),
                    "no error code" => format!(
                        "the endpoint does not implement IAM SimulatePrincipalPolicy (it \
                         answered {} without an AWS error)",
                        error
                            .raw_response()
                            .map(|r| format!("HTTP {}", r.status().as_u16()))
                            .unwrap_or_else(|| "nothing".to_string())
                    ),
                    _ => format!(
                        "IAM SimulatePrincipalPolicy failed ({code}: {})",
                        error
                            .message()
                            .map(str::to_string)
                            .unwrap_or_else(|| DisplayErrorContext(&error).to_string())
                    ),
                };
                let fix = match code.as_str() {
                    "AccessDenied" | "AccessDeniedException" => Some(format!(
                        "grant iam:SimulatePrincipalPolicy on {principal} (the deploy role has it)"
                    )),
                    _ => None,
                };
                let mut item = check(
                    "permissions",
                    Status::CannotCheck,
                    format!("cannot check permissions here: {why}"),
                );
                item.fix = fix;
                return item;
            }
        };
        for result in output.evaluation_results() {
            simulated += 1;
            let action = result.eval_action_name().to_string();
            let specific = result.resource_specific_results();
            if specific.is_empty() {
                let decision = result.eval_decision().as_str().to_string();
                if decision != "allowed" {
                    denied.push(Denied {
                        action,
                        resource: result.eval_resource_name().unwrap_or("*").to_string(),
                        decision,
                    });
                }
                continue;
            }
            for each in specific {
                let decision = each.eval_resource_decision().as_str().to_string();
                if decision != "allowed" {
                    denied.push(Denied {
                        action: action.clone(),
                        resource: each.eval_resource_name().to_string(),
                        decision,
                    });
                }
            }
        }
    }
    if denied.is_empty() {
        return check(
            "permissions",
            Status::Ok,
            format!("{simulated} action(s) the deploy path needs are allowed for {principal}"),
        );
    }
    let mut by_action: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &denied {
        *by_action.entry(d.action.as_str()).or_default() += 1;
    }
    let mut item = check(
        "permissions",
        Status::Missing,
        format!(
            "{} action(s) the deploy path needs are denied for {principal}",
            by_action.len()
        ),
    );
    item.fix = Some(
        "deploy with the environment's deploy role (bootstrap stack output DeployRoleArn), \
         or grant the actions listed on those resources"
            .to_string(),
    );
    item.denied = denied;
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assumed_role_session_is_simulated_as_its_role() {
        assert_eq!(
            principal_arn("arn:aws:sts::210987654321:assumed-role/datasync-dev-deploy/ci-42"),
            Some("arn:aws:iam::210987654321:role/datasync-dev-deploy".to_string())
        );
        assert_eq!(principal_arn("arn:aws:iam::210987654321:user/ops"), None);
        assert_eq!(partition("arn:aws-cn:iam::1:user/x"), "aws-cn");
    }
}
