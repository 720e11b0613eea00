//! Reads back from the emulator what was deployed, so the function host runs exactly
//! that: each function's configuration and code, the queue event source, the HTTP route
//! and the schedule.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde_yaml::Value;
use sha2::{Digest, Sha256};

use super::LocalError;
use crate::config::Environment;

/// SDK clients pointed at the emulator.
#[derive(Debug, Clone)]
pub struct EmulatorClients {
    pub lambda: aws_sdk_lambda::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub cloudformation: aws_sdk_cloudformation::Client,
}

impl EmulatorClients {
    pub async fn connect(endpoint_url: &str, region: &str) -> Self {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .endpoint_url(endpoint_url)
            .credentials_provider(aws_sdk_lambda::config::Credentials::new(
                "test", "test", None, None, "emulator",
            ))
            .load()
            .await;
        Self {
            lambda: aws_sdk_lambda::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            eventbridge: aws_sdk_eventbridge::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            cloudformation: aws_sdk_cloudformation::Client::new(&config),
        }
    }
}

/// One deployed function, as the emulator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedFunction {
    /// Short name: `ingest`, `worker`, `reconciler`.
    pub name: String,
    pub function_name: String,
    pub arn: String,
    pub memory_mb: i32,
    pub timeout: Duration,
    pub environment: Vec<(String, String)>,
    /// Lambda's `CodeSha256`: base64 of the zip's sha256.
    pub code_sha256: String,
}

/// The SQS event source of the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSource {
    pub function: String,
    pub queue_arn: String,
    pub queue_url: String,
    pub batch_size: i32,
    pub batching_window: Duration,
    pub report_batch_item_failures: bool,
    /// The mapping's maximum concurrency: how many instances of the function Lambda runs
    /// for this queue at most, each polling and invoking on its own.
    pub maximum_concurrency: u32,
}

/// The HTTP route in front of ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    pub function: String,
    /// `POST /integrations/{source}/records`
    pub route_key: String,
}

/// The reconciler's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSource {
    pub function: String,
    pub rule_arn: String,
    pub expression: String,
    pub every: Duration,
    /// The rule is enabled (`decommission` disables it when it stops traffic).
    pub enabled: bool,
}

/// Everything the function host needs from the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub functions: Vec<DeployedFunction>,
    pub queue: QueueSource,
    pub route: HttpRoute,
    pub schedule: ScheduleSource,
}

fn missing(what: impl Into<String>) -> LocalError {
    LocalError::NotDeployed { what: what.into() }
}

fn aws<E: std::fmt::Display>(action: &str) -> impl FnOnce(E) -> LocalError + '_ {
    move |error| LocalError::Emulator {
        action: action.to_string(),
        message: error.to_string(),
    }
}

/// What identifies one deployment of the compute stack: its status and parameters (code
/// keys, the traffic stop), or `None` while the stack does not exist. A deploy or a
/// decommission step changes it; the host restarts its functions when it does.
pub async fn compute_fingerprint(
    clients: &EmulatorClients,
    env: &Environment,
) -> Result<Option<String>, LocalError> {
    let name = env.names.stack("compute");
    let output = match clients
        .cloudformation
        .describe_stacks()
        .stack_name(&name)
        .send()
        .await
    {
        Ok(output) => output,
        Err(error)
            if aws_smithy_types::error::metadata::ProvideErrorMetadata::message(&error)
                .is_some_and(|m| m.contains("does not exist")) =>
        {
            return Ok(None)
        }
        Err(error) => {
            return Err(aws("DescribeStacks")(
                aws_smithy_types::error::display::DisplayErrorContext(error),
            ))
        }
    };
    let Some(stack) = output.stacks().first() else {
        return Ok(None);
    };
    let mut parameters: Vec<String> = stack
        .parameters()
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                p.parameter_key().unwrap_or_default(),
                p.parameter_value().unwrap_or_default()
            )
        })
        .collect();
    parameters.sort();
    Ok(Some(format!(
        "{} {}",
        stack.stack_status().map(|s| s.as_str()).unwrap_or_default(),
        parameters.join(" ")
    )))
}

/// Reads the deployment of `env` back from the emulator.
pub async fn discover(
    clients: &EmulatorClients,
    env: &Environment,
) -> Result<Deployment, LocalError> {
    let names = &env.names;
    let mut functions = Vec::new();
    for name in ["ingest", "worker", "reconciler"] {
        let function_name = names.function(name);
        let configuration = clients
            .lambda
            .get_function_configuration()
            .function_name(&function_name)
            .send()
            .await
            .map_err(|_| missing(format!("function {function_name}")))?;
        let mut environment: Vec<(String, String)> = configuration
            .environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        environment.sort();
        functions.push(DeployedFunction {
            name: name.to_string(),
            arn: configuration.function_arn().unwrap_or_default().to_string(),
            memory_mb: configuration.memory_size().unwrap_or(128),
            timeout: Duration::from_secs(
                u64::try_from(configuration.timeout().unwrap_or(3)).unwrap_or(3),
            ),
            code_sha256: configuration.code_sha256().unwrap_or_default().to_string(),
            environment,
            function_name,
        });
    }
    let queue = queue_source(
        clients,
        &names.function("worker"),
        env.settings.queue.maximum_concurrency,
    )
    .await?;
    let route = http_route(clients, &names.stack("compute")).await?;
    let schedule = schedule_source(clients, &names.schedule_rule).await?;
    Ok(Deployment {
        functions,
        queue,
        route,
        schedule,
    })
}

async fn queue_source(
    clients: &EmulatorClients,
    function_name: &str,
    configured_concurrency: u32,
) -> Result<QueueSource, LocalError> {
    let mappings = clients
        .lambda
        .list_event_source_mappings()
        .function_name(function_name)
        .send()
        .await
        .map_err(aws("list the event source mappings"))?;
    let mapping = mappings
        .event_source_mappings()
        .iter()
        .find(|m| {
            m.event_source_arn()
                .is_some_and(|arn| arn.starts_with("arn:aws:sqs:"))
        })
        .ok_or_else(|| missing(format!("an SQS event source for {function_name}")))?;
    let queue_arn = mapping.event_source_arn().unwrap_or_default().to_string();
    let queue_name = queue_arn.rsplit(':').next().unwrap_or_default();
    let queue_url = clients
        .sqs
        .get_queue_url()
        .queue_name(queue_name)
        .send()
        .await
        .map_err(|_| missing(format!("queue {queue_name}")))?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    Ok(QueueSource {
        function: "worker".into(),
        batch_size: mapping.batch_size().unwrap_or(10),
        batching_window: Duration::from_secs(
            u64::try_from(mapping.maximum_batching_window_in_seconds().unwrap_or(0)).unwrap_or(0),
        ),
        report_batch_item_failures: mapping
            .function_response_types()
            .iter()
            .any(|t| t.as_str() == "ReportBatchItemFailures"),
        maximum_concurrency: mapping
            .scaling_config()
            .and_then(|scaling| scaling.maximum_concurrency())
            .and_then(|n| u32::try_from(n).ok())
            // moto may not keep the scaling config; the environment declared it.
            .unwrap_or(configured_concurrency)
            .max(1),
        queue_arn,
        queue_url,
    })
}

/// The route comes from the deployed compute template: the emulator does not create
/// API Gateway v2 resources, but it keeps the template it deployed.
async fn http_route(clients: &EmulatorClients, stack_name: &str) -> Result<HttpRoute, LocalError> {
    let template = clients
        .cloudformation
        .get_template()
        .stack_name(stack_name)
        .send()
        .await
        .map_err(|_| missing(format!("stack {stack_name}")))?;
    let body = template.template_body().unwrap_or_default();
    let parsed: Value = serde_yaml::from_str(body).map_err(aws("read the compute template"))?;
    let resources = parsed
        .get("Resources")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let route_key = resources
        .values()
        .find(|resource| {
            resource.get("Type").and_then(Value::as_str) == Some("AWS::ApiGatewayV2::Route")
        })
        .and_then(|route| {
            route
                .get("Properties")?
                .get("RouteKey")?
                .as_str()
                .map(str::to_string)
        })
        .ok_or_else(|| missing(format!("an HTTP route in stack {stack_name}")))?;
    Ok(HttpRoute {
        function: "ingest".into(),
        route_key,
    })
}

async fn schedule_source(
    clients: &EmulatorClients,
    rule_name: &str,
) -> Result<ScheduleSource, LocalError> {
    let rule = clients
        .eventbridge
        .describe_rule()
        .name(rule_name)
        .send()
        .await
        .map_err(|_| missing(format!("schedule rule {rule_name}")))?;
    let expression = rule.schedule_expression().unwrap_or_default().to_string();
    let every = schedule_period(&expression).ok_or_else(|| LocalError::Unsupported {
        what: format!("schedule `{expression}` of rule {rule_name}"),
        help: "the function host runs rate(...) schedules; use one for the local environment"
            .into(),
    })?;
    Ok(ScheduleSource {
        function: "reconciler".into(),
        rule_arn: rule.arn().unwrap_or_default().to_string(),
        expression,
        every,
        enabled: rule.state().is_none_or(|s| s.as_str() != "DISABLED"),
    })
}

/// The period of a `rate(N unit)` expression.
pub fn schedule_period(expression: &str) -> Option<Duration> {
    let inner = expression.strip_prefix("rate(")?.strip_suffix(')')?;
    let (count, unit) = inner.trim().split_once(' ')?;
    let count: u64 = count.parse().ok()?;
    let seconds = match unit.trim().trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(count * seconds))
}

/// Finds the zip whose Lambda `CodeSha256` matches, among `build/functions/**.zip`, and
/// extracts its `bootstrap` to `<dir>/<name>-<digest>/bootstrap`.
pub fn deployed_binary(
    build_dir: &Path,
    function: &DeployedFunction,
    dir: &Path,
) -> Result<PathBuf, LocalError> {
    let zips = find_zips(build_dir);
    for zip_path in zips {
        let Ok(bytes) = std::fs::read(&zip_path) else {
            continue;
        };
        let digest = Sha256::digest(&bytes);
        if base64::engine::general_purpose::STANDARD.encode(digest) != function.code_sha256 {
            continue;
        }
        let target_dir = dir.join(format!("{}-{}", function.name, &hex::encode(digest)[..12]));
        let target = target_dir.join("bootstrap");
        if !target.is_file() {
            extract_bootstrap(&bytes, &target).map_err(|message| LocalError::Emulator {
                action: format!("unpack {}", zip_path.display()),
                message,
            })?;
        }
        return Ok(target);
    }
    Err(LocalError::CodeNotBuilt {
        function: function.function_name.clone(),
        code_sha256: function.code_sha256.clone(),
    })
}

fn find_zips(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(find_zips(&path));
        } else if path.extension().is_some_and(|ext| ext == "zip") {
            found.push(path);
        }
    }
    found.sort();
    found
}

fn extract_bootstrap(zip_bytes: &[u8], target: &Path) -> Result<(), String> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).map_err(|e| e.to_string())?;
    let mut entry = archive.by_name("bootstrap").map_err(|e| e.to_string())?;
    let mut binary = Vec::new();
    entry.read_to_end(&mut binary).map_err(|e| e.to_string())?;
    let dir = target.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let partial = target.with_extension("partial");
    std::fs::write(&partial, binary).map_err(|e| e.to_string())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    std::fs::rename(&partial, target).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::schedule_period;
    use std::time::Duration;

    #[test]
    fn rate_expressions_become_periods() {
        assert_eq!(
            schedule_period("rate(1 minute)"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            schedule_period("rate(5 minutes)"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            schedule_period("rate(2 hours)"),
            Some(Duration::from_secs(7_200))
        );
        assert_eq!(schedule_period("cron(0 * * * ? *)"), None);
    }
}
