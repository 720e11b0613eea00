//! The function host: for each deployed function a Runtime API and a process running its
//! real binary (for the queue's consumer, as many instances as the event source's maximum
//! concurrency, each polling the queue and invoking its own process, as Lambda scales;
//! for the HTTP route's function, [`HTTP_INSTANCES`] behind one route, each request
//! going to an idle one),
//! with the event sources (HTTP route, queue, schedule) and, where the environment asks
//! for it, the local downstream target.

use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::discover::{self, Deployment, EmulatorClients};
use super::pool::InstancePool;
use super::process::{self, FunctionLaunch};
use super::runtime_api::RuntimeApi;
use super::{downstream, sources, LocalError};
use crate::config::Environment;

/// How long a function's in-flight invocations get to finish when it is restarted.
const RESTART_GRACE: Duration = Duration::from_secs(10);

/// Instances of the HTTP route's function (ingest): parallel requests are handled in
/// parallel, as Lambda runs concurrent execution environments for them.
pub const HTTP_INSTANCES: u32 = 4;

/// Where the host listens and where it finds and unpacks code.
#[derive(Debug, Clone)]
pub struct HostOptions {
    pub endpoint_url: String,
    pub http_port: u16,
    pub downstream_port: Option<u16>,
    /// `build/functions/`, holding the zips that were deployed.
    pub build_dir: PathBuf,
    /// Where deployed binaries are unpacked.
    pub work_dir: PathBuf,
}

/// What is running, for the person who started it.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub ingest_url: String,
    pub downstream_url: Option<String>,
    pub deployment: Deployment,
}

/// A running host; stops everything on [`Host::shutdown`] (or when dropped).
#[derive(Debug)]
pub struct Host {
    pub info: HostInfo,
    stop: watch::Sender<bool>,
    /// The downstream target: it outlives every restart of the functions.
    tasks: JoinSet<()>,
    /// The functions and their event sources, as last discovered.
    functions: Option<Functions>,
    env: Environment,
    options: HostOptions,
    clients: EmulatorClients,
    /// What the compute stack looked like when the functions were started.
    fingerprint: Option<String>,
}

/// One start of the functions and event sources, for one deployment.
#[derive(Debug)]
struct Functions {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Functions {
    async fn stop(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

async fn bind(port: u16, what: &str) -> Result<TcpListener, LocalError> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|_| LocalError::PortTaken {
            port,
            what: what.to_string(),
        })
}

/// How often the host looks at the compute stack for a new deployment.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

impl Host {
    pub async fn start(env: &Environment, options: &HostOptions) -> Result<Self, LocalError> {
        let region = env.settings.region.to_string();
        let clients = EmulatorClients::connect(&options.endpoint_url, &region).await;
        let fingerprint = discover::compute_fingerprint(&clients, env).await?;
        let deployment = discover::discover(&clients, env).await?;
        // Bind every port before starting anything, so a clash fails cleanly.
        let http = bind(options.http_port, "ingest HTTP route").await?;
        let downstream_listener = match options.downstream_port {
            Some(port) => Some(bind(port, "local downstream target").await?),
            None => None,
        };
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        if let Some(listener) = downstream_listener {
            tasks.spawn(async move {
                if let Err(error) = downstream::serve(listener, stopped).await {
                    eprintln!("[downstream] stopped: {error}");
                }
            });
        }
        let functions = start_functions(env, options, &clients, &deployment, http).await?;
        let route_path = deployment
            .route
            .route_key
            .split_once(' ')
            .map(|(_, path)| path.to_string())
            .unwrap_or_default();
        Ok(Self {
            info: HostInfo {
                ingest_url: format!("http://127.0.0.1:{}{route_path}", options.http_port),
                downstream_url: options
                    .downstream_port
                    .map(|port| format!("http://127.0.0.1:{port}")),
                deployment,
            },
            stop,
            tasks,
            functions: Some(functions),
            env: env.clone(),
            options: options.clone(),
            clients,
            fingerprint,
        })
    }

    /// Follows the deployment: when the compute stack changes (a deploy, a decommission
    /// stopping traffic) and with it what a function runs (code, configuration, event
    /// sources), the functions are started again from what is now deployed; when the
    /// stack is gone they are stopped and the ingest route closes. Returns only on an
    /// error that stops the host.
    pub async fn follow(&mut self) -> Result<(), LocalError> {
        loop {
            tokio::time::sleep(FOLLOW_EVERY).await;
            let current = match discover::compute_fingerprint(&self.clients, &self.env).await {
                Ok(current) => current,
                Err(error) => {
                    eprintln!("[host] could not read the compute stack: {error}");
                    continue;
                }
            };
            if current == self.fingerprint {
                continue;
            }
            let Some(fingerprint) = current else {
                if let Some(functions) = self.functions.take() {
                    functions.stop(RESTART_GRACE).await;
                    eprintln!(
                        "[host] the compute stack is gone: functions stopped, the ingest route is closed"
                    );
                }
                self.fingerprint = None;
                continue;
            };
            if fingerprint.contains("_IN_PROGRESS") {
                continue; // wait until the stack is settled
            }
            let deployment = match discover::discover(&self.clients, &self.env).await {
                Ok(deployment) => deployment,
                Err(error) => {
                    eprintln!("[host] the compute stack changed but cannot be read back: {error}");
                    self.fingerprint = Some(fingerprint);
                    continue;
                }
            };
            if self.functions.is_some() && deployment == self.info.deployment {
                // An update that left every function as it was (a log group, an alarm):
                // as on Lambda, running instances are not replaced.
                self.fingerprint = Some(fingerprint);
                continue;
            }
            match self.restart(deployment).await {
                Ok(()) => {
                    self.fingerprint = Some(fingerprint);
                    let stopped = self
                        .info
                        .deployment
                        .functions
                        .iter()
                        .find(|f| f.name == self.info.deployment.route.function)
                        .and_then(|f| {
                            f.environment
                                .iter()
                                .find(|(k, v)| k == "STOPPED_SINCE" && !v.is_empty())
                        })
                        .map(|(_, since)| {
                            format!(" (traffic stopped at {since}: ingest answers 410)")
                        })
                        .unwrap_or_default();
                    eprintln!("[host] the compute stack changed: functions restarted from what is deployed{stopped}");
                }
                Err(error) => {
                    eprintln!(
                        "[host] the compute stack changed but its functions cannot start: {error}"
                    );
                    if let Some(help) = error.help() {
                        eprintln!("[host] {help}");
                    }
                    self.fingerprint = Some(fingerprint);
                }
            }
        }
    }

    async fn restart(&mut self, deployment: Deployment) -> Result<(), LocalError> {
        if let Some(functions) = self.functions.take() {
            functions.stop(RESTART_GRACE).await;
        }
        let http = bind(self.options.http_port, "ingest HTTP route").await?;
        let functions =
            start_functions(&self.env, &self.options, &self.clients, &deployment, http).await?;
        self.functions = Some(functions);
        self.info.deployment = deployment;
        Ok(())
    }

    /// Stops every process and event source and waits for them, at most `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(functions) = self.functions.take() {
            functions.stop(grace).await;
        }
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

/// Starts every deployed function (its processes and Runtime APIs) and its event source:
/// the HTTP route on `http`, the queue pollers, the schedule (unless its rule is
/// disabled).
async fn start_functions(
    env: &Environment,
    options: &HostOptions,
    clients: &EmulatorClients,
    deployment: &Deployment,
    http: TcpListener,
) -> Result<Functions, LocalError> {
    let region = env.settings.region.to_string();
    let account_id = env.settings.account_id.to_string();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut apis = std::collections::BTreeMap::new();
    for function in &deployment.functions {
        let binary = discover::deployed_binary(&options.build_dir, function, &options.work_dir)?;
        // As Lambda scales a queue's consumer: up to the mapping's maximum concurrency
        // instances, each a process of its own with its own Runtime API and poller.
        let instances = if function.name == deployment.queue.function {
            deployment.queue.maximum_concurrency.max(1)
        } else if function.name == deployment.route.function {
            HTTP_INSTANCES
        } else {
            1
        };
        let mut environment = function.environment.clone();
        environment.extend([
            ("AWS_ENDPOINT_URL".to_string(), options.endpoint_url.clone()),
            ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "test".to_string()),
        ]);
        let mut function_apis = Vec::new();
        for instance in 0..instances {
            let api = RuntimeApi::start(&function.arn)
                .await
                .map_err(|source| LocalError::Io {
                    action: "listen for the Runtime API of".into(),
                    path: PathBuf::from(&function.function_name),
                    source,
                })?;
            let name = if instances > 1 {
                format!("{}#{}", function.name, instance + 1)
            } else {
                function.name.clone()
            };
            let launch = FunctionLaunch {
                name,
                function_name: function.function_name.clone(),
                binary: binary.clone(),
                memory_mb: function.memory_mb,
                timeout: function.timeout,
                environment: environment.clone(),
            };
            tasks.spawn(process::supervise(
                launch,
                api.clone(),
                region.clone(),
                stopped.clone(),
            ));
            function_apis.push(api);
        }
        apis.insert(function.name.clone(), (function_apis, function.timeout));
    }
    if let Some((instances, timeout)) = apis.get(&deployment.route.function) {
        let pool = InstancePool::new(instances.clone());
        let timeout = *timeout;
        let route = deployment.route.clone();
        let account = account_id.clone();
        let stopped = stopped.clone();
        tasks.spawn(async move {
            if let Err(error) =
                sources::serve_http(route, pool, timeout, account, http, stopped).await
            {
                eprintln!("[host] the HTTP route stopped: {error}");
            }
        });
    }
    if let Some((instances, timeout)) = apis.get(&deployment.queue.function) {
        for api in instances {
            tasks.spawn(sources::poll_queue(
                deployment.queue.clone(),
                clients.sqs.clone(),
                api.clone(),
                *timeout,
                region.clone(),
                stopped.clone(),
            ));
        }
    }
    let schedule = apis
        .get(&deployment.schedule.function)
        .and_then(|(apis, timeout)| Some((apis.first()?.clone(), *timeout)));
    if let Some((api, timeout)) = schedule.filter(|_| deployment.schedule.enabled) {
        tasks.spawn(sources::run_schedule(
            deployment.schedule.clone(),
            api,
            timeout,
            account_id,
            region,
            stopped,
        ));
    }
    Ok(Functions { stop, tasks })
}
