//! A real local downstream target for the tests: an HTTP server that keeps each record's
//! state the way a careful downstream would (it applies only a newer version and answers
//! 409 to an older or equal one), logs every request it receives, and misbehaves on
//! purpose: random latency, 429s, 5xx answers without applying, and "lost answers" (it
//! applies the record, then answers 500, as when a response is lost on the way back).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::Router;
use rand::{Rng, SeedableRng};

/// How the target misbehaves; probabilities are per request.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Random latency before answering, in milliseconds (inclusive range).
    pub latency_ms: (u64, u64),
    /// Extra latency for the requests of one version, to force a race.
    pub slow_version: Option<(u64, Duration)>,
    /// Answer 429 (with `Retry-After: 1` half of the time) without applying.
    pub p_throttle: f64,
    /// Answer 500/502/503 without applying.
    pub p_server_error: f64,
    /// Apply, then answer 500.
    pub p_lost_answer: f64,
    /// Seed of the fault dice.
    pub seed: u64,
}

impl Faults {
    /// A target that always answers well, at once.
    pub fn none() -> Self {
        Self {
            latency_ms: (0, 0),
            slow_version: None,
            p_throttle: 0.0,
            p_server_error: 0.0,
            p_lost_answer: 0.0,
            seed: 1,
        }
    }
}

/// One request the target received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `{source}:{external_id}`, as in the path.
    pub record: String,
    /// The version in the body.
    pub version: u64,
    /// `upsert` or `delete`.
    pub operation: String,
    /// The `X-Record-Version` header, if sent.
    pub version_header: Option<u64>,
    /// The idempotency key header.
    pub idempotency_key: String,
    /// The status answered.
    pub status: u16,
    /// Whether the request changed the record's state.
    pub applied: bool,
    /// Whether it was refused by an injected fault before being looked at.
    pub faulted: bool,
}

/// A record as the target holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Newest version applied.
    pub version: u64,
    /// Whether that version is a delete.
    pub deleted: bool,
    /// The body of that version (`fields` of an upsert).
    pub fields: serde_json::Value,
}

#[derive(Default)]
struct Shared {
    held: BTreeMap<String, Held>,
    log: Vec<Received>,
}

struct Target {
    faults: Faults,
    shared: Mutex<Shared>,
    rng: Mutex<rand::rngs::StdRng>,
}

/// A running target.
#[derive(Clone)]
pub struct TargetServer {
    state: Arc<Target>,
    address: SocketAddr,
}

impl TargetServer {
    /// Starts the target on a free port of 127.0.0.1.
    pub async fn start(faults: Faults) -> Self {
        let state = Arc::new(Target {
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(faults.seed)),
            faults,
            shared: Mutex::new(Shared::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/records/{id}", put(handle))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { state, address }
    }

    /// The base URL (`DOWNSTREAM_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every request received, in the order they were answered.
    pub fn log(&self) -> Vec<Received> {
        self.state.shared.lock().unwrap().log.clone()
    }

    /// The records as held now.
    pub fn held(&self) -> BTreeMap<String, Held> {
        self.state.shared.lock().unwrap().held.clone()
    }
}

async fn handle(
    State(target): State<Arc<Target>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let version = parsed["source_version"].as_u64().unwrap_or(0);
    let operation = parsed["operation"].as_str().unwrap_or("").to_string();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (latency, dice, throttle_with_retry_after, server_status) = {
        let mut rng = target.rng.lock().unwrap();
        let (low, high) = target.faults.latency_ms;
        let latency = Duration::from_millis(rng.random_range(low..=high));
        (
            latency,
            rng.random::<f64>(),
            rng.random::<bool>(),
            [500_u16, 502, 503][rng.random_range(0..3)],
        )
    };
    let extra = match target.faults.slow_version {
        Some((slow, extra)) if slow == version => extra,
        _ => Duration::ZERO,
    };
    tokio::time::sleep(latency + extra).await;
    let faults = &target.faults;
    let mut received = Received {
        record: id.clone(),
        version,
        operation: operation.clone(),
        version_header: header("x-record-version").and_then(|v| v.parse().ok()),
        idempotency_key: header("idempotency-key").unwrap_or_default(),
        status: 200,
        applied: false,
        faulted: false,
    };
    let mut shared = target.shared.lock().unwrap();
    let response = if dice < faults.p_throttle {
        received.status = 429;
        received.faulted = true;
        let mut response = StatusCode::TOO_MANY_REQUESTS.into_response();
        if throttle_with_retry_after {
            response
                .headers_mut()
                .insert("retry-after", "1".parse().unwrap());
        }
        response
    } else if dice < faults.p_throttle + faults.p_server_error {
        received.status = server_status;
        received.faulted = true;
        StatusCode::from_u16(server_status).unwrap().into_response()
    } else {
        let newer = shared
            .held
            .get(&id)
            .is_none_or(|held| version > held.version);
        if newer {
            shared.held.insert(
                id.clone(),
                Held {
                    version,
                    deleted: operation == "delete",
                    fields: parsed["fields"].clone(),
                },
            );
            received.applied = true;
            if dice < faults.p_throttle + faults.p_server_error + faults.p_lost_answer {
                received.status = 500;
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            } else {
                StatusCode::OK.into_response()
            }
        } else {
            received.status = 409;
            StatusCode::CONFLICT.into_response()
        }
    };
    shared.log.push(received);
    response
}
