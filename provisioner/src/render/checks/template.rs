//! Checks inside one template: every name a Ref, Fn::GetAtt, Fn::Sub, DependsOn, Condition
//! or Fn::FindInMap uses resolves; parameters are used; resources have no dependency cycle;
//! CloudFormation's quotas on counts, logical ids and export names hold.

use std::collections::{BTreeMap, BTreeSet};

use super::parse::{join, literal, sub_variables, Node, Template};
use super::{closest, find_cycles, finding, suggest, Finding};

pub(super) const PSEUDO_PARAMETERS: &[&str] = &[
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
];
pub(super) const MAX_NAME_CHARS: usize = 255;

/// A name one part of a template uses.
pub(super) enum Use {
    Ref(String),
    GetAtt(String),
    SubVariable {
        name: String,
        locals: Vec<String>,
    },
    Condition(String),
    FindInMap {
        map: String,
        keys: Vec<Option<String>>,
    },
    DependsOn(String),
    Import(String),
}

/// Walks template nodes and records every name they use, and malformed intrinsics.
pub(super) struct Collector<'s> {
    stack: &'s str,
    /// The resource being walked, for the dependency graph.
    owner: Option<String>,
    uses: Vec<(Use, String, Option<String>)>,
    out: &'s mut Vec<Finding>,
}

impl Collector<'_> {
    fn record(&mut self, what: Use, path: &str) {
        self.uses.push((what, path.to_string(), self.owner.clone()));
    }

    fn malformed(&mut self, path: &str, function: &str, expected: &str) {
        self.out.push(finding(
            self.stack,
            path,
            "intrinsic-shape",
            format!("`{function}` has a malformed argument"),
            format!("write it as {expected}"),
        ));
    }

    fn visit(&mut self, node: &Node, path: &str) {
        match node {
            Node::List(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, item)| self.visit(item, &format!("{path}[{i}]"))),
            Node::Map(entries) => entries
                .iter()
                .for_each(|(key, value)| self.visit(value, &join(path, key))),
            Node::Function(name, arg) => self.visit_function(name, arg, path),
            Node::Null | Node::Str(_) | Node::Scalar(_) => {}
        }
    }

    fn visit_function(&mut self, name: &str, arg: &Node, path: &str) {
        let inner = join(path, name);
        match (name, arg) {
            ("Ref", Node::Str(target)) => self.record(Use::Ref(target.clone()), path),
            ("Ref", _) => self.malformed(path, name, "`Ref: LogicalId` with a literal name"),
            ("Condition", Node::Str(target)) => self.record(Use::Condition(target.clone()), path),
            ("Fn::GetAtt", Node::Str(s)) => match s.split_once('.') {
                Some((resource, _)) => self.record(Use::GetAtt(resource.to_string()), path),
                None => self.malformed(
                    path,
                    name,
                    "`!GetAtt Resource.Attribute` or `Fn::GetAtt: [Resource, Attribute]`",
                ),
            },
            ("Fn::GetAtt", Node::List(items)) if matches!(items.as_slice(), [Node::Str(_), _]) => {
                if let [Node::Str(resource), attribute] = items.as_slice() {
                    self.record(Use::GetAtt(resource.clone()), path);
                    self.visit(attribute, &format!("{inner}[1]"));
                }
            }
            ("Fn::GetAtt", _) => self.malformed(
                path,
                name,
                "`!GetAtt Resource.Attribute` or `Fn::GetAtt: [Resource, Attribute]`",
            ),
            ("Fn::Sub", _) => {
                let (template, variables) =
                    match arg {
                        Node::Str(s) => (s, &[][..]),
                        Node::List(items) => match items.as_slice() {
                            [Node::Str(s)] => (s, &[][..]),
                            [Node::Str(s), Node::Map(vars)] => (s, vars.as_slice()),
                            _ => return self.malformed(
                                path,
                                name,
                                "`!Sub \"text ${Name}\"` or `!Sub [\"text ${Var}\", {Var: value}]`",
                            ),
                        },
                        _ => {
                            return self.malformed(
                                path,
                                name,
                                "`!Sub \"text ${Name}\"` or `!Sub [\"text ${Var}\", {Var: value}]`",
                            )
                        }
                    };
                let locals: Vec<String> = variables.iter().map(|(key, _)| key.clone()).collect();
                for variable in sub_variables(template) {
                    self.record(
                        Use::SubVariable {
                            name: variable,
                            locals: locals.clone(),
                        },
                        path,
                    );
                }
                for (key, value) in variables {
                    self.visit(value, &format!("{inner}[1].{key}"));
                }
            }
            ("Fn::If", Node::List(items)) if matches!(items.as_slice(), [Node::Str(_), _, _]) => {
                if let [Node::Str(condition), when_true, when_false] = items.as_slice() {
                    self.record(Use::Condition(condition.clone()), path);
                    self.visit(when_true, &format!("{inner}[1]"));
                    self.visit(when_false, &format!("{inner}[2]"));
                }
            }
            ("Fn::If", _) => self.malformed(
                path,
                name,
                "`!If [ConditionName, value_if_true, value_if_false]`",
            ),
            ("Fn::FindInMap", Node::List(items)) if (3..=4).contains(&items.len()) => {
                if let Node::Str(map) = &items[0] {
                    let keys = if items.len() == 3 {
                        items[1..].iter().map(literal).collect()
                    } else {
                        Vec::new()
                    };
                    self.record(
                        Use::FindInMap {
                            map: map.clone(),
                            keys,
                        },
                        path,
                    );
                }
                self.visit(arg, &inner);
            }
            ("Fn::FindInMap", _) => self.malformed(
                path,
                name,
                "`!FindInMap [MapName, TopLevelKey, SecondLevelKey]`",
            ),
            ("Fn::ImportValue", _) => {
                if let Some(import) = literal(arg) {
                    self.record(Use::Import(import), path);
                }
                self.visit(arg, &inner);
            }
            _ => self.visit(arg, &inner),
        }
    }

    /// Walks a resource or output: `DependsOn` and `Condition` attributes are names, the rest values.
    fn visit_definition(&mut self, node: &Node, path: &str) {
        let Node::Map(entries) = node else {
            return self.visit(node, path);
        };
        for (key, value) in entries {
            let location = join(path, key);
            match (key.as_str(), value) {
                ("Condition", Node::Str(condition)) => {
                    self.record(Use::Condition(condition.clone()), &location)
                }
                ("DependsOn", Node::Str(target)) => {
                    self.record(Use::DependsOn(target.clone()), &location)
                }
                ("DependsOn", Node::List(targets)) => {
                    for (i, target) in targets.iter().enumerate() {
                        match target {
                            Node::Str(target) => self.record(
                                Use::DependsOn(target.clone()),
                                &format!("{location}[{i}]"),
                            ),
                            _ => self.malformed(
                                &location,
                                "DependsOn",
                                "a logical id or a list of logical ids",
                            ),
                        }
                    }
                }
                ("DependsOn", _) => self.malformed(
                    &location,
                    "DependsOn",
                    "a logical id or a list of logical ids",
                ),
                _ => self.visit(value, &location),
            }
        }
    }
}

/// Checks one template on its own; returns its literal imports as `(export name, location)`.
pub(super) fn check_template(
    stack: &str,
    template: &Template,
    out: &mut Vec<Finding>,
) -> Vec<(String, String)> {
    let mut collector = Collector {
        stack,
        owner: None,
        uses: Vec::new(),
        out,
    };
    for (id, resource) in &template.resources {
        collector.owner = Some(id.clone());
        collector.visit_definition(resource, &format!("Resources.{id}"));
    }
    collector.owner = None;
    for (id, output) in &template.outputs {
        collector.visit_definition(output, &format!("Outputs.{id}"));
    }
    for (id, condition) in &template.conditions {
        collector.visit(condition, &format!("Conditions.{id}"));
    }
    for (section, node) in &template.other {
        collector.visit(node, section);
    }
    let uses = collector.uses;
    let (parameters, resources, conditions) = (
        names(&template.parameters),
        names(&template.resources),
        names(&template.conditions),
    );
    let mut used_parameters = BTreeSet::new();
    let mut imports = Vec::new();
    let mut edges: BTreeMap<&str, BTreeMap<&str, String>> =
        resources.iter().map(|r| (*r, BTreeMap::new())).collect();
    for (what, path, owner) in &uses {
        let mut edge = |target: &str, how: &str| {
            if let (Some(owner), Some(target)) = (owner, resources.get(target)) {
                let from = edges.entry(owner.as_str()).or_default();
                from.entry(*target)
                    .or_insert_with(|| format!("{how} at {path}"));
            }
        };
        let known = |name: &str| {
            parameters.contains(name)
                || resources.contains(name)
                || PSEUDO_PARAMETERS.contains(&name)
        };
        let all_names = || {
            parameters
                .iter()
                .chain(&resources)
                .chain(PSEUDO_PARAMETERS)
                .copied()
        };
        match what {
            Use::Ref(name) => {
                used_parameters.insert(name.as_str());
                edge(name, "Ref");
                if !known(name) {
                    out.push(finding(stack, path, "ref-target", format!("Ref names `{name}`, which is not a parameter, resource or pseudo parameter of this template"),
                        suggest(closest(name, all_names()), &format!("declare `{name}` under Parameters or Resources, or correct the name"))));
                }
            }
            Use::GetAtt(name) => {
                edge(name, "Fn::GetAtt");
                if parameters.contains(name.as_str()) && !resources.contains(name.as_str()) {
                    out.push(finding(
                        stack,
                        path,
                        "getatt-target",
                        format!("Fn::GetAtt names `{name}`, which is a parameter, not a resource"),
                        format!("use `!Ref {name}` to read a parameter's value"),
                    ));
                } else if !resources.contains(name.as_str()) {
                    out.push(finding(stack, path, "getatt-target", format!("Fn::GetAtt names resource `{name}`, which is not declared under Resources"),
                        suggest(closest(name, resources.iter().copied()), &format!("declare resource `{name}` or correct the name"))));
                }
            }
            Use::SubVariable { name, locals } => {
                if locals.contains(name) {
                    continue;
                }
                let (head, attribute) = match name.split_once('.') {
                    Some((head, _)) => (head, true),
                    None => (name.as_str(), false),
                };
                used_parameters.insert(head);
                edge(head, "Fn::Sub");
                let resolves = if attribute {
                    resources.contains(head)
                } else {
                    known(name)
                };
                if !resolves {
                    let candidates = all_names().chain(locals.iter().map(String::as_str));
                    out.push(finding(stack, path, "sub-variable", format!("Fn::Sub variable `${{{name}}}` is not a parameter, resource, pseudo parameter or key of the Sub's variable map"),
                        suggest(closest(head, candidates), &format!("declare `{head}`, add it to the Sub's variable map, or write `${{!{name}}}` for the literal text `${{{name}}}`"))));
                }
            }
            Use::Condition(name) => {
                if !conditions.contains(name.as_str()) {
                    out.push(finding(
                        stack,
                        path,
                        "condition-target",
                        format!("condition `{name}` is not declared under Conditions"),
                        suggest(
                            closest(name, conditions.iter().copied()),
                            &format!(
                                "declare condition `{name}` under Conditions or correct the name"
                            ),
                        ),
                    ));
                }
            }
            Use::FindInMap { map, keys } => {
                check_find_in_map(stack, template, map, keys, path, out)
            }
            Use::DependsOn(name) => {
                edge(name, "DependsOn");
                if !resources.contains(name.as_str()) {
                    out.push(finding(
                        stack,
                        path,
                        "depends-on-target",
                        format!(
                            "DependsOn names `{name}`, which is not a resource of this template"
                        ),
                        suggest(
                            closest(name, resources.iter().copied()),
                            &format!("remove `{name}` from DependsOn or correct the name"),
                        ),
                    ));
                }
            }
            Use::Import(name) => imports.push((name.clone(), path.clone())),
        }
    }
    for (id, _) in &template.parameters {
        if !used_parameters.contains(id.as_str()) {
            out.push(finding(
                stack,
                format!("Parameters.{id}"),
                "unused-parameter",
                format!("parameter `{id}` is declared but never used by a Ref or Fn::Sub"),
                format!("remove parameter `{id}`, or reference it where its value is meant to go"),
            ));
        }
    }
    let graph: BTreeMap<&str, BTreeSet<&str>> = edges
        .iter()
        .map(|(from, to)| (*from, to.keys().copied().collect()))
        .collect();
    for cycle in find_cycles(&graph) {
        let how: Vec<String> = cycle
            .windows(2)
            .map(|pair| {
                let via = edges
                    .get(pair[0].as_str())
                    .and_then(|to| to.get(pair[1].as_str()))
                    .cloned()
                    .unwrap_or_default();
                format!("{} -> {}: {via}", pair[0], pair[1])
            })
            .collect();
        out.push(finding(stack, format!("Resources.{}", cycle[0]), "resource-cycle",
            format!("resources depend on each other in a cycle: {} ({})", cycle.join(" -> "), how.join("; ")),
            "remove a DependsOn or a reference in the cycle, e.g. move a self-reference into a separate resource such as AWS::EC2::SecurityGroupIngress".into()));
    }
    check_limits(stack, template, out);
    imports
}

pub(super) fn names(entries: &[(String, Node)]) -> BTreeSet<&str> {
    entries.iter().map(|(id, _)| id.as_str()).collect()
}

pub(super) fn check_find_in_map(
    stack: &str,
    template: &Template,
    map: &str,
    keys: &[Option<String>],
    path: &str,
    out: &mut Vec<Finding>,
) {
    let Some((_, mapping)) = template.mappings.iter().find(|(id, _)| id == map) else {
        out.push(finding(
            stack,
            path,
            "mapping-target",
            format!("Fn::FindInMap names mapping `{map}`, which is not declared under Mappings"),
            suggest(
                closest(map, template.mappings.iter().map(|(id, _)| id.as_str())),
                &format!("declare mapping `{map}` under Mappings or correct the name"),
            ),
        ));
        return;
    };
    let mut level = mapping;
    let mut described = format!("mapping `{map}`");
    for key in keys {
        let (Some(key), Node::Map(entries)) = (key, level) else {
            return;
        };
        let Some((_, next)) = entries.iter().find(|(k, _)| k == key) else {
            out.push(finding(
                stack,
                path,
                "mapping-target",
                format!("{described} has no key `{key}`"),
                suggest(
                    closest(key, entries.iter().map(|(k, _)| k.as_str())),
                    &format!("add key `{key}` to {described} or correct the key"),
                ),
            ));
            return;
        };
        described = format!("{described} key `{key}`");
        level = next;
    }
}

pub(super) fn check_limits(stack: &str, template: &Template, out: &mut Vec<Finding>) {
    let sections = [
        ("Resources", &template.resources, 500, "limit-resources"),
        ("Parameters", &template.parameters, 200, "limit-parameters"),
        ("Outputs", &template.outputs, 200, "limit-outputs"),
        ("Mappings", &template.mappings, 200, "limit-mappings"),
    ];
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (section, entries, limit, rule) in sections {
        if entries.len() > limit {
            out.push(finding(stack, section, rule, format!("template declares {} {}; CloudFormation allows at most {limit}", entries.len(), section.to_lowercase()),
                "split the stack into smaller stacks (or nested stacks) that export what the others import".into()));
        }
        for (id, _) in entries.iter() {
            let location = format!("{section}.{id}");
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                out.push(finding(
                    stack,
                    &location,
                    "logical-id",
                    format!("logical id `{id}` is not alphanumeric"),
                    "use only the letters A-Z, a-z and digits 0-9 in logical ids".into(),
                ));
            }
            if id.chars().count() > MAX_NAME_CHARS {
                out.push(finding(stack, &location, "logical-id", format!("logical id `{id}` is {} characters long; at most {MAX_NAME_CHARS} are allowed", id.chars().count()),
                    "shorten the logical id".into()));
            }
            if section == "Mappings" {
                continue;
            }
            match seen.get(id.as_str()) {
                Some(first) => out.push(finding(stack, &location, "logical-id-collision", format!("logical id `{id}` is declared under both {first} and {section}"),
                    "rename one of the two; logical ids must be unique across Parameters, Resources and Outputs".into())),
                None => { seen.insert(id.as_str(), section); }
            }
        }
    }
    for (output, name) in template.export_names() {
        let location = format!("Outputs.{output}.Export.Name");
        if name.chars().count() > MAX_NAME_CHARS {
            out.push(finding(stack, &location, "export-name", format!("export name `{name}` is {} characters long; at most {MAX_NAME_CHARS} are allowed", name.chars().count()),
                "shorten the export name".into()));
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-')
        {
            out.push(finding(stack, &location, "export-name", format!("export name `{name}` contains characters other than A-Z, a-z, 0-9, `:` and `-`"),
                "use only letters, digits, colons and hyphens in export names".into()));
        }
    }
}
