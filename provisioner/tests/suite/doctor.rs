//! `provisioner doctor`: against moto, a missing bootstrap and then a clean bill (moto
//! has no IAM policy simulation, which the report says); over `aws-smithy-mocks`, a
//! permission the simulation denies is listed with its resource.

use aws_sdk_iam::operation::simulate_principal_policy::SimulatePrincipalPolicyOutput;
use aws_sdk_iam::types::{EvaluationResult, PolicyEvaluationDecisionType};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use provisioner::exit::Exit;
use provisioner::ops::doctor::{self, Requirement, Status};
use provisioner::release::identity::CallerIdentity;
use serde_json::Value;

use crate::deploy_cli::local_fixture;
use crate::releases::{ok, run};

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no `{name}` check in {report}"))
}

#[test]
fn doctor_reports_a_missing_bootstrap_then_a_clean_bill_on_the_emulator() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());

    let before = run(&fixture, &["--output", "json", "doctor", "--env", "local"]);
    assert_eq!(before.exit, Exit::Failed, "{}", before.stdout);
    let report = before.json();
    assert_eq!(check(&report, "identity")["status"], "ok");
    assert_eq!(check(&report, "account")["status"], "ok");
    assert_eq!(check(&report, "region")["status"], "ok");
    let bootstrap = check(&report, "bootstrap");
    assert_eq!(bootstrap["status"], "missing");
    assert!(bootstrap["detail"]
        .as_str()
        .is_some_and(|d| d.contains("datasync-bootstrap does not exist")));
    assert_eq!(bootstrap["fix"], "run `provisioner bootstrap --env local`");
    assert_eq!(report["missing"], 1);

    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    let after = ok(&fixture, &["doctor", "--env", "local"]);
    assert_eq!(after["missing"], 0, "{after}");
    let bootstrap = check(&after, "bootstrap");
    assert_eq!(bootstrap["status"], "ok");
    assert!(bootstrap["detail"]
        .as_str()
        .is_some_and(|d| d.contains("ExecutionRoleArn=")));
    let permissions = check(&after, "permissions");
    assert_eq!(permissions["status"], "cannot_check", "{permissions}");
    assert!(
        permissions["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("cannot check permissions here: ")
                && d.contains("does not implement IAM SimulatePrincipalPolicy")),
        "{permissions}"
    );
}

#[test]
fn a_permission_the_simulation_denies_is_listed_with_its_resource_and_fails_the_bill() {
    let rule = mock!(aws_sdk_iam::Client::simulate_principal_policy)
        .match_requests(|request| {
            request.policy_source_arn()
                == Some("arn:aws:iam::210987654321:role/datasync-dev-deploy")
        })
        .then_output(|| {
            SimulatePrincipalPolicyOutput::builder()
                .evaluation_results(
                    EvaluationResult::builder()
                        .eval_action_name("iam:PassRole")
                        .eval_resource_name(
                            "arn:aws:iam::210987654321:role/datasync-cfn-execution-eu-west-1",
                        )
                        .eval_decision(PolicyEvaluationDecisionType::ImplicitDeny)
                        .build()
                        .expect("result"),
                )
                .evaluation_results(
                    EvaluationResult::builder()
                        .eval_action_name("sts:GetCallerIdentity")
                        .eval_resource_name("*")
                        .eval_decision(PolicyEvaluationDecisionType::Allowed)
                        .build()
                        .expect("result"),
                )
                .build()
        });
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, &[&rule]);
    let caller = CallerIdentity {
        account: "210987654321".into(),
        arn: "arn:aws:sts::210987654321:assumed-role/datasync-dev-deploy/ci-7".into(),
    };
    let requirements = [Requirement {
        actions: vec!["iam:PassRole", "sts:GetCallerIdentity"],
        resources: vec!["arn:aws:iam::210987654321:role/datasync-cfn-execution-eu-west-1".into()],
        context: vec![("iam:PassedToService", "cloudformation.amazonaws.com")],
    }];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let found = runtime.block_on(doctor::permissions_check(&iam, &caller, &requirements));
    assert_eq!(found.status, Status::Missing);
    assert_eq!(found.denied.len(), 1, "{:?}", found.denied);
    assert_eq!(found.denied[0].action, "iam:PassRole");
    assert_eq!(found.denied[0].decision, "implicitDeny");
    assert_eq!(
        found.denied[0].resource,
        "arn:aws:iam::210987654321:role/datasync-cfn-execution-eu-west-1"
    );
    assert!(
        found.detail.contains("datasync-dev-deploy"),
        "{}",
        found.detail
    );
    assert!(found
        .fix
        .as_deref()
        .is_some_and(|f| f.contains("DeployRoleArn")));
}

#[test]
fn an_endpoint_without_simulation_is_said_plainly_and_is_not_a_missing_permission() {
    let rule = mock!(aws_sdk_iam::Client::simulate_principal_policy).then_error(|| {
        aws_sdk_iam::operation::simulate_principal_policy::SimulatePrincipalPolicyError::generic(
            aws_smithy_types::error::ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not authorized")
                .build(),
        )
    });
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, &[&rule]);
    let caller = CallerIdentity {
        account: "210987654321".into(),
        arn: "arn:aws:iam::210987654321:user/ops".into(),
    };
    let requirements = [Requirement {
        actions: vec!["sts:GetCallerIdentity"],
        resources: vec!["*".into()],
        context: Vec::new(),
    }];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let found = runtime.block_on(doctor::permissions_check(&iam, &caller, &requirements));
    assert_eq!(found.status, Status::CannotCheck);
    assert!(found.detail.starts_with("cannot check permissions here: "));
    assert!(found
        .fix
        .as_deref()
        .is_some_and(|f| f.contains("iam:SimulatePrincipalPolicy")));
}

#[test]
fn the_deploy_role_grants_every_action_doctor_checks() {
    let fixture = crate::common::Fixture::new();
    let project = fixture.project();
    let renderer = provisioner::render::Renderer::load(&project).expect("templates");
    let env = renderer.load_environment(&project, "prod").expect("prod");
    let rendered = renderer.render(&env).expect("renders");
    let template: serde_yaml::Value = serde_yaml::from_str(&rendered.bootstrap.body).expect("YAML");
    let policy =
        serde_yaml::to_string(&template["Resources"]["DeployRole"]["Properties"]["Policies"])
            .expect("policy");
    let bootstrap = provisioner::deploy::stacks::DeployedStack {
        name: "datasync-bootstrap".into(),
        stack_id: "arn:aws:cloudformation:eu-west-1:456789012345:stack/datasync-bootstrap/1".into(),
        status: "CREATE_COMPLETE".into(),
        status_reason: None,
        parameters: Default::default(),
        tags: Default::default(),
        outputs: Default::default(),
        last_updated: None,
        termination_protection: false,
    };
    let ids: Vec<String> = renderer
        .catalog()
        .ids()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let requirements = doctor::requirements(&env, &ids, &bootstrap, "aws");
    let mut actions = 0;
    for requirement in &requirements {
        for action in &requirement.actions {
            actions += 1;
            assert!(
                policy.contains(&format!(" {action}\n"))
                    || policy.contains(&format!("- {action}\n")),
                "the deploy role does not grant {action}:\n{policy}"
            );
        }
    }
    assert!(actions > 30, "{actions}");
}
