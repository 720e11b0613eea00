//! Several instances of one function behind one event source: each invocation goes to an
//! idle instance, as Lambda routes concurrent requests to concurrent execution
//! environments, and waits for one to come free when every instance is busy. The HTTP
//! route runs ingest this way, so parallel requests are handled in parallel locally too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::runtime_api::{Outcome, RuntimeApi};

/// The instances of one function (each a process polling its own Runtime API).
#[derive(Debug)]
pub struct InstancePool {
    apis: Vec<RuntimeApi>,
    idle: Arc<Mutex<Vec<usize>>>,
    free: Semaphore,
}

/// Gives its instance back to the pool when the invocation ends, even when the caller
/// stops waiting (a client that disconnects drops the request's future).
struct Lease {
    idle: Arc<Mutex<Vec<usize>>>,
    index: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        lock(&self.idle).push(self.index);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl InstancePool {
    /// A pool over `apis` (at least one).
    pub fn new(apis: Vec<RuntimeApi>) -> Self {
        let count = apis.len();
        Self {
            idle: Arc::new(Mutex::new((0..count).rev().collect())),
            free: Semaphore::new(count),
            apis,
        }
    }

    /// How many instances the pool runs.
    pub fn len(&self) -> usize {
        self.apis.len()
    }

    /// Whether the pool has no instance.
    pub fn is_empty(&self) -> bool {
        self.apis.is_empty()
    }

    /// Invokes an idle instance with `payload`, waiting for one if all are busy.
    pub async fn invoke(&self, payload: Vec<u8>, timeout: Duration) -> Outcome {
        let Ok(_permit) = self.free.acquire().await else {
            return Outcome::Crashed("the function host is stopping".into());
        };
        // A permit guarantees an idle instance.
        let Some(index) = lock(&self.idle).pop() else {
            return Outcome::Crashed("no idle instance although one was free".into());
        };
        let lease = Lease {
            idle: Arc::clone(&self.idle),
            index,
        };
        let outcome = self.apis[lease.index].invoke(payload, timeout).await;
        drop(lease);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Plays a function on `api` over real HTTP: takes each event, works on it for
    /// `busy`, answers with its own number.
    fn function(api: &RuntimeApi, number: usize, busy: Duration) {
        let base = format!("http://{}/2018-06-01/runtime/invocation", api.address());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let Ok(next) = client.get(format!("{base}/next")).send().await else {
                    return;
                };
                let id = next
                    .headers()
                    .get("lambda-runtime-aws-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                tokio::time::sleep(busy).await;
                let _ = client
                    .post(format!("{base}/{id}/response"))
                    .body(number.to_string())
                    .send()
                    .await;
            }
        });
    }

    #[tokio::test]
    async fn parallel_invocations_run_on_different_instances_at_once() {
        let busy = Duration::from_millis(400);
        let mut apis = Vec::new();
        for number in 0..3 {
            let api = RuntimeApi::start("arn:aws:lambda:us-east-1:123456789012:function:ingest")
                .await
                .expect("starts");
            function(&api, number, busy);
            apis.push(api);
        }
        let pool = Arc::new(InstancePool::new(apis));
        assert_eq!(pool.len(), 3);
        let started = Instant::now();
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let pool = Arc::clone(&pool);
                tokio::spawn(
                    async move { pool.invoke(b"{}".to_vec(), Duration::from_secs(5)).await },
                )
            })
            .collect();
        let mut answered = Vec::new();
        for call in calls {
            match call.await.expect("joined") {
                Outcome::Response(body) => answered.push(String::from_utf8(body).unwrap()),
                other => panic!("{other:?}"),
            }
        }
        answered.sort();
        assert_eq!(answered, ["0", "1", "2"], "one request per instance");
        assert!(
            started.elapsed() < busy * 2,
            "three requests took {:?}: not in parallel",
            started.elapsed()
        );

        // A fourth request while three are busy waits for the first free instance.
        let started = Instant::now();
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let pool = Arc::clone(&pool);
                tokio::spawn(
                    async move { pool.invoke(b"{}".to_vec(), Duration::from_secs(5)).await },
                )
            })
            .collect();
        for call in calls {
            assert!(matches!(call.await.expect("joined"), Outcome::Response(_)));
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= busy * 2 && elapsed < busy * 3, "{elapsed:?}");
    }
}
