//! Every AWS resource name derived from the app and environment names, in one place,
//! so templates, the deploy engine and the functions agree, and limits are checked once.

use serde::Serialize;

/// Names of one environment's resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Names {
    /// `{app}-{env}`: the prefix of every name below.
    pub prefix: String,
    pub records_table: String,
    pub ledger_table: String,
    pub queue: String,
    pub dead_letter_queue: String,
    /// Where the reconciler's asynchronous invocations go when they fail for good.
    pub reconciler_failures_queue: String,
    pub alarm_topic: String,
    pub dashboard: String,
    /// The composite alarm every stack update carries as its rollback trigger and the
    /// bake watches: any alarm that says a deploy broke the pipeline.
    pub deploy_health_alarm: String,
    pub kms_alias: String,
    pub http_api: String,
    pub schedule_rule: String,
    pub security_group: String,
    pub endpoint_security_group: String,
    pub permissions_boundary: String,
    pub signing_secret: String,
    pub signing_parameter: String,
    pub metrics_namespace: String,
    /// The role CI assumes (through GitHub's OIDC provider) to deploy this environment.
    pub deploy_role: String,
    /// The read-only role the runs of `ci.promotion_readers` assume to promote from here.
    pub promotion_source_role: String,
    /// What the bootstrap stack of this account and region holds (shared by every
    /// environment of the app deployed there).
    pub bootstrap: BootstrapNames,
}

/// The bootstrap stack of one app in one account and region: the artifact bucket, the
/// deployments table and the CloudFormation execution role every change set runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootstrapNames {
    /// `{app}-bootstrap`.
    pub stack: String,
    /// `{app}-artifacts-{account_id}-{region}`.
    pub artifact_bucket: String,
    /// `{app}-deployments`: per environment the deploy lock, the state and the history.
    pub deployments_table: String,
    /// `{app}-cfn-execution-{region}` (IAM names are global to the account).
    pub execution_role: String,
    /// `arn:aws:iam::{account_id}:role/{execution_role}`.
    pub execution_role_arn: String,
    /// `alias/{app}-artifacts`.
    pub kms_alias: String,
}

impl BootstrapNames {
    pub fn new(app: &str, account_id: &str, region: &str) -> Self {
        let execution_role = format!("{app}-cfn-execution-{region}");
        Self {
            stack: format!("{app}-bootstrap"),
            artifact_bucket: format!("{app}-artifacts-{account_id}-{region}"),
            deployments_table: format!("{app}-deployments"),
            execution_role_arn: format!("arn:aws:iam::{account_id}:role/{execution_role}"),
            execution_role,
            kms_alias: format!("alias/{app}-artifacts"),
        }
    }
}

/// A name and the limit AWS puts on it, for validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitedName {
    pub what: String,
    pub name: String,
    pub max_len: usize,
}

impl Names {
    pub fn new(app: &str, env: &str, account_id: &str, region: &str) -> Self {
        let prefix = format!("{app}-{env}");
        Self {
            records_table: format!("{prefix}-records"),
            ledger_table: format!("{prefix}-ledger"),
            queue: format!("{prefix}-records"),
            dead_letter_queue: format!("{prefix}-records-dlq"),
            reconciler_failures_queue: format!("{prefix}-reconciler-failures"),
            alarm_topic: format!("{prefix}-alarms"),
            dashboard: prefix.clone(),
            deploy_health_alarm: format!("{prefix}-deploy-health"),
            kms_alias: format!("alias/{prefix}-data"),
            http_api: format!("{prefix}-ingest"),
            schedule_rule: format!("{prefix}-reconciler-schedule"),
            security_group: format!("{prefix}-functions"),
            endpoint_security_group: format!("{prefix}-endpoints"),
            permissions_boundary: format!("{prefix}-boundary"),
            signing_secret: format!("{prefix}-ingest-signing"),
            signing_parameter: format!("/{app}/{env}/ingest/signing-secret"),
            bootstrap: BootstrapNames::new(app, account_id, region),
            metrics_namespace: format!("{app}/{env}"),
            deploy_role: format!("{prefix}-deploy"),
            promotion_source_role: format!("{prefix}-promotion-source"),
            prefix,
        }
    }

    pub fn stack(&self, stack: &str) -> String {
        format!("{}-{stack}", self.prefix)
    }

    pub fn function(&self, function: &str) -> String {
        format!("{}-{function}", self.prefix)
    }

    pub fn role(&self, function: &str) -> String {
        format!("{}-{function}-role", self.prefix)
    }

    pub fn log_group(&self, function: &str) -> String {
        format!("/aws/lambda/{}", self.function(function))
    }

    /// Cross-stack export name of `output` in `stack`.
    pub fn export(&self, stack: &str, output: &str) -> String {
        format!("{}-{stack}-{output}", self.prefix)
    }

    /// Every name with a length limit, with the limit.
    pub fn limited(&self, stacks: &[&str], functions: &[&str]) -> Vec<LimitedName> {
        let limit = |what: &str, name: &str, max_len| LimitedName {
            what: what.to_string(),
            name: name.to_string(),
            max_len,
        };
        let mut names = vec![
            limit("DynamoDB table name", &self.records_table, 255),
            limit("DynamoDB table name", &self.ledger_table, 255),
            limit("SQS queue name", &self.queue, 80),
            limit("SQS queue name", &self.dead_letter_queue, 80),
            limit("SQS queue name", &self.reconciler_failures_queue, 80),
            limit("SNS topic name", &self.alarm_topic, 256),
            limit("CloudWatch dashboard name", &self.dashboard, 255),
            limit("CloudWatch alarm name", &self.deploy_health_alarm, 255),
            limit("KMS alias", &self.kms_alias, 256),
            limit("EventBridge rule name", &self.schedule_rule, 64),
            limit("IAM managed policy name", &self.permissions_boundary, 128),
            limit("Secrets Manager secret name", &self.signing_secret, 512),
            limit("S3 bucket name", &self.bootstrap.artifact_bucket, 63),
            limit("IAM role name", &self.bootstrap.execution_role, 64),
            limit("IAM role name", &self.deploy_role, 64),
            limit("IAM role name", &self.promotion_source_role, 64),
            limit("CloudFormation stack name", &self.bootstrap.stack, 128),
        ];
        for stack in stacks {
            names.push(limit("CloudFormation stack name", &self.stack(stack), 128));
        }
        for function in functions {
            names.push(limit("Lambda function name", &self.function(function), 64));
            names.push(limit("IAM role name", &self.role(function), 64));
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn names_share_the_app_and_environment_prefix() {
        let names = Names::new("datasync", "prod", "456789012345", "eu-west-1");
        assert_eq!(names.records_table, "datasync-prod-records");
        assert_eq!(names.dead_letter_queue, "datasync-prod-records-dlq");
        assert_eq!(names.function("worker"), "datasync-prod-worker");
        assert_eq!(
            names.log_group("worker"),
            "/aws/lambda/datasync-prod-worker"
        );
        assert_eq!(names.export("data", "KeyArn"), "datasync-prod-data-KeyArn");
        assert_eq!(
            names.bootstrap.artifact_bucket,
            "datasync-artifacts-456789012345-eu-west-1"
        );
        assert_eq!(names.bootstrap.stack, "datasync-bootstrap");
        assert_eq!(
            names.bootstrap.execution_role_arn,
            "arn:aws:iam::456789012345:role/datasync-cfn-execution-eu-west-1"
        );
    }
}
