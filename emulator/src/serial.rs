//! A proxy in front of the emulator that passes one request at a time. moto serves
//! requests on several threads without locking its tables and buckets, so two
//! conditional writes racing on one item or key can both pass their condition, which
//! DynamoDB and S3 never allow. Tests that race real clients on a conditional write (the
//! deploy lock, publishing one release twice) send their calls through this proxy, so
//! the emulator is as strict as the services it stands in for; the callers themselves
//! still run at the same time.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::Mutex;

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    one_at_a_time: Mutex<()>,
}

/// A running proxy; it stops when dropped.
pub struct SerialProxy {
    endpoint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SerialProxy {
    /// Starts a proxy to `upstream` on a free port of 127.0.0.1, on a thread of its own.
    pub fn start(upstream: &str) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let proxy = Arc::new(Proxy {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            one_at_a_time: Mutex::new(()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let app = Router::new().fallback(forward).with_state(proxy);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Ok(Self {
            endpoint,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The URL to point clients at instead of the emulator's.
    pub fn endpoint_url(&self) -> String {
        self.endpoint.clone()
    }
}

impl Drop for SerialProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = proxy
        .http
        .request(method, format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let _turn = proxy.one_at_a_time.lock().await;
    let Ok(answer) = request.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let mut response_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response_headers.insert(name, value.clone());
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    (status, response_headers, body).into_response()
}
