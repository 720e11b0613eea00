//! An environment's CloudWatch alarms (every alarm the stacks create is named with the
//! environment's `{app}-{env}-` prefix, metric and composite alarms alike) and which of
//! them are firing, since when.

use aws_sdk_cloudwatch::types::{AlarmType, StateValue};
use serde::Serialize;

use crate::config::Environment;
use crate::deploy::DeployError;
use crate::error::Error;

/// How heartbeat alarms end their names: they fire on the absence of a metric (missing
/// data is breaching), so they say nothing about whether a deploy broke something, and a
/// new environment starts with them firing until the first scheduled run.
pub const HEARTBEAT_SUFFIX: &str = "-heartbeat";

/// Whether `name` is a heartbeat alarm (see [`HEARTBEAT_SUFFIX`]).
pub fn is_heartbeat(name: &str) -> bool {
    name.ends_with(HEARTBEAT_SUFFIX)
}

/// One alarm in the ALARM state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FiringAlarm {
    pub name: String,
    pub reason: String,
    /// When it entered ALARM (RFC 3339), when CloudWatch says.
    pub since: Option<String>,
    /// Seconds since the Unix epoch of the same moment, for comparisons.
    #[serde(skip)]
    pub since_epoch: Option<i64>,
}

/// The environment's alarms currently in ALARM.
pub async fn firing(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    env: &Environment,
) -> Result<Vec<FiringAlarm>, Error> {
    let prefix = format!("{}-", env.names.prefix);
    let mut firing = Vec::new();
    let mut token = None;
    loop {
        let output = cloudwatch
            .describe_alarms()
            .alarm_name_prefix(&prefix)
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .state_value(StateValue::Alarm)
            .set_next_token(token)
            .send()
            .await
            .map_err(|error| {
                Error::from(DeployError::aws(
                    format!("DescribeAlarms {prefix}*"),
                    &error,
                ))
            })?;
        let entry = |name: Option<&str>,
                     reason: Option<&str>,
                     since: Option<&aws_smithy_types::DateTime>| FiringAlarm {
            name: name.unwrap_or_default().to_string(),
            reason: reason.unwrap_or_default().to_string(),
            since: since.and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
            since_epoch: since.map(|t| t.secs()),
        };
        firing.extend(output.metric_alarms().iter().map(|alarm| {
            entry(
                alarm.alarm_name(),
                alarm.state_reason(),
                // When it entered its state; StateUpdatedTimestamp also moves on
                // evaluation-state changes.
                alarm
                    .state_transitioned_timestamp()
                    .or(alarm.state_updated_timestamp()),
            )
        }));
        firing.extend(output.composite_alarms().iter().map(|alarm| {
            entry(
                alarm.alarm_name(),
                alarm.state_reason(),
                // When it entered its state; StateUpdatedTimestamp also moves on
                // evaluation-state changes.
                alarm
                    .state_transitioned_timestamp()
                    .or(alarm.state_updated_timestamp()),
            )
        }));
        token = output.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(firing);
        }
    }
}
