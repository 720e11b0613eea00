//! Checks on a parsed environment that types alone cannot express: ranges AWS enforces,
//! relations between settings, CIDR layout and derived name lengths.

use super::layers::KeyPath;
use super::model::{BillingMode, SecretStore, Settings};
use super::names::Names;
use super::types::Cidr;

/// A problem found at a key path, before it is attributed to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: KeyPath,
    pub message: String,
    pub help: String,
}

/// Retention periods CloudWatch Logs accepts, in days.
pub const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Lambda's limits.
pub const MEMORY_MB: (u32, u32) = (128, 10_240);
pub const TIMEOUT_SECONDS: (u32, u32) = (1, 900);
/// An HTTP API integration gives up after 30 seconds, whatever the function's timeout.
pub const HTTP_INTEGRATION_TIMEOUT_SECONDS: u32 = 30;
/// Lambda's synchronous request payload limit (6 MB), less room for the event envelope.
pub const MAX_BODY_BYTES: u32 = 6_000_000;

struct Collector {
    findings: Vec<Finding>,
}

impl Collector {
    fn push(&mut self, key: KeyPath, message: impl Into<String>, help: impl Into<String>) {
        self.findings.push(Finding {
            key,
            message: message.into(),
            help: help.into(),
        });
    }

    fn range(&mut self, key: KeyPath, value: u32, (low, high): (u32, u32), what: &str) {
        if value < low || value > high {
            self.push(
                key,
                format!("{value} is outside {what}'s range {low}-{high}"),
                format!("set a value between {low} and {high}"),
            );
        }
    }
}

fn key(path: &str) -> KeyPath {
    KeyPath::parse(path)
}

/// Every problem with `settings` for environment `env`.
pub fn validate(env: &str, settings: &Settings, stacks: &[&str]) -> Vec<Finding> {
    let mut c = Collector {
        findings: Vec::new(),
    };
    if settings.version != super::model::FORMAT_VERSION {
        c.push(
            key("version"),
            format!(
                "format version {} is not supported; this provisioner reads version {}",
                settings.version,
                super::model::FORMAT_VERSION
            ),
            "upgrade the provisioner, or set `version: 1` and migrate the file",
        );
    }
    network(&mut c, settings);
    functions(&mut c, settings);
    queue(&mut c, settings);
    tables(&mut c, settings);
    observability(&mut c, settings);
    edge(&mut c, settings);
    tags(&mut c, settings);
    ci(&mut c, settings);
    names(&mut c, env, settings, stacks);
    c.findings
}

fn ci(c: &mut Collector, s: &Settings) {
    let Some(ci) = &s.ci else { return };
    if !ci.promotion_readers.is_empty() && ci.deploy_from.is_none() {
        c.push(
            key("ci.promotion_readers"),
            "promotion readers are set, but the environment has no `ci.deploy_from`: CI \
             does not deploy it, so nothing would be promoted from it",
            "set `ci.deploy_from` (e.g. environment:dev), or remove `ci.promotion_readers`",
        );
    }
    if let Some(own) = &ci.deploy_from {
        if ci.promotion_readers.contains(own) {
            c.push(
                key("ci.promotion_readers"),
                format!(
                    "`{}` is the environment's own `deploy_from`: its deploy role reads it already",
                    String::from(own.clone())
                ),
                "list only the GitHub environments of the environments this one is promoted to \
                 (e.g. environment:staging)",
            );
        }
    }
    if let Some(account) = ci.github.oidc_provider.existing_account() {
        if account != s.account_id.as_str() {
            c.push(
                key("ci.github.oidc_provider"),
                format!(
                    "the OIDC provider is in account {account}, but this environment deploys \
                     to account {}",
                    s.account_id
                ),
                "use the ARN of the provider in this environment's account, or `create`",
            );
        }
    }
}

fn network(c: &mut Collector, s: &Settings) {
    let vpc = s.network.vpc_cidr;
    if !(16..=28).contains(&vpc.prefix_len()) {
        c.push(
            key("network.vpc_cidr"),
            format!(
                "{vpc} has a /{} prefix; a VPC must be between /16 and /28",
                vpc.prefix_len()
            ),
            "use a block such as 10.20.0.0/16",
        );
    }
    let count = s.network.subnets.len();
    if !(2..=3).contains(&count) {
        c.push(
            key("network.subnets"),
            format!("{count} availability zones listed; the platform spreads over 2 or 3"),
            "list two or three zones, each with a private and a public subnet",
        );
    }
    let mut blocks: Vec<(KeyPath, Cidr)> = Vec::new();
    for (index, zone) in s.network.subnets.iter().enumerate() {
        let at = key("network.subnets").index(index);
        if !('a'..='f').contains(&zone.zone) {
            c.push(
                at.clone().key("zone"),
                format!("`{}` is not an availability zone letter", zone.zone),
                format!("use a letter a-f; zone `a` means {}a", s.region),
            );
        }
        if s.network.subnets[..index]
            .iter()
            .any(|earlier| earlier.zone == zone.zone)
        {
            c.push(
                at.clone().key("zone"),
                format!("zone `{}` is listed twice", zone.zone),
                "give each subnet pair its own zone letter",
            );
        }
        for (field, block) in [("private", zone.private), ("public", zone.public)] {
            let at = at.clone().key(field);
            if !vpc.contains(&block) {
                c.push(
                    at.clone(),
                    format!("{block} is outside the VPC block {vpc}"),
                    format!("choose a block inside {vpc}"),
                );
            }
            if !(16..=28).contains(&block.prefix_len()) {
                c.push(
                    at.clone(),
                    format!(
                        "{block} has a /{} prefix; a subnet must be between /16 and /28",
                        block.prefix_len()
                    ),
                    "use e.g. a /19 for private and a /24 for public subnets",
                );
            }
            if let Some((other, _)) = blocks.iter().find(|(_, earlier)| earlier.overlaps(&block)) {
                c.push(
                    at.clone(),
                    format!("{block} overlaps {other}"),
                    "give every subnet its own, non-overlapping block",
                );
            }
            blocks.push((at, block));
        }
    }
    let mut endpoints = s.network.interface_endpoints.clone();
    endpoints.sort();
    if endpoints.windows(2).any(|pair| pair[0] == pair[1]) {
        c.push(
            key("network.interface_endpoints"),
            "an interface endpoint is listed twice",
            "list each service once",
        );
    }
}

fn functions(c: &mut Collector, s: &Settings) {
    for (name, function) in s.functions.iter() {
        let at = key("functions").key(name);
        c.range(
            at.clone().key("memory_mb"),
            function.memory_mb,
            MEMORY_MB,
            "Lambda memory (MB)",
        );
        c.range(
            at.clone().key("timeout_seconds"),
            function.timeout_seconds,
            TIMEOUT_SECONDS,
            "Lambda timeout (seconds)",
        );
        match function.reserved_concurrency {
            Some(0) => c.push(
                at.clone().key("reserved_concurrency"),
                format!("a reserved concurrency of 0 stops `{name}` from ever running"),
                "set at least 1 (or remove the key to use the account's unreserved pool)",
            ),
            Some(reserved) if name == "worker" && reserved < s.queue.maximum_concurrency => c.push(
                at.clone().key("reserved_concurrency"),
                format!(
                    "{reserved} is below the queue event source's maximum concurrency ({}): the event source would be throttled by Lambda instead of limiting itself",
                    s.queue.maximum_concurrency
                ),
                "raise functions.worker.reserved_concurrency to at least queue.maximum_concurrency, or lower queue.maximum_concurrency",
            ),
            _ => {}
        }
        if function.schedule.is_some() && name != "reconciler" {
            c.push(
                at.clone().key("schedule"),
                format!("`{name}` is not run on a schedule; only the reconciler is"),
                "remove `schedule` here",
            );
        }
    }
    if s.functions.reconciler.schedule.is_none() {
        c.push(
            key("functions.reconciler.schedule"),
            "the reconciler needs a schedule",
            "set e.g. `schedule: rate(5 minutes)`",
        );
    }
    let ingest_timeout = s.functions.ingest.timeout_seconds;
    if ingest_timeout > HTTP_INTEGRATION_TIMEOUT_SECONDS {
        c.push(
            key("functions.ingest.timeout_seconds"),
            format!(
                "{ingest_timeout} s is longer than the HTTP API's {HTTP_INTEGRATION_TIMEOUT_SECONDS} s integration timeout; callers would see 503s while the function still runs"
            ),
            format!("set at most {HTTP_INTEGRATION_TIMEOUT_SECONDS}"),
        );
    }
}

fn queue(c: &mut Collector, s: &Settings) {
    let q = &s.queue;
    let worker_timeout = s.functions.worker.timeout_seconds;
    c.range(
        key("queue.visibility_timeout_seconds"),
        q.visibility_timeout_seconds,
        (0, 43_200),
        "SQS visibility timeout (seconds)",
    );
    let needed = worker_timeout.saturating_mul(6);
    if q.visibility_timeout_seconds < needed {
        c.push(
            key("queue.visibility_timeout_seconds"),
            format!(
                "{} s is shorter than 6x the worker timeout ({worker_timeout} s); messages would reappear while still being processed",
                q.visibility_timeout_seconds
            ),
            format!("set it to at least {needed} (AWS's guidance for SQS event sources), or lower functions.worker.timeout_seconds"),
        );
    }
    c.range(
        key("queue.max_receive_count"),
        q.max_receive_count,
        (1, 1_000),
        "maxReceiveCount",
    );
    c.range(
        key("queue.message_retention_seconds"),
        q.message_retention_seconds,
        (60, 1_209_600),
        "SQS message retention (seconds)",
    );
    let max_batch = if q.maximum_batching_window_seconds == 0 {
        10
    } else {
        10_000
    };
    c.range(
        key("queue.batch_size"),
        q.batch_size,
        (1, max_batch),
        "SQS batch size",
    );
    c.range(
        key("queue.maximum_batching_window_seconds"),
        q.maximum_batching_window_seconds,
        (0, 300),
        "batching window (seconds)",
    );
    c.range(
        key("queue.maximum_concurrency"),
        q.maximum_concurrency,
        (2, 1_000),
        "SQS event source maximum concurrency",
    );
}

fn tables(c: &mut Collector, s: &Settings) {
    let t = &s.tables;
    match t.billing_mode {
        BillingMode::Provisioned => {
            for (field, value) in [
                ("read_capacity", t.read_capacity),
                ("write_capacity", t.write_capacity),
            ] {
                match value {
                    None => c.push(
                        key("tables").key(field),
                        format!("PROVISIONED billing needs `{field}`"),
                        format!("set `{field}` (capacity units, at least 1) or use billing_mode: PAY_PER_REQUEST"),
                    ),
                    Some(0) => c.push(
                        key("tables").key(field),
                        "capacity must be at least 1",
                        "set 1 or more capacity units",
                    ),
                    Some(_) => {}
                }
            }
        }
        BillingMode::PayPerRequest => {
            for (field, value) in [
                ("read_capacity", t.read_capacity),
                ("write_capacity", t.write_capacity),
            ] {
                if value.is_some() {
                    c.push(
                        key("tables").key(field),
                        format!("`{field}` only applies to PROVISIONED billing"),
                        format!("remove `{field}`, or set billing_mode: PROVISIONED"),
                    );
                }
            }
        }
    }
    c.range(
        key("tables.ledger_ttl_days"),
        t.ledger_ttl_days,
        (1, 3_650),
        "ledger TTL (days)",
    );
}

fn retention(c: &mut Collector, days: u32, path: &str) {
    if !LOG_RETENTION_DAYS.contains(&days) {
        let nearest = LOG_RETENTION_DAYS
            .iter()
            .min_by_key(|allowed| allowed.abs_diff(days))
            .copied()
            .unwrap_or(30);
        c.push(
            key(path),
            format!("CloudWatch Logs does not accept a retention of {days} days"),
            format!(
                "use one of {} (nearest: {nearest})",
                LOG_RETENTION_DAYS
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
}

fn observability(c: &mut Collector, s: &Settings) {
    retention(c, s.logs.retention_days, "logs.retention_days");
    if let Some(flow_logs) = &s.network.flow_logs {
        retention(
            c,
            flow_logs.retention_days,
            "network.flow_logs.retention_days",
        );
    }
    let period = s.alarms.period_seconds;
    if !(period == 10 || period == 30 || (period >= 60 && period % 60 == 0 && period <= 86_400)) {
        c.push(
            key("alarms.period_seconds"),
            format!("{period} s is not an alarm period CloudWatch accepts"),
            "use 10, 30, or a multiple of 60 up to 86400",
        );
    }
    c.range(
        key("alarms.rollback_monitoring_minutes"),
        s.alarms.rollback_monitoring_minutes,
        (0, 180),
        "rollback monitoring time (minutes)",
    );
}

fn edge(c: &mut Collector, s: &Settings) {
    let api = &s.api;
    if api.throttling_rate_limit == 0 || api.throttling_burst_limit == 0 {
        c.push(
            key("api"),
            "a throttling limit of 0 refuses every request",
            "set throttling_rate_limit and throttling_burst_limit to at least 1",
        );
    }
    c.range(
        key("api.max_records_per_request"),
        api.max_records_per_request,
        (1, 10_000),
        "records per request",
    );
    c.range(
        key("api.max_body_bytes"),
        api.max_body_bytes,
        (1_024, MAX_BODY_BYTES),
        "request body size (bytes)",
    );
    let d = &s.downstream;
    if s.endpoint_url.is_none() && !d.url.as_str().starts_with("https://") {
        c.push(
            key("downstream.url"),
            format!(
                "{} is not https: records (personal data) would cross the network in clear text, and the worker's credentials with them",
                d.url
            ),
            "use the target's https:// address (plain http is accepted only for emulated environments, which have endpoint_url)",
        );
    }
    if d.rate_limit_per_second == 0 {
        c.push(
            key("downstream.rate_limit_per_second"),
            "a rate limit of 0 would never push anything downstream",
            "set at least 1 request per second",
        );
    }
    if d.burst < 1 {
        c.push(
            key("downstream.burst"),
            "a burst of 0 would never push anything",
            "set at least 1",
        );
    } else if d.burst < s.queue.maximum_concurrency {
        c.push(
            key("downstream.burst"),
            format!(
                "a burst of {} is shared by up to {} worker instances (queue.maximum_concurrency), each of which needs at least 1, so the downstream could see bursts of {}",
                d.burst, s.queue.maximum_concurrency, s.queue.maximum_concurrency
            ),
            "raise downstream.burst to at least queue.maximum_concurrency, or lower queue.maximum_concurrency",
        );
    }
    let worker_ms = s.functions.worker.timeout_seconds.saturating_mul(1_000);
    if d.timeout_ms == 0 || d.timeout_ms >= worker_ms {
        c.push(
            key("downstream.timeout_ms"),
            format!(
                "{} ms must be above 0 and below the worker timeout ({worker_ms} ms)",
                d.timeout_ms
            ),
            "leave the worker time to retry: e.g. a fifth of its timeout",
        );
    }
    match (s.signing_secret.store, &s.signing_secret.value, &s.endpoint_url) {
        (SecretStore::Secretsmanager, Some(_), _) => c.push(
            key("signing_secret.value"),
            "a Secrets Manager signing secret is generated, never written in a file",
            "remove `value`",
        ),
        (SecretStore::Ssm, Some(_), None) => c.push(
            key("signing_secret.value"),
            "a signing key written in a file is only allowed for an emulated environment (one with endpoint_url)",
            "use `store: secretsmanager` so the key is generated and kept secret",
        ),
        (SecretStore::Ssm, None, _) => c.push(
            key("signing_secret"),
            "the `ssm` store needs the parameter's `value`",
            "set `value`, or use `store: secretsmanager` (generated)",
        ),
        _ => {}
    }
    if let Some(host) = &s.function_host {
        if s.endpoint_url.is_none() {
            c.push(
                key("function_host"),
                "the function host serves emulated environments only",
                "remove function_host, or add an endpoint_url pointing at the emulator",
            );
        }
        let mut ports = vec![("function_host.http_port", host.http_port)];
        if let Some(port) = host.downstream_port {
            ports.push(("function_host.downstream_port", port));
            if s.downstream.url.port() != port || !s.downstream.url.is_loopback() {
                c.push(
                    key("downstream.url"),
                    format!("{} is not the local downstream target on port {port}", s.downstream.url),
                    format!("set downstream.url to http://127.0.0.1:{port}, or remove function_host.downstream_port"),
                );
            }
        }
        if let Some(url) = &s.endpoint_url {
            ports.push(("endpoint_url", url.port()));
        }
        for (index, (name, port)) in ports.iter().enumerate() {
            if *port < 1024 {
                c.push(
                    key(name),
                    format!("port {port} needs root"),
                    "use a port from 1024 up",
                );
            }
            if let Some((other, _)) = ports[..index].iter().find(|(_, earlier)| earlier == port) {
                c.push(
                    key(name),
                    format!("port {port} is already used by {other}"),
                    "give each listener its own port",
                );
            }
        }
    }
    if let Some(url) = &s.endpoint_url {
        if !url.is_loopback() {
            c.push(
                key("endpoint_url"),
                format!(
                    "{url} is not on this machine; an endpoint URL is for an emulator on 127.0.0.1"
                ),
                "remove endpoint_url to use AWS, or point it at 127.0.0.1",
            );
        }
    }
}

fn tags(c: &mut Collector, s: &Settings) {
    const RESERVED: [&str; 3] = ["app", "env", "stack"];
    if s.tags.len() > 40 {
        c.push(
            key("tags"),
            format!(
                "{} tags; with the platform's own ones that exceeds AWS's 50 per resource",
                s.tags.len()
            ),
            "keep at most 40 tags",
        );
    }
    for (name, value) in &s.tags {
        let at = key("tags").key(name);
        if RESERVED.contains(&name.as_str()) {
            c.push(
                at.clone(),
                format!("`{name}` is set by the provisioner on every resource"),
                "remove it or rename it",
            );
        }
        if name.to_ascii_lowercase().starts_with("aws:") {
            c.push(
                at.clone(),
                "tag keys starting with `aws:` are reserved by AWS",
                "rename the tag",
            );
        }
        if name.is_empty() || name.len() > 128 {
            c.push(
                at.clone(),
                "a tag key must be 1-128 characters",
                "shorten the key",
            );
        }
        if value.len() > 256 {
            c.push(
                at,
                "a tag value must be at most 256 characters",
                "shorten the value",
            );
        }
    }
}

fn names(c: &mut Collector, env: &str, s: &Settings, stacks: &[&str]) {
    let names = Names::new(
        s.app.as_str(),
        env,
        s.account_id.as_str(),
        s.region.as_str(),
    );
    let functions: Vec<&str> = s.functions.iter().iter().map(|(name, _)| *name).collect();
    for limited in names.limited(stacks, &functions) {
        if limited.name.len() > limited.max_len {
            c.push(
                key("app"),
                format!(
                    "the {} `{}` is {} characters; AWS allows {}",
                    limited.what,
                    limited.name,
                    limited.name.len(),
                    limited.max_len
                ),
                format!(
                    "shorten `app` or the environment name `{env}` by {} characters",
                    limited.name.len() - limited.max_len
                ),
            );
        }
    }
}
