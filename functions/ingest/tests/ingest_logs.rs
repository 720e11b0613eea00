//! Ingest's logs: the correlation id on every line of a request, no payload value on any.
//! In a test binary of its own, so that no concurrent test can cache a log call site as
//! uninteresting while this test's subscriber is in place.

mod common;

use common::api::{employee, setup, signed, KEY, NOW};
use ingest::handle_request;
use serde_json::json;

#[derive(Clone, Default)]
struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_carry_the_correlation_id_but_never_payload_values() {
    let setup = setup().await;
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Call sites reached before this subscriber was in place (the moto harness's) may have
    // cached "never interested": ask again with it in place.
    tracing::callsite::rebuild_interest_cache();
    let mut invalid = employee("E2", "leaky.person@example");
    invalid["hire_date"] = json!("1999-99-99");
    let body =
        json!({"records": [employee("E1", "visible.person@example.com"), invalid]}).to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 202);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("req-7d1f2c"),
        "the correlation id is logged: {text}"
    );
    assert!(text.contains("records processed"), "{text}");
    for value in ["visible.person", "leaky.person", "1999-99-99", "Lovelace"] {
        assert!(
            !text.contains(value),
            "`{value}` leaked into the logs: {text}"
        );
    }
}
