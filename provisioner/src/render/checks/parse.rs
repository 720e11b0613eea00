//! Parsing of a rendered template into its sections, with intrinsic functions normalized:
//! the long form (`Fn::GetAtt: [A, B]`) and the short YAML tag form (`!GetAtt A.B`) both
//! become [`Node::Function`], so the checks see one shape. Reports syntax and structure
//! problems (missing `Resources`, malformed resource types, unknown functions) on the way.

use serde_yaml::Value;

use super::{closest, finding, suggest, Finding};

/// Intrinsic and rule functions, without their `Fn::` prefix (short-form tags drop it too).
pub(super) const FUNCTIONS: &[&str] = &[
    "And",
    "Base64",
    "Cidr",
    "Contains",
    "EachMemberEquals",
    "EachMemberIn",
    "Equals",
    "FindInMap",
    "GetAZs",
    "GetAtt",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "RefAll",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
    "ValueOf",
    "ValueOfAll",
];
pub(super) const SECTIONS: &[&str] = &[
    "AWSTemplateFormatVersion",
    "Conditions",
    "Description",
    "Mappings",
    "Metadata",
    "Outputs",
    "Parameters",
    "Resources",
    "Rules",
    "Transform",
];
/// A template with intrinsics normalized: long and short forms both become [`Node::Function`].
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Null,
    Str(String),
    /// Numbers and booleans, as written.
    Scalar(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
    /// `Ref`, `Condition` or `Fn::Name`, with its argument.
    Function(String, Box<Node>),
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn normalize(value: &Value, path: &str, problems: &mut Vec<(String, String)>) -> Node {
    match value {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Scalar(b.to_string()),
        Value::Number(n) => Node::Scalar(n.to_string()),
        Value::String(s) => Node::Str(s.clone()),
        Value::Sequence(items) => Node::List(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| normalize(v, &format!("{path}[{i}]"), problems))
                .collect(),
        ),
        Value::Mapping(map) => {
            let mut entries: Vec<(String, Node)> = map
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => serde_yaml::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    let node = normalize(v, &join(path, &key), problems);
                    (key, node)
                })
                .collect();
            let long_form = match entries.as_slice() {
                [(key, arg)] => {
                    key == "Ref"
                        || (key == "Condition" && matches!(arg, Node::Str(_)))
                        || (key.starts_with("Fn::") && !key.starts_with("Fn::ForEach"))
                }
                _ => false,
            };
            match entries.pop() {
                Some((key, arg)) if long_form => {
                    if key.starts_with("Fn::") && !FUNCTIONS.contains(&&key[4..]) {
                        problems.push((path.to_string(), key.clone()));
                    }
                    Node::Function(key, Box::new(arg))
                }
                Some(last) => {
                    entries.push(last);
                    Node::Map(entries)
                }
                None => Node::Map(entries),
            }
        }
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let function = match name {
                "Ref" | "Condition" => name.to_string(),
                _ if FUNCTIONS.contains(&name) => format!("Fn::{name}"),
                _ => {
                    problems.push((path.to_string(), format!("!{name}")));
                    return normalize(&tagged.value, path, problems);
                }
            };
            let arg = normalize(&tagged.value, &join(path, &function), problems);
            Node::Function(function, Box::new(arg))
        }
    }
}

/// The sections of one parsed template.
#[derive(Default)]
pub(super) struct Template {
    pub(super) parameters: Vec<(String, Node)>,
    pub(super) mappings: Vec<(String, Node)>,
    pub(super) conditions: Vec<(String, Node)>,
    pub(super) resources: Vec<(String, Node)>,
    pub(super) outputs: Vec<(String, Node)>,
    /// Metadata and Rules: walked for references only.
    pub(super) other: Vec<(String, Node)>,
}

impl Template {
    /// `(output id, export name)` for every output whose export name is a literal.
    pub(super) fn export_names(&self) -> Vec<(String, String)> {
        self.outputs
            .iter()
            .filter_map(|(id, output)| {
                let name = field(field(output, "Export")?, "Name")?;
                Some((id.clone(), literal(name)?))
            })
            .collect()
    }
}

pub(super) fn field<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match node {
        Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

/// The value of a plain string, or of an `Fn::Sub` with no variables.
pub(super) fn literal(node: &Node) -> Option<String> {
    match node {
        Node::Str(s) => Some(s.clone()),
        Node::Function(name, arg) if name == "Fn::Sub" => match &**arg {
            Node::Str(s) if sub_variables(s).is_empty() => Some(s.replace("${!", "${")),
            _ => None,
        },
        _ => None,
    }
}

/// Variables named by `${...}` in an `Fn::Sub` string; `${!Literal}` is an escape, not a variable.
pub(super) fn sub_variables(template: &str) -> Vec<String> {
    let mut vars = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        if !after.starts_with('!') {
            vars.push(after[..end].trim().to_string());
        }
        rest = &after[end + 1..];
    }
    vars
}

pub(super) fn parse_template(stack: &str, body: &str, out: &mut Vec<Finding>) -> Option<Template> {
    let structure = |location: &str, message: String, help: &str| {
        finding(
            stack,
            location,
            "template-structure",
            message,
            help.to_string(),
        )
    };
    let value: Value = match serde_yaml::from_str(body) {
        Ok(value) => value,
        Err(error) => {
            let location = error
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "<template>".into());
            out.push(finding(
                stack,
                location,
                "yaml-syntax",
                format!("template is not valid YAML: {error}"),
                "fix the YAML syntax in the stack's template source".into(),
            ));
            return None;
        }
    };
    let mut problems = Vec::new();
    let Node::Map(sections) = normalize(&value, "", &mut problems) else {
        out.push(structure(
            "<template>",
            "template is not a mapping of sections".into(),
            "a template is a mapping with at least a `Resources` section",
        ));
        return None;
    };
    for (path, name) in problems {
        let (prefix, short) = if name.starts_with('!') {
            ("!", "!")
        } else {
            ("Fn::", "")
        };
        let known: Vec<String> = ["Ref", "Condition"]
            .iter()
            .map(|f| format!("{short}{f}"))
            .chain(FUNCTIONS.iter().map(|f| format!("{prefix}{f}")))
            .collect();
        out.push(finding(
            stack,
            path,
            "unknown-function",
            format!("`{name}` is not a CloudFormation intrinsic function"),
            suggest(
                closest(&name, known.iter().map(String::as_str)),
                "use Ref, Condition or one of the Fn:: intrinsic functions",
            ),
        ));
    }
    let mut template = Template::default();
    for (key, node) in sections {
        let section = match key.as_str() {
            "Parameters" => &mut template.parameters,
            "Mappings" => &mut template.mappings,
            "Conditions" => &mut template.conditions,
            "Resources" => &mut template.resources,
            "Outputs" => &mut template.outputs,
            "Metadata" | "Rules" => &mut template.other,
            _ if SECTIONS.contains(&key.as_str()) => continue,
            _ => {
                out.push(structure(
                    &key,
                    format!("`{key}` is not a template section"),
                    &suggest(
                        closest(&key, SECTIONS.iter().copied()),
                        &format!("remove `{key}`; sections are {}", SECTIONS.join(", ")),
                    ),
                ));
                continue;
            }
        };
        match node {
            Node::Map(entries) if key == "Metadata" || key == "Rules" => {
                section.push((key, Node::Map(entries)))
            }
            Node::Map(entries) => *section = entries,
            _ => out.push(structure(
                &key,
                format!("section `{key}` is not a mapping"),
                "write the section as a mapping of logical id to definition",
            )),
        }
    }
    if template.resources.is_empty() {
        out.push(structure(
            "Resources",
            "template declares no resources".into(),
            "a template needs a `Resources` section with at least one resource",
        ));
    }
    for (id, resource) in &template.resources {
        let location = format!("Resources.{id}.Type");
        match field(resource, "Type") {
            Some(Node::Str(t)) if valid_resource_type(t) => {}
            Some(Node::Str(t)) => out.push(finding(stack, location, "resource-type", format!("resource `{id}` has type `{t}`, which is not of the form `AWS::Service::Resource` or `Custom::Name`"),
                "use a resource type from the CloudFormation resource reference, or `Custom::Name` for a custom resource".into())),
            _ => out.push(finding(stack, location, "resource-type", format!("resource `{id}` has no `Type` string"),
                "add `Type: AWS::Service::Resource` to the resource".into())),
        }
    }
    for (id, output) in &template.outputs {
        if field(output, "Value").is_none() {
            out.push(structure(
                &format!("Outputs.{id}"),
                format!("output `{id}` has no `Value`"),
                "give every output a `Value`",
            ));
        }
    }
    for (id, parameter) in &template.parameters {
        if !matches!(field(parameter, "Type"), Some(Node::Str(_))) {
            out.push(structure(
                &format!("Parameters.{id}"),
                format!("parameter `{id}` has no `Type`"),
                "add `Type: String` (or another parameter type) to the parameter",
            ));
        }
    }
    Some(template)
}

pub(super) fn valid_resource_type(t: &str) -> bool {
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
    match t.split("::").collect::<Vec<_>>().as_slice() {
        ["AWS", service, resource] => word(service) && word(resource),
        ["Custom", name] => {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_@-".contains(c))
        }
        _ => false,
    }
}
