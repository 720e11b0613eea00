//! An environment's CloudWatch alarms (every alarm the stacks create is named with the
//! environment's `{app}-{env}-` prefix) and which of them are firing.

use aws_sdk_cloudwatch::types::StateValue;
use serde::Serialize;

use crate::config::Environment;
use crate::deploy::DeployError;
use crate::error::Error;

/// One alarm in the ALARM state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FiringAlarm {
    pub name: String,
    pub reason: String,
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
        firing.extend(output.metric_alarms().iter().map(|alarm| FiringAlarm {
            name: alarm.alarm_name().unwrap_or_default().to_string(),
            reason: alarm.state_reason().unwrap_or_default().to_string(),
        }));
        token = output.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(firing);
        }
    }
}
