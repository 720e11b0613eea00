//! `stacks/stacks.yaml`: which stacks exist, their templates and their dependencies.

use serde::{Deserialize, Serialize};

use super::RenderError;
use crate::project::Project;

/// One stack of the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackSpec {
    pub id: String,
    pub template: String,
    pub description: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub stacks: Vec<StackSpec>,
}

impl Catalog {
    pub fn load(project: &Project) -> Result<Self, RenderError> {
        let path = project.stacks_dir().join("stacks.yaml");
        let file = project.display_path(&path);
        let text = std::fs::read_to_string(&path).map_err(|source| RenderError::Read {
            path: file.clone(),
            source,
        })?;
        let catalog: Catalog =
            serde_yaml::from_str(&text).map_err(|error| RenderError::Catalog {
                file: file.clone(),
                message: error.to_string(),
            })?;
        catalog.check(&file)?;
        Ok(catalog)
    }

    fn check(&self, file: &str) -> Result<(), RenderError> {
        let invalid = |message: String| RenderError::Catalog {
            file: file.to_string(),
            message,
        };
        for (index, stack) in self.stacks.iter().enumerate() {
            let valid_id = !stack.id.is_empty()
                && stack.id.chars().all(|c| c.is_ascii_lowercase() || c == '-');
            if !valid_id {
                return Err(invalid(format!(
                    "stack id `{}` must be lower-case letters and hyphens",
                    stack.id
                )));
            }
            if self.stacks[..index]
                .iter()
                .any(|earlier| earlier.id == stack.id)
            {
                return Err(invalid(format!("stack `{}` is listed twice", stack.id)));
            }
            for dependency in &stack.depends_on {
                if !self.stacks.iter().any(|other| &other.id == dependency) {
                    return Err(invalid(format!(
                        "stack `{}` depends on `{dependency}`, which is not listed",
                        stack.id
                    )));
                }
            }
        }
        self.deployment_order().map(|_| ()).map_err(|cycle| {
            invalid(format!(
                "stack dependencies form a cycle: {}",
                cycle.join(" -> ")
            ))
        })
    }

    pub fn ids(&self) -> Vec<&str> {
        self.stacks.iter().map(|stack| stack.id.as_str()).collect()
    }

    /// Stacks in an order where each comes after everything it depends on (stable:
    /// ties keep file order). Errors with the cycle when there is one.
    pub fn deployment_order(&self) -> Result<Vec<&StackSpec>, Vec<String>> {
        let mut done: Vec<&str> = Vec::new();
        let mut order = Vec::new();
        while order.len() < self.stacks.len() {
            let next = self.stacks.iter().find(|stack| {
                !done.contains(&stack.id.as_str())
                    && stack
                        .depends_on
                        .iter()
                        .all(|dep| done.contains(&dep.as_str()))
            });
            match next {
                Some(stack) => {
                    done.push(&stack.id);
                    order.push(stack);
                }
                None => return Err(self.find_cycle(&done)),
            }
        }
        Ok(order)
    }

    fn find_cycle(&self, done: &[&str]) -> Vec<String> {
        let pending: Vec<&StackSpec> = self
            .stacks
            .iter()
            .filter(|s| !done.contains(&s.id.as_str()))
            .collect();
        let mut path: Vec<String> = Vec::new();
        let mut current = pending[0];
        loop {
            if let Some(position) = path.iter().position(|id| id == &current.id) {
                let mut cycle = path[position..].to_vec();
                cycle.push(current.id.clone());
                return cycle;
            }
            path.push(current.id.clone());
            let next = current
                .depends_on
                .iter()
                .find_map(|dep| pending.iter().find(|s| &s.id == dep));
            match next {
                Some(next) => current = next,
                None => return path,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, deps: &[&str]) -> StackSpec {
        StackSpec {
            id: id.into(),
            template: format!("{id}.yaml.tera"),
            description: String::new(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn orders_dependencies_first_and_names_cycles() {
        let catalog = Catalog {
            stacks: vec![spec("compute", &["data"]), spec("data", &[])],
        };
        let order: Vec<&str> = catalog
            .deployment_order()
            .unwrap()
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(order, ["data", "compute"]);

        let cyclic = Catalog {
            stacks: vec![spec("a", &["b"]), spec("b", &["a"])],
        };
        assert_eq!(cyclic.deployment_order().unwrap_err(), ["a", "b", "a"]);
        let error = cyclic.check("stacks/stacks.yaml").unwrap_err().to_string();
        assert!(error.contains("cycle: a -> b -> a"), "{error}");
    }
}
