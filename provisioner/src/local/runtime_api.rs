//! A Lambda Runtime API emulator for one function: the HTTP interface a function's
//! `bootstrap` polls for events (`/2018-06-01/runtime/invocation/next`) and answers
//! (`.../response`, `.../error`), with an `invoke` call for the event sources.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{oneshot, Notify};

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function returned this payload.
    Response(Vec<u8>),
    /// The function reported an error (or failed to initialize).
    Error { error_type: String, message: String },
    /// The function did not answer within its timeout.
    Timeout,
    /// The function's process went away before answering.
    Crashed(String),
}

struct Invocation {
    request_id: String,
    payload: Vec<u8>,
    deadline_ms: u128,
    respond: oneshot::Sender<Outcome>,
}

struct Shared {
    function_arn: String,
    pending: Mutex<VecDeque<Invocation>>,
    available: Notify,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<Outcome>>,
    restart: Notify,
}

/// The Runtime API of one function, listening on 127.0.0.1.
#[derive(Clone)]
pub struct RuntimeApi {
    address: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeApi")
            .field("address", &self.address)
            .finish()
    }
}

const PREFIX: &str = "/2018-06-01/runtime";

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another handler panicked; the data is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RuntimeApi {
    /// Starts serving on a free port of 127.0.0.1.
    pub async fn start(function_arn: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            function_arn: function_arn.to_string(),
            pending: Mutex::new(VecDeque::new()),
            available: Notify::new(),
            in_flight: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
            restart: Notify::new(),
        });
        let router = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(
                &format!("{PREFIX}/invocation/{{id}}/response"),
                post(response),
            )
            .route(
                &format!("{PREFIX}/invocation/{{id}}/error"),
                post(invocation_error),
            )
            .route(&format!("{PREFIX}/init/error"), post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { address, shared })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Hands `payload` to the function and waits for its answer, at most `timeout`.
    pub async fn invoke(&self, payload: Vec<u8>, timeout: Duration) -> Outcome {
        if let Some(error) = lock(&self.shared.init_error).clone() {
            return error;
        }
        let (respond, answer) = oneshot::channel();
        let deadline = SystemTime::now() + timeout;
        let deadline_ms = deadline
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_millis())
            .unwrap_or_default();
        let request_id = uuid::Uuid::new_v4().to_string();
        lock(&self.shared.pending).push_back(Invocation {
            request_id: request_id.clone(),
            payload,
            deadline_ms,
            respond,
        });
        self.shared.available.notify_one();
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::Crashed("the runtime API dropped the invocation".into()),
            Err(_) => {
                lock(&self.shared.in_flight).remove(&request_id);
                lock(&self.shared.pending).retain(|queued| queued.request_id != request_id);
                // Lambda does not reuse a sandbox whose invocation timed out.
                self.shared.restart.notify_one();
                Outcome::Timeout
            }
        }
    }

    /// Resolves when an invocation timed out and the process must be replaced.
    pub async fn restart_requested(&self) {
        self.shared.restart.notified().await;
    }

    /// Fails every invocation the function holds (its process exited) and forgets any
    /// initialization error, ready for a fresh process.
    pub fn fail_in_flight(&self, reason: &str) {
        let held: Vec<_> = lock(&self.shared.in_flight).drain().collect();
        for (_, respond) in held {
            let _ = respond.send(Outcome::Crashed(reason.to_string()));
        }
        lock(&self.shared.init_error).take();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    loop {
        let notified = shared.available.notified();
        let invocation = lock(&shared.pending).pop_front();
        if let Some(invocation) = invocation {
            if invocation.respond.is_closed() {
                continue; // the caller gave up (timed out) before the function asked
            }
            let mut headers = HeaderMap::new();
            let header =
                |value: &str| HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static(""));
            headers.insert(
                "lambda-runtime-aws-request-id",
                header(&invocation.request_id),
            );
            headers.insert(
                "lambda-runtime-deadline-ms",
                header(&invocation.deadline_ms.to_string()),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                header(&shared.function_arn),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                header(&format!(
                    "Root=1-{:08x}-{}",
                    invocation.deadline_ms / 1000,
                    &invocation.request_id.replace('-', "")[..24]
                )),
            );
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            lock(&shared.in_flight).insert(invocation.request_id, invocation.respond);
            return (StatusCode::OK, headers, invocation.payload).into_response();
        }
        notified.await;
    }
}

fn complete(shared: &Shared, id: &str, outcome: Outcome) -> Response {
    match lock(&shared.in_flight).remove(id) {
        Some(respond) => {
            let _ = respond.send(outcome);
            (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
        }
        None => (
            StatusCode::BAD_REQUEST,
            r#"{"errorMessage":"unknown or expired request id","errorType":"InvalidRequestID"}"#,
        )
            .into_response(),
    }
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    complete(&shared, &id, Outcome::Response(body.to_vec()))
}

fn error_outcome(body: &[u8]) -> Outcome {
    let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |key: &str| parsed.get(key).and_then(|v| v.as_str()).map(str::to_string);
    Outcome::Error {
        error_type: text("errorType").unwrap_or_else(|| "Unhandled".into()),
        message: text("errorMessage").unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
    }
}

async fn invocation_error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    complete(&shared, &id, error_outcome(&body))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let outcome = error_outcome(&body);
    *lock(&shared.init_error) = Some(outcome.clone());
    let pending: Vec<Invocation> = lock(&shared.pending).drain(..).collect();
    for invocation in pending {
        let _ = invocation.respond.send(outcome.clone());
    }
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_next(client: &reqwest_lite::Client, api: &RuntimeApi) -> (String, String) {
        client.next(&api.address()).await
    }

    /// A minimal HTTP/1.1 client over TcpStream, enough to play a function's part.
    mod reqwest_lite {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::TcpStream;

        pub struct Client;

        async fn call(address: &str, method: &str, path: &str, body: &str) -> String {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await.expect("read");
            reply
        }

        impl Client {
            pub async fn next(&self, address: &str) -> (String, String) {
                let reply = call(address, "GET", "/2018-06-01/runtime/invocation/next", "").await;
                let id = reply
                    .lines()
                    .find_map(|line| line.strip_prefix("lambda-runtime-aws-request-id: "))
                    .expect("request id header")
                    .trim()
                    .to_string();
                let body = reply
                    .split("\r\n\r\n")
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                (id, body)
            }

            pub async fn post(&self, address: &str, path: &str, body: &str) -> String {
                call(address, "POST", path, body).await
            }
        }
    }

    #[tokio::test]
    async fn an_event_goes_to_the_function_and_its_answer_comes_back() {
        let api = RuntimeApi::start("arn:aws:lambda:us-east-1:123456789012:function:f")
            .await
            .expect("starts");
        let caller = {
            let api = api.clone();
            tokio::spawn(async move {
                api.invoke(br#"{"n":1}"#.to_vec(), Duration::from_secs(5))
                    .await
            })
        };
        let client = reqwest_lite::Client;
        let (id, body) = get_next(&client, &api).await;
        assert_eq!(body, r#"{"n":1}"#);
        let reply = client
            .post(
                &api.address(),
                &format!("/2018-06-01/runtime/invocation/{id}/response"),
                r#"{"ok":true}"#,
            )
            .await;
        assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
        assert_eq!(
            caller.await.expect("joined"),
            Outcome::Response(br#"{"ok":true}"#.to_vec())
        );
    }

    #[tokio::test]
    async fn errors_timeouts_and_crashes_are_told_apart() {
        let api = RuntimeApi::start("arn:aws:lambda:us-east-1:123456789012:function:f")
            .await
            .expect("starts");
        let client = reqwest_lite::Client;

        let failing = {
            let api = api.clone();
            tokio::spawn(async move { api.invoke(b"{}".to_vec(), Duration::from_secs(5)).await })
        };
        let (id, _) = get_next(&client, &api).await;
        client
            .post(
                &api.address(),
                &format!("/2018-06-01/runtime/invocation/{id}/error"),
                r#"{"errorType":"Permanent","errorMessage":"bad record"}"#,
            )
            .await;
        assert_eq!(
            failing.await.expect("joined"),
            Outcome::Error {
                error_type: "Permanent".into(),
                message: "bad record".into()
            }
        );

        // Nobody polls: the invocation times out.
        assert_eq!(
            api.invoke(b"{}".to_vec(), Duration::from_millis(100)).await,
            Outcome::Timeout
        );

        let crashing = {
            let api = api.clone();
            tokio::spawn(async move { api.invoke(b"{}".to_vec(), Duration::from_secs(5)).await })
        };
        let (id, _) = get_next(&client, &api).await;
        api.fail_in_flight("exited with status 101");
        assert_eq!(
            crashing.await.expect("joined"),
            Outcome::Crashed("exited with status 101".into())
        );
        let late = client
            .post(
                &api.address(),
                &format!("/2018-06-01/runtime/invocation/{id}/response"),
                "{}",
            )
            .await;
        assert!(late.starts_with("HTTP/1.1 400"), "{late}");
    }
}
