//! Policy as code: the rules of `stacks/policies/*.guard`, evaluated in-process with the
//! `cfn-guard` crate over every rendered template of one environment at once, so that a
//! rule spanning stacks ("every dead-letter queue has an alarm": the queue is in the
//! messaging stack, the alarm in observability) sees both.
//!
//! The document the rules see is the union of the stacks' `Resources` (logical ids are
//! unique across an environment's stacks; a duplicate is reported) in CloudFormation's
//! long form (`!GetAtt A.B` becomes `{"Fn::GetAtt": ["A", "B"]}`), plus `Environment`: the
//! facts of the environment's configuration a rule may depend on (`Name`, `Emulated`,
//! `RetainStatefulResources`, `FlowLogs`).
//!
//! Each file is evaluated over the resources of the types it names (`'AWS::SQS::Queue'`,
//! comments included): a rule selects what it is about by type, and leaving out the rest
//! (subnets, routes, policies of other files' concern) is most of what keeps the
//! evaluation fast. A file that names no type sees every resource. So a rule that looks
//! at a type must name it somewhere in its file.
//!
//! Each [`Violation`] names the rule, the policy file, the stack, the resource and the fix
//! (the rule's custom message). A resource waives a rule for itself with
//! `Metadata: {"provisioner:waivers": [{rule: <rule>, reason: <why>}]}`; every waiver is
//! listed, and a waiver of an unknown rule, without a reason, or that waives nothing is a
//! violation itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

/// The resource metadata key that holds a resource's waivers.
pub const WAIVERS_KEY: &str = "provisioner:waivers";
/// The rule name of a problem with a waiver itself.
pub const INVALID_WAIVER: &str = "invalid-waiver";
/// The rule name of two stacks using the same logical id.
pub const DUPLICATE_ID: &str = "duplicate-logical-id";

/// A policy file could not be read, or the rules do not evaluate.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the policy rules in {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("no policy rules in {path}")]
    Empty { path: String },
    #[error("policy file {file} does not evaluate: {message}")]
    Rules { file: String, message: String },
    #[error("stack `{stack}` does not parse as a template for the policy rules: {message}")]
    Template { stack: String, message: String },
}

impl PolicyError {
    pub fn help(&self) -> String {
        match self {
            Self::Read { .. } | Self::Empty { .. } => {
                "the rules live in stacks/policies/*.guard (one or more `rule <name> { ... }` each)"
                    .into()
            }
            Self::Rules { .. } => "fix the rule's syntax (cfn-guard 3 rule language); `cfn-guard validate --rules <file> --data <template>` shows the same error".into(),
            Self::Template { .. } => "run `provisioner render` and look at the stack's template".into(),
        }
    }
}

/// One rules file.
#[derive(Debug, Clone)]
struct PolicyFile {
    /// As shown to the user, e.g. `stacks/policies/iam.guard`.
    name: String,
    text: String,
    rules: Vec<String>,
    /// The resource types the file names: only resources of these types are in the
    /// document it is evaluated over. `None` (every resource) when it names none.
    types: Option<BTreeSet<String>>,
}

/// The loaded rules, evaluated once per environment.
#[derive(Debug, Clone)]
pub struct Policies {
    files: Vec<PolicyFile>,
}

/// What the rules may know about the environment besides its templates.
#[derive(Debug, Clone)]
pub struct EnvironmentFacts {
    pub name: String,
    pub emulated: bool,
    pub retain_stateful_resources: bool,
    /// The environment asks for VPC flow logs (`network.flow_logs`).
    pub flow_logs: bool,
}

/// One rule a resource breaks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Violation {
    pub rule: String,
    /// The policy file of the rule.
    pub file: String,
    pub stack: String,
    /// Logical id of the resource, or `-` when the rule names none.
    pub resource: String,
    /// How to fix it.
    pub fix: String,
}

/// The rule of the [`Finding`](super::checks::Finding) a policy violation becomes.
pub const POLICY_RULE: &str = "policy";

impl Violation {
    /// This violation as a finding of the rendered environment (rule `policy`).
    pub fn finding(&self) -> super::checks::Finding {
        super::checks::Finding {
            stack: self.stack.clone(),
            location: format!("Resources.{}", self.resource),
            rule: POLICY_RULE,
            message: format!(
                "`{}` breaks the policy rule `{}` ({})",
                self.resource, self.rule, self.file
            ),
            help: self.fix.clone(),
        }
    }
}

/// A rule a resource waives, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Waiver {
    pub rule: String,
    pub stack: String,
    pub resource: String,
    pub reason: String,
}

/// The outcome for one environment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyReport {
    /// How many rules were evaluated.
    pub rules: usize,
    pub violations: Vec<Violation>,
    pub waivers: Vec<Waiver>,
}

/// One rendered stack, as handed to [`Policies::evaluate`].
pub struct StackBody<'a> {
    pub id: &'a str,
    pub body: &'a str,
}

/// Every `AWS::Service::Type` a rules file names (comments included: naming a type
/// more only keeps more resources in the document).
fn named_types(text: &str) -> BTreeSet<String> {
    let mut types = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("AWS::") {
        let candidate = &rest[at..];
        let end = candidate
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
            .unwrap_or(candidate.len());
        let name = &candidate[..end];
        let parts: Vec<&str> = name.split("::").collect();
        if parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && !p.contains(':')) {
            types.insert(name.to_string());
        }
        rest = &candidate[5..];
    }
    types
}

/// What one file's rules see (see the module doc).
#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "Environment")]
    environment: &'a Value,
    #[serde(rename = "Resources")]
    resources: OfTypes<'a>,
}

/// The resources of `types` (every one when `None`), serialized in place: each file's
/// document is written without copying the resources it keeps.
struct OfTypes<'a> {
    resources: &'a Map<String, Value>,
    types: Option<&'a BTreeSet<String>>,
}

impl Serialize for OfTypes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.resources.iter().filter(|(_, resource)| {
            match (self.types, resource.get("Type").and_then(Value::as_str)) {
                (Some(types), Some(kind)) => types.contains(kind),
                _ => true,
            }
        }))
    }
}

fn rule_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("rule ")?;
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

impl Policies {
    /// Every `*.guard` file of `dir`, by name; `display` turns a path into what the user sees.
    pub fn load(dir: &Path, display: impl Fn(&Path) -> String) -> Result<Self, PolicyError> {
        let read_error = |source| PolicyError::Read {
            path: display(dir),
            source,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(read_error)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "guard"))
            .collect();
        paths.sort();
        let mut sources = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
                path: display(&path),
                source,
            })?;
            sources.push((display(&path), text));
        }
        if sources.is_empty() {
            return Err(PolicyError::Empty { path: display(dir) });
        }
        Self::from_sources(sources)
    }

    /// Rules from `(file name, text)` pairs.
    pub fn from_sources(sources: Vec<(String, String)>) -> Result<Self, PolicyError> {
        let files: Vec<PolicyFile> = sources
            .into_iter()
            .map(|(name, text)| {
                let types = named_types(&text);
                PolicyFile {
                    rules: rule_names(&text),
                    types: (!types.is_empty()).then_some(types),
                    name,
                    text,
                }
            })
            .collect();
        if let Some(file) = files.iter().find(|file| file.rules.is_empty()) {
            return Err(PolicyError::Empty {
                path: file.name.clone(),
            });
        }
        Ok(Self { files })
    }

    /// Every rule's name, with its file.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().flat_map(|file| {
            file.rules
                .iter()
                .map(move |rule| (rule.as_str(), file.name.as_str()))
        })
    }

    /// Evaluates every rule over the environment's stacks.
    pub fn evaluate(
        &self,
        facts: &EnvironmentFacts,
        stacks: &[StackBody<'_>],
    ) -> Result<PolicyReport, PolicyError> {
        let mut report = PolicyReport {
            rules: self.rules().count(),
            ..PolicyReport::default()
        };
        let mut resources = Map::new();
        let mut stack_of: BTreeMap<String, String> = BTreeMap::new();
        let mut declared_waivers = Vec::new();
        for stack in stacks {
            let template = long_form_json(stack.body).map_err(|message| PolicyError::Template {
                stack: stack.id.to_string(),
                message,
            })?;
            let Some(Value::Object(stack_resources)) = template.get("Resources").cloned() else {
                continue;
            };
            for (id, resource) in stack_resources {
                declared_waivers.extend(self.waivers_of(stack.id, &id, &resource, &mut report));
                if let Some(first) = stack_of.get(&id) {
                    report.violations.push(Violation {
                        rule: DUPLICATE_ID.into(),
                        file: "-".into(),
                        stack: stack.id.to_string(),
                        resource: id.clone(),
                        fix: format!(
                            "stack `{first}` has a resource with the same logical id: rename one (the policy rules see an environment's stacks as one document)"
                        ),
                    });
                    continue;
                }
                stack_of.insert(id.clone(), stack.id.to_string());
                resources.insert(id, resource);
            }
        }
        let data_name = format!("environment {}", facts.name);
        let environment = serde_json::json!({
            "Name": facts.name,
            "Emulated": facts.emulated,
            "RetainStatefulResources": facts.retain_stateful_resources,
            "FlowLogs": facts.flow_logs,
        });
        let mut failures = Vec::new();
        for file in &self.files {
            let content = serde_json::to_string(&Document {
                environment: &environment,
                resources: OfTypes {
                    resources: &resources,
                    types: file.types.as_ref(),
                },
            })
            .map_err(|error| PolicyError::Rules {
                file: file.name.clone(),
                message: format!("the document for the rules does not serialize: {error}"),
            })?;
            failures.extend(file.failures(&content, &data_name)?);
        }
        let file_of: BTreeMap<&str, &str> = self.rules().collect();
        let mut found = BTreeSet::new();
        for (rule, resource, fix) in failures {
            let stack = stack_of
                .get(&resource)
                .cloned()
                .unwrap_or_else(|| "-".into());
            found.insert(Violation {
                file: file_of.get(rule.as_str()).unwrap_or(&"-").to_string(),
                rule,
                stack,
                resource,
                fix,
            });
        }
        // One violation per rule and resource: the first fix (in rule order) stands.
        let mut seen = BTreeSet::new();
        let mut used = BTreeSet::new();
        for violation in found {
            if !seen.insert((violation.rule.clone(), violation.resource.clone())) {
                continue;
            }
            let waived = declared_waivers.iter().position(|waiver: &Waiver| {
                waiver.rule == violation.rule && waiver.resource == violation.resource
            });
            match waived {
                Some(index) => {
                    used.insert(index);
                }
                None => report.violations.push(violation),
            }
        }
        for (index, waiver) in declared_waivers.iter().enumerate() {
            if !used.contains(&index) {
                report.violations.push(Violation {
                    rule: INVALID_WAIVER.into(),
                    file: "-".into(),
                    stack: waiver.stack.clone(),
                    resource: waiver.resource.clone(),
                    fix: format!(
                        "the waiver of `{}` waives nothing here (the resource does not break the rule): remove it",
                        waiver.rule
                    ),
                });
            }
        }
        report.waivers = declared_waivers;
        report.violations.sort();
        report.waivers.sort();
        Ok(report)
    }

    /// The waivers a resource declares; malformed ones become violations.
    fn waivers_of(
        &self,
        stack: &str,
        id: &str,
        resource: &Value,
        report: &mut PolicyReport,
    ) -> Vec<Waiver> {
        let Some(declared) = resource.pointer(&format!("/Metadata/{WAIVERS_KEY}")) else {
            return Vec::new();
        };
        let mut invalid = |fix: String| {
            report.violations.push(Violation {
                rule: INVALID_WAIVER.into(),
                file: "-".into(),
                stack: stack.to_string(),
                resource: id.to_string(),
                fix,
            })
        };
        let Some(entries) = declared.as_array() else {
            invalid(format!(
                "Metadata.{WAIVERS_KEY} must be a list of {{rule: <rule>, reason: <why>}}"
            ));
            return Vec::new();
        };
        let known: BTreeSet<&str> = self.rules().map(|(rule, _)| rule).collect();
        let mut waivers = Vec::new();
        for entry in entries {
            let rule = entry.get("rule").and_then(Value::as_str).unwrap_or("");
            let reason = entry
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim();
            if !known.contains(rule) {
                let names: Vec<&str> = known.iter().copied().collect();
                invalid(format!(
                    "a waiver names the rule `{rule}`, which no policy file defines; the rules are: {}",
                    names.join(", ")
                ));
            } else if reason.is_empty() {
                invalid(format!(
                    "the waiver of `{rule}` gives no reason: say why the rule does not apply to this resource"
                ));
            } else {
                waivers.push(Waiver {
                    rule: rule.to_string(),
                    stack: stack.to_string(),
                    resource: id.to_string(),
                    reason: reason.to_string(),
                });
            }
        }
        waivers
    }
}

impl PolicyFile {
    fn run(&self, content: &str, data_name: &str, verbose: bool) -> Result<String, PolicyError> {
        cfn_guard::run_checks(
            cfn_guard::ValidateInput {
                content,
                file_name: data_name,
            },
            cfn_guard::ValidateInput {
                content: &self.text,
                file_name: &self.name,
            },
            verbose,
        )
        .map_err(|error| PolicyError::Rules {
            file: self.name.clone(),
            message: error.to_string(),
        })
    }

    /// `(rule, resource, fix)` for every failing check of this file's rules.
    ///
    /// The summary report is read first: it is small, and says whether anything failed.
    /// (cfn-guard 3.2.1 returns only the last 8 KiB of a longer summary, so a summary that
    /// does not parse counts as a failure.) Only then is the full evaluation record read,
    /// which names every failing value with its path and the clause's message.
    fn failures(
        &self,
        content: &str,
        data_name: &str,
    ) -> Result<Vec<(String, String, String)>, PolicyError> {
        let summary = self.run(content, data_name, false)?;
        if summary.trim().is_empty() {
            return Ok(Vec::new());
        }
        let passed = serde_json::from_str::<Value>(&summary)
            .ok()
            .and_then(|report| {
                report
                    .get("not_compliant")
                    .and_then(Value::as_array)
                    .map(Vec::is_empty)
            })
            .unwrap_or(false);
        if passed {
            return Ok(Vec::new());
        }
        let record: Value =
            serde_json::from_str(&self.run(content, data_name, true)?).map_err(|error| {
                PolicyError::Rules {
                    file: self.name.clone(),
                    message: format!("unreadable evaluation record: {error}"),
                }
            })?;
        let mut out = Vec::new();
        for rule in record
            .get("children")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(check) = rule.pointer("/container/RuleCheck") else {
                continue;
            };
            if check.get("status").and_then(Value::as_str) != Some("FAIL") {
                continue;
            }
            let name = check
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let mut failing = Vec::new();
            failing_clauses(rule, &mut failing);
            if failing.is_empty() {
                let why = first_message(rule).unwrap_or_else(|| {
                    format!(
                        "the rule failed; `cfn-guard validate --rules {} --verbose` shows where",
                        self.name
                    )
                });
                out.push((name.clone(), "-".to_string(), why));
            }
            for (resource, fix) in failing {
                out.push((name.clone(), resource, fix));
            }
        }
        Ok(out)
    }
}

/// The status a record node reports, if it reports one.
fn node_status(container: &Value) -> Option<&str> {
    let (_, inner) = container.as_object()?.iter().next()?;
    match inner {
        Value::String(status) => Some(status),
        Value::Object(map) => map.get("status").and_then(Value::as_str).or_else(|| {
            let (_, variant) = map.iter().next()?;
            variant.get("status").and_then(Value::as_str)
        }),
        _ => None,
    }
}

/// `(resource, message)` of every failing clause below `node`; filters and conditions
/// (where a non-match is not a violation) and passing branches are not entered.
fn failing_clauses(node: &Value, out: &mut Vec<(String, String)>) {
    let Some(container) = node.get("container") else {
        return;
    };
    let kind = container
        .as_object()
        .and_then(|map| map.keys().next())
        .map(String::as_str)
        .unwrap_or("");
    if matches!(
        kind,
        "Filter" | "RuleCondition" | "WhenCondition" | "TypeCondition"
    ) {
        return;
    }
    if matches!(node_status(container), Some("PASS") | Some("SKIP")) {
        return;
    }
    if kind == "ClauseValueCheck" {
        let message = find_key(container, "custom_message")
            .and_then(Value::as_str)
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty());
        if let Some(message) = message {
            let resource = find_key(container, "from")
                .and_then(|from| find_key(from, "path"))
                .and_then(Value::as_str)
                .and_then(resource_of)
                .unwrap_or_else(|| "-".into());
            out.push((resource, message));
        }
        return;
    }
    for child in node
        .get("children")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        failing_clauses(child, out);
    }
}

/// The first value of `key` in `node`, depth first.
fn find_key<'v>(node: &'v Value, key: &str) -> Option<&'v Value> {
    match node {
        Value::Object(map) => map
            .get(key)
            .filter(|value| !value.is_null())
            .or_else(|| map.values().find_map(|value| find_key(value, key))),
        Value::Array(items) => items.iter().find_map(|item| find_key(item, key)),
        _ => None,
    }
}

/// The first non-empty `message` or `custom_message` in a record subtree.
fn first_message(node: &Value) -> Option<String> {
    ["custom_message", "message"].iter().find_map(|key| {
        find_key(node, key)
            .and_then(Value::as_str)
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
    })
}

/// `RecordsQueue` of `/Resources/RecordsQueue/Properties/...`.
fn resource_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/Resources/")?;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then(|| id.to_string())
}

/// A rendered template (YAML with short-form tags, or JSON) in CloudFormation's long form.
pub fn long_form_json(body: &str) -> Result<Value, String> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(body).map_err(|e| e.to_string())?;
    Ok(to_long_form(&yaml))
}

fn to_long_form(value: &serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => serde_json::from_str(&n.to_string()).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(items.iter().map(to_long_form).collect()),
        Y::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s.clone(),
                        other => serde_yaml::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    (key, to_long_form(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let name = tagged.tag.to_string();
            let name = name.trim_start_matches('!');
            let argument = match (name, &tagged.value) {
                ("GetAtt", Y::String(path)) => match path.split_once('.') {
                    Some((resource, attribute)) => Value::Array(vec![
                        Value::String(resource.into()),
                        Value::String(attribute.into()),
                    ]),
                    None => Value::String(path.clone()),
                },
                (_, inner) => to_long_form(inner),
            };
            let key = match name {
                "Ref" | "Condition" => name.to_string(),
                _ => format!("Fn::{name}"),
            };
            Value::Object([(key, argument)].into_iter().collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_form_tags_become_the_long_form() {
        let json = long_form_json(
            "Resources:\n  A:\n    Type: X\n    Properties:\n      B: !GetAtt Q.Arn\n      C: !Ref D\n      E: !Sub '${F}'\n      G: 5\n",
        )
        .unwrap();
        let props = &json["Resources"]["A"]["Properties"];
        assert_eq!(props["B"], serde_json::json!({"Fn::GetAtt": ["Q", "Arn"]}));
        assert_eq!(props["C"], serde_json::json!({"Ref": "D"}));
        assert_eq!(props["E"], serde_json::json!({"Fn::Sub": "${F}"}));
        assert_eq!(props["G"], serde_json::json!(5));
    }

    #[test]
    fn the_types_a_file_names_are_found_in_quotes_and_comments() {
        let types = named_types(
            "# every AWS::SQS::Queue\nlet q = Resources.*[ Type IN ['AWS::IAM::Role', \"AWS::IAM::ManagedPolicy\"] ]\nAWS::Bad AWS::: AWS::A::B::C",
        );
        assert_eq!(
            types.into_iter().collect::<Vec<_>>(),
            [
                "AWS::IAM::ManagedPolicy",
                "AWS::IAM::Role",
                "AWS::SQS::Queue"
            ]
        );
    }

    #[test]
    fn rule_names_are_read_from_the_file() {
        assert_eq!(
            rule_names("let x = 1\nrule first when %x {\n}\n  rule second_one {\n}\n# rule not\n"),
            vec!["first", "second_one"]
        );
    }
}
