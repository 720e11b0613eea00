//! The event sources the stacks declare, played locally: the HTTP route in front of
//! ingest (API Gateway payload format 2.0), the SQS event source of the worker (poll,
//! invoke, delete what succeeded, leave the rest for redelivery and the DLQ), and the
//! reconciler's schedule.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::discover::{HttpRoute, QueueSource, ScheduleSource};
use super::pool::InstancePool;
use super::runtime_api::{Outcome, RuntimeApi};

/// Splits `POST /integrations/{source}/records` into its method and path segments.
fn parse_route(route_key: &str) -> Option<(String, Vec<String>)> {
    let (method, path) = route_key.split_once(' ')?;
    Some((
        method.to_string(),
        path.trim_matches('/')
            .split('/')
            .map(str::to_string)
            .collect(),
    ))
}

/// The path parameters when `path` matches the route's template.
fn match_path(template: &[String], path: &str) -> Option<Map<String, Value>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segments.len() != template.len() {
        return None;
    }
    let mut parameters = Map::new();
    for (pattern, segment) in template.iter().zip(segments) {
        match pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) if !segment.is_empty() => {
                parameters.insert(name.to_string(), Value::String(segment.to_string()));
            }
            Some(_) => return None,
            None if pattern == segment => {}
            None => return None,
        }
    }
    Some(parameters)
}

struct Gateway {
    route: HttpRoute,
    method: String,
    template: Vec<String>,
    instances: InstancePool,
    timeout: Duration,
    account_id: String,
    address: SocketAddr,
}

/// Serves the route on `address` until `stop` turns true; each request goes to an idle
/// instance of the function.
pub async fn serve_http(
    route: HttpRoute,
    instances: InstancePool,
    timeout: Duration,
    account_id: String,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let (method, template) = parse_route(&route.route_key).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("unusable route key `{}`", route.route_key),
        )
    })?;
    let gateway = Arc::new(Gateway {
        route,
        method,
        template,
        instances,
        timeout,
        account_id,
        address,
    });
    let router = Router::new().fallback(handle).with_state(gateway);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
}

fn gateway_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

async fn handle(
    State(gateway): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(path_parameters) = match_path(&gateway.template, uri.path()) else {
        return gateway_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if method.as_str() != gateway.method {
        return gateway_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let event = payload_v2(&gateway, &method, &uri, &headers, &body, path_parameters);
    match gateway
        .instances
        .invoke(event.to_string().into_bytes(), gateway.timeout)
        .await
    {
        Outcome::Response(payload) => proxy_response(&payload),
        Outcome::Timeout => gateway_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        Outcome::Error { .. } | Outcome::Crashed(_) => {
            gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// The API Gateway HTTP API event, payload format 2.0.
fn payload_v2(
    gateway: &Gateway,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    path_parameters: Map<String, Value>,
) -> Value {
    let mut header_map = Map::new();
    let mut cookies = Vec::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if name.as_str() == "cookie" {
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split("; "))
                    .map(|c| Value::String(c.to_string())),
            );
            continue;
        }
        header_map.insert(name.as_str().to_string(), Value::String(values.join(",")));
    }
    let (body_value, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (Value::String(text.to_string()), false),
        Err(_) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            true,
        ),
    };
    let query = uri.query().unwrap_or_default();
    let mut query_parameters = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        query_parameters.insert(key.to_string(), Value::String(value.to_string()));
    }
    let user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let epoch = now_ms();
    let mut event = json!({
        "version": "2.0",
        "routeKey": gateway.route.route_key,
        "rawPath": uri.path(),
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": gateway.account_id,
            "apiId": "local",
            "domainName": gateway.address.to_string(),
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent,
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": gateway.route.route_key,
            "stage": "$default",
            "time": epoch.to_string(),
            "timeEpoch": u64::try_from(epoch).unwrap_or(0),
        },
        "pathParameters": path_parameters,
        "body": body_value,
        "isBase64Encoded": is_base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = Value::Array(cookies);
    }
    if !query_parameters.is_empty() {
        event["queryStringParameters"] = Value::Object(query_parameters);
    }
    event
}

/// Maps the function's answer to an HTTP response as API Gateway does: a structured
/// `{statusCode, headers, body, isBase64Encoded}` object, or any other JSON as a 200 body.
fn proxy_response(payload: &[u8]) -> Response {
    let parsed: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let Some(status) = parsed.get("statusCode").and_then(Value::as_u64) else {
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            payload.to_vec(),
        )
            .into_response();
    };
    let status = StatusCode::from_u16(u16::try_from(status).unwrap_or(500))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    if let Some(map) = parsed.get("headers").and_then(Value::as_object) {
        for (name, value) in map {
            let text = value
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::from_str(&text),
            ) {
                headers.insert(name, value);
            }
        }
    }
    let body = parsed
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let body = if parsed.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    (status, headers, body).into_response()
}

/// Polls the queue and feeds the worker until `stop` turns true.
pub async fn poll_queue(
    source: QueueSource,
    sqs: aws_sdk_sqs::Client,
    api: RuntimeApi,
    timeout: Duration,
    region: String,
    mut stop: watch::Receiver<bool>,
) {
    let wanted = usize::try_from(source.batch_size.clamp(1, 10_000)).unwrap_or(10);
    loop {
        if *stop.borrow() {
            return;
        }
        let batch = tokio::select! {
            batch = receive_batch(&sqs, &source, wanted) => batch,
            _ = stop.changed() => return,
        };
        let messages = match batch {
            Ok(messages) => messages,
            Err(message) => {
                eprintln!(
                    "[host] receiving from {} failed: {message}; retrying",
                    source.queue_url
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let event = sqs_event(&messages, &source.queue_arn, &region);
        let outcome = api.invoke(event.to_string().into_bytes(), timeout).await;
        let failed: HashSet<String> = match &outcome {
            Outcome::Response(payload) if source.report_batch_item_failures => {
                batch_item_failures(payload, &messages)
            }
            Outcome::Response(_) => HashSet::new(),
            // A failed invocation leaves the whole batch for redelivery.
            _ => messages
                .iter()
                .filter_map(|m| m.message_id().map(str::to_string))
                .collect(),
        };
        if let Outcome::Error {
            error_type,
            message,
        } = &outcome
        {
            eprintln!("[host] worker failed the batch ({error_type}: {message}); {} messages return to the queue", failed.len());
        }
        let done: Vec<&aws_sdk_sqs::types::Message> = messages
            .iter()
            .filter(|m| m.message_id().is_some_and(|id| !failed.contains(id)))
            .collect();
        for chunk in done.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(index, message)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(message.receipt_handle().unwrap_or_default())
                        .build()
                        .ok()
                })
                .collect();
            if let Err(error) = sqs
                .delete_message_batch()
                .queue_url(&source.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                // Undeleted messages come back after the visibility timeout; the worker
                // is idempotent, so a redelivery is only extra work.
                eprintln!("[host] deleting processed messages failed: {error}");
            }
        }
    }
}

async fn receive_batch(
    sqs: &aws_sdk_sqs::Client,
    source: &QueueSource,
    wanted: usize,
) -> Result<Vec<aws_sdk_sqs::types::Message>, String> {
    let started = tokio::time::Instant::now();
    let mut messages = Vec::new();
    loop {
        let remaining = wanted - messages.len();
        let received = sqs
            .receive_message()
            .queue_url(&source.queue_url)
            .max_number_of_messages(i32::try_from(remaining.min(10)).unwrap_or(10))
            .wait_time_seconds(if messages.is_empty() { 1 } else { 0 })
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|error| aws_sdk_sqs::error::DisplayErrorContext(error).to_string())?;
        let got = received.messages().len();
        messages.extend(received.messages.unwrap_or_default());
        if messages.len() >= wanted
            || started.elapsed() >= source.batching_window
            || (got == 0 && !messages.is_empty())
        {
            return Ok(messages);
        }
        if got == 0 {
            return Ok(messages);
        }
    }
}

/// The SQS event Lambda's event source mapping sends.
fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|message| {
            let attributes: Map<String, Value> = message
                .attributes()
                .map(|attributes| {
                    attributes
                        .iter()
                        .map(|(name, value)| (name.as_str().to_string(), Value::String(value.clone())))
                        .collect()
                })
                .unwrap_or_default();
            let message_attributes: Map<String, Value> = message
                .message_attributes()
                .map(|attributes| {
                    attributes
                        .iter()
                        .map(|(name, value)| {
                            (
                                name.clone(),
                                json!({
                                    "stringValue": value.string_value(),
                                    "binaryValue": value.binary_value().map(|b| base64::engine::general_purpose::STANDARD.encode(b.as_ref())),
                                    "stringListValues": [],
                                    "binaryListValues": [],
                                    "dataType": value.data_type(),
                                }),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": message.message_id(),
                "receiptHandle": message.receipt_handle(),
                "body": message.body().unwrap_or_default(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": message.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The message ids the worker asked to be redelivered. An answer that is not a valid
/// batch response fails the whole batch, as Lambda does.
fn batch_item_failures(
    payload: &[u8],
    messages: &[aws_sdk_sqs::types::Message],
) -> HashSet<String> {
    let all = || {
        messages
            .iter()
            .filter_map(|m| m.message_id().map(str::to_string))
            .collect()
    };
    let parsed: Value = match serde_json::from_slice(payload) {
        Ok(value) => value,
        Err(_) if payload.is_empty() => return HashSet::new(),
        Err(_) => return all(),
    };
    match parsed.get("batchItemFailures") {
        None | Some(Value::Null) => HashSet::new(),
        Some(Value::Array(items)) => {
            let mut failed = HashSet::new();
            for item in items {
                match item.get("itemIdentifier").and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => {
                        failed.insert(id.to_string());
                    }
                    _ => return all(),
                }
            }
            failed
        }
        Some(_) => all(),
    }
}

/// Invokes the reconciler on its schedule until `stop` turns true.
pub async fn run_schedule(
    source: ScheduleSource,
    api: RuntimeApi,
    timeout: Duration,
    account_id: String,
    region: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(source.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticks.tick().await; // the first tick is immediate; EventBridge waits one period
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        let time = chrono_like_now();
        let event = json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": account_id,
            "time": time,
            "region": region,
            "resources": [source.rule_arn],
            "detail": {},
        });
        match api.invoke(event.to_string().into_bytes(), timeout).await {
            Outcome::Response(_) => {}
            other => eprintln!(
                "[host] scheduled {} run did not complete: {other:?}",
                source.function
            ),
        }
    }
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
fn chrono_like_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let days = seconds / 86_400;
    let (hour, minute, second) = (
        (seconds % 86_400) / 3_600,
        (seconds % 3_600) / 60,
        seconds % 60,
    );
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_their_templates_only() {
        let (method, template) =
            parse_route("POST /integrations/{source}/records").expect("parses");
        assert_eq!(method, "POST");
        let parameters = match_path(&template, "/integrations/hris/records").expect("matches");
        assert_eq!(parameters["source"], "hris");
        assert!(match_path(&template, "/integrations/hris").is_none());
        assert!(match_path(&template, "/integrations//records").is_none());
        assert!(match_path(&template, "/other/hris/records").is_none());
    }

    #[test]
    fn structured_and_plain_answers_become_http_responses() {
        let response = proxy_response(br#"{"statusCode":202,"headers":{"content-type":"application/json"},"body":"{\"accepted\":1}"}"#);
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()["content-type"], "application/json");
        let plain = proxy_response(br#"{"hello":"world"}"#);
        assert_eq!(plain.status(), StatusCode::OK);
    }

    #[test]
    fn batch_responses_name_the_failed_messages_or_fail_everything() {
        let messages: Vec<aws_sdk_sqs::types::Message> = ["a", "b", "c"]
            .iter()
            .map(|id| {
                aws_sdk_sqs::types::Message::builder()
                    .message_id(*id)
                    .build()
            })
            .collect();
        let failed = batch_item_failures(
            br#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#,
            &messages,
        );
        assert_eq!(failed, HashSet::from(["b".to_string()]));
        assert!(batch_item_failures(br#"{"batchItemFailures":[]}"#, &messages).is_empty());
        assert!(batch_item_failures(b"", &messages).is_empty());
        assert_eq!(
            batch_item_failures(
                br#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
                &messages
            )
            .len(),
            3
        );
        assert_eq!(batch_item_failures(b"not json", &messages).len(), 3);
    }

    #[test]
    fn timestamps_are_iso_8601_utc() {
        let now = chrono_like_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
    }
}
