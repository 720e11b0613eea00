//! The typed environment model: load `environments/<env>.yaml` with its `extends` chain,
//! check it, and hand out one validated [`Environment`]. Every error names the file,
//! the key path, what is wrong and the fix.

pub mod ci;
mod error;
pub mod layers;
pub mod model;
pub mod names;
pub mod suggest;
pub mod types;
pub mod validate;

use serde::Serialize;

pub use error::{ConfigError, Issue};
pub use layers::{Chain, KeyPath, BASE_NAME};
pub use model::Settings;
pub use names::Names;

use crate::project::Project;

/// A validated environment, ready to render.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    /// The files it was read from, itself first.
    pub files: Vec<String>,
    pub settings: Settings,
    pub names: Names,
}

/// Names of every YAML file in `environments/`, sorted (the base included).
pub fn file_names(project: &Project) -> Result<Vec<String>, ConfigError> {
    let dir = project.environments_dir();
    let entries = std::fs::read_dir(&dir).map_err(|source| ConfigError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let is_yaml = path.extension().is_some_and(|ext| ext == "yaml");
            is_yaml
                .then(|| path.file_stem()?.to_str().map(str::to_string))
                .flatten()
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The deployable environments: every file in `environments/` except the base.
pub fn list(project: &Project) -> Result<Vec<String>, ConfigError> {
    Ok(file_names(project)?
        .into_iter()
        .filter(|name| name != BASE_NAME)
        .collect())
}

fn check_environment_name(project: &Project, name: &str) -> Result<(), ConfigError> {
    let known = list(project)?;
    if name == BASE_NAME {
        return Err(ConfigError::BaseIsNotAnEnvironment {
            name: name.to_string(),
            known,
        });
    }
    if known.iter().any(|known| known == name) {
        let valid = name.len() <= 16
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(ConfigError::issue(
                format!("environments/{name}.yaml"),
                "",
                format!("`{name}` is not a usable environment name"),
                "rename the file: 1-16 lower-case letters, digits and hyphens, starting with a letter",
            ));
        }
        return Ok(());
    }
    let suggestion = suggest::closest(name, known.iter().map(String::as_str)).map(str::to_string);
    Err(ConfigError::UnknownEnvironment {
        name: name.to_string(),
        known,
        suggestion,
    })
}

/// Loads, merges and validates environment `name`.
pub fn load(project: &Project, name: &str, stack_ids: &[&str]) -> Result<Environment, ConfigError> {
    check_environment_name(project, name)?;
    let chain = Chain::load(project, name)?;
    let merged = chain.merged();
    let settings: Settings =
        serde_path_to_error::deserialize(merged).map_err(|error| ConfigError::Invalid {
            issues: vec![deserialize_issue(&chain, error)],
        })?;
    let findings = validate::validate(name, &settings, stack_ids);
    if !findings.is_empty() {
        let issues = findings
            .into_iter()
            .map(|finding| Issue {
                file: chain.origin(&finding.key).to_string(),
                key: finding.key.to_string(),
                message: finding.message,
                help: finding.help,
            })
            .collect();
        return Err(ConfigError::Invalid { issues });
    }
    let names = Names::new(
        settings.app.as_str(),
        name,
        settings.account_id.as_str(),
        settings.region.as_str(),
    );
    Ok(Environment {
        name: name.to_string(),
        files: chain
            .layers
            .iter()
            .map(|layer| layer.file.clone())
            .collect(),
        settings,
        names,
    })
}

/// Turns serde's error into an issue at the right file and key, with a fix.
fn deserialize_issue(chain: &Chain, error: serde_path_to_error::Error<serde_yaml::Error>) -> Issue {
    let mut key = KeyPath::default();
    for segment in error.path().iter() {
        key = match segment {
            serde_path_to_error::Segment::Seq { index } => key.index(*index),
            serde_path_to_error::Segment::Map { key: name } => key.key(name),
            serde_path_to_error::Segment::Enum { variant } => key.key(variant),
            serde_path_to_error::Segment::Unknown => key,
        };
    }
    let raw = error.into_inner().to_string();
    // serde_yaml appends " at line N column M" positions of the merged document, which
    // mean nothing to the person reading the original files.
    let raw = raw.split(" at line ").next().unwrap_or(&raw).to_string();
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        // The path already ends at the unknown key.
        let at = key.clone();
        let help = match suggest::closest(field, candidates.iter().copied()) {
            Some(near) => format!("did you mean `{near}`?"),
            None if candidates.is_empty() => "remove it".to_string(),
            None => format!(
                "remove it; the keys allowed here are {}",
                candidates.join(", ")
            ),
        };
        return Issue {
            file: chain.origin(&at).to_string(),
            key: at.to_string(),
            message: format!("unknown key `{field}`"),
            help,
        };
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let at = key.clone().key(field);
        return Issue {
            file: chain.own_file().to_string(),
            key: at.to_string(),
            message: format!("required key `{field}` is missing"),
            help: format!(
                "add `{at}` to {} or to a file it extends ({})",
                chain.own_file(),
                chain
                    .layers
                    .iter()
                    .skip(1)
                    .map(|l| l.file.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
    }
    let (message, help) = match raw.split_once("\nhelp: ") {
        Some((message, help)) => (message.to_string(), help.to_string()),
        None => (raw.clone(), type_help(&raw)),
    };
    Issue {
        file: chain.origin(&key).to_string(),
        key: key.to_string(),
        message,
        help,
    }
}

/// A fix for serde's type mismatch messages.
fn type_help(raw: &str) -> String {
    if let Some(rest) = raw.split("unknown variant `").nth(1) {
        // rest: "arm`, expected `x86_64` or `arm64`"
        let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
        if !expected.is_empty() {
            return format!("use one of: {}", expected.join(", "));
        }
    }
    if raw.contains("expected u32") {
        return "write a whole, non-negative number".to_string();
    }
    if raw.contains("expected a boolean") {
        return "write true or false".to_string();
    }
    if raw.contains("expected a character") {
        return "write a single letter".to_string();
    }
    "check the value's type against environments/defaults.yaml".to_string()
}
