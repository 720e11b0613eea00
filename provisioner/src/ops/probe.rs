//! The probe: one signed synthetic record sent through the deployed pipeline as a source
//! system would send it, followed hop by hop (accepted by ingest; through the queue and
//! the worker into the records table; pushed to the downstream, where the environment
//! can observe it), each hop timed; then a delete of it sent the same way and its
//! tombstone removed, so the probe leaves nothing behind but ledger entries that expire.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde_json::{json, Value};

use super::ingest_client::{send_records, signing_keys, signing_keys_with};
use crate::config::Environment;
use crate::deploy::clients::AwsClients;
use crate::deploy::{stacks, DeployError};
use crate::error::Error;

/// The source the probe record comes from, and its entity type (`functions/sync-core/
/// mappings/hris.yaml`).
const SOURCE: &str = "hris";
const ENTITY: &str = "employee";

/// One hop of the pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    pub hop: &'static str,
    pub ok: bool,
    /// Time from the probe's start of this hop to its end.
    pub millis: Option<u64>,
    pub detail: String,
}

/// What the probe found.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub env: String,
    pub record_id: String,
    pub ingest_url: String,
    pub ok: bool,
    pub hops: Vec<Hop>,
    /// The probe record was deleted again (downstream and records table).
    pub removed: bool,
}

impl ProbeReport {
    /// The first hop that failed.
    pub fn broken_hop(&self) -> Option<&Hop> {
        self.hops.iter().find(|h| !h.ok)
    }

    pub fn to_text(&self) -> String {
        let mut text = format!(
            "probe of {} with record {} via {}\n",
            self.env, self.record_id, self.ingest_url
        );
        for hop in &self.hops {
            text.push_str(&format!(
                "  [{}] {:<32} {:>8}  {}\n",
                if hop.ok { "ok" } else { "FAILED" },
                hop.hop,
                hop.millis
                    .map(|m| format!("{m} ms"))
                    .unwrap_or_else(|| "-".into()),
                hop.detail
            ));
        }
        text.push_str(if self.removed {
            "  the probe record was removed again\n"
        } else if self.ok {
            "  the probe record could not be removed: its delete did not go through in time\n"
        } else {
            "  the probe record was not removed (the pipeline broke before it could be)\n"
        });
        text
    }
}

/// Where senders post records for `env`.
async fn ingest_url(clients: &AwsClients, env: &Environment) -> Result<String, Error> {
    if let Some(host) = &env.settings.function_host {
        return Ok(format!(
            "http://127.0.0.1:{}/integrations/{SOURCE}/records",
            host.http_port
        ));
    }
    let stack = env.names.stack("compute");
    let deployed = stacks::describe(&clients.cloudformation, &stack)
        .await?
        .ok_or_else(|| Error::Other {
            message: format!("{stack} is not deployed, so there is no ingest endpoint to probe"),
            help: format!(
                "deploy the environment first: provisioner deploy --env {}",
                env.name
            ),
        })?;
    let endpoint = deployed
        .outputs
        .get("IngestEndpoint")
        .ok_or_else(|| Error::Other {
            message: format!("{stack} has no IngestEndpoint output"),
            help: "deploy a release whose compute stack exports it".into(),
        })?;
    Ok(format!(
        "{}/integrations/{SOURCE}/records",
        endpoint.trim_end_matches('/')
    ))
}

fn record(id: &str, version: chrono::DateTime<chrono::Utc>, deleted: bool) -> Value {
    let mut record = json!({
        "employee_id": id,
        "email": format!("{}@probe.example.com", id.to_ascii_lowercase()),
        "first_name": "Pipeline",
        "last_name": "Probe",
        "department": "Platform",
        "employment_status": "active",
        "hire_date": version.format("%Y-%m-%d").to_string(),
        "updated_at": version.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    if deleted {
        record["deleted"] = json!(true);
    }
    record
}

fn item_key(id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "pk".to_string(),
            AttributeValue::S(format!("{SOURCE}#{id}")),
        ),
        ("sk".to_string(), AttributeValue::S(ENTITY.to_string())),
    ])
}

/// The records table item of the probe record: `None` while absent, `Some(tombstone)`.
async fn stored(clients: &AwsClients, env: &Environment, id: &str) -> Result<Option<bool>, Error> {
    let output = clients
        .dynamodb
        .get_item()
        .table_name(&env.names.records_table)
        .set_key(Some(item_key(id)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|error| {
            Error::from(DeployError::aws(
                format!("GetItem on {}", env.names.records_table),
                &error,
            ))
        })?;
    Ok(output.item.map(|item| {
        item.get("deleted")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false)
    }))
}

/// Pushes the local downstream target received for the probe record.
async fn downstream_pushes(port: u16, id: &str) -> Option<Vec<Value>> {
    let url = format!("http://127.0.0.1:{port}/_control/received");
    let bytes = reqwest::get(&url).await.ok()?.bytes().await.ok()?;
    let received: Value = serde_json::from_slice(&bytes).ok()?;
    Some(
        received["pushes"]
            .as_array()?
            .iter()
            .filter(|push| push.to_string().contains(id))
            .cloned()
            .collect(),
    )
}

async fn wait_for<F, Fut>(timeout: Duration, mut check: F) -> Result<bool, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, Error>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        if check().await? {
            return Ok(true);
        }
        if started.elapsed() >= timeout {
            return Ok(false);
        }
        tokio::time::sleep(delay.min(timeout.saturating_sub(started.elapsed()))).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

fn millis(since: Instant) -> Option<u64> {
    u64::try_from(since.elapsed().as_millis()).ok()
}

/// Sends one record of `env` through the pipeline and follows it, then removes it.
pub async fn probe(
    clients: &AwsClients,
    env: &Environment,
    timeout: Duration,
) -> Result<ProbeReport, Error> {
    let url = ingest_url(clients, env).await?;
    let keys = match &env.settings.endpoint_url {
        Some(endpoint) => signing_keys(env, endpoint.as_str()).await?,
        None => signing_keys_with(env, &clients.config).await?,
    };
    let key = keys.key_for(SOURCE).map_err(|error| Error::Other {
        message: error.to_string(),
        help: format!("add a key for `{SOURCE}` to the signing secret"),
    })?;
    let id = format!("PROBE-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let version = chrono::Utc::now();
    let mut report = ProbeReport {
        env: env.name.clone(),
        record_id: id.clone(),
        ingest_url: url.clone(),
        ok: false,
        hops: Vec::new(),
        removed: false,
    };
    let max_bytes = env.settings.api.max_body_bytes as usize;

    // 1. Ingest accepts it.
    let started = Instant::now();
    let sent = send_records(
        &url,
        SOURCE,
        key,
        &[record(&id, version, false)],
        1,
        max_bytes,
    )
    .await;
    let accepted = match &sent {
        Ok(sent) => sent.accepted == 1,
        Err(_) => false,
    };
    report.hops.push(Hop {
        hop: "ingest accepts the record",
        ok: accepted,
        millis: millis(started),
        detail: match &sent {
            Ok(sent) if accepted => format!("202 from {url}"),
            Ok(sent) => format!("ingest rejected it: {}", Value::from(sent.errors.clone())),
            Err(error) => format!("{error}; is the ingest route up?"),
        },
    });
    if !accepted {
        return Ok(report);
    }

    // 2. Queue -> worker -> records table.
    let hop_started = Instant::now();
    let arrived = wait_for(timeout, || async {
        Ok(stored(clients, env, &id).await?.is_some())
    })
    .await?;
    report.hops.push(Hop {
        hop: "worker writes the records table",
        ok: arrived,
        millis: arrived.then(|| millis(hop_started)).flatten(),
        detail: if arrived {
            format!("{} holds {SOURCE}#{id}", env.names.records_table)
        } else {
            format!(
                "accepted but not in {} after {} s: the worker is not consuming {} (stopped, \
                 failing or throttled); check `provisioner status --env {}` and the worker's logs",
                env.names.records_table,
                timeout.as_secs(),
                env.names.queue,
                env.name
            )
        },
    });
    if !arrived {
        return Ok(report);
    }

    // 3. The downstream, where this environment lets us look.
    let downstream_port = env
        .settings
        .function_host
        .as_ref()
        .and_then(|h| h.downstream_port);
    if let Some(port) = downstream_port {
        let hop_started = Instant::now();
        let pushed = wait_for(timeout, || async {
            Ok(downstream_pushes(port, &id)
                .await
                .is_some_and(|p| !p.is_empty()))
        })
        .await?;
        report.hops.push(Hop {
            hop: "worker pushes it downstream",
            ok: pushed,
            millis: pushed.then(|| millis(hop_started)).flatten(),
            detail: if pushed {
                format!("the downstream on port {port} received it")
            } else {
                format!(
                    "stored but not received downstream after {} s: the downstream is failing \
                     or the worker's circuit is open; see the worker's logs",
                    timeout.as_secs()
                )
            },
        });
        if !pushed {
            return Ok(report);
        }
    }
    report.ok = true;

    // 4. Remove it: a delete through the pipeline, then its tombstone.
    let later = version + chrono::Duration::milliseconds(1);
    let deleted = send_records(&url, SOURCE, key, &[record(&id, later, true)], 1, max_bytes).await;
    let delete_accepted = deleted.as_ref().is_ok_and(|d| d.accepted == 1);
    let gone = delete_accepted
        && wait_for(timeout, || async {
            let tombstone = stored(clients, env, &id).await? == Some(true);
            let downstream_done = match downstream_port {
                Some(port) => downstream_pushes(port, &id)
                    .await
                    .is_some_and(|p| p.len() >= 2),
                None => true,
            };
            Ok(tombstone && downstream_done)
        })
        .await?;
    if gone {
        clients
            .dynamodb
            .delete_item()
            .table_name(&env.names.records_table)
            .set_key(Some(item_key(&id)))
            .send()
            .await
            .map_err(|error| {
                Error::from(DeployError::aws(
                    format!("DeleteItem on {}", env.names.records_table),
                    &error,
                ))
            })?;
    }
    report.removed = gone;
    Ok(report)
}
