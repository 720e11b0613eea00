//! Checks on rendered CloudFormation templates, run before anything is deployed.
//!
//! Every rendered stack of one environment is parsed back (long-form intrinsics such as
//! `Fn::GetAtt:` and short-form YAML tags such as `!GetAtt` are normalized into one shape)
//! and checked: the template structure, that every reference resolves inside its template,
//! that every `Fn::ImportValue` is exported by a stack deployed before it, that stacks and
//! resources have no dependency cycles, the CloudFormation quotas, and unused parameters.
//! Each [`Finding`] names the stack, the location in the template, what is wrong and the fix.
//!
//! `parse` turns a body into normalized sections, `template` checks one template on its own,
//! and this module checks what spans stacks: ids, `depends_on`, exports and imports.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

mod parse;
mod template;
#[cfg(test)]
mod tests;

use parse::parse_template;
use template::check_template;

/// One rendered stack of an environment, as handed to [`check_stacks`].
pub struct StackTemplate<'a> {
    /// Stack id from `stacks/stacks.yaml`.
    pub id: &'a str,
    /// Ids of the stacks this one is deployed after.
    pub depends_on: &'a [String],
    /// The rendered template text (YAML or JSON).
    pub body: &'a str,
}

/// One problem found in a rendered stack.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Id of the stack the problem is in.
    pub stack: String,
    /// Where in the template, e.g. `Resources.WorkerFunction.Properties.Role`.
    pub location: String,
    /// Stable rule id, e.g. `ref-target`.
    pub rule: &'static str,
    /// What is wrong, naming the offending name.
    pub message: String,
    /// How to fix it.
    pub help: String,
}

/// How serious a finding is: warnings (as cfn-lint rates them) do not stop a deploy by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Rules whose findings are warnings; every other rule is an error.
pub const WARNING_RULES: &[&str] = &["unused-parameter"];

impl Finding {
    /// Error or warning, by rule.
    pub fn severity(&self) -> Severity {
        if WARNING_RULES.contains(&self.rule) {
            Severity::Warning
        } else {
            Severity::Error
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity() {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{severity}[{}] stack `{}` at {}: {}\n  help: {}",
            self.rule, self.stack, self.location, self.message, self.help
        )
    }
}

const MAX_BODY_BYTES: usize = 51_200;

/// The outcome of checking one environment's stacks.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// Sorted by stack, then location.
    pub findings: Vec<Finding>,
    /// Each parsed stack's `Parameters`, in template order, from the same parse.
    pub parameters: BTreeMap<String, Vec<String>>,
}

/// Checks every rendered stack of one environment; findings are sorted by stack, then location.
pub fn check_stacks(stacks: &[StackTemplate<'_>]) -> Vec<Finding> {
    check_and_describe(stacks).findings
}

/// Checks every rendered stack of one environment and reports what each declares.
pub fn check_and_describe(stacks: &[StackTemplate<'_>]) -> Checked {
    let mut parameters = BTreeMap::new();
    let mut out = Vec::new();
    let graph = check_stack_graph(stacks, &mut out);
    let mut imports = Vec::new();
    let mut exports: BTreeMap<String, Vec<(&str, String)>> = BTreeMap::new();
    for stack in stacks {
        if stack.body.len() > MAX_BODY_BYTES {
            out.push(finding(stack.id, "<template>", "limit-template-size",
                format!("template body is {} bytes; CloudFormation accepts at most {MAX_BODY_BYTES} bytes as an inline TemplateBody", stack.body.len()),
                format!("upload templates larger than {MAX_BODY_BYTES} bytes to S3 and deploy them with TemplateURL (up to 1 MB), or split the stack")));
        }
        let Some(template) = parse_template(stack.id, stack.body, &mut out) else {
            continue;
        };
        parameters.insert(
            stack.id.to_string(),
            template
                .parameters
                .iter()
                .map(|(name, _)| name.clone())
                .collect(),
        );
        imports.extend(
            check_template(stack.id, &template, &mut out)
                .into_iter()
                .map(|(name, path)| (stack.id, name, path)),
        );
        for (output, name) in template.export_names() {
            exports.entry(name).or_default().push((stack.id, output));
        }
    }
    for (name, exporters) in &mut exports {
        exporters.sort();
        let Some(((first_stack, first_output), rest)) = exporters.split_first() else {
            continue;
        };
        for (stack, output) in rest {
            out.push(finding(stack, format!("Outputs.{output}.Export.Name"), "export-duplicate",
                format!("export name `{name}` is also exported by stack `{first_stack}` at Outputs.{first_output}"),
                "export names must be unique within an account and region; rename one of the two exports".into()));
        }
    }
    for (stack, name, path) in imports {
        check_import(stack, &name, path, &exports, &graph, &mut out);
    }
    out.sort_by(|a, b| {
        (&a.stack, &a.location, a.rule, &a.message).cmp(&(
            &b.stack,
            &b.location,
            b.rule,
            &b.message,
        ))
    });
    out.dedup();
    Checked {
        findings: out,
        parameters,
    }
}

fn finding(
    stack: &str,
    location: impl Into<String>,
    rule: &'static str,
    message: String,
    help: String,
) -> Finding {
    Finding {
        stack: stack.to_string(),
        location: location.into(),
        rule,
        message,
        help,
    }
}

/// Checks stack ids and `depends_on`; returns the dependency graph over known stacks.
fn check_stack_graph<'s>(
    stacks: &[StackTemplate<'s>],
    out: &mut Vec<Finding>,
) -> BTreeMap<&'s str, BTreeSet<&'s str>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for stack in stacks {
        if graph.insert(stack.id, BTreeSet::new()).is_some() {
            out.push(finding(
                stack.id,
                "id",
                "stack-duplicate-id",
                format!("stack id `{}` is declared more than once", stack.id),
                "give every stack of the environment a distinct id".into(),
            ));
        }
    }
    let ids: Vec<&str> = graph.keys().copied().collect();
    for stack in stacks {
        for dependency in stack.depends_on {
            match ids.iter().find(|id| **id == dependency.as_str()) {
                Some(known) => {
                    graph.entry(stack.id).or_default().insert(known);
                }
                None => out.push(finding(
                    stack.id,
                    "depends_on",
                    "stack-unknown-dependency",
                    format!(
                        "depends_on names `{dependency}`, which is not a stack of this environment"
                    ),
                    suggest(
                        closest(dependency, ids.iter().copied()),
                        &format!("remove `{dependency}` from depends_on or add that stack"),
                    ),
                )),
            }
        }
    }
    for cycle in find_cycles(&graph) {
        out.push(finding(&cycle[0], "depends_on", "stack-cycle",
            format!("stacks depend on each other in a cycle: {}", cycle.join(" -> ")),
            "remove one depends_on entry of the cycle; a stack can only rely on stacks deployed before it".into()));
    }
    graph
}

fn check_import(
    stack: &str,
    name: &str,
    path: String,
    exports: &BTreeMap<String, Vec<(&str, String)>>,
    graph: &BTreeMap<&str, BTreeSet<&str>>,
    out: &mut Vec<Finding>,
) {
    let Some(exporters) = exports.get(name) else {
        let help = format!("add an output with `Export: {{Name: {name}}}` to the stack that owns the value and list that stack in depends_on of `{stack}`");
        out.push(finding(
            stack,
            path,
            "import-unresolved",
            format!("Fn::ImportValue imports `{name}`, which no stack of this environment exports"),
            suggest(closest(name, exports.keys().map(String::as_str)), &help),
        ));
        return;
    };
    let upstream = reachable(graph, stack);
    if exporters
        .iter()
        .any(|(exporter, _)| *exporter != stack && upstream.contains(exporter))
    {
        return;
    }
    if let Some((_, output)) = exporters.iter().find(|(exporter, _)| *exporter == stack) {
        out.push(finding(stack, path, "import-self",
            format!("Fn::ImportValue imports `{name}`, which this same stack exports at Outputs.{output}"),
            "a stack cannot import its own export; use the value directly with Ref or Fn::GetAtt".into()));
    } else if let Some((exporter, output)) = exporters.first() {
        out.push(finding(stack, path, "import-not-upstream",
            format!("Fn::ImportValue imports `{name}`, exported by stack `{exporter}` (Outputs.{output}), which stack `{stack}` does not depend on"),
            format!("add `{exporter}` to depends_on of stack `{stack}` so it is deployed first")));
    }
}

/// One shortest cycle per group of mutually dependent nodes, each closed (`a -> b -> a`).
fn find_cycles(graph: &BTreeMap<&str, BTreeSet<&str>>) -> Vec<Vec<String>> {
    let mut reversed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, targets) in graph {
        for to in targets {
            reversed.entry(to).or_default().insert(from);
        }
    }
    let mut reported = BTreeSet::new();
    let mut cycles = Vec::new();
    for &start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        'search: while let Some(node) = queue.pop_front() {
            for &next in graph.get(node).into_iter().flatten() {
                if next == start {
                    closing = Some(node);
                    break 'search;
                }
                if !parent.contains_key(next) {
                    parent.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        let Some(closing) = closing else { continue };
        let mut cycle = vec![closing.to_string()];
        let mut node = closing;
        while let Some(previous) = parent.get(node).filter(|_| node != start) {
            cycle.push(previous.to_string());
            node = previous;
        }
        cycle.reverse();
        cycle.push(start.to_string());
        let ancestors = reachable(&reversed, start);
        reported.extend(
            reachable(graph, start)
                .into_iter()
                .filter(|n| ancestors.contains(n)),
        );
        reported.insert(start);
        cycles.push(cycle);
    }
    cycles
}

/// Nodes reachable from `from` through one or more edges.
fn reachable<'g>(graph: &BTreeMap<&'g str, BTreeSet<&'g str>>, from: &str) -> BTreeSet<&'g str> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<&str> = graph.get(from).into_iter().flatten().copied().collect();
    while let Some(node) = queue.pop_front() {
        if seen.insert(node) {
            queue.extend(graph.get(node).into_iter().flatten().copied());
        }
    }
    seen
}

fn suggest(suggestion: Option<&str>, fix: &str) -> String {
    match suggestion {
        Some(name) => format!("did you mean `{name}`? Otherwise {fix}"),
        None => fix.to_string(),
    }
}

/// The candidate nearest to `name` by edit distance (case-insensitive), if close enough to be a
/// typo: at most a third of the name (two edits for short names), and never the whole of either.
fn closest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let length = name.chars().count();
    let limit = (length / 3).max(2);
    let wanted = name.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (levenshtein(&wanted, &c.to_lowercase()), c))
        .filter(|(distance, c)| *distance <= limit && *distance < length.min(c.chars().count()))
        .min()
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
