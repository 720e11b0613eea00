//! `provisioner replay`: FAILED (or RETRY) ledger items sent through the pipeline again
//! ([`crate::ops::replay`]), after the account check.

use std::io::Write;
use std::time::{Duration, SystemTime};

use sync_core::ledger::LedgerState;

use crate::cli::{parse_duration, OutputFormat, ReplayArgs, ReplayState};
use crate::deploy::setup::runtime;
use crate::error::Error;
use crate::exit::Exit;
use crate::ops::replay::{self, ReplayRequest};
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::release::{identity, rollout};

/// `--since`: an RFC 3339 time, or a duration back from `now` (Unix seconds).
pub fn parse_since(text: &str, now: i64) -> Result<i64, Error> {
    if let Ok(duration) = parse_duration(text) {
        return Ok(now - i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 2));
    }
    aws_smithy_types::DateTime::from_str(text, aws_smithy_types::date_time::Format::DateTime)
        .map(|time| time.secs())
        .map_err(|_| Error::Other {
            message: format!("--since {text}: neither an RFC 3339 time nor a duration"),
            help: "pass e.g. --since 2026-12-01T00:00:00Z or --since 24h".into(),
        })
}

pub fn run(
    project: &Project,
    args: &ReplayArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let request = ReplayRequest {
        state: match args.state {
            ReplayState::Failed => LedgerState::Failed,
            ReplayState::Retry => LedgerState::Retry,
        },
        source: args.source.clone(),
        since: args
            .since
            .as_deref()
            .map(|s| parse_since(s, now))
            .transpose()?,
        limit: args.limit,
        dry_run: args.dry_run,
    };
    let (_, env) = rollout::locate(project, &args.env)?;
    let report = runtime()?.block_on(async {
        let (clients, _) = identity::connect_checked(&env, None).await?;
        replay::replay(&clients, &env, &request, now).await
    })?;
    match format {
        OutputFormat::Json => write_json(out, &report)?,
        OutputFormat::Text => write_text(out, report.to_text().trim_end())?,
    }
    if !report.send_failed.is_empty() {
        eprintln!(
            "error: {} item(s) were taken but not sent; the reconciler re-drives them after their backoff",
            report.send_failed.len()
        );
        return Ok(Exit::Failed);
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration_and_names_anything_else() {
        assert_eq!(parse_since("24h", 100_000).unwrap(), 100_000 - 86_400);
        assert_eq!(
            parse_since("2026-12-01T00:00:00Z", 0).unwrap(),
            1_796_083_200
        );
        let error = parse_since("yesterday", 0).unwrap_err();
        assert!(error
            .to_string()
            .contains("neither an RFC 3339 time nor a duration"));
    }
}
