//! The environment file format: what `environments/<env>.yaml` may contain once the
//! `extends` chain is merged. Unknown keys are errors, never silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::{AccountId, AppName, Cidr, DurationText, Email, HttpUrl, Region, Schedule};

/// The format version this provisioner reads.
pub const FORMAT_VERSION: u32 = 1;

/// One environment's settings, fully merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Format version of the environment files; see [`FORMAT_VERSION`].
    pub version: u32,
    pub app: AppName,
    pub account_id: AccountId,
    pub region: Region,
    /// Sends every AWS client to this endpoint (an emulator) instead of AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<HttpUrl>,
    pub network: Network,
    pub functions: Functions,
    pub queue: Queue,
    pub tables: Tables,
    pub logs: Logs,
    pub alarms: Alarms,
    pub api: Api,
    pub downstream: Downstream,
    pub signing_secret: SigningSecret,
    /// Where `provisioner up` serves the platform on this machine (emulated
    /// environments only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_host: Option<FunctionHost>,
    /// Keep tables, queues, keys, buckets and log groups when their stack is deleted
    /// or they are replaced (DeletionPolicy / UpdateReplacePolicy Retain).
    pub retain_stateful_resources: bool,
    /// How `provisioner decommission` paces the end of the environment.
    #[serde(default)]
    pub decommission: Decommission,
    /// How CI deploys this environment (the bootstrap stack's deploy role); without it
    /// the environment has no deploy role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<super::ci::Ci>,
    /// Extra tags on every resource (`app`, `env` and `stack` are always set).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub vpc_cidr: Cidr,
    /// One NAT gateway per availability zone when true, one shared otherwise.
    pub high_availability: bool,
    pub subnets: Vec<ZoneSubnets>,
    #[serde(default)]
    pub interface_endpoints: Vec<InterfaceEndpoint>,
    /// VPC flow logs into a log group of the observability stack (encrypted with the
    /// environment's key); none without this section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_logs: Option<FlowLogs>,
}

/// What the VPC's flow logs record and how long they are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowLogs {
    /// `ALL`, `ACCEPT` or `REJECT` traffic.
    #[serde(default = "default_flow_log_traffic")]
    pub traffic: FlowLogTraffic,
    /// Days the flow log group keeps them (one of CloudWatch Logs' retention values).
    pub retention_days: u32,
}

/// Which traffic a flow log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FlowLogTraffic {
    All,
    Accept,
    Reject,
}

fn default_flow_log_traffic() -> FlowLogTraffic {
    FlowLogTraffic::All
}

/// The private and public subnet of one availability zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSubnets {
    /// Zone letter: `a` becomes `<region>a`.
    pub zone: char,
    pub private: Cidr,
    pub public: Cidr,
}

/// AWS services reachable through an interface VPC endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceEndpoint {
    Sqs,
    Secretsmanager,
    Ssm,
    Logs,
    Kms,
    Sts,
    Monitoring,
}

impl InterfaceEndpoint {
    /// The service's name in `com.amazonaws.<region>.<service>`.
    pub fn service(self) -> &'static str {
        match self {
            Self::Sqs => "sqs",
            Self::Secretsmanager => "secretsmanager",
            Self::Ssm => "ssm",
            Self::Logs => "logs",
            Self::Kms => "kms",
            Self::Sts => "sts",
            Self::Monitoring => "monitoring",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Functions {
    pub ingest: FunctionSettings,
    pub worker: FunctionSettings,
    pub reconciler: FunctionSettings,
}

impl Functions {
    /// Each function's name and settings, in manifest order.
    pub fn iter(&self) -> [(&'static str, &FunctionSettings); 3] {
        [
            ("ingest", &self.ingest),
            ("worker", &self.worker),
            ("reconciler", &self.reconciler),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSettings {
    pub memory_mb: u32,
    pub timeout_seconds: u32,
    pub architecture: Architecture,
    /// Reserved concurrent executions; unset means the account's unreserved pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_concurrency: Option<u32>,
    /// Only for the reconciler: how often it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    #[serde(rename = "x86_64")]
    X86_64,
    Arm64,
}

impl Architecture {
    /// The value CloudFormation's `Architectures` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    pub visibility_timeout_seconds: u32,
    pub max_receive_count: u32,
    pub message_retention_seconds: u32,
    pub batch_size: u32,
    pub maximum_batching_window_seconds: u32,
    /// Most concurrent worker invocations the queue's event source starts.
    pub maximum_concurrency: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    pub billing_mode: BillingMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_capacity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_capacity: Option<u32>,
    pub point_in_time_recovery: bool,
    pub ledger_ttl_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BillingMode {
    PayPerRequest,
    Provisioned,
}

impl BillingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PayPerRequest => "PAY_PER_REQUEST",
            Self::Provisioned => "PROVISIONED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    pub retention_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alarms {
    pub period_seconds: u32,
    /// Alarm when the dead-letter queue holds more messages than this.
    pub dlq_depth: u32,
    pub oldest_message_age_seconds: u32,
    pub function_errors: u32,
    pub function_throttles: u32,
    pub dynamodb_throttles: u32,
    pub api_5xx: u32,
    /// Alarm when ingest refuses more requests than this per period for their
    /// signature or credentials (a misconfigured source, or someone probing).
    #[serde(default = "default_unauthorized_requests")]
    pub unauthorized_requests: u32,
    /// Alarm when the worker's pushes fail more often than this per period.
    #[serde(default = "default_downstream_errors")]
    pub downstream_errors: u32,
    /// Minutes CloudFormation keeps watching the deploy-health alarm (the rollback
    /// trigger) after a stack update finishes, rolling the update back if it fires
    /// (0 to 180; 0 watches only during the update).
    #[serde(default = "default_rollback_monitoring_minutes")]
    pub rollback_monitoring_minutes: u32,
    #[serde(default)]
    pub email_subscriptions: Vec<Email>,
}

/// The measured pauses of a decommission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decommission {
    /// How long ingest must have seen no request after traffic stopped before compute
    /// is removed (default 15m).
    #[serde(default = "default_quiet_window")]
    pub quiet_window: DurationText,
    /// How long the data is kept after compute is removed, before it may be deleted
    /// (default 7d).
    #[serde(default = "default_hold")]
    pub hold: DurationText,
}

impl Default for Decommission {
    fn default() -> Self {
        Self {
            quiet_window: default_quiet_window(),
            hold: default_hold(),
        }
    }
}

fn default_quiet_window() -> DurationText {
    DurationText::try_from("15m".to_string()).expect("a valid duration")
}

fn default_hold() -> DurationText {
    DurationText::try_from("7d".to_string()).expect("a valid duration")
}

fn default_rollback_monitoring_minutes() -> u32 {
    5
}

fn default_unauthorized_requests() -> u32 {
    10
}

fn default_downstream_errors() -> u32 {
    20
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub throttling_rate_limit: u32,
    pub throttling_burst_limit: u32,
    pub max_records_per_request: u32,
    pub max_body_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Downstream {
    pub url: HttpUrl,
    pub rate_limit_per_second: u32,
    pub burst: u32,
    pub timeout_ms: u32,
}

/// The function host's ports on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionHost {
    /// The HTTP route in front of ingest.
    pub http_port: u16,
    /// Runs the local downstream target on this port; `downstream.url` points at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSecret {
    pub store: SecretStore,
    /// The parameter's value; only for the `ssm` store of an emulated environment,
    /// where no secret generator exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretStore {
    /// A generated Secrets Manager secret, encrypted with the environment's key.
    Secretsmanager,
    /// An SSM String parameter (for emulated environments).
    Ssm,
}

impl SecretStore {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secretsmanager => "secretsmanager",
            Self::Ssm => "ssm",
        }
    }
}
