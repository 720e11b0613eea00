//! `provisioner env list|show|diff`: what the environments resolve to.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::cli::OutputFormat;
use crate::config::{self, Environment};
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::render::Catalog;

fn load(project: &Project, name: &str) -> Result<Environment, Error> {
    let catalog = Catalog::load(project)?;
    Ok(config::load(project, name, &catalog.ids())?)
}

#[derive(Debug, Serialize)]
struct Listed {
    name: String,
    extends: Vec<String>,
    account_id: String,
    region: String,
    emulated: bool,
}

pub fn list(project: &Project, format: OutputFormat, out: &mut dyn Write) -> Result<Exit, Error> {
    let mut listed = Vec::new();
    for name in config::list(project)? {
        let env = load(project, &name)?;
        listed.push(Listed {
            extends: env.files[1..].iter().map(|file| file_stem(file)).collect(),
            account_id: env.settings.account_id.to_string(),
            region: env.settings.region.to_string(),
            emulated: env.settings.endpoint_url.is_some(),
            name,
        });
    }
    match format {
        OutputFormat::Json => write_json(out, &listed)?,
        OutputFormat::Text => {
            for env in &listed {
                let target = if env.emulated {
                    "emulator".to_string()
                } else {
                    env.account_id.clone()
                };
                write_text(
                    out,
                    &format!(
                        "{:<10} {:<14} {:<14} extends {}",
                        env.name,
                        env.region,
                        target,
                        env.extends.join(" <- ")
                    ),
                )?;
            }
        }
    }
    Ok(Exit::Success)
}

fn file_stem(file: &str) -> String {
    std::path::Path::new(file)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or(file)
        .to_string()
}

pub fn show(
    project: &Project,
    name: &str,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let env = load(project, name)?;
    match format {
        OutputFormat::Json => write_json(out, &env)?,
        OutputFormat::Text => {
            let yaml = serde_yaml::to_string(&env.settings).map_err(|error| Error::Other {
                message: format!("could not print the configuration: {error}"),
                help: String::new(),
            })?;
            write_text(
                out,
                &format!(
                    "# environment `{}`, from {}",
                    env.name,
                    env.files.join(" <- ")
                ),
            )?;
            write_text(out, yaml.trim_end())?;
        }
    }
    Ok(Exit::Success)
}

/// One setting that differs between two environments; `None` where it is not set.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Difference {
    pub key: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

pub fn diff(
    project: &Project,
    a: &str,
    b: &str,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let left = load(project, a)?;
    let right = load(project, b)?;
    let differences = differences(&flatten(&left), &flatten(&right));
    match format {
        OutputFormat::Json => write_json(
            out,
            &serde_json::json!({ "a": a, "b": b, "differences": differences }),
        )?,
        OutputFormat::Text => {
            if differences.is_empty() {
                write_text(
                    out,
                    &format!("`{a}` and `{b}` resolve to the same settings"),
                )?;
            }
            let width = differences.iter().map(|d| d.key.len()).max().unwrap_or(0);
            for difference in &differences {
                let show =
                    |value: &Option<String>| value.clone().unwrap_or_else(|| "(unset)".into());
                write_text(
                    out,
                    &format!(
                        "{:<width$}  {a}: {}  {b}: {}",
                        difference.key,
                        show(&difference.a),
                        show(&difference.b)
                    ),
                )?;
            }
        }
    }
    Ok(Exit::Success)
}

/// Every leaf setting as `dotted.key[0] -> value`.
fn flatten(env: &Environment) -> BTreeMap<String, String> {
    let mut leaves = BTreeMap::new();
    let value = serde_json::to_value(&env.settings).unwrap_or_default();
    walk("", &value, &mut leaves);
    leaves
}

fn walk(prefix: &str, value: &serde_json::Value, leaves: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                walk(&path, value, leaves);
            }
        }
        serde_json::Value::Array(items) if items.iter().any(|item| item.is_object()) => {
            for (index, item) in items.iter().enumerate() {
                walk(&format!("{prefix}[{index}]"), item, leaves);
            }
        }
        serde_json::Value::String(text) => {
            leaves.insert(prefix.to_string(), text.clone());
        }
        other => {
            leaves.insert(prefix.to_string(), other.to_string());
        }
    }
}

fn differences(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<Difference> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|key| a.get(*key) != b.get(*key))
        .map(|key| Difference {
            key: key.clone(),
            a: a.get(key).cloned(),
            b: b.get(key).cloned(),
        })
        .collect()
}
