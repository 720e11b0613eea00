//! Reading function settings from environment variables, with errors that name the
//! variable and say what value is expected.

use std::str::FromStr;

/// A setting that is missing or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A required variable is not set.
    #[error("environment variable {name} is not set; {hint}")]
    Missing {
        /// The variable.
        name: String,
        /// What it should hold.
        hint: String,
    },
    /// A variable does not parse.
    #[error("environment variable {name} is `{value}`, which is not {expected}")]
    Invalid {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// What was expected.
        expected: String,
    },
}

/// Reads settings through a lookup function (the process environment in the functions,
/// a map in tests).
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    /// Settings from `lookup`.
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { lookup }
    }

    /// A required, non-empty string.
    pub fn required(&self, name: &str, hint: &str) -> Result<String, SettingsError> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| SettingsError::Missing {
                name: name.to_string(),
                hint: hint.to_string(),
            })
    }

    /// An optional string with a default.
    pub fn or(&self, name: &str, default: &str) -> String {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    }

    /// An optional number with a default; set but unparseable is an error.
    pub fn number<T: FromStr>(
        &self,
        name: &str,
        default: T,
        expected: &str,
    ) -> Result<T, SettingsError> {
        match (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        {
            None => Ok(default),
            Some(value) => value.parse().map_err(|_| SettingsError::Invalid {
                name: name.to_string(),
                value,
                expected: expected.to_string(),
            }),
        }
    }
}

/// The process environment as a lookup function.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_invalid_values_name_the_variable() {
        let lookup = |name: &str| (name == "MAX").then(|| "lots".to_string());
        let env = Env::new(&lookup);
        let err = env
            .required("QUEUE_URL", "set it to the queue's URL")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("QUEUE_URL") && err.contains("queue's URL"),
            "{err}"
        );
        let err = env
            .number::<u32>("MAX", 5, "a positive integer")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MAX") && err.contains("lots") && err.contains("positive integer"),
            "{err}"
        );
        assert_eq!(
            env.number::<u32>("OTHER", 5, "a positive integer").unwrap(),
            5
        );
        assert_eq!(env.or("OTHER", "x"), "x");
    }
}
