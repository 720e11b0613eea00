//! The policy rules of `stacks/policies/` (cfn-guard, in-process): every environment
//! renders without a violation; each rule catches a template that breaks it, naming the
//! stack, the resource and the fix; waivers are listed, and a bad waiver is a violation;
//! `lint`, `render` and `deploy` refuse what breaks a rule.

use std::collections::BTreeSet;

use serde_yaml::Value;

use crate::common::{provisioner_binary, Fixture};
use provisioner::render::policy::{EnvironmentFacts, PolicyReport, StackBody, INVALID_WAIVER};
use provisioner::render::{RenderedEnvironment, Renderer};

struct Rendered {
    renderer: Renderer,
    rendered: RenderedEnvironment,
    facts: EnvironmentFacts,
}

fn render(fixture: &Fixture, env: &str) -> Rendered {
    let project = fixture.project();
    let renderer = Renderer::load(&project).expect("templates and policies load");
    let loaded = renderer
        .load_environment(&project, env)
        .expect("environment loads");
    let rendered = renderer.render(&loaded).expect("renders");
    let facts = EnvironmentFacts {
        name: env.to_string(),
        emulated: loaded.settings.endpoint_url.is_some(),
        retain_stateful_resources: loaded.settings.retain_stateful_resources,
        flow_logs: loaded.settings.network.flow_logs.is_some(),
    };
    Rendered {
        renderer,
        rendered,
        facts,
    }
}

impl Rendered {
    /// The rules over the environment with `change` applied to stack `stack`'s template.
    fn evaluate_changed(&self, stack: &str, change: &dyn Fn(&mut Value)) -> PolicyReport {
        let all: Vec<_> = std::iter::once(&self.rendered.bootstrap)
            .chain(&self.rendered.stacks)
            .collect();
        assert!(
            all.iter().any(|s| s.id == stack),
            "no stack `{stack}` rendered"
        );
        let bodies: Vec<(String, String)> = all
            .iter()
            .map(|s| {
                let body = if s.id == stack {
                    let mut doc: Value = serde_yaml::from_str(&s.body).expect("template parses");
                    change(&mut doc);
                    serde_yaml::to_string(&doc).expect("template serializes")
                } else {
                    s.body.clone()
                };
                (s.id.clone(), body)
            })
            .collect();
        let stacks: Vec<StackBody<'_>> = bodies
            .iter()
            .map(|(id, body)| StackBody { id, body })
            .collect();
        self.renderer
            .policies()
            .evaluate(&self.facts, &stacks)
            .expect("the rules evaluate")
    }
}

fn resource<'v>(doc: &'v mut Value, id: &str) -> &'v mut Value {
    doc.get_mut("Resources")
        .and_then(|r| r.get_mut(id))
        .unwrap_or_else(|| panic!("no resource {id}"))
}

/// Removes `path` (dot-separated, from the resource) from resource `id`.
fn remove(id: &'static str, path: &'static str) -> impl Fn(&mut Value) {
    move |doc| {
        let mut node = resource(doc, id);
        let mut keys: Vec<&str> = path.split('.').collect();
        let last = keys.pop().expect("a path");
        for key in keys {
            node = node
                .get_mut(key)
                .unwrap_or_else(|| panic!("{id}: no {key} in {path}"));
        }
        let removed = node.as_mapping_mut().and_then(|m| m.remove(last));
        assert!(removed.is_some(), "{id} has no {path}");
    }
}

fn remove_resource(id: &'static str) -> impl Fn(&mut Value) {
    move |doc| {
        let removed = doc
            .get_mut("Resources")
            .and_then(Value::as_mapping_mut)
            .and_then(|r| r.remove(id));
        assert!(removed.is_some(), "no resource {id}");
    }
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("test yaml")
}

/// `(rule, stack, resource)` of every violation.
fn violations(report: &PolicyReport) -> BTreeSet<(String, String, String)> {
    report
        .violations
        .iter()
        .map(|v| (v.rule.clone(), v.stack.clone(), v.resource.clone()))
        .collect()
}

#[test]
fn every_environment_renders_without_a_policy_violation_and_lists_its_waivers() {
    let fixture = Fixture::new();
    for env in ["local", "dev", "staging", "prod"] {
        let rendered = render(&fixture, env);
        let report = &rendered.rendered.policy;
        assert!(
            report.violations.is_empty(),
            "{env}: {:#?}",
            report.violations
        );
        assert!(report.rules >= 20, "{env}: only {} rules", report.rules);
        assert!(rendered.rendered.findings.is_empty(), "{env}");
        // The CloudFormation execution role's wildcards are waived, each with its reason.
        let waived: BTreeSet<(&str, &str)> = report
            .waivers
            .iter()
            .map(|w| (w.rule.as_str(), w.resource.as_str()))
            .collect();
        assert!(waived.contains(&("iam_no_action_wildcards", "ExecutionRole")));
        assert!(waived.contains(&(
            "iam_resource_star_only_for_network_interfaces",
            "ExecutionRole"
        )));
        assert!(report
            .waivers
            .iter()
            .all(|w| w.reason.len() > 20 && w.stack == "bootstrap"));
    }
}

/// One template change per rule, and the one violation it must cause.
struct Case {
    rule: &'static str,
    stack: &'static str,
    change: Box<dyn Fn(&mut Value)>,
    /// Where the violation is reported: (stack, resource).
    at: (&'static str, &'static str),
}

fn case(
    rule: &'static str,
    stack: &'static str,
    change: impl Fn(&mut Value) + 'static,
    at: (&'static str, &'static str),
) -> Case {
    Case {
        rule,
        stack,
        change: Box::new(change),
        at,
    }
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "tables_encrypted_with_the_environments_key",
            "data",
            remove("RecordsTable", "Properties.SSESpecification.KMSMasterKeyId"),
            ("data", "RecordsTable"),
        ),
        case(
            "queues_encrypted_with_the_environments_key",
            "messaging",
            |doc: &mut Value| {
                let props = resource(doc, "DeadLetterQueue")
                    .get_mut("Properties")
                    .unwrap();
                props.as_mapping_mut().unwrap().remove("KmsMasterKeyId");
                props["SqsManagedSseEnabled"] = Value::Bool(true);
            },
            ("messaging", "DeadLetterQueue"),
        ),
        case(
            "topics_encrypted_with_the_environments_key",
            "messaging",
            remove("AlarmTopic", "Properties.KmsMasterKeyId"),
            ("messaging", "AlarmTopic"),
        ),
        case(
            "log_groups_encrypted_with_the_environments_key",
            "compute",
            remove("WorkerLogGroup", "Properties.KmsKeyId"),
            ("compute", "WorkerLogGroup"),
        ),
        case(
            "function_variables_encrypted_with_the_environments_key",
            "compute",
            remove("IngestFunction", "Properties.KmsKeyArn"),
            ("compute", "IngestFunction"),
        ),
        case(
            "buckets_encrypted_with_the_environments_key",
            "bootstrap",
            |doc: &mut Value| {
                resource(doc, "ArtifactBucket")["Properties"]["BucketEncryption"] = yaml(
                    "ServerSideEncryptionConfiguration: [{ServerSideEncryptionByDefault: {SSEAlgorithm: AES256}}]",
                );
            },
            ("bootstrap", "ArtifactBucket"),
        ),
        case(
            "queues_tls_only",
            "messaging",
            |doc: &mut Value| {
                let queues = resource(doc, "QueuesPolicy")["Properties"]["Queues"]
                    .as_sequence_mut()
                    .unwrap();
                queues.retain(|q| !format!("{q:?}").contains("DeadLetterQueue"));
            },
            ("messaging", "DeadLetterQueue"),
        ),
        case(
            "topics_tls_only",
            "messaging",
            |doc: &mut Value| {
                let statements = resource(doc, "AlarmTopicPolicy")["Properties"]["PolicyDocument"]
                    ["Statement"]
                    .as_sequence_mut()
                    .unwrap();
                statements.retain(|s| s["Effect"] != "Deny");
            },
            ("messaging", "AlarmTopic"),
        ),
        case(
            "buckets_tls_only",
            "bootstrap",
            |doc: &mut Value| {
                let statements = resource(doc, "ArtifactBucketPolicy")["Properties"]
                    ["PolicyDocument"]["Statement"]
                    .as_sequence_mut()
                    .unwrap();
                statements.retain(|s| s["Sid"] != "DenyRequestsWithoutTls");
            },
            ("bootstrap", "ArtifactBucket"),
        ),
        case(
            "iam_no_action_wildcards",
            "security",
            |doc: &mut Value| {
                resource(doc, "WorkerRole")["Properties"]["Policies"][2]["PolicyDocument"]
                    ["Statement"][0]["Action"] = yaml("[sqs:ReceiveMessage, sqs:Delete*]");
            },
            ("security", "WorkerRole"),
        ),
        case(
            "iam_resource_star_only_for_network_interfaces",
            "security",
            |doc: &mut Value| {
                resource(doc, "ReconcilerRole")["Properties"]["Policies"][2]["PolicyDocument"]
                    ["Statement"][1]["Resource"] = Value::from("*");
            },
            ("security", "ReconcilerRole"),
        ),
        case(
            "queues_have_a_dead_letter_queue",
            "messaging",
            remove("RecordsQueue", "Properties.RedrivePolicy"),
            ("messaging", "RecordsQueue"),
        ),
        case(
            "dead_letter_queues_alarmed_on_depth",
            "observability",
            remove_resource("DeadLetterQueueDepthAlarm"),
            ("messaging", "DeadLetterQueue"),
        ),
        case(
            "dead_letter_queues_alarmed_on_age",
            "observability",
            remove_resource("ReconcilerFailuresAgeAlarm"),
            ("messaging", "ReconcilerFailuresQueue"),
        ),
        case(
            "functions_have_reserved_concurrency",
            "compute",
            remove("WorkerFunction", "Properties.ReservedConcurrentExecutions"),
            ("compute", "WorkerFunction"),
        ),
        case(
            "functions_log_to_a_group_with_retention",
            "compute",
            remove("ReconcilerFunction", "Properties.LoggingConfig"),
            ("compute", "ReconcilerFunction"),
        ),
        case(
            "log_groups_have_retention",
            "compute",
            remove("IngestAccessLogGroup", "Properties.RetentionInDays"),
            ("compute", "IngestAccessLogGroup"),
        ),
        case(
            "async_functions_have_an_on_failure_destination",
            "compute",
            remove_resource("ReconcilerInvokeConfig"),
            ("compute", "ReconcilerSchedule"),
        ),
        case(
            "lambda_permissions_scoped_by_source_arn",
            "compute",
            remove("IngestInvokePermission", "Properties.SourceArn"),
            ("compute", "IngestInvokePermission"),
        ),
        case(
            "alarms_have_an_action",
            "observability",
            remove("RecordsFailedAlarm", "Properties.AlarmActions"),
            ("observability", "RecordsFailedAlarm"),
        ),
        case(
            "stateful_resources_retained",
            "data",
            remove("LedgerTable", "DeletionPolicy"),
            ("data", "LedgerTable"),
        ),
        case(
            "vpc_flow_logs_where_asked",
            "observability",
            remove_resource("VpcFlowLog"),
            ("network", "Vpc"),
        ),
        case(
            "tables_protected_from_deletion",
            "data",
            |doc: &mut Value| {
                resource(doc, "LedgerTable")["Properties"]["DeletionProtectionEnabled"] =
                    Value::Bool(false);
            },
            ("data", "LedgerTable"),
        ),
    ]
}

#[test]
fn each_rule_catches_a_template_that_breaks_it_and_names_the_resource_and_the_fix() {
    let fixture = Fixture::new();
    // prod retains its stateful resources, so the retention rules apply there.
    let prod = render(&fixture, "prod");
    let cases = cases();
    let tested: BTreeSet<&str> = cases.iter().map(|c| c.rule).collect();
    let defined: BTreeSet<&str> = prod
        .renderer
        .policies()
        .rules()
        .map(|(rule, _)| rule)
        .collect();
    assert_eq!(
        tested, defined,
        "every rule has a case, and every case a rule"
    );
    for case in &cases {
        let report = prod.evaluate_changed(case.stack, &*case.change);
        let expected = BTreeSet::from([(
            case.rule.to_string(),
            case.at.0.to_string(),
            case.at.1.to_string(),
        )]);
        assert_eq!(violations(&report), expected, "case {}", case.rule);
        let violation = &report.violations[0];
        assert!(
            violation.file.starts_with("stacks/policies/") && violation.file.ends_with(".guard")
        );
        assert!(
            violation.fix.len() > 20,
            "{}: a fix, not {:?}",
            case.rule,
            violation.fix
        );
        let finding = violation.finding();
        assert_eq!(finding.rule, "policy");
        assert!(finding.to_string().contains(case.rule), "{finding}");
        assert!(finding.to_string().contains(&violation.fix), "{finding}");
    }
}

#[test]
fn retention_rules_apply_only_where_the_environment_retains_its_data() {
    let fixture = Fixture::new();
    let dev = render(&fixture, "dev");
    assert!(!dev.facts.retain_stateful_resources);
    let report = dev.evaluate_changed("data", &remove("LedgerTable", "DeletionPolicy"));
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
}

#[test]
fn a_waiver_silences_its_rule_for_its_resource_and_a_bad_waiver_is_a_violation() {
    let fixture = Fixture::new();
    let prod = render(&fixture, "prod");
    let waive = |waivers: &'static str| {
        move |doc: &mut Value| {
            let function = resource(doc, "WorkerFunction");
            function.as_mapping_mut().unwrap().remove("Metadata");
            function["Metadata"] = yaml(&format!("provisioner:waivers: {waivers}"));
            function["Properties"]
                .as_mapping_mut()
                .unwrap()
                .remove("ReservedConcurrentExecutions");
        }
    };
    // A waiver with its reason: no violation, and the waiver is listed.
    let report = prod.evaluate_changed(
        "compute",
        &waive("[{rule: functions_have_reserved_concurrency, reason: the account's unreserved pool is dedicated to it}]"),
    );
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert!(report
        .waivers
        .iter()
        .any(|w| w.rule == "functions_have_reserved_concurrency"
            && w.resource == "WorkerFunction"
            && w.stack == "compute"
            && w.reason.contains("unreserved pool")));

    let invalid = |report: &PolicyReport| -> Vec<String> {
        report
            .violations
            .iter()
            .filter(|v| v.rule == INVALID_WAIVER && v.resource == "WorkerFunction")
            .map(|v| v.fix.clone())
            .collect()
    };
    // An unknown rule: named, with the rules there are; the real violation stays.
    let report = prod.evaluate_changed(
        "compute",
        &waive("[{rule: functions_have_reserved_concurency, reason: typo}]"),
    );
    let problems = invalid(&report);
    assert_eq!(problems.len(), 1, "{:#?}", report.violations);
    assert!(
        problems[0].contains("functions_have_reserved_concurency")
            && problems[0].contains("functions_have_reserved_concurrency")
    );
    assert!(violations(&report).contains(&(
        "functions_have_reserved_concurrency".into(),
        "compute".into(),
        "WorkerFunction".into()
    )));
    // No reason.
    let report = prod.evaluate_changed(
        "compute",
        &waive("[{rule: functions_have_reserved_concurrency}]"),
    );
    assert!(
        invalid(&report)[0].contains("gives no reason"),
        "{:#?}",
        report.violations
    );
    // Not a list.
    let report = prod.evaluate_changed("compute", &waive("functions_have_reserved_concurrency"));
    assert!(
        invalid(&report)[0].contains("must be a list"),
        "{:#?}",
        report.violations
    );
    // A waiver of a rule the resource does not break waives nothing: remove it.
    let report = prod.evaluate_changed("compute", &|doc: &mut Value| {
        resource(doc, "IngestFunction")["Metadata"] =
            yaml("provisioner:waivers: [{rule: alarms_have_an_action, reason: it is not an alarm at all}]");
    });
    assert_eq!(
        violations(&report),
        BTreeSet::from([(
            INVALID_WAIVER.into(),
            "compute".into(),
            "IngestFunction".into()
        )])
    );
    assert!(report.violations[0].fix.contains("waives nothing"));
}

#[test]
fn lint_render_and_deploy_refuse_a_template_that_breaks_a_rule() {
    let fixture = Fixture::new();
    let template = fixture.read("stacks/compute.yaml.tera");
    let broken = template.replacen(
        "      KmsKeyArn: !ImportValue {{ export_prefix }}data-KeyArn\n",
        "",
        1,
    );
    assert_ne!(broken, template);
    fixture.write("stacks/compute.yaml.tera", &broken);
    let run = |args: &[&str]| {
        provisioner_binary()
            .arg("--root")
            .arg(fixture.root())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("provisioner runs")
    };
    let lint = run(&["lint", "--env", "dev", "--no-cfn-lint"]);
    let text = String::from_utf8_lossy(&lint.stdout);
    assert_eq!(lint.status.code(), Some(3), "{text}");
    for function in ["IngestFunction", "WorkerFunction", "ReconcilerFunction"] {
        assert!(
            text.contains(&format!("`{function}` breaks the policy rule `function_variables_encrypted_with_the_environments_key` (stacks/policies/encryption.guard)")),
            "{text}"
        );
    }
    assert!(
        text.contains("stack `compute`") && text.contains("help: set KmsKeyArn"),
        "{text}"
    );
    assert!(text.contains("policy rules: 3 violations"), "{text}");

    let json = run(&["--output", "json", "lint", "--env", "dev", "--no-cfn-lint"]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let listed = parsed[0]["policy"]["violations"]
        .as_array()
        .expect("violations");
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["stack"], "compute");
    assert!(parsed[0]["policy"]["waivers"]
        .as_array()
        .is_some_and(|w| !w.is_empty()));

    let render = run(&["render", "--env", "dev"]);
    assert_eq!(
        render.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&render.stdout)
    );
    // Every deploy (and promote, rollback, release build) goes through this gate.
    let project = fixture.project();
    let renderer = Renderer::load(&project).expect("loads");
    let mut said = Vec::new();
    let prepared = provisioner::deploy::setup::prepare(&project, &renderer, "dev", &mut said)
        .expect("renders");
    assert!(matches!(
        prepared,
        Err(provisioner::exit::Exit::ValidationFailed)
    ));
    let said = String::from_utf8_lossy(&said);
    assert!(
        said.contains("function_variables_encrypted_with_the_environments_key")
            && said.contains("nothing was deployed"),
        "{said}"
    );
}

#[test]
fn a_policy_file_that_does_not_parse_is_an_error_naming_it() {
    let fixture = Fixture::new();
    fixture.write(
        "stacks/policies/broken.guard",
        "rule half_written {\n    Resources.*[ Type == 'AWS::SQS::Queue' \n",
    );
    let project = fixture.project();
    let renderer = Renderer::load(&project).expect("loads");
    let env = renderer.load_environment(&project, "dev").expect("env");
    let error = renderer
        .render(&env)
        .expect_err("a broken rule file fails the render");
    let text = error.to_string();
    assert!(text.contains("stacks/policies/broken.guard"), "{text}");
    assert!(error.help().is_some_and(|h| h.contains("cfn-guard")));

    fixture.write("stacks/policies/broken.guard", "# nothing but a comment\n");
    let error = Renderer::load(&project).expect_err("a file without rules");
    assert!(
        error
            .to_string()
            .contains("no policy rules in stacks/policies/broken.guard"),
        "{error}"
    );
}
