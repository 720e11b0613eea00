//! Reading an environment's `extends` chain and merging it into one document, while
//! remembering which file set each key so errors can point at the right file.
//!
//! Merge rule: mappings merge key by key (the extending file wins); lists and scalars
//! replace what they extend. `extends` itself is not part of the merged document.

use std::fmt;
use std::path::PathBuf;

use serde_yaml::{Mapping, Value};

use super::error::ConfigError;
use crate::project::Project;

/// The base every environment ultimately extends; not deployable itself.
pub const BASE_NAME: &str = "defaults";

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path into the merged document, e.g. `network.subnets[1].private`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    pub fn key(mut self, key: &str) -> Self {
        self.0.push(Segment::Key(key.to_string()));
        self
    }

    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Segment::Index(index));
        self
    }

    /// Parses `a.b[2].c`.
    pub fn parse(text: &str) -> Self {
        let mut path = KeyPath::default();
        for part in text.split('.').filter(|part| !part.is_empty()) {
            let (key, indexes) = part.split_once('[').unwrap_or((part, ""));
            if !key.is_empty() {
                path = path.key(key);
            }
            for index in indexes.split('[') {
                if let Ok(index) = index.trim_end_matches(']').parse() {
                    path = path.index(index);
                }
            }
        }
        path
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// One file of the chain, as read.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    /// Path relative to the repository root, for messages.
    pub file: String,
    pub document: Mapping,
}

/// An environment's files, the environment itself first and the base last.
#[derive(Debug, Clone)]
pub struct Chain {
    pub layers: Vec<Layer>,
}

impl Chain {
    /// Reads `environments/<name>.yaml` and every file it extends.
    pub fn load(project: &Project, name: &str) -> Result<Self, ConfigError> {
        let mut layers: Vec<Layer> = Vec::new();
        let mut current = name.to_string();
        loop {
            if let Some(first) = layers.iter().position(|layer| layer.name == current) {
                let mut cycle: Vec<String> =
                    layers[first..].iter().map(|l| l.name.clone()).collect();
                cycle.push(current.clone());
                let layer = &layers[layers.len() - 1];
                return Err(ConfigError::issue(
                    layer.file.clone(),
                    "extends",
                    format!("`extends` forms a cycle: {}", cycle.join(" -> ")),
                    format!("make one file of the cycle extend `{BASE_NAME}` instead"),
                ));
            }
            let path = project.environments_dir().join(format!("{current}.yaml"));
            let file = project.display_path(&path);
            let document = read_mapping(&path, &file)?;
            let parent = match document.get("extends") {
                None | Some(Value::Null) => None,
                Some(Value::String(parent)) => Some(parent.clone()),
                Some(_) => {
                    return Err(ConfigError::issue(
                        file,
                        "extends",
                        "`extends` must name another environment file",
                        format!("write e.g. `extends: {BASE_NAME}`"),
                    ))
                }
            };
            let child_name = current.clone();
            layers.push(Layer {
                name: current.clone(),
                file: file.clone(),
                document,
            });
            match parent {
                Some(parent) => {
                    let parent_path = project.environments_dir().join(format!("{parent}.yaml"));
                    if !parent_path.is_file() {
                        let known = super::file_names(project).unwrap_or_default();
                        let near =
                            super::suggest::closest(&parent, known.iter().map(String::as_str));
                        return Err(ConfigError::issue(
                            file,
                            "extends",
                            format!(
                                "`{child_name}` extends `{parent}`, but {} does not exist",
                                project.display_path(&parent_path)
                            ),
                            match near {
                                Some(near) => format!("did you mean `extends: {near}`?"),
                                None => {
                                    format!("extend an existing file (known: {})", known.join(", "))
                                }
                            },
                        ));
                    }
                    current = parent;
                }
                None if child_name == BASE_NAME => break,
                None if child_name == name => {
                    return Err(ConfigError::issue(
                        file,
                        "extends",
                        format!("environment `{name}` does not extend anything"),
                        format!("add `extends: {BASE_NAME}` (or another environment) at the top"),
                    ))
                }
                None => break,
            }
        }
        Ok(Self { layers })
    }

    /// The merged document, without `extends`.
    pub fn merged(&self) -> Value {
        let mut merged = Value::Mapping(Mapping::new());
        for layer in self.layers.iter().rev() {
            let mut document = layer.document.clone();
            document.remove("extends");
            merge(&mut merged, Value::Mapping(document));
        }
        merged
    }

    /// The file that sets `path` (or the closest enclosing key), most-derived first.
    pub fn origin(&self, path: &KeyPath) -> &str {
        for depth in (1..=path.0.len()).rev() {
            let prefix = &path.0[..depth];
            if let Some(layer) = self
                .layers
                .iter()
                .find(|layer| lookup(&layer.document, prefix))
            {
                return &layer.file;
            }
        }
        &self.layers[0].file
    }

    /// The environment's own file.
    pub fn own_file(&self) -> &str {
        &self.layers[0].file
    }
}

fn read_mapping(path: &PathBuf, file: &str) -> Result<Mapping, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let value: Value = serde_yaml::from_str(&text).map_err(|error| {
        let at = error
            .location()
            .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
            .unwrap_or_default();
        ConfigError::issue(
            file,
            "",
            format!("is not valid YAML{at}: {error}"),
            "fix the syntax at that position (indentation, a missing `:`, an unclosed quote)",
        )
    })?;
    match value {
        Value::Mapping(mapping) => Ok(mapping),
        Value::Null => Ok(Mapping::new()),
        _ => Err(ConfigError::issue(
            file,
            "",
            "must be a mapping of settings at the top level",
            "start the file with `extends: defaults` followed by `key: value` lines",
        )),
    }
}

fn lookup(document: &Mapping, path: &[Segment]) -> bool {
    let mut value = match path.first() {
        Some(Segment::Key(key)) => match document.get(key.as_str()) {
            Some(value) => value,
            None => return false,
        },
        _ => return false,
    };
    for segment in &path[1..] {
        value = match (segment, value) {
            (Segment::Key(key), Value::Mapping(map)) => match map.get(key.as_str()) {
                Some(value) => value,
                None => return false,
            },
            (Segment::Index(index), Value::Sequence(items)) => match items.get(*index) {
                Some(value) => value,
                None => return false,
            },
            _ => return false,
        };
    }
    true
}

/// Deep merge: mappings merge recursively; anything else in `overlay` replaces `base`.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Mapping(base), Value::Mapping(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).expect("test YAML parses")
    }

    #[test]
    fn maps_merge_and_lists_replace() {
        let mut base = yaml("a: {x: 1, y: 2}\nlist: [1, 2, 3]\nkeep: true");
        merge(&mut base, yaml("a: {y: 20, z: 30}\nlist: [9]"));
        assert_eq!(base, yaml("a: {x: 1, y: 20, z: 30}\nlist: [9]\nkeep: true"));
    }

    #[test]
    fn key_paths_round_trip() {
        let path = KeyPath::parse("network.subnets[1].private");
        assert_eq!(path.to_string(), "network.subnets[1].private");
        assert_eq!(path.0.len(), 4);
    }
}
