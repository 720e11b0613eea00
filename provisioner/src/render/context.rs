//! One typed context per stack: everything a template may use, computed here from the
//! validated environment so templates hold no logic beyond loops and conditionals.
//! Rendering is strict: a value missing from a context is an error, never a default.

use serde::Serialize;

use crate::config::model::{InterfaceEndpoint, Settings};
use crate::config::{Environment, Names};

use super::functions::FunctionSpec;

/// What every stack's context carries.
#[derive(Debug, Clone, Serialize)]
pub struct Common {
    pub app: String,
    pub env: String,
    pub stack: String,
    pub stack_name: String,
    pub description: String,
    pub region: String,
    pub account_id: String,
    /// Apply DeletionPolicy / UpdateReplacePolicy Retain to stateful resources.
    pub retain: bool,
    /// Resource tags: app, env, stack, then the environment's own.
    pub tags: Vec<Tag>,
    pub names: Names,
    /// `{app}-{env}-`: export names are `{export_prefix}{stack}-{Output}`.
    pub export_prefix: String,
    /// The environment runs on the AWS emulator (it has an `endpoint_url`): resources the
    /// emulator cannot create are left out of what other resources read.
    pub emulated: bool,
    /// `Retain` where the environment keeps stateful resources, else `Delete`.
    pub stateful_policy: String,
    /// The tags as a CloudFormation list (`[{"Key": .., "Value": ..}]`), JSON-encoded so
    /// any value is safely quoted.
    pub tags_list: String,
    /// The tags as a `{"key": "value"}` map, for resource types that take one.
    pub tags_map: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// The context of one stack, as the template sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum StackContext {
    Network(NetworkContext),
    Data(DataContext),
    Messaging(MessagingContext),
    Security(SecurityContext),
    Compute(ComputeContext),
    Observability(ObservabilityContext),
}

impl StackContext {
    /// The part every stack's context shares.
    pub fn common(&self) -> &Common {
        match self {
            StackContext::Network(c) => &c.common,
            StackContext::Data(c) => &c.common,
            StackContext::Messaging(c) => &c.common,
            StackContext::Security(c) => &c.common,
            StackContext::Compute(c) => &c.common,
            StackContext::Observability(c) => &c.common,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkContext {
    #[serde(flatten)]
    pub common: Common,
    pub vpc_cidr: String,
    pub zones: Vec<Zone>,
    /// One NAT gateway per zone; otherwise all private subnets share the first zone's.
    pub nat_per_zone: bool,
    pub interface_endpoints: Vec<Endpoint>,
    /// TCP port the worker connects to downstream (egress is limited to it and 443).
    pub downstream_port: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct Zone {
    /// `A`, `B`, `C`: suffix of logical ids.
    pub suffix: String,
    pub availability_zone: String,
    /// Zone letter, appended to the region.
    pub letter: String,
    pub private_cidr: String,
    pub public_cidr: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    /// Logical id part, e.g. `Sqs`.
    pub logical: String,
    pub service: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataContext {
    #[serde(flatten)]
    pub common: Common,
    pub billing_mode: String,
    pub read_capacity: Option<u32>,
    pub write_capacity: Option<u32>,
    pub point_in_time_recovery: bool,
    pub secret_store: String,
    /// The `ssm` store's value (emulated environments only).
    pub secret_value: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessagingContext {
    #[serde(flatten)]
    pub common: Common,
    pub visibility_timeout_seconds: u32,
    pub message_retention_seconds: u32,
    pub max_receive_count: u32,
    /// The dead-letter queue keeps messages the longest SQS allows: 14 days.
    pub dlq_retention_seconds: u32,
    pub email_subscriptions: Vec<EmailSubscription>,
}

/// How long the dead-letter queue keeps a message (the SQS maximum, 14 days).
pub const DLQ_RETENTION_SECONDS: u32 = 1_209_600;

/// One e-mail subscription of the alarm topic, with a logical id derived from the
/// address: adding or removing one address never replaces the others' subscriptions.
#[derive(Debug, Clone, Serialize)]
pub struct EmailSubscription {
    pub address: String,
    /// `AlarmEmail<first 12 hex digits of the sha256 of the lowercased address>`.
    pub logical: String,
}

impl EmailSubscription {
    pub fn of(address: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = hex::encode(Sha256::digest(address.to_ascii_lowercase().as_bytes()));
        Self {
            address: address.to_string(),
            logical: format!("AlarmEmail{}", &digest[..12]),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SecurityContext {
    #[serde(flatten)]
    pub common: Common,
    pub functions: Vec<FunctionContext>,
    pub secret_store: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComputeContext {
    #[serde(flatten)]
    pub common: Common,
    pub functions: Vec<FunctionContext>,
    pub log_retention_days: u32,
    pub batch_size: u32,
    pub maximum_batching_window_seconds: u32,
    pub maximum_concurrency: u32,
    pub schedule: String,
    pub throttling_rate_limit: u32,
    pub throttling_burst_limit: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObservabilityContext {
    #[serde(flatten)]
    pub common: Common,
    pub functions: Vec<FunctionContext>,
    pub period_seconds: u32,
    pub dlq_depth: u32,
    /// Alarm when the oldest dead-lettered record is this old: half the dead-letter
    /// queue's retention, so it is seen well before SQS drops it.
    pub dlq_oldest_age_seconds: u32,
    pub oldest_message_age_seconds: u32,
    pub function_errors: u32,
    pub function_throttles: u32,
    pub dynamodb_throttles: u32,
    pub api_5xx: u32,
    pub unauthorized_requests: u32,
    pub downstream_errors: u32,
    /// The reconciler's heartbeat window: three runs of its schedule (a day at most, and
    /// a day for a cron schedule), rounded up to whole minutes.
    pub heartbeat_period_seconds: u64,
    /// The VPC's flow logs, when the environment asks for them.
    pub flow_logs: Option<FlowLogsContext>,
    pub tables: Vec<TableRef>,
    /// Dashboard JSON for `Fn::Sub` (uses `${AWS::Region}` and `${ApiId}`).
    pub dashboard_body: String,
}

/// The VPC's flow logs: what they record, their log group and its retention.
#[derive(Debug, Clone, Serialize)]
pub struct FlowLogsContext {
    pub traffic: String,
    pub log_group: String,
    pub retention_days: u32,
    pub role_name: String,
}

/// A table the observability stack watches.
#[derive(Debug, Clone, Serialize)]
pub struct TableRef {
    /// Logical id part, e.g. `RecordsTable`.
    pub logical: String,
    pub name: String,
}

/// One function as the security, compute and observability stacks see it.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionContext {
    /// `ingest`, `worker`, `reconciler`.
    pub name: String,
    /// `Ingest`, `Worker`, `Reconciler`: logical id part.
    pub logical: String,
    pub description: String,
    pub trigger: String,
    pub function_name: String,
    pub role_name: String,
    pub log_group: String,
    /// Template parameter holding the S3 key of the function's zip.
    pub code_parameter: String,
    pub memory_mb: u32,
    pub timeout_seconds: u32,
    pub architecture: String,
    pub reserved_concurrency: Option<u32>,
    /// Environment variables: values are literal strings, or `!ImportValue`d exports
    /// when `import` is set.
    pub variables: Vec<Variable>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Variable {
    pub name: String,
    /// A literal value, or the export name to import when `import` is true.
    pub value: String,
    pub import: bool,
}

impl Variable {
    fn literal(name: &str, value: impl ToString) -> Self {
        Self {
            name: name.to_string(),
            value: value.to_string(),
            import: false,
        }
    }

    fn import(name: &str, export: String) -> Self {
        Self {
            name: name.to_string(),
            value: export,
            import: true,
        }
    }
}

/// Upper-cases the first letter: `worker` -> `Worker`.
pub fn logical(name: &str) -> String {
    name.split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn common(env: &Environment, stack: &str, description: &str) -> Common {
    let s = &env.settings;
    let mut tags = vec![
        Tag {
            key: "app".into(),
            value: s.app.to_string(),
        },
        Tag {
            key: "env".into(),
            value: env.name.clone(),
        },
        Tag {
            key: "stack".into(),
            value: stack.to_string(),
        },
    ];
    tags.extend(s.tags.iter().map(|(key, value)| Tag {
        key: key.clone(),
        value: value.clone(),
    }));
    let tags_list = serde_json::to_string(
        &tags
            .iter()
            .map(|tag| serde_json::json!({ "Key": tag.key, "Value": tag.value }))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    let tags_map = serde_json::to_string(
        &tags
            .iter()
            .map(|tag| (tag.key.clone(), tag.value.clone()))
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap_or_default();
    Common {
        emulated: s.endpoint_url.is_some(),
        stateful_policy: if s.retain_stateful_resources {
            "Retain"
        } else {
            "Delete"
        }
        .to_string(),
        tags_list,
        tags_map,
        app: s.app.to_string(),
        env: env.name.clone(),
        stack: stack.to_string(),
        stack_name: env.names.stack(stack),
        description: format!("{} ({} {})", description, s.app, env.name),
        region: s.region.to_string(),
        account_id: s.account_id.to_string(),
        retain: s.retain_stateful_resources,
        tags,
        export_prefix: format!("{}-", env.names.prefix),
        names: env.names.clone(),
    }
}

/// Builds the context for `stack`; `None` when no context is defined for that id.
pub fn build(
    env: &Environment,
    stack: &str,
    description: &str,
    functions: &[FunctionSpec],
) -> Option<StackContext> {
    let common = common(env, stack, description);
    let s = &env.settings;
    Some(match stack {
        "network" => StackContext::Network(network(common, s)),
        "data" => StackContext::Data(DataContext {
            common,
            billing_mode: s.tables.billing_mode.as_str().to_string(),
            read_capacity: s.tables.read_capacity,
            write_capacity: s.tables.write_capacity,
            point_in_time_recovery: s.tables.point_in_time_recovery,
            secret_store: s.signing_secret.store.as_str().to_string(),
            secret_value: s.signing_secret.value.clone(),
        }),
        "messaging" => StackContext::Messaging(MessagingContext {
            common,
            visibility_timeout_seconds: s.queue.visibility_timeout_seconds,
            message_retention_seconds: s.queue.message_retention_seconds,
            max_receive_count: s.queue.max_receive_count,
            dlq_retention_seconds: DLQ_RETENTION_SECONDS,
            email_subscriptions: s
                .alarms
                .email_subscriptions
                .iter()
                .map(|e| EmailSubscription::of(e.as_str()))
                .collect(),
        }),
        "security" => StackContext::Security(SecurityContext {
            functions: function_contexts(env, functions),
            secret_store: s.signing_secret.store.as_str().to_string(),
            common,
        }),
        "compute" => StackContext::Compute(ComputeContext {
            functions: function_contexts(env, functions),
            log_retention_days: s.logs.retention_days,
            batch_size: s.queue.batch_size,
            maximum_batching_window_seconds: s.queue.maximum_batching_window_seconds,
            maximum_concurrency: s.queue.maximum_concurrency,
            schedule: s
                .functions
                .reconciler
                .schedule
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            throttling_rate_limit: s.api.throttling_rate_limit,
            throttling_burst_limit: s.api.throttling_burst_limit,
            common,
        }),
        "observability" => StackContext::Observability(ObservabilityContext {
            functions: function_contexts(env, functions),
            tables: vec![
                TableRef {
                    logical: "RecordsTable".into(),
                    name: env.names.records_table.clone(),
                },
                TableRef {
                    logical: "LedgerTable".into(),
                    name: env.names.ledger_table.clone(),
                },
            ],
            dashboard_body: super::dashboard::body(
                &env.names,
                &functions.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
            ),
            period_seconds: s.alarms.period_seconds,
            dlq_depth: s.alarms.dlq_depth,
            dlq_oldest_age_seconds: DLQ_RETENTION_SECONDS / 2,
            oldest_message_age_seconds: s.alarms.oldest_message_age_seconds,
            function_errors: s.alarms.function_errors,
            function_throttles: s.alarms.function_throttles,
            dynamodb_throttles: s.alarms.dynamodb_throttles,
            api_5xx: s.alarms.api_5xx,
            unauthorized_requests: s.alarms.unauthorized_requests,
            downstream_errors: s.alarms.downstream_errors,
            flow_logs: s
                .network
                .flow_logs
                .as_ref()
                .map(|flow_logs| FlowLogsContext {
                    traffic: match flow_logs.traffic {
                        crate::config::model::FlowLogTraffic::All => "ALL",
                        crate::config::model::FlowLogTraffic::Accept => "ACCEPT",
                        crate::config::model::FlowLogTraffic::Reject => "REJECT",
                    }
                    .to_string(),
                    log_group: format!("/aws/vpc/{}-flow-logs", env.names.prefix),
                    retention_days: flow_logs.retention_days,
                    role_name: format!("{}-flow-logs", env.names.prefix),
                }),
            heartbeat_period_seconds: heartbeat_period_seconds(
                s.functions
                    .reconciler
                    .schedule
                    .as_ref()
                    .and_then(|schedule| schedule.interval_seconds()),
            ),
            common,
        }),
        _ => return None,
    })
}

/// Three runs of the schedule, at least five minutes and at most a day (CloudWatch's
/// longest evaluation window for one period), in whole minutes; a day when the schedule
/// is a cron expression (its interval is not fixed).
fn heartbeat_period_seconds(interval_seconds: Option<u64>) -> u64 {
    let window = interval_seconds.map_or(86_400, |interval| interval * 3);
    window.div_ceil(60).clamp(5, 1_440) * 60
}

fn network(common: Common, s: &Settings) -> NetworkContext {
    let zones = s
        .network
        .subnets
        .iter()
        .map(|zone| Zone {
            suffix: zone.zone.to_ascii_uppercase().to_string(),
            availability_zone: format!("{}{}", s.region, zone.zone),
            letter: zone.zone.to_string(),
            private_cidr: zone.private.to_string(),
            public_cidr: zone.public.to_string(),
        })
        .collect();
    let interface_endpoints = s
        .network
        .interface_endpoints
        .iter()
        .map(|endpoint: &InterfaceEndpoint| Endpoint {
            logical: logical(endpoint.service()),
            service: endpoint.service().to_string(),
        })
        .collect();
    NetworkContext {
        common,
        vpc_cidr: s.network.vpc_cidr.to_string(),
        zones,
        nat_per_zone: s.network.high_availability,
        interface_endpoints,
        downstream_port: s.downstream.url.port(),
    }
}

fn function_contexts(env: &Environment, functions: &[FunctionSpec]) -> Vec<FunctionContext> {
    let s = &env.settings;
    let names = &env.names;
    functions
        .iter()
        .filter_map(|spec| {
            let settings = s
                .functions
                .iter()
                .into_iter()
                .find(|(name, _)| *name == spec.name)?
                .1;
            let mut variables = vec![
                Variable::literal("APP_NAME", &s.app),
                Variable::literal("ENV_NAME", &env.name),
                Variable::literal("METRICS_NAMESPACE", &names.metrics_namespace),
                Variable::literal("RUST_LOG", "info"),
            ];
            variables.extend(function_variables(env, &spec.name));
            Some(FunctionContext {
                logical: logical(&spec.name),
                description: spec.description.clone(),
                trigger: spec.trigger.clone(),
                function_name: names.function(&spec.name),
                role_name: names.role(&spec.name),
                log_group: names.log_group(&spec.name),
                code_parameter: format!("{}CodeKey", logical(&spec.name)),
                memory_mb: settings.memory_mb,
                timeout_seconds: settings.timeout_seconds,
                architecture: settings.architecture.as_str().to_string(),
                reserved_concurrency: settings.reserved_concurrency,
                variables,
                name: spec.name.clone(),
            })
        })
        .collect()
}

/// The variables each function reads (see functions/README.md).
fn function_variables(env: &Environment, function: &str) -> Vec<Variable> {
    let s = &env.settings;
    let names = &env.names;
    let queue_url = || Variable::import("QUEUE_URL", names.export("messaging", "QueueUrl"));
    let ledger = || Variable::literal("LEDGER_TABLE", &names.ledger_table);
    // A lease outlives the worker's whole invocation, so a live claim is never re-driven.
    let lease = || Variable::literal("LEASE_SECONDS", s.functions.worker.timeout_seconds + 30);
    match function {
        "ingest" => vec![
            queue_url(),
            Variable::literal("SIGNING_SECRET_STORE", s.signing_secret.store.as_str()),
            Variable::literal(
                "SIGNING_SECRET_NAME",
                match s.signing_secret.store {
                    crate::config::model::SecretStore::Secretsmanager => &names.signing_secret,
                    crate::config::model::SecretStore::Ssm => &names.signing_parameter,
                },
            ),
            Variable::literal("MAX_RECORDS_PER_REQUEST", s.api.max_records_per_request),
            Variable::literal("MAX_BODY_BYTES", s.api.max_body_bytes),
            // Accepted records are entered in the ledger before they are queued; one no
            // worker claimed within a lease is re-driven by the reconciler.
            ledger(),
            lease(),
            Variable::literal("LEDGER_TTL_DAYS", s.tables.ledger_ttl_days),
        ],
        "worker" => vec![
            Variable::literal("RECORDS_TABLE", &names.records_table),
            ledger(),
            Variable::literal("DOWNSTREAM_URL", &s.downstream.url),
            Variable::literal(
                "DOWNSTREAM_RATE_LIMIT_PER_SECOND",
                s.downstream.rate_limit_per_second,
            ),
            Variable::literal("DOWNSTREAM_BURST", s.downstream.burst),
            // Each worker instance takes 1/MAX_INSTANCES of the rate and burst, so the
            // downstream sees the configured limit however far the event source scales.
            Variable::literal("MAX_INSTANCES", s.queue.maximum_concurrency),
            Variable::literal("DOWNSTREAM_TIMEOUT_MS", s.downstream.timeout_ms),
            lease(),
            Variable::literal("LEDGER_TTL_DAYS", s.tables.ledger_ttl_days),
        ],
        "reconciler" => vec![
            ledger(),
            queue_url(),
            Variable::import("DLQ_URL", names.export("messaging", "DeadLetterQueueUrl")),
            lease(),
            Variable::literal("MAX_REDRIVE_PER_RUN", 500),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::logical;

    #[test]
    fn logical_ids_are_pascal_case() {
        assert_eq!(logical("worker"), "Worker");
        assert_eq!(logical("secretsmanager"), "Secretsmanager");
        assert_eq!(logical("dead-letter"), "DeadLetter");
    }
}
