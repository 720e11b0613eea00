//! A proxy in front of the emulator that passes one request at a time. moto serves
//! requests on several threads without locking its DynamoDB tables, so two conditional
//! writes to one item can both pass their condition, which DynamoDB never allows (its
//! writes to an item are atomic). Tests that race workers on the same items send their
//! DynamoDB calls through this proxy so the emulator is as strict as DynamoDB.

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

/// Starts the proxy to `upstream` on a free port; returns its endpoint URL.
pub async fn start(upstream: &str) -> String {
    let proxy = Arc::new(Proxy {
        upstream: upstream.trim_end_matches('/').to_string(),
        http: reqwest::Client::new(),
        one_at_a_time: Mutex::new(()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().fallback(forward).with_state(proxy);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}")
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
