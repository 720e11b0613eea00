//! Declared mappings from a source system's record to the canonical record, read from
//! YAML files (`mappings/*.yaml`, embedded in the binaries). Adding a source is adding a
//! file: nothing in the code names a source's fields.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::pointer::{ConsumedTree, JsonPath};

/// The mappings shipped with the functions, one per source.
pub const BUILTIN_MAPPINGS: &[(&str, &str)] = &[
    ("mappings/hris.yaml", include_str!("../mappings/hris.yaml")),
    ("mappings/crm.yaml", include_str!("../mappings/crm.yaml")),
];

/// The only mapping file format this code reads.
pub const MAPPING_FORMAT: u32 = 1;

/// A mapping file that cannot be used, with the file and the key that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The YAML does not parse or does not fit the format.
    #[error("{file}: {message}")]
    Parse {
        /// The mapping file.
        file: String,
        /// What serde_yaml reported, with its location.
        message: String,
    },
    /// The file parses but says something impossible.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// The mapping file.
        file: String,
        /// The key that is wrong.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Two files declare the same source.
    #[error("{file}: source `{source_name}` is already declared by {other_file}")]
    DuplicateSource {
        /// The later file.
        file: String,
        /// The source name.
        source_name: String,
        /// The earlier file.
        other_file: String,
    },
}

/// How a field's value is normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// A string, trimmed; an empty string counts as absent.
    Text,
    /// An e-mail address, trimmed and lower-cased.
    Email,
    /// A phone number, in E.164 (`+14155550100`).
    Phone,
    /// A calendar date, ISO-8601 (`2024-05-01`).
    Date,
    /// An instant, RFC 3339 in UTC (`2024-05-01T12:00:00.000Z`).
    Timestamp,
    /// One of a closed set of values, mapped from the source's spellings.
    Enum,
}

/// How the monotonic source version is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionKind {
    /// An RFC 3339 timestamp (the record's updated-at); the version is its value in
    /// microseconds since the Unix epoch.
    Timestamp,
    /// An explicit non-negative integer version.
    Integer,
}

/// Where the source version comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSpec {
    /// JSON pointer into the source record.
    pub from: String,
    /// How to read it.
    pub kind: VersionKind,
}

/// When a record means "delete".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRule {
    /// JSON pointer into the source record.
    pub from: String,
    /// The value that marks a delete.
    pub equals: serde_json::Value,
}

/// One canonical field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Canonical field name.
    pub name: String,
    /// JSON pointer into the source record.
    pub from: String,
    /// How the value is normalized.
    pub kind: FieldKind,
    /// Whether an upsert without this field is refused.
    #[serde(default)]
    pub required: bool,
    /// For `enum`: canonical value -> the source's spellings (compared case-insensitively).
    #[serde(default)]
    pub values: BTreeMap<String, Vec<String>>,
}

/// A source's mapping, as written in its YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// File format version; must be [`MAPPING_FORMAT`].
    pub format: u32,
    /// Source name, as used in the URL (`/integrations/{source}/records`).
    pub source: String,
    /// Canonical entity type of the records.
    pub entity_type: String,
    /// JSON pointer to the record's id in the source system.
    pub external_id: String,
    /// Where the monotonic version comes from.
    pub source_version: VersionSpec,
    /// When a record is a delete; without it every record is an upsert.
    #[serde(default)]
    pub delete_when: Option<DeleteRule>,
    /// Region used to read phone numbers written without a country code (ISO 3166 code).
    #[serde(default)]
    pub phone_region: Option<String>,
    /// The canonical fields.
    pub fields: Vec<FieldSpec>,
    /// Lower-cased spelling -> canonical value, per enum field (built on load).
    #[serde(skip)]
    pub(crate) enum_lookup: BTreeMap<String, BTreeMap<String, String>>,
    /// Every pointer of the mapping, decoded (built on load).
    #[serde(skip)]
    pub(crate) paths: CompiledPaths,
    /// `phone_region`, parsed (built on load).
    #[serde(skip)]
    pub(crate) region: Option<phonenumber::country::Id>,
}

impl Mapping {
    /// Parses and validates one mapping file.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self, MappingError> {
        let mut mapping: Mapping =
            serde_yaml::from_str(text).map_err(|error| MappingError::Parse {
                file: file.to_string(),
                message: error.to_string(),
            })?;
        mapping.validate(file)?;
        mapping.prepare();
        Ok(mapping)
    }

    fn validate(&self, file: &str) -> Result<(), MappingError> {
        let invalid = |key: &str, message: String| MappingError::Invalid {
            file: file.to_string(),
            key: key.to_string(),
            message,
        };
        if self.format != MAPPING_FORMAT {
            return Err(invalid(
                "format",
                format!(
                    "format {} is not supported; this build reads format {MAPPING_FORMAT}",
                    self.format
                ),
            ));
        }
        let name_ok = |name: &str| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        if !name_ok(&self.source) {
            return Err(invalid(
                "source",
                format!(
                    "`{}` is not a usable source name: use lower-case letters, digits, `-` and `_` (it appears in URLs)",
                    self.source
                ),
            ));
        }
        if !name_ok(&self.entity_type) {
            return Err(invalid(
                "entity_type",
                "use lower-case letters, digits, `-` and `_`".to_string(),
            ));
        }
        let pointer_ok = |pointer: &str| pointer.starts_with('/') && pointer.len() > 1;
        let pointers = [
            ("external_id", self.external_id.as_str()),
            ("source_version.from", self.source_version.from.as_str()),
        ];
        for (key, pointer) in pointers {
            if !pointer_ok(pointer) {
                return Err(invalid(
                    key,
                    format!("`{pointer}` is not a JSON pointer; write it like `/employee_id`"),
                ));
            }
        }
        if let Some(rule) = &self.delete_when {
            if !pointer_ok(&rule.from) {
                return Err(invalid(
                    "delete_when.from",
                    format!(
                        "`{}` is not a JSON pointer; write it like `/deleted`",
                        rule.from
                    ),
                ));
            }
        }
        if let Some(region) = &self.phone_region {
            if region.parse::<phonenumber::country::Id>().is_err() {
                return Err(invalid(
                    "phone_region",
                    format!("`{region}` is not an ISO 3166 region code such as US or DE"),
                ));
            }
        }
        if self.fields.is_empty() {
            return Err(invalid("fields", "declare at least one field".to_string()));
        }
        let mut names = BTreeSet::new();
        for (index, field) in self.fields.iter().enumerate() {
            let key = format!("fields[{index}]");
            if !name_ok(&field.name) {
                return Err(invalid(
                    &format!("{key}.name"),
                    format!(
                        "`{}`: use lower-case letters, digits, `-` and `_`",
                        field.name
                    ),
                ));
            }
            if !names.insert(field.name.as_str()) {
                return Err(invalid(
                    &format!("{key}.name"),
                    format!("field `{}` is declared twice", field.name),
                ));
            }
            if !pointer_ok(&field.from) {
                return Err(invalid(
                    &format!("{key}.from"),
                    format!(
                        "`{}` is not a JSON pointer; write it like `/email`",
                        field.from
                    ),
                ));
            }
            match (field.kind, field.values.is_empty()) {
                (FieldKind::Enum, true) => {
                    return Err(invalid(
                        &format!("{key}.values"),
                        format!(
                            "enum field `{}` needs `values` (canonical value -> source spellings)",
                            field.name
                        ),
                    ))
                }
                (FieldKind::Enum, false) => {
                    let mut seen = BTreeMap::new();
                    for (canonical, spellings) in &field.values {
                        for spelling in spellings {
                            if let Some(other) = seen.insert(spelling.to_lowercase(), canonical) {
                                return Err(invalid(
                                    &format!("{key}.values"),
                                    format!("spelling `{spelling}` maps to both `{other}` and `{canonical}`"),
                                ));
                            }
                        }
                    }
                }
                (_, false) => {
                    return Err(invalid(
                        &format!("{key}.values"),
                        format!(
                            "`values` only applies to enum fields; `{}` is not one",
                            field.name
                        ),
                    ))
                }
                (_, true) => {}
            }
        }
        Ok(())
    }

    fn prepare(&mut self) {
        self.enum_lookup = self
            .fields
            .iter()
            .filter(|field| field.kind == FieldKind::Enum)
            .map(|field| {
                let lookup = field
                    .values
                    .iter()
                    .flat_map(|(canonical, spellings)| {
                        spellings
                            .iter()
                            .map(move |spelling| (spelling.to_lowercase(), canonical.clone()))
                    })
                    .collect();
                (field.name.clone(), lookup)
            })
            .collect();
        let paths = CompiledPaths {
            external_id: JsonPath::parse(&self.external_id),
            source_version: JsonPath::parse(&self.source_version.from),
            delete_when: self
                .delete_when
                .as_ref()
                .map(|rule| JsonPath::parse(&rule.from)),
            fields: self
                .fields
                .iter()
                .map(|field| JsonPath::parse(&field.from))
                .collect(),
            consumed: ConsumedTree::default(),
        };
        let mut consumed = ConsumedTree::default();
        for path in paths
            .fields
            .iter()
            .chain([&paths.external_id, &paths.source_version])
            .chain(paths.delete_when.as_ref())
        {
            consumed.insert(path);
        }
        self.paths = CompiledPaths { consumed, ..paths };
        self.region = self
            .phone_region
            .as_deref()
            .and_then(|region| region.parse().ok());
    }
}

impl Mapping {
    /// The raw value at the record's id pointer, if any.
    pub fn external_id_of<'a>(
        &self,
        record: &'a serde_json::Value,
    ) -> Option<&'a serde_json::Value> {
        self.paths.external_id.get(record)
    }
}

/// A mapping's pointers, decoded once when it is loaded.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledPaths {
    pub(crate) external_id: JsonPath,
    pub(crate) source_version: JsonPath,
    pub(crate) delete_when: Option<JsonPath>,
    /// One per field, in the order of [`Mapping::fields`].
    pub(crate) fields: Vec<JsonPath>,
    /// Everything the above read.
    pub(crate) consumed: ConsumedTree,
}

/// Every known source's mapping, by source name.
#[derive(Debug, Clone)]
pub struct Mappings {
    by_source: BTreeMap<String, Mapping>,
}

impl Mappings {
    /// The mappings shipped in `mappings/`.
    pub fn builtin() -> Result<Self, MappingError> {
        Self::from_files(BUILTIN_MAPPINGS)
    }

    /// Mappings from `(file name, YAML text)` pairs.
    pub fn from_files(files: &[(&str, &str)]) -> Result<Self, MappingError> {
        let mut by_source: BTreeMap<String, Mapping> = BTreeMap::new();
        let mut file_of: BTreeMap<String, String> = BTreeMap::new();
        for (file, text) in files {
            let mapping = Mapping::from_yaml(file, text)?;
            if let Some(other_file) = file_of.get(&mapping.source) {
                return Err(MappingError::DuplicateSource {
                    file: (*file).to_string(),
                    source_name: mapping.source.clone(),
                    other_file: other_file.clone(),
                });
            }
            file_of.insert(mapping.source.clone(), (*file).to_string());
            by_source.insert(mapping.source.clone(), mapping);
        }
        Ok(Self { by_source })
    }

    /// The mapping of `source`, if it is known.
    pub fn get(&self, source: &str) -> Option<&Mapping> {
        self.by_source.get(source)
    }

    /// The known source names, sorted.
    pub fn sources(&self) -> Vec<&str> {
        self.by_source.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_mappings_load_and_name_both_sources() {
        let mappings = Mappings::builtin().unwrap();
        assert_eq!(mappings.sources(), vec!["crm", "hris"]);
        let hris = mappings.get("hris").unwrap();
        assert_eq!(hris.entity_type, "employee");
        assert!(hris.paths.consumed.reads(&JsonPath::parse("/employee_id")));
    }

    fn with_field(field_yaml: &str) -> String {
        format!(
            "format: 1\nsource: erp\nentity_type: supplier\nexternal_id: /id\n\
             source_version: {{from: /version, kind: integer}}\nfields:\n{field_yaml}"
        )
    }

    #[test]
    fn an_enum_without_values_names_the_field_and_the_fix() {
        let text = with_field("  - {name: tier, from: /tier, kind: enum}\n");
        let err = Mapping::from_yaml("erp.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("erp.yaml: fields[0].values"), "{err}");
        assert!(err.contains("needs `values`"), "{err}");
    }

    #[test]
    fn a_pointer_without_slash_is_refused() {
        let text = with_field("  - {name: email, from: email, kind: email}\n");
        let err = Mapping::from_yaml("erp.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("fields[0].from"), "{err}");
        assert!(err.contains("JSON pointer"), "{err}");
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused_by_the_parser() {
        let text = with_field("  - {name: email, from: /email, kind: emial}\n");
        let err = Mapping::from_yaml("erp.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("erp.yaml"), "{err}");
        assert!(err.contains("emial"), "{err}");
    }

    #[test]
    fn two_files_for_one_source_are_refused() {
        let text = with_field("  - {name: email, from: /email, kind: email}\n");
        let err = Mappings::from_files(&[("a.yaml", &text), ("b.yaml", &text)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("already declared by a.yaml"), "{err}");
    }

    #[test]
    fn ambiguous_enum_spellings_are_refused() {
        let text = with_field(
            "  - name: tier\n    from: /tier\n    kind: enum\n    values: {gold: [g], silver: [G]}\n",
        );
        let err = Mapping::from_yaml("erp.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("maps to both"), "{err}");
    }

    #[test]
    fn an_unknown_phone_region_is_refused() {
        let text = format!(
            "{}phone_region: XX\n",
            with_field("  - {name: phone, from: /phone, kind: phone}\n")
        );
        let err = Mapping::from_yaml("erp.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("phone_region"), "{err}");
    }
}
