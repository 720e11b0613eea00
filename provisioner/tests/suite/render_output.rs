//! What rendering guarantees beyond the snapshots: strictness, checks on the output,
//! per-environment differences that matter, and determinism.

use crate::common;

use common::Fixture;
use provisioner::render::{RenderError, Renderer};

fn render(fixture: &Fixture, env: &str) -> provisioner::render::RenderedEnvironment {
    let project = fixture.project();
    let renderer = Renderer::load(&project).expect("templates load");
    let env = renderer
        .load_environment(&project, env)
        .expect("environment loads");
    renderer.render(&env).expect("renders")
}

fn body<'a>(rendered: &'a provisioner::render::RenderedEnvironment, stack: &str) -> &'a str {
    &rendered
        .stacks
        .iter()
        .find(|s| s.id == stack)
        .expect("stack rendered")
        .body
}

#[test]
fn a_variable_missing_from_the_context_is_an_error_naming_it() {
    let fixture = Fixture::new();
    let template = fixture.read("stacks/data.yaml.tera");
    fixture.write(
        "stacks/data.yaml.tera",
        &template.replace(
            "BillingMode: {{ billing_mode }}",
            "BillingMode: {{ billing_mod }}",
        ),
    );
    let project = fixture.project();
    let renderer = Renderer::load(&project).expect("templates load");
    let env = renderer
        .load_environment(&project, "dev")
        .expect("dev loads");
    let error = renderer
        .render(&env)
        .expect_err("a missing variable must fail");
    assert!(matches!(error, RenderError::Template { .. }));
    let text = error.to_string();
    assert!(text.contains("stacks/data.yaml.tera"), "{text}");
    assert!(text.contains("`dev`"), "{text}");
    assert!(
        text.contains("billing_mod"),
        "the cause names the variable: {text}"
    );
}

#[test]
fn the_checks_catch_an_import_of_an_export_nobody_makes() {
    let fixture = Fixture::new();
    let template = fixture.read("stacks/compute.yaml.tera");
    fixture.write(
        "stacks/compute.yaml.tera",
        &template.replace(
            "network-FunctionSecurityGroupId",
            "network-FunctionSecurityGroup",
        ),
    );
    let findings = render(&fixture, "dev").findings;
    assert_eq!(findings.len(), 3, "one per function: {findings:#?}");
    assert!(findings.iter().all(|f| f.stack == "compute"));
    assert!(
        findings[0]
            .message
            .contains("datasync-dev-network-FunctionSecurityGroup"),
        "{}",
        findings[0]
    );
}

#[test]
fn high_availability_gives_each_zone_its_nat_gateway() {
    let fixture = Fixture::new();
    let dev = render(&fixture, "dev");
    let prod = render(&fixture, "prod");
    let nat_count = |body: &str| body.matches("Type: AWS::EC2::NatGateway").count();
    assert_eq!(
        nat_count(body(&dev, "network")),
        1,
        "dev shares one NAT gateway"
    );
    assert_eq!(
        nat_count(body(&prod, "network")),
        3,
        "prod has one per zone"
    );
    assert_eq!(
        body(&dev, "network")
            .matches("NatGatewayId: !Ref NatGatewayA")
            .count(),
        2
    );
    assert!(body(&prod, "network").contains("NatGatewayId: !Ref NatGatewayC"));
    assert!(
        body(&prod, "network").contains("Type: Interface")
            && !body(&dev, "network").contains("Type: Interface")
    );
}

#[test]
fn stateful_resources_are_retained_only_where_the_environment_says_so() {
    let fixture = Fixture::new();
    let dev = render(&fixture, "dev");
    let prod = render(&fixture, "prod");
    for stack in ["data", "messaging", "compute"] {
        assert!(
            !body(&dev, stack).contains("DeletionPolicy: Retain"),
            "dev {stack}"
        );
        assert!(
            body(&prod, stack).contains("DeletionPolicy: Retain"),
            "prod {stack}"
        );
        assert!(
            body(&prod, stack).contains("UpdateReplacePolicy: Retain"),
            "prod {stack}"
        );
    }
    assert!(body(&prod, "data").contains("DeletionProtectionEnabled: true"));
    assert!(body(&prod, "data").contains("PointInTimeRecoveryEnabled: true"));
    assert!(body(&dev, "data").contains("PointInTimeRecoveryEnabled: false"));
}

#[test]
fn every_resource_is_tagged_with_app_env_and_stack() {
    let fixture = Fixture::new();
    let staging = render(&fixture, "staging");
    for stack in &staging.stacks {
        assert_eq!(stack.tags.get("app").map(String::as_str), Some("datasync"));
        assert_eq!(stack.tags.get("env").map(String::as_str), Some("staging"));
        assert_eq!(stack.tags.get("stack"), Some(&stack.id));
        assert_eq!(
            stack.tags.get("cost-center").map(String::as_str),
            Some("4100")
        );
    }
    let compute = body(&staging, "compute");
    assert!(compute.contains(r#"{"Key":"stack","Value":"compute"}"#));
}

#[test]
fn only_compute_asks_for_parameters_the_code_locations_and_the_traffic_stop() {
    let fixture = Fixture::new();
    let dev = render(&fixture, "dev");
    for stack in &dev.stacks {
        if stack.id == "compute" {
            assert_eq!(
                stack.parameters,
                [
                    "ArtifactBucket",
                    "IngestCodeKey",
                    "WorkerCodeKey",
                    "ReconcilerCodeKey",
                    "TrafficStoppedAt"
                ]
            );
        } else {
            assert!(
                stack.parameters.is_empty(),
                "{} asks for {:?}",
                stack.id,
                stack.parameters
            );
        }
    }
}

#[test]
fn rendering_is_deterministic() {
    let fixture = Fixture::new();
    let first = render(&fixture, "prod");
    let second = render(&fixture, "prod");
    let digests = |r: &provisioner::render::RenderedEnvironment| {
        r.stacks
            .iter()
            .map(|s| s.sha256.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(digests(&first), digests(&second));
    assert_eq!(first.config_sha256, second.config_sha256);
}

/// Every value in a YAML tree, depth first.
fn walk<'a>(value: &'a serde_yaml::Value, visit: &mut dyn FnMut(&'a serde_yaml::Value)) {
    visit(value);
    match value {
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|item| walk(item, visit)),
        serde_yaml::Value::Mapping(map) => map.values().for_each(|item| walk(item, visit)),
        serde_yaml::Value::Tagged(tagged) => walk(&tagged.value, visit),
        _ => {}
    }
}

#[test]
fn the_alarms_and_the_dashboard_watch_metrics_the_functions_publish() {
    let fixture = Fixture::new();
    for env in ["local", "dev", "staging", "prod"] {
        let rendered = render(&fixture, env);
        let template: serde_yaml::Value =
            serde_yaml::from_str(body(&rendered, "observability")).expect("template is YAML");
        let mut watched = Vec::new();
        let mut alarmed = Vec::new();
        walk(&template, &mut |value| match value {
            serde_yaml::Value::Mapping(map) => {
                let namespace = map.get("Namespace").and_then(|v| v.as_str());
                let metric = map.get("MetricName").and_then(|v| v.as_str());
                if let (Some(namespace), Some(metric)) = (namespace, metric) {
                    if !namespace.starts_with("AWS/") {
                        watched.push(metric.to_string());
                        alarmed.push(metric.to_string());
                    }
                }
            }
            serde_yaml::Value::String(text) if text.starts_with(r#"{"widgets""#) => {
                let dashboard: serde_json::Value =
                    serde_json::from_str(text).expect("dashboard body is JSON");
                for widget in dashboard["widgets"].as_array().expect("widgets") {
                    for line in widget["properties"]["metrics"].as_array().expect("metrics") {
                        let namespace = line[0].as_str().expect("namespace");
                        if !namespace.starts_with("AWS/") {
                            watched.push(line[1].as_str().expect("metric name").to_string());
                        }
                    }
                }
            }
            _ => {}
        });
        for alarm in ["RecordsFailed", "DownstreamCircuitOpen"] {
            assert!(
                alarmed.iter().any(|m| m == alarm),
                "{env}: an alarm watches {alarm}"
            );
        }
        for expected in ["RecordsFailed", "RecordsSynced", "DlqDepth"] {
            assert!(
                watched.iter().any(|m| m == expected),
                "{env}: {expected} is watched"
            );
        }
        for metric in &watched {
            assert!(
                sync_core::metrics::names::ALL.contains(&metric.as_str()),
                "{env}: `{metric}` is watched but no function publishes it"
            );
        }
    }
}

/// The statements of the bootstrap stack's deploy role's trust policy.
fn deploy_role_trust(rendered: &provisioner::render::RenderedEnvironment) -> serde_yaml::Value {
    let template: serde_yaml::Value =
        serde_yaml::from_str(&rendered.bootstrap.body).expect("bootstrap is YAML");
    template["Resources"]["DeployRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        .clone()
}

#[test]
fn the_prod_deploy_role_admits_only_the_configured_repository_and_environment() {
    let fixture = Fixture::new();
    let rendered = render(&fixture, "prod");
    let statements = deploy_role_trust(&rendered);
    let statements = statements.as_sequence().expect("a list of statements");
    assert_eq!(statements.len(), 1, "one way in: {statements:?}");
    let only = &statements[0];
    assert_eq!(only["Effect"], "Allow");
    assert_eq!(only["Action"], "sts:AssumeRoleWithWebIdentity");
    // Federated by the GitHub provider the stack creates, and nothing else.
    let principal = only["Principal"].as_mapping().expect("principal");
    assert_eq!(principal.len(), 1);
    let federated = serde_yaml::to_string(&only["Principal"]["Federated"]).expect("yaml");
    assert!(federated.contains("GitHubOidcProvider.Arn"), "{federated}");
    // Exact matches on audience and subject: no wildcard, no other repository,
    // no other environment or branch.
    let condition = only["Condition"].as_mapping().expect("condition");
    assert_eq!(condition.len(), 1, "only StringEquals: {condition:?}");
    let equals = only["Condition"]["StringEquals"]
        .as_mapping()
        .expect("StringEquals");
    assert_eq!(equals.len(), 2, "{equals:?}");
    assert_eq!(
        only["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"],
        "repo:example-org/datasync:environment:prod"
    );
    assert_eq!(
        only["Condition"]["StringEquals"]["token.actions.githubusercontent.com:aud"],
        "sts.amazonaws.com"
    );
    let template: serde_yaml::Value =
        serde_yaml::from_str(&rendered.bootstrap.body).expect("bootstrap is YAML");
    assert_eq!(
        template["Resources"]["GitHubOidcProvider"]["Properties"]["Url"],
        "https://token.actions.githubusercontent.com"
    );
    assert_eq!(
        template["Resources"]["DeployRole"]["Properties"]["RoleName"],
        "datasync-prod-deploy"
    );
}

#[test]
fn a_branch_and_an_existing_provider_change_only_the_subject_and_the_principal() {
    let fixture = Fixture::new();
    fixture.write_env(
        "ci",
        "extends: dev\nci:\n  github:\n    owner: other-org\n    repo: sync.platform\n    \
         oidc_provider: arn:aws:iam::210987654321:oidc-provider/token.actions.githubusercontent.com\n  \
         deploy_from: branch:release/v2\n",
    );
    let rendered = render(&fixture, "ci");
    let statements = deploy_role_trust(&rendered);
    let only = &statements[0];
    assert_eq!(
        only["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"],
        "repo:other-org/sync.platform:ref:refs/heads/release/v2"
    );
    assert_eq!(
        only["Principal"]["Federated"],
        "arn:aws:iam::210987654321:oidc-provider/token.actions.githubusercontent.com"
    );
    assert!(!rendered.bootstrap.body.contains("AWS::IAM::OIDCProvider"));
}

#[test]
fn the_promotion_source_role_admits_only_the_environment_promoted_to_and_only_reads() {
    let fixture = Fixture::new();
    let rendered = render(&fixture, "dev");
    let template: serde_yaml::Value =
        serde_yaml::from_str(&rendered.bootstrap.body).expect("bootstrap is YAML");
    let role = &template["Resources"]["PromotionSourceRole"]["Properties"];
    assert_eq!(role["RoleName"], "datasync-dev-promotion-source");
    let statements = role["AssumeRolePolicyDocument"]["Statement"]
        .as_sequence()
        .expect("statements");
    assert_eq!(statements.len(), 1, "one way in: {statements:?}");
    let only = &statements[0];
    assert_eq!(only["Action"], "sts:AssumeRoleWithWebIdentity");
    let federated = serde_yaml::to_string(&only["Principal"]["Federated"]).expect("yaml");
    assert!(federated.contains("GitHubOidcProvider.Arn"), "{federated}");
    let equals = &only["Condition"]["StringEquals"];
    assert_eq!(equals.as_mapping().expect("StringEquals").len(), 2);
    assert_eq!(
        equals["token.actions.githubusercontent.com:sub"],
        serde_yaml::Value::Sequence(vec!["repo:example-org/datasync:environment:staging".into()])
    );
    assert_eq!(
        equals["token.actions.githubusercontent.com:aud"],
        "sts.amazonaws.com"
    );
    // It reads: no action that writes, deletes or passes a role.
    let mut actions = Vec::new();
    for policy in role["Policies"].as_sequence().expect("policies") {
        for statement in policy["PolicyDocument"]["Statement"]
            .as_sequence()
            .expect("statements")
        {
            assert_eq!(statement["Effect"], "Allow");
            match &statement["Action"] {
                serde_yaml::Value::String(a) => actions.push(a.clone()),
                serde_yaml::Value::Sequence(list) => {
                    actions.extend(list.iter().map(|a| a.as_str().expect("action").to_string()))
                }
                other => panic!("{other:?}"),
            }
        }
    }
    let reads = ["Describe", "Get", "Query", "BatchGet", "Decrypt"];
    for action in &actions {
        let verb = action.split(':').nth(1).expect("service:Action");
        assert!(
            reads.iter().any(|r| verb.starts_with(r)),
            "{action} is not a read"
        );
    }
    assert!(actions.contains(&"dynamodb:BatchGetItem".to_string()));
    assert!(actions.contains(&"s3:GetObject".to_string()));
    // prod is promoted to, never from: it has no such role.
    let prod = render(&fixture, "prod");
    assert!(!prod.bootstrap.body.contains("PromotionSourceRole"));
}

#[test]
fn an_environment_without_deploy_from_has_no_deploy_role() {
    let fixture = Fixture::new();
    let rendered = render(&fixture, "local");
    assert!(!rendered.bootstrap.body.contains("DeployRole"));
    assert!(!rendered.bootstrap.body.contains("OIDCProvider"));
}

#[test]
fn every_alarm_links_its_section_of_the_incident_runbook() {
    let fixture = Fixture::new();
    let runbook =
        std::fs::read_to_string(crate::common::repo_root().join("runbooks/incident-response.md"))
            .expect("runbook");
    // GitHub's anchors: the heading lowercased, spaces to `-`, other punctuation dropped.
    let anchors: Vec<String> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(|heading| {
            heading
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    for env in ["local", "dev", "staging", "prod"] {
        let rendered = render(&fixture, env);
        let template: serde_yaml::Value =
            serde_yaml::from_str(body(&rendered, "observability")).expect("template is YAML");
        let resources = template["Resources"].as_mapping().expect("resources");
        let mut alarms = 0;
        for (id, resource) in resources {
            let kind = resource["Type"].as_str().unwrap_or("");
            if !kind.starts_with("AWS::CloudWatch::") || kind.ends_with("Dashboard") {
                continue;
            }
            alarms += 1;
            let description = resource["Properties"]["AlarmDescription"]
                .as_str()
                .unwrap_or("");
            let anchor = description
                .split("runbooks/incident-response.md#")
                .nth(1)
                .map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '-')
                        .collect::<String>()
                });
            assert!(
                anchor.as_ref().is_some_and(|a| anchors.contains(a)),
                "{env}: {id:?} ({description}) links no section of incident-response.md \
                 (sections: {anchors:?})"
            );
        }
        assert!(alarms >= 8, "{env}: {alarms} alarms");
    }
}

#[test]
fn an_email_subscription_keeps_its_logical_id_when_another_is_removed() {
    let fixture = Fixture::new();
    let subscriptions = |rendered: &provisioner::render::RenderedEnvironment| {
        let template: serde_yaml::Value =
            serde_yaml::from_str(body(rendered, "messaging")).expect("YAML");
        template["Resources"]
            .as_mapping()
            .expect("resources")
            .iter()
            .filter(|(_, r)| r["Type"] == "AWS::SNS::Subscription")
            .map(|(id, r)| {
                (
                    r["Properties"]["Endpoint"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    id.as_str().unwrap_or_default().to_string(),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    fixture.write_env(
        "test",
        "extends: dev\nalarms:\n  email_subscriptions: [oncall@example.com, platform@example.com]\n",
    );
    let both = subscriptions(&render(&fixture, "test"));
    fixture.write_env(
        "test",
        "extends: dev\nalarms:\n  email_subscriptions: [platform@example.com]\n",
    );
    let one = subscriptions(&render(&fixture, "test"));
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one["platform@example.com"], both["platform@example.com"]);
    assert_ne!(both["oncall@example.com"], both["platform@example.com"]);
    assert!(one["platform@example.com"].starts_with("AlarmEmail"));
}
