//! A client of the ingest API as a source system would be: the signing keys read from
//! the environment's secret, and records posted in signed batches, re-sending those the
//! API says may succeed on a retry. `local send` feeds files through it; `probe` sends
//! its synthetic record through it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::config::model::SecretStore;
use crate::config::Environment;
use crate::error::Error;
use crate::local::LocalError;

/// The environment's signing keys, read from its SSM parameter or Secrets Manager secret
/// through the emulator at `endpoint`.
pub async fn signing_keys(
    env: &Environment,
    endpoint: &str,
) -> Result<sync_core::signature::SigningKeys, Error> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(env.settings.region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ssm::config::Credentials::new(
            "test", "test", None, None, "emulator",
        ))
        .load()
        .await;
    signing_keys_with(env, &config).await
}

/// The environment's signing keys, read with the credentials and endpoint of `config`.
pub async fn signing_keys_with(
    env: &Environment,
    config: &aws_config::SdkConfig,
) -> Result<sync_core::signature::SigningKeys, Error> {
    let unreachable = |what: &str, error: String| LocalError::Emulator {
        action: format!("read the signing key {what}"),
        message: error,
    };
    let value = match env.settings.signing_secret.store {
        SecretStore::Ssm => aws_sdk_ssm::Client::new(config)
            .get_parameter()
            .name(&env.names.signing_parameter)
            .send()
            .await
            .map_err(|e| {
                unreachable(
                    &env.names.signing_parameter,
                    aws_sdk_ssm::error::DisplayErrorContext(e).to_string(),
                )
            })?
            .parameter()
            .and_then(|p| p.value())
            .unwrap_or_default()
            .to_string(),
        SecretStore::Secretsmanager => aws_sdk_secretsmanager::Client::new(config)
            .get_secret_value()
            .secret_id(&env.names.signing_secret)
            .send()
            .await
            .map_err(|e| {
                unreachable(
                    &env.names.signing_secret,
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                )
            })?
            .secret_string()
            .unwrap_or_default()
            .to_string(),
    };
    sync_core::signature::SigningKeys::parse(&value).map_err(|error| Error::Other {
        message: error.to_string(),
        help: "store a random string, or a JSON object of per-source keys, in the signing secret"
            .into(),
    })
}

/// The outcome of sending a feed.
#[derive(Debug, Default, Serialize)]
pub struct SendReport {
    pub source: String,
    pub url: String,
    pub records: usize,
    pub requests: usize,
    pub accepted: usize,
    pub rejected: usize,
    /// Per rejected record: its position in the feed and why.
    pub errors: Vec<Value>,
    pub batch_ids: Vec<String>,
}

/// Posts `records` of `source` in batches of at most `batch` (and `max_bytes`), each
/// request signed for its method, path, source, timestamp and body, re-sending records
/// the API says may succeed on a retry, at most three times.
pub async fn send_records(
    url: &str,
    source: &str,
    key: &[u8],
    records: &[Value],
    batch: usize,
    max_bytes: usize,
) -> Result<SendReport, Error> {
    let path = reqwest::Url::parse(url)
        .map_err(|error| Error::Other {
            message: format!("the ingest URL `{url}` is not a URL: {error}"),
            help: "expected http(s)://host/integrations/{source}/records".into(),
        })?
        .path()
        .to_string();
    let signed_for = sync_core::signature::SignedRequest {
        method: "POST",
        path: &path,
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|error| Error::Other {
            message: format!("could not set up an HTTP client: {error}"),
            help: String::new(),
        })?;
    let mut report = SendReport {
        source: source.to_string(),
        url: url.to_string(),
        records: records.len(),
        ..SendReport::default()
    };
    // (position in the feed, record)
    let mut pending: Vec<(usize, &Value)> = records.iter().enumerate().collect();
    for attempt in 1..=3 {
        let mut retry = Vec::new();
        for chunk in chunks(&pending, batch, max_bytes) {
            let body = serde_json::to_vec(
                &serde_json::json!({ "records": chunk.iter().map(|(_, r)| r).collect::<Vec<_>>() }),
            )
            .unwrap_or_default();
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let timestamp = i64::try_from(timestamp).unwrap_or_default();
            let signature = sync_core::signature::sign(key, &signed_for, timestamp, &body);
            report.requests += 1;
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .header(
                    sync_core::signature::TIMESTAMP_HEADER,
                    timestamp.to_string(),
                )
                .header(sync_core::signature::SIGNATURE_HEADER, signature)
                .body(body)
                .send()
                .await
                .map_err(|error| Error::Other {
                    message: format!("could not post to {url}: {error}"),
                    help: "is `provisioner up` running? It prints the ingest URL when ready".into(),
                })?;
            let status = response.status().as_u16();
            let answer: Value = response
                .bytes()
                .await
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or(Value::Null);
            if !matches!(status, 202 | 400 | 503) || answer.get("accepted").is_none() {
                return Err(Error::Other {
                    message: format!("{url} answered {status}: {answer}"),
                    help: "the answer says what to fix; nothing after this batch was sent".into(),
                });
            }
            report.accepted += answer["accepted"].as_u64().unwrap_or(0) as usize;
            if let Some(id) = answer["batch_id"].as_str() {
                report.batch_ids.push(id.to_string());
            }
            for error in answer["errors"].as_array().into_iter().flatten() {
                let index = error["index"].as_u64().unwrap_or(0) as usize;
                let Some(&(position, record)) = chunk.get(index) else {
                    continue;
                };
                if error["retryable"].as_bool() == Some(true) && attempt < 3 {
                    retry.push((position, record));
                } else {
                    let mut error = error.clone();
                    error["index"] = Value::from(position);
                    report.errors.push(error);
                }
            }
        }
        if retry.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
        pending = retry;
    }
    report.rejected = report.errors.len();
    report.errors.sort_by_key(|e| e["index"].as_u64());
    Ok(report)
}

/// Splits records into requests of at most `batch` records and about `max_bytes`.
fn chunks<'a>(
    records: &[(usize, &'a Value)],
    batch: usize,
    max_bytes: usize,
) -> Vec<Vec<(usize, &'a Value)>> {
    let mut out: Vec<Vec<(usize, &Value)>> = Vec::new();
    let mut size = 0;
    for &(position, record) in records {
        let record_size = record.to_string().len() + 1;
        let full = out.last().is_none_or(|last| {
            last.len() >= batch || size + record_size > max_bytes.saturating_sub(64)
        });
        if full {
            out.push(Vec::new());
            size = 0;
        }
        size += record_size;
        if let Some(last) = out.last_mut() {
            last.push((position, record));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_size() {
        let records: Vec<Value> = (0..25).map(|n| serde_json::json!({ "n": n })).collect();
        let indexed: Vec<(usize, &Value)> = records.iter().enumerate().collect();
        let by_count = chunks(&indexed, 10, 1_000_000);
        assert_eq!(
            by_count.iter().map(Vec::len).collect::<Vec<_>>(),
            [10, 10, 5]
        );
        let by_size = chunks(&indexed, 100, 64 + 30);
        assert!(by_size.len() > 3 && by_size.iter().all(|c| !c.is_empty()));
        assert_eq!(by_size.iter().map(Vec::len).sum::<usize>(), 25);
    }
}
