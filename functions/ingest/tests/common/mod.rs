//! Test support: one moto server per test binary, SDK configuration pointed at it, and
//! names unique to each test.

pub mod api;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use emulator::MotoServer;

static MOTO: OnceLock<MotoServer> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The endpoint of this test binary's moto server (started on first use).
pub fn moto_endpoint() -> String {
    MOTO.get_or_init(|| {
        MotoServer::start().expect("moto_server starts (run scripts/bootstrap to install it)")
    })
    .endpoint_url()
}

/// SDK configuration for moto with test credentials.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto_endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// A name no other test in this binary uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}
