//! The deployments table of the bootstrap stack: per environment (partition
//! `env#<name>`) the deploy lock (`lock`: owner, release, lease and heartbeat, taken
//! with a conditional write), the environment's state (`state`: the release it runs,
//! since when, the releases it ran before) and its history (`history#<time>#<n>`: every
//! deploy attempt, promotion, rollback and broken lock, with who, what and how it ended).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use crate::deploy::stacks::SeenStack;
use crate::deploy::DeployError;
use crate::error::Error;

type Item = HashMap<String, AttributeValue>;

const LOCK: &str = "lock";
const STATE: &str = "state";
const DECOMMISSION: &str = "decommission";
const HISTORY: &str = "history#";

/// The current time as RFC 3339 with milliseconds (sortable as text).
pub fn now() -> String {
    format_time(chrono::Utc::now())
}

pub fn format_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Who holds (or wants) an environment's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    /// Unique to one run: only that run may extend or release the lock.
    pub owner_id: String,
    /// The caller's ARN.
    pub caller: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub release: String,
    pub acquired_at: String,
    pub heartbeat_at: String,
    pub lease_expires_at: String,
    pub ci_run: Option<String>,
}

impl LockHolder {
    /// A holder for this process.
    pub fn this_process(caller: &str, command: &str, release: &str, lease: Duration) -> Self {
        let now = chrono::Utc::now();
        Self {
            owner_id: uuid::Uuid::new_v4().to_string(),
            caller: caller.to_string(),
            host: hostname(),
            pid: std::process::id(),
            command: command.to_string(),
            release: release.to_string(),
            acquired_at: format_time(now),
            heartbeat_at: format_time(now),
            lease_expires_at: format_time(
                now + chrono::Duration::from_std(lease).unwrap_or_default(),
            ),
            ci_run: ci_run(),
        }
    }

    /// The lease ran out: the holder stopped sending heartbeats.
    pub fn lease_expired(&self) -> bool {
        parse_time(&self.lease_expires_at).is_none_or(|t| t < chrono::Utc::now())
    }

    /// The holder ran on this machine and its process is gone.
    pub fn process_gone(&self) -> bool {
        self.host == hostname() && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// `arn:... (pid 42 on build-7, deploy of R) since T, last heartbeat T2`.
    pub fn describe(&self) -> String {
        format!(
            "{} (pid {} on {}, {} of release {}{}) since {}, last heartbeat {}",
            self.caller,
            self.pid,
            self.host,
            self.command,
            self.release,
            self.ci_run
                .as_deref()
                .map(|r| format!(", CI run {r}"))
                .unwrap_or_default(),
            self.acquired_at,
            self.heartbeat_at
        )
    }

    fn to_item(&self, env: &str) -> Item {
        let mut item = key(env, LOCK);
        put_s(&mut item, "owner_id", &self.owner_id);
        put_s(&mut item, "caller", &self.caller);
        put_s(&mut item, "host", &self.host);
        item.insert("pid".into(), AttributeValue::N(self.pid.to_string()));
        put_s(&mut item, "command", &self.command);
        put_s(&mut item, "release", &self.release);
        put_s(&mut item, "acquired_at", &self.acquired_at);
        put_s(&mut item, "heartbeat_at", &self.heartbeat_at);
        put_s(&mut item, "lease_expires_at", &self.lease_expires_at);
        if let Some(run) = &self.ci_run {
            put_s(&mut item, "ci_run", run);
        }
        item
    }

    fn from_item(item: &Item) -> Self {
        Self {
            owner_id: s(item, "owner_id"),
            caller: s(item, "caller"),
            host: s(item, "host"),
            pid: item
                .get("pid")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            command: s(item, "command"),
            release: s(item, "release"),
            acquired_at: s(item, "acquired_at"),
            heartbeat_at: s(item, "heartbeat_at"),
            lease_expires_at: s(item, "lease_expires_at"),
            ci_run: opt_s(item, "ci_run"),
        }
    }
}

/// One entry of an environment's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub env: String,
    /// `history#<started_at>#<suffix>`.
    pub id: String,
    /// `deploy`, `promote`, `rollback`, `recover` or `unlock`.
    pub kind: String,
    pub release: Option<String>,
    pub caller: String,
    pub ci_run: Option<String>,
    pub ci_sha: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// `in-progress`, `deployed`, `no-changes`, `failed`, `refused`, `not-confirmed`,
    /// `locked`, `older-release`, `interrupted` or `unlocked`; for `recover` also
    /// `recovered` and `declined`.
    pub result: String,
    pub stacks_changed: Vec<String>,
    pub message: Option<String>,
    /// For a promotion: the environment the release came from.
    pub source_env: Option<String>,
    /// For a decommission step: its phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// For a decommission step: each gate's measured value and verdict.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<String>,
}

impl HistoryEntry {
    /// A new entry starting now.
    pub fn start(env: &str, kind: &str, release: Option<&str>, caller: &str) -> Self {
        let started_at = now();
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        Self {
            env: env.to_string(),
            id: format!("{HISTORY}{started_at}#{suffix}"),
            kind: kind.to_string(),
            release: release.map(str::to_string),
            caller: caller.to_string(),
            ci_run: ci_run(),
            ci_sha: std::env::var("GITHUB_SHA").ok().filter(|v| !v.is_empty()),
            started_at,
            ended_at: None,
            result: "in-progress".into(),
            stacks_changed: Vec::new(),
            message: None,
            source_env: None,
            phase: None,
            gates: Vec::new(),
        }
    }

    fn to_item(&self) -> Item {
        let mut item = key(&self.env, &self.id);
        put_s(&mut item, "kind", &self.kind);
        put_s(&mut item, "caller", &self.caller);
        put_s(&mut item, "started_at", &self.started_at);
        put_s(&mut item, "result", &self.result);
        for (name, value) in [
            ("release", &self.release),
            ("ci_run", &self.ci_run),
            ("ci_sha", &self.ci_sha),
            ("ended_at", &self.ended_at),
            ("message", &self.message),
            ("source_env", &self.source_env),
            ("phase", &self.phase),
        ] {
            if let Some(value) = value {
                put_s(&mut item, name, value);
            }
        }
        item.insert(
            "stacks_changed".into(),
            AttributeValue::L(
                self.stacks_changed
                    .iter()
                    .map(|s| AttributeValue::S(s.clone()))
                    .collect(),
            ),
        );
        if !self.gates.is_empty() {
            item.insert(
                "gates".into(),
                AttributeValue::L(
                    self.gates
                        .iter()
                        .map(|s| AttributeValue::S(s.clone()))
                        .collect(),
                ),
            );
        }
        item
    }

    fn from_item(env: &str, item: &Item) -> Self {
        Self {
            env: env.to_string(),
            id: s(item, "sk"),
            kind: s(item, "kind"),
            release: opt_s(item, "release"),
            caller: s(item, "caller"),
            ci_run: opt_s(item, "ci_run"),
            ci_sha: opt_s(item, "ci_sha"),
            started_at: s(item, "started_at"),
            ended_at: opt_s(item, "ended_at"),
            result: s(item, "result"),
            stacks_changed: list(item, "stacks_changed"),
            message: opt_s(item, "message"),
            source_env: opt_s(item, "source_env"),
            phase: opt_s(item, "phase"),
            gates: list(item, "gates"),
        }
    }
}

/// How far an environment's decommission has come: one timestamp per step, so every
/// run resumes where the last one stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DecommissionState {
    pub started_at: Option<String>,
    pub started_by: Option<String>,
    /// The release the environment ran when its decommission began.
    pub release: Option<String>,
    /// When ingest was told to refuse records and the schedule was stopped.
    pub traffic_stopped_at: Option<String>,
    /// When the stop-traffic gate passed (traffic measured at zero).
    pub quiet_at: Option<String>,
    /// When compute and observability were gone: the hold starts here.
    pub compute_removed_at: Option<String>,
    /// The earliest time data may be deleted.
    pub hold_until: Option<String>,
    /// Set when `--force-window` ended the hold early: who, when and why.
    pub window_forced: Option<String>,
    /// The export verified against the live tables, and when.
    pub export_id: Option<String>,
    pub export_verified_at: Option<String>,
    /// When the last stacks were deleted.
    pub finished_at: Option<String>,
}

impl DecommissionState {
    fn fields(&self) -> [(&'static str, &Option<String>); 11] {
        [
            ("started_at", &self.started_at),
            ("started_by", &self.started_by),
            ("release", &self.release),
            ("traffic_stopped_at", &self.traffic_stopped_at),
            ("quiet_at", &self.quiet_at),
            ("compute_removed_at", &self.compute_removed_at),
            ("hold_until", &self.hold_until),
            ("window_forced", &self.window_forced),
            ("export_id", &self.export_id),
            ("export_verified_at", &self.export_verified_at),
            ("finished_at", &self.finished_at),
        ]
    }

    fn to_item(&self, env: &str) -> Item {
        let mut item = key(env, DECOMMISSION);
        for (name, value) in self.fields() {
            if let Some(value) = value {
                put_s(&mut item, name, value);
            }
        }
        item
    }

    fn from_item(item: &Item) -> Self {
        Self {
            started_at: opt_s(item, "started_at"),
            started_by: opt_s(item, "started_by"),
            release: opt_s(item, "release"),
            traffic_stopped_at: opt_s(item, "traffic_stopped_at"),
            quiet_at: opt_s(item, "quiet_at"),
            compute_removed_at: opt_s(item, "compute_removed_at"),
            hold_until: opt_s(item, "hold_until"),
            window_forced: opt_s(item, "window_forced"),
            export_id: opt_s(item, "export_id"),
            export_verified_at: opt_s(item, "export_verified_at"),
            finished_at: opt_s(item, "finished_at"),
        }
    }
}

/// What an environment runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EnvState {
    /// The release the environment runs (its last successful deploy).
    pub release: Option<String>,
    /// Since when it runs that release.
    pub since: Option<String>,
    /// Releases that ran successfully, newest first (the running one included).
    pub recent: Vec<String>,
    /// The last deploy attempt's release, result and end.
    pub last_release: Option<String>,
    pub last_result: Option<String>,
    pub last_ended_at: Option<String>,
    /// Per stack name, what the last deploy that changed or checked the stack left it
    /// with (how a change made outside the provisioner is recognised).
    pub stacks_seen: BTreeMap<String, SeenStack>,
}

impl EnvState {
    fn to_item(&self, env: &str) -> Item {
        let mut item = key(env, STATE);
        for (name, value) in [
            ("release", &self.release),
            ("since", &self.since),
            ("last_release", &self.last_release),
            ("last_result", &self.last_result),
            ("last_ended_at", &self.last_ended_at),
        ] {
            if let Some(value) = value {
                put_s(&mut item, name, value);
            }
        }
        item.insert(
            "recent".into(),
            AttributeValue::L(
                self.recent
                    .iter()
                    .map(|s| AttributeValue::S(s.clone()))
                    .collect(),
            ),
        );
        let seen = self
            .stacks_seen
            .iter()
            .map(|(stack, seen)| {
                let mut value = HashMap::new();
                put_s(&mut value, "template_sha256", &seen.template_sha256);
                if let Some(when) = &seen.last_updated {
                    put_s(&mut value, "last_updated", when);
                }
                (stack.clone(), AttributeValue::M(value))
            })
            .collect();
        item.insert("stacks_seen".into(), AttributeValue::M(seen));
        item
    }

    fn from_item(item: &Item) -> Self {
        let stacks_seen = item
            .get("stacks_seen")
            .and_then(|v| v.as_m().ok())
            .map(|seen| {
                seen.iter()
                    .filter_map(|(stack, value)| {
                        let value = value.as_m().ok()?;
                        Some((
                            stack.clone(),
                            SeenStack {
                                last_updated: opt_s(value, "last_updated"),
                                template_sha256: s(value, "template_sha256"),
                            },
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            release: opt_s(item, "release"),
            since: opt_s(item, "since"),
            recent: list(item, "recent"),
            last_release: opt_s(item, "last_release"),
            last_result: opt_s(item, "last_result"),
            last_ended_at: opt_s(item, "last_ended_at"),
            stacks_seen,
        }
    }

    /// Records what each stack that `outcomes` vouch for was left with; the others keep
    /// their record (a stack not verified this time is checked again next time).
    pub fn remember_stacks(&mut self, outcomes: &[crate::deploy::report::StackOutcome]) {
        for outcome in outcomes {
            if let Some(seen) = &outcome.seen {
                self.stacks_seen
                    .insert(outcome.stack_name.clone(), seen.clone());
            }
        }
    }

    /// The state after an attempt of `release` ended with `result` at `ended_at`.
    pub fn after(&self, release: &str, result: &str, ended_at: &str, keep: usize) -> Self {
        let succeeded = matches!(result, "deployed" | "no-changes");
        let mut next = Self {
            last_release: Some(release.to_string()),
            last_result: Some(result.to_string()),
            last_ended_at: Some(ended_at.to_string()),
            ..self.clone()
        };
        if succeeded {
            if self.release.as_deref() != Some(release) {
                next.release = Some(release.to_string());
                next.since = Some(ended_at.to_string());
            }
            next.recent.retain(|r| r != release);
            next.recent.insert(0, release.to_string());
            next.recent.truncate(keep);
        }
        next
    }
}

/// Why the lock could not be taken.
#[derive(Debug, Clone)]
pub enum LockRefused {
    /// Someone holds it (their lease may have expired: see [`LockHolder::lease_expired`]).
    Held(Box<LockHolder>),
    /// The table does not exist: the account and region are not bootstrapped.
    NoTable,
    /// Another deploy held it at the write and released it before the read: try again.
    JustReleased,
}

/// One environment's records in the deployments table.
#[derive(Debug, Clone)]
pub struct Deployments {
    pub client: Client,
    pub table: String,
}

fn key(env: &str, sk: &str) -> Item {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(format!("env#{env}"))),
        ("sk".to_string(), AttributeValue::S(sk.to_string())),
    ])
}

fn put_s(item: &mut Item, name: &str, value: &str) {
    item.insert(name.to_string(), AttributeValue::S(value.to_string()));
}

fn s(item: &Item, name: &str) -> String {
    opt_s(item, name).unwrap_or_default()
}

fn opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn list(item: &Item, name: &str) -> Vec<String> {
    item.get(name)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

/// `GITHUB_RUN_ID` (with its attempt), when running in GitHub Actions.
fn ci_run() -> Option<String> {
    let run = std::env::var("GITHUB_RUN_ID")
        .ok()
        .filter(|v| !v.is_empty())?;
    Some(match std::env::var("GITHUB_RUN_ATTEMPT") {
        Ok(attempt) if !attempt.is_empty() => format!("{run}/{attempt}"),
        _ => run,
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

fn is_missing_table(code: Option<&str>) -> bool {
    code == Some("ResourceNotFoundException")
}

/// The table is missing: the account and region are not bootstrapped.
pub fn is_missing_table_error(error: &Error) -> bool {
    matches!(error, Error::Other { message, .. } if message.contains("(ResourceNotFoundException)"))
}

/// `result`, with a missing table turned into "run `provisioner bootstrap` first".
pub fn or_not_bootstrapped<T>(
    result: Result<T, Error>,
    env: &crate::config::Environment,
) -> Result<T, Error> {
    match result {
        Err(error) if is_missing_table_error(&error) => {
            Err(crate::release::rollout::not_bootstrapped(env))
        }
        other => other,
    }
}

fn build<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, Error> {
    result.map_err(|error| Error::Other {
        message: format!("could not build a deployments table request: {error}"),
        help: String::new(),
    })
}

impl Deployments {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            client,
            table: table.to_string(),
        }
    }

    fn aws<E>(
        &self,
        action: &str,
        error: &aws_smithy_runtime_api::client::result::SdkError<
            E,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        DeployError::aws(format!("{action} on table {}", self.table), error).into()
    }

    /// Takes `env`'s lock for `holder` and records `entry` (the attempt) in one write.
    pub async fn acquire(
        &self,
        env: &str,
        holder: &LockHolder,
        entry: &HistoryEntry,
    ) -> Result<Result<(), LockRefused>, Error> {
        let lock = build(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(holder.to_item(env)))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )?;
        let history = build(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(entry.to_item()))
                .condition_expression("attribute_not_exists(sk)")
                .build(),
        )?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(lock).build())
            .transact_items(TransactWriteItem::builder().put(history).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(error) if is_missing_table(error.code()) => Ok(Err(LockRefused::NoTable)),
            Err(error)
                if matches!(
                    error.code(),
                    Some("TransactionCanceledException" | "ConditionalCheckFailedException")
                ) =>
            {
                match self.lock(env).await? {
                    Some(current) => Ok(Err(LockRefused::Held(Box::new(current)))),
                    // Released between our write and this read: the caller tries again.
                    None => Ok(Err(LockRefused::JustReleased)),
                }
            }
            Err(error) => Err(self.aws("TransactWriteItems (take the deploy lock)", &error)),
        }
    }

    /// The lock item of `env`, if any.
    pub async fn lock(&self, env: &str) -> Result<Option<LockHolder>, Error> {
        Ok(self
            .get(env, LOCK)
            .await?
            .map(|item| LockHolder::from_item(&item)))
    }

    /// The state item of `env`; `None` before its first deploy.
    pub async fn state(&self, env: &str) -> Result<Option<EnvState>, Error> {
        Ok(self
            .get(env, STATE)
            .await?
            .map(|item| EnvState::from_item(&item)))
    }

    /// `env`'s state and its decommission record, read together (one consistent
    /// BatchGetItem): what every deploy checks before it starts.
    pub async fn state_and_decommission(
        &self,
        env: &str,
    ) -> Result<(Option<EnvState>, Option<DecommissionState>), Error> {
        let keys = build(
            aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .keys(key(env, STATE))
                .keys(key(env, DECOMMISSION))
                .consistent_read(true)
                .build(),
        )?;
        let mut request = Some(keys);
        let mut state = None;
        let mut decommission = None;
        // Unprocessed keys (throttling) are asked for again.
        for _ in 0..5 {
            let Some(keys) = request.take() else { break };
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(|error| self.aws("BatchGetItem", &error))?;
            for item in output
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                match item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                {
                    Some(STATE) => state = Some(EnvState::from_item(item)),
                    Some(DECOMMISSION) => decommission = Some(DecommissionState::from_item(item)),
                    _ => {}
                }
            }
            request = output
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .filter(|k| !k.keys().is_empty())
                .cloned();
        }
        Ok((state, decommission))
    }

    /// Like [`state`](Self::state), but `Ok(None)` also when the table is missing.
    pub async fn state_if_bootstrapped(&self, env: &str) -> Result<Option<EnvState>, Error> {
        match self.state(env).await {
            Err(error) if is_missing_table_error(&error) => Ok(None),
            other => other,
        }
    }

    /// Like [`lock`](Self::lock), but `Ok(None)` also when the table is missing.
    pub async fn lock_if_bootstrapped(&self, env: &str) -> Result<Option<LockHolder>, Error> {
        match self.lock(env).await {
            Err(error) if is_missing_table_error(&error) => Ok(None),
            other => other,
        }
    }

    async fn get(&self, env: &str, sk: &str) -> Result<Option<Item>, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(env, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.aws("GetItem", &error))?;
        Ok(output.item)
    }

    /// Extends the lease of a lock `owner_id` holds; `false` when it no longer does.
    pub async fn heartbeat(
        &self,
        env: &str,
        owner_id: &str,
        lease: Duration,
    ) -> Result<bool, Error> {
        let now = chrono::Utc::now();
        let expires = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(env, LOCK)))
            .update_expression("SET heartbeat_at = :now, lease_expires_at = :expires")
            .condition_expression("owner_id = :me")
            .expression_attribute_values(":now", AttributeValue::S(format_time(now)))
            .expression_attribute_values(":expires", AttributeValue::S(format_time(expires)))
            .expression_attribute_values(":me", AttributeValue::S(owner_id.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if error.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(error) => Err(self.aws("UpdateItem (lock heartbeat)", &error)),
        }
    }

    /// Releases the lock `owner_id` holds, records how the attempt ended and, when
    /// given, the environment's new state, in one write. Returns `false` when the lock
    /// had been broken meanwhile: the entry is then recorded on its own, and the state is
    /// left to whoever holds the environment now (this run's view of it is stale).
    pub async fn finish(
        &self,
        env: &str,
        owner_id: &str,
        entry: &HistoryEntry,
        state: Option<&EnvState>,
    ) -> Result<bool, Error> {
        for attempt in 1..=3 {
            let delete = build(
                Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(env, LOCK)))
                    .condition_expression("owner_id = :me")
                    .expression_attribute_values(":me", AttributeValue::S(owner_id.to_string()))
                    .build(),
            )?;
            let mut request = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().delete(delete).build())
                .transact_items(
                    TransactWriteItem::builder()
                        .put(self.put(entry.to_item())?)
                        .build(),
                );
            if let Some(state) = state {
                request = request.transact_items(
                    TransactWriteItem::builder()
                        .put(self.put(state.to_item(env))?)
                        .build(),
                );
            }
            match request.send().await {
                Ok(_) => return Ok(true),
                Err(error) if error.code() == Some("TransactionCanceledException") => {
                    let still_ours = self
                        .lock(env)
                        .await?
                        .is_some_and(|holder| holder.owner_id == owner_id);
                    if still_ours && attempt < 3 {
                        // Cancelled for another reason (a conflicting write in flight).
                        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                        continue;
                    }
                    if still_ours {
                        return Err(
                            self.aws("TransactWriteItems (release the deploy lock)", &error)
                        );
                    }
                    let mut entry = entry.clone();
                    entry.message =
                        Some(format!(
                        "{}the deploy lock was broken while this deploy ran; the environment's \
                         state was left as the lock's new holder set it",
                        entry.message.as_deref().map(|m| format!("{m}; ")).unwrap_or_default()
                    ));
                    self.record(&entry).await?;
                    return Ok(false);
                }
                Err(error) => {
                    return Err(self.aws("TransactWriteItems (release the deploy lock)", &error))
                }
            }
        }
        Ok(false)
    }

    fn put(&self, item: Item) -> Result<Put, Error> {
        build(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build(),
        )
    }

    async fn put_item(&self, item: Item) -> Result<(), Error> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|error| self.aws("PutItem", &error))?;
        Ok(())
    }

    /// Writes `env`'s decommission record and the history entry of the step that
    /// advanced it, in one write, while `owner_id` holds the lock.
    pub async fn record_decommission(
        &self,
        env: &str,
        owner_id: &str,
        state: &DecommissionState,
        entry: &HistoryEntry,
    ) -> Result<(), Error> {
        let lock_held = build(
            aws_sdk_dynamodb::types::ConditionCheck::builder()
                .table_name(&self.table)
                .set_key(Some(key(env, LOCK)))
                .condition_expression("owner_id = :me")
                .expression_attribute_values(":me", AttributeValue::S(owner_id.to_string()))
                .build(),
        )?;
        self.client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(lock_held)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(self.put(state.to_item(env))?)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(self.put(entry.to_item())?)
                    .build(),
            )
            .send()
            .await
            .map_err(|error| self.aws("TransactWriteItems (record a decommission step)", &error))?;
        Ok(())
    }

    /// Records a history entry on its own (a refused attempt, for example).
    pub async fn record(&self, entry: &HistoryEntry) -> Result<(), Error> {
        self.put_item(entry.to_item()).await
    }

    /// Breaks `env`'s lock and records who did it and why; the broken holder, or
    /// `None` when no lock was held.
    pub async fn break_lock(
        &self,
        env: &str,
        caller: &str,
        reason: &str,
        force: bool,
    ) -> Result<Option<(LockHolder, HistoryEntry)>, Error> {
        let Some(holder) = self.lock(env).await? else {
            return Ok(None);
        };
        if !force && !holder.lease_expired() && !holder.process_gone() {
            return Err(Error::Other {
                message: format!(
                    "the deploy lock of `{env}` is alive: held by {}, its lease runs until {}",
                    holder.describe(),
                    holder.lease_expires_at
                ),
                help: "that deploy is still renewing its lease, so it is probably running: wait \
                       for it to finish; pass --force only when you know its process is gone \
                       (a killed CI runner, say)"
                    .into(),
            });
        }
        let mut entry = HistoryEntry::start(env, "unlock", Some(&holder.release), caller);
        entry.result = "unlocked".into();
        entry.ended_at = Some(entry.started_at.clone());
        entry.message = Some(format!(
            "broke the lock held by {}: {reason}",
            holder.describe()
        ));
        let delete = build(
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(env, LOCK)))
                .condition_expression("owner_id = :them")
                .expression_attribute_values(":them", AttributeValue::S(holder.owner_id.clone()))
                .build(),
        )?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(
                TransactWriteItem::builder()
                    .put(self.put(entry.to_item())?)
                    .build(),
            )
            .send()
            .await
            .map_err(|error| match error.code() {
                Some("TransactionCanceledException") => Error::Other {
                    message: format!("the deploy lock of `{env}` changed while it was being broken"),
                    help: format!("run `provisioner status --env {env}` to see who holds it now, then decide again"),
                },
                _ => self.aws("TransactWriteItems (break the deploy lock)", &error),
            })?;
        Ok(Some((holder, entry)))
    }

    /// `env`'s history, newest first, at most `limit` entries.
    pub async fn history(&self, env: &str, limit: usize) -> Result<Vec<HistoryEntry>, Error> {
        let mut entries = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :history)")
                .expression_attribute_values(":pk", AttributeValue::S(format!("env#{env}")))
                .expression_attribute_values(":history", AttributeValue::S(HISTORY.into()))
                .scan_index_forward(false)
                .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| self.aws("Query (history)", &error))?;
            entries.extend(
                output
                    .items()
                    .iter()
                    .map(|item| HistoryEntry::from_item(env, item)),
            );
            start = output.last_evaluated_key;
            if start.is_none() || entries.len() >= limit {
                entries.truncate(limit);
                return Ok(entries);
            }
        }
    }

    /// Every environment's state in the table (the environments sharing this bootstrap).
    pub async fn states(&self) -> Result<Vec<(String, EnvState)>, Error> {
        let mut states = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :state")
                .expression_attribute_values(":state", AttributeValue::S(STATE.into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| self.aws("Scan (environment states)", &error))?;
            for item in output.items() {
                let env = s(item, "pk");
                let env = env.strip_prefix("env#").unwrap_or(&env).to_string();
                states.push((env, EnvState::from_item(item)));
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(states);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_moves_to_a_release_only_when_it_deployed() {
        let start = EnvState {
            release: Some("r1".into()),
            since: Some("t1".into()),
            recent: vec!["r1".into(), "r0".into()],
            last_release: Some("r1".into()),
            last_result: Some("deployed".into()),
            last_ended_at: Some("t1".into()),
            stacks_seen: BTreeMap::new(),
        };
        let failed = start.after("r2", "failed", "t2", 10);
        assert_eq!(failed.release.as_deref(), Some("r1"));
        assert_eq!(failed.last_result.as_deref(), Some("failed"));
        assert_eq!(failed.recent, ["r1", "r0"]);
        let deployed = failed.after("r2", "deployed", "t3", 2);
        assert_eq!(deployed.release.as_deref(), Some("r2"));
        assert_eq!(deployed.since.as_deref(), Some("t3"));
        assert_eq!(deployed.recent, ["r2", "r1"]);
        let again = deployed.after("r2", "no-changes", "t4", 2);
        assert_eq!(
            again.since.as_deref(),
            Some("t3"),
            "same release keeps its start"
        );
    }

    #[test]
    fn a_holder_whose_lease_ran_out_or_whose_process_died_is_recognised() {
        let mut holder =
            LockHolder::this_process("arn:me", "deploy", "r1", Duration::from_secs(60));
        assert!(!holder.lease_expired());
        assert!(!holder.process_gone(), "this very process holds it");
        holder.lease_expires_at = format_time(chrono::Utc::now() - chrono::Duration::seconds(1));
        assert!(holder.lease_expired());
        holder.pid = u32::MAX;
        assert!(holder.process_gone());
    }
}
