//! `functions/manifest.yaml`: the platform's functions, so the compute stack can be
//! rendered before any binary is built.

use serde::{Deserialize, Serialize};

use super::RenderError;
use crate::project::Project;

/// Functions the stacks know how to wire (event source, variables, permissions).
pub const KNOWN_FUNCTIONS: [&str; 3] = ["ingest", "worker", "reconciler"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    pub name: String,
    /// The Cargo package that builds the function's `bootstrap` binary.
    #[serde(rename = "crate")]
    pub crate_name: String,
    pub description: String,
    /// `http`, `queue` or `schedule`.
    pub trigger: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    functions: Vec<FunctionSpec>,
}

/// Reads and checks the manifest.
pub fn load(project: &Project) -> Result<Vec<FunctionSpec>, RenderError> {
    let path = project.functions_dir().join("manifest.yaml");
    let file = project.display_path(&path);
    let text = std::fs::read_to_string(&path).map_err(|source| RenderError::Read {
        path: file.clone(),
        source,
    })?;
    let manifest: Manifest = serde_yaml::from_str(&text).map_err(|error| RenderError::Catalog {
        file: file.clone(),
        message: error.to_string(),
    })?;
    for expected in KNOWN_FUNCTIONS {
        if !manifest.functions.iter().any(|f| f.name == expected) {
            return Err(RenderError::Catalog {
                file,
                message: format!(
                    "function `{expected}` is missing; the stacks wire {}",
                    KNOWN_FUNCTIONS.join(", ")
                ),
            });
        }
    }
    for function in &manifest.functions {
        if !KNOWN_FUNCTIONS.contains(&function.name.as_str()) {
            return Err(RenderError::Catalog {
                file,
                message: format!(
                    "function `{}` is not one the stacks know how to wire ({})",
                    function.name,
                    KNOWN_FUNCTIONS.join(", ")
                ),
            });
        }
    }
    Ok(manifest.functions)
}
