//! `provisioner local send|down`: sign and post a feed of records to the local ingest
//! route, and stop what `provisioner up` started (and nothing else).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::cli::{LocalDownArgs, LocalSendArgs, OutputFormat};
use crate::error::Error;
use crate::exit::Exit;
use crate::local::state::{state_dir, LocalState};
use crate::ops::ingest_client::{send_records, signing_keys};
use crate::output::{write_json, write_text};
use crate::project::Project;

/// Records per request unless `--batch` says otherwise.
pub const DEFAULT_BATCH: usize = 100;

/// Sources the platform maps (`functions/sync-core/mappings/`).
pub const SOURCES: [&str; 2] = ["hris", "crm"];

fn invalid_feed(path: &Path, message: impl Into<String>, help: impl Into<String>) -> Error {
    Error::Other {
        message: format!("{}: {}", path.display(), message.into()),
        help: help.into(),
    }
}

/// The records of a feed: a JSON array, `{"records": [...]}`, one record, or JSON Lines.
pub fn read_feed(path: &Path) -> Result<Vec<Value>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        action: "read".into(),
        path: path.to_path_buf(),
        source,
    })?;
    let help = "write a JSON array of records, {\"records\": [...]}, one record, or one JSON record per line";
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(records)) => Ok(records),
        Ok(Value::Object(mut object)) => match object.remove("records") {
            Some(Value::Array(records)) => Ok(records),
            Some(_) => Err(invalid_feed(path, "`records` is not a list", help)),
            None => Ok(vec![Value::Object(object)]),
        },
        Ok(_) => Err(invalid_feed(
            path,
            "is neither a record nor a list of records",
            help,
        )),
        Err(whole) => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(number, line)| {
                serde_json::from_str(line).map_err(|error| {
                    invalid_feed(
                        path,
                        format!(
                            "is not JSON ({whole}), nor JSON Lines: line {}: {error}",
                            number + 1
                        ),
                        help,
                    )
                })
            })
            .collect(),
    }
}

/// The source named on the command line, or the first word of the file name.
fn source_of(path: &Path, given: Option<&str>) -> Result<String, Error> {
    let inferred = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.split(['-', '_', '.']).next())
        .filter(|word| SOURCES.contains(word));
    match given.or(inferred) {
        Some(source) => Ok(source.to_string()),
        None => Err(Error::Other {
            message: format!("cannot tell which source {} comes from", path.display()),
            help: format!("say it with --source ({})", SOURCES.join(" or ")),
        }),
    }
}

pub fn send(
    project: &Project,
    args: &LocalSendArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let (env, endpoint, host) = super::up::local_environment(project, &args.env)?;
    let source = source_of(&args.file, args.source.as_deref())?;
    let records = read_feed(&args.file)?;
    if records.is_empty() {
        return Err(invalid_feed(
            &args.file,
            "holds no records",
            "add at least one record",
        ));
    }
    let url = format!(
        "http://127.0.0.1:{}/integrations/{source}/records",
        host.http_port
    );
    // 100 records a request keeps each ingest invocation well inside its timeout
    // against the emulator, whose SQS answers a batch of 10 in tens of milliseconds.
    let limit = env.settings.api.max_records_per_request as usize;
    let batch = args.batch.unwrap_or(DEFAULT_BATCH).clamp(1, limit);
    let runtime = crate::deploy::setup::runtime()?;
    let report = runtime.block_on(async {
        let keys = signing_keys(&env, endpoint.as_str()).await?;
        let key = keys.key_for(&source).map_err(|error| Error::Other {
            message: error.to_string(),
            help: "add a key for this source to the signing secret".into(),
        })?;
        send_records(
            &url,
            &source,
            key,
            &records,
            batch,
            env.settings.api.max_body_bytes as usize,
        )
        .await
    })?;
    match format {
        OutputFormat::Json => write_json(out, &report)?,
        OutputFormat::Text => {
            write_text(
                out,
                &format!(
                    "{}: {} records in {} requests -> accepted {}, rejected {}",
                    report.source,
                    report.records,
                    report.requests,
                    report.accepted,
                    report.rejected
                ),
            )?;
            for error in &report.errors {
                let id = error["external_id"]
                    .as_str()
                    .map(|id| format!(" ({id})"))
                    .unwrap_or_default();
                let fields: Vec<String> = error["field_errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| {
                        format!(
                            "{}: {}",
                            f["field"].as_str().unwrap_or("?"),
                            f["message"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                let detail = if fields.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", fields.join("; "))
                };
                write_text(
                    out,
                    &format!(
                        "  record {}{id}: {}{detail}",
                        error["index"],
                        error["message"].as_str().unwrap_or("rejected")
                    ),
                )?;
            }
        }
    }
    Ok(Exit::Success)
}

pub fn down(
    project: &Project,
    args: &LocalDownArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let dir = state_dir(project.root(), &args.env);
    let state = LocalState::load(&dir);
    let mut stopped = Vec::new();
    if let Some(host) = &state.host {
        if host.stop(Duration::from_secs(15)) {
            stopped.push(format!("function host (pid {})", host.pid));
        }
    }
    if let Some(emulator) = &state.emulator {
        if emulator.stop(Duration::from_secs(10)) {
            stopped.push(format!(
                "emulator (pid {}, port {})",
                emulator.pid,
                emulator.port.unwrap_or_default()
            ));
        }
    }
    LocalState::default().save(&dir)?;
    match format {
        OutputFormat::Json => write_json(
            out,
            &serde_json::json!({ "env": args.env, "stopped": stopped }),
        )?,
        OutputFormat::Text if stopped.is_empty() => {
            write_text(
                out,
                &format!(
                    "Nothing that `provisioner up` started for `{}` is running.",
                    args.env
                ),
            )?;
        }
        OutputFormat::Text => write_text(out, &format!("Stopped {}.", stopped.join(" and ")))?,
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_come_in_several_shapes_and_bad_ones_say_what_they_are() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        assert_eq!(
            read_feed(&write("a.json", r#"[{"a":1},{"a":2}]"#))
                .expect("array")
                .len(),
            2
        );
        assert_eq!(
            read_feed(&write("b.json", r#"{"records":[{"a":1}]}"#))
                .expect("wrapped")
                .len(),
            1
        );
        assert_eq!(
            read_feed(&write("c.json", r#"{"a":1}"#))
                .expect("single")
                .len(),
            1
        );
        assert_eq!(
            read_feed(&write("d.jsonl", "{\"a\":1}\n\n{\"a\":2}\n"))
                .expect("lines")
                .len(),
            2
        );
        let error = read_feed(&write("e.jsonl", "{\"a\":1}\n{oops\n")).expect_err("bad line");
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    #[test]
    fn the_source_comes_from_the_flag_or_the_file_name() {
        assert_eq!(
            source_of(Path::new("examples/crm-contacts.json"), None).expect("inferred"),
            "crm"
        );
        assert_eq!(
            source_of(Path::new("feed.json"), Some("hris")).expect("given"),
            "hris"
        );
        let error = source_of(Path::new("feed.json"), None).expect_err("unknown");
        assert!(error.help().is_some_and(|h| h.contains("--source")));
    }
}
