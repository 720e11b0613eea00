//! A local downstream target, so the worker's push step has somewhere real to go: it
//! accepts `PUT /records/{id}`, records what it receives, and can be told to fail.
//!
//! Control interface (JSON):
//! - `POST /_control/fail` `{"status": 503, "count": 20, "retry_after": 1, "latency_ms": 0}`:
//!   answer the next `count` pushes with `status` (and a `Retry-After` header when given);
//!   `count` omitted means until told otherwise.
//! - `POST /_control/recover`: answer normally again.
//! - `GET /_control/received`: every push received, in order, and the latest body per id.
//! - `POST /_control/reset`: forget everything.
//!
//! Like any consumer of an at-least-once pipeline, the target keeps the newest version of
//! each record: a push whose `source_version` is older than the one it holds is
//! acknowledged but does not replace it (two pushes of one record may overtake each
//! other when the first is retried).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

/// One push as received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Push {
    pub id: String,
    pub status: u16,
    pub correlation_id: Option<String>,
    pub body: Value,
}

/// Failure injection settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailureMode {
    pub status: u16,
    /// How many pushes to fail; `None` means until recovered.
    #[serde(default)]
    pub count: Option<u32>,
    /// Seconds for a `Retry-After` header.
    #[serde(default)]
    pub retry_after: Option<u32>,
    /// Delay before answering, failed or not.
    #[serde(default)]
    pub latency_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct Target {
    pushes: Vec<Push>,
    latest: BTreeMap<String, Value>,
    failure: Option<FailureMode>,
}

/// What `GET /_control/received` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Received {
    pub pushes: Vec<Push>,
    pub latest: BTreeMap<String, Value>,
}

type Shared = Arc<Mutex<Target>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Target> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The target's routes.
pub fn router() -> Router {
    let shared: Shared = Arc::default();
    Router::new()
        .route("/records/{id}", put(receive))
        .route("/_control/fail", post(fail))
        .route("/_control/recover", post(recover))
        .route("/_control/reset", post(reset))
        .route("/_control/received", get(received))
        .with_state(shared)
}

/// Serves the target on `listener` until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
}

async fn receive(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (answer, latency) = {
        let mut target = lock(&shared);
        let failure = target.failure.clone();
        let latency = failure.as_ref().and_then(|f| f.latency_ms);
        let answer = match failure {
            Some(mode) if mode.status >= 400 => {
                match mode.count {
                    Some(1) => target.failure = None,
                    Some(n) => {
                        if let Some(active) = target.failure.as_mut() {
                            active.count = Some(n - 1);
                        }
                    }
                    None => {}
                }
                Some(mode)
            }
            _ => None,
        };
        (answer, latency)
    };
    if let Some(ms) = latency {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let correlation_id = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(mode) = answer {
        let status = StatusCode::from_u16(mode.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        lock(&shared).pushes.push(Push {
            id,
            status: status.as_u16(),
            correlation_id,
            body: Value::Null,
        });
        let mut response = (status, r#"{"error":"injected failure"}"#).into_response();
        if let Some(seconds) = mode.retry_after {
            if let Ok(value) = seconds.to_string().parse() {
                response.headers_mut().insert("retry-after", value);
            }
        }
        return response;
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, r#"{"error":"body is not JSON"}"#).into_response();
    };
    let mut target = lock(&shared);
    target.pushes.push(Push {
        id: id.clone(),
        status: 200,
        correlation_id,
        body: parsed.clone(),
    });
    let version = |body: &Value| body.get("source_version").and_then(Value::as_i64);
    let newer = match target.latest.get(&id) {
        Some(held) => version(&parsed) >= version(held),
        None => true,
    };
    if !newer {
        return (
            StatusCode::OK,
            r#"{"status":"older than the version held; kept the newer"}"#,
        )
            .into_response();
    }
    target.latest.insert(id, parsed);
    (StatusCode::OK, r#"{"status":"stored"}"#).into_response()
}

async fn fail(State(shared): State<Shared>, Json(mode): Json<FailureMode>) -> Response {
    if !(400..=599).contains(&mode.status) {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error":"status must be 400-599"}"#,
        )
            .into_response();
    }
    lock(&shared).failure = Some(mode);
    StatusCode::NO_CONTENT.into_response()
}

async fn recover(State(shared): State<Shared>) -> Response {
    lock(&shared).failure = None;
    StatusCode::NO_CONTENT.into_response()
}

async fn reset(State(shared): State<Shared>) -> Response {
    *lock(&shared) = Target::default();
    StatusCode::NO_CONTENT.into_response()
}

async fn received(State(shared): State<Shared>) -> Json<Received> {
    let target = lock(&shared);
    Json(Received {
        pushes: target.pushes.clone(),
        latest: target.latest.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start() -> (String, watch::Sender<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(listener, stopped));
        (url, stop)
    }

    #[tokio::test]
    async fn keeps_the_newest_version_and_fails_on_request() {
        let (url, _stop) = start().await;
        let client = reqwest::Client::new();
        let put = |version: i64| {
            client
                .put(format!("{url}/records/hris:E-1"))
                .header("x-correlation-id", "c-1")
                .body(format!(r#"{{"source_version":{version}}}"#))
                .send()
        };
        assert_eq!(put(2).await.expect("put").status(), 200);
        assert_eq!(put(1).await.expect("put").status(), 200);
        client
            .post(format!("{url}/_control/fail"))
            .header("content-type", "application/json")
            .body(r#"{"status":429,"count":1,"retry_after":3}"#)
            .send()
            .await
            .expect("fail");
        let refused = put(3).await.expect("put");
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers()["retry-after"], "3");
        assert_eq!(
            put(3).await.expect("put").status(),
            200,
            "the failure was for one push only"
        );
        let received: Received = serde_json::from_slice(
            &client
                .get(format!("{url}/_control/received"))
                .send()
                .await
                .expect("get")
                .bytes()
                .await
                .expect("body"),
        )
        .expect("JSON");
        assert_eq!(received.pushes.len(), 4);
        assert_eq!(received.pushes[2].status, 429);
        assert_eq!(received.pushes[0].correlation_id.as_deref(), Some("c-1"));
        assert_eq!(received.latest["hris:E-1"]["source_version"], 3);
    }
}
