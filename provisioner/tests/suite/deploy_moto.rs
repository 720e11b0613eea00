//! The deploy engine against a real moto server: deploy from nothing, redeploy with no
//! change, change one parameter, a refused removal of stateful resources, plan, destroy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use provisioner::deploy::clients::{AwsClients, Target};
use provisioner::deploy::destroy::{self, DestroyOptions, DestroyResult};
use provisioner::deploy::engine::{self, Confirmation, EngineOptions, Mode};
use provisioner::deploy::progress::Progress;
use provisioner::deploy::report::{Review, Reviewer, RunOutcome, StackResult, Verdict};
use provisioner::deploy::{status, PollSettings, StackSpec};
use sha2::{Digest, Sha256};

struct Recorder(Vec<Review>);

impl Reviewer for Recorder {
    fn show(&mut self, review: &Review) {
        self.0.push(review.clone());
    }
    fn confirm(&mut self, _review: &Review) -> bool {
        false
    }
}

fn spec(
    prefix: &str,
    id: &str,
    deps: &[&str],
    body: String,
    parameters: &[(&str, &str)],
) -> StackSpec {
    StackSpec {
        id: id.into(),
        stack_name: format!("{prefix}-{id}"),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        template_sha256: hex::encode(Sha256::digest(body.as_bytes())),
        body,
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        tags: BTreeMap::from([("app".to_string(), "datasync".to_string())]),
    }
}

/// network (a topic), data (a table and a queue, exporting the queue's ARN) and
/// compute (importing it, with a code key parameter).
fn environment(prefix: &str, code_key: &str, with_table: bool) -> Vec<StackSpec> {
    let network = format!(
        "Resources:\n  Alarms:\n    Type: AWS::SNS::Topic\n    Properties:\n      TopicName: {prefix}-alarms\n"
    );
    let table = format!(
        "  Records:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      TableName: {prefix}-records\n      BillingMode: PAY_PER_REQUEST\n      AttributeDefinitions:\n        - {{AttributeName: pk, AttributeType: S}}\n      KeySchema:\n        - {{AttributeName: pk, KeyType: HASH}}\n"
    );
    let data = format!(
        "Resources:\n{}  Queue:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: {prefix}-records\nOutputs:\n  QueueArn:\n    Value: {{\"Fn::GetAtt\": [Queue, Arn]}}\n    Export:\n      Name: {prefix}-queue-arn\n",
        if with_table { table } else { String::new() }
    );
    let compute = format!(
        "Parameters:\n  CodeKey:\n    Type: String\nResources:\n  CodeKeyParameter:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Name: /{prefix}/code-key\n      Type: String\n      Value: {{Ref: CodeKey}}\n  QueueParameter:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Name: /{prefix}/queue-arn\n      Type: String\n      Value: {{\"Fn::ImportValue\": {prefix}-queue-arn}}\n"
    );
    vec![
        spec(prefix, "network", &[], network, &[]),
        spec(prefix, "data", &[], data, &[]),
        spec(
            prefix,
            "compute",
            &["data"],
            compute,
            &[("CodeKey", code_key)],
        ),
    ]
}

fn options(mode: Mode, allow: &[&str]) -> EngineOptions {
    EngineOptions {
        mode,
        release: "rel-1".into(),
        allow_replace: allow.iter().map(|a| a.to_string()).collect::<BTreeSet<_>>(),
        confirmation: Confirmation::Yes,
        poll: PollSettings {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            timeout: Duration::from_secs(60),
        },
        emulator: true,
        role_arn: None,
        rollback: None,
        interrupt: Default::default(),
        keep_change_sets: false,
        planned: None,
        seen: BTreeMap::new(),
    }
}

fn results(run: &RunOutcome) -> Vec<(String, StackResult)> {
    run.stacks
        .iter()
        .map(|s| (s.id.clone(), s.result))
        .collect()
}

fn expect(pairs: &[(&str, StackResult)]) -> Vec<(String, StackResult)> {
    pairs.iter().map(|(id, r)| (id.to_string(), *r)).collect()
}

async fn connect(moto: &emulator::MotoServer) -> AwsClients {
    AwsClients::connect(&Target {
        region: "us-east-1".into(),
        endpoint_url: Some(moto.endpoint_url()),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_lives_through_deploy_redeploy_change_refusal_and_destroy() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let clients = connect(&moto).await;
    let progress = Arc::new(Progress::hidden());
    let prefix = "life-dev";

    // From nothing: every stack is created, in dependency order, tagged.
    let stacks = environment(prefix, "functions/ingest/aaa.zip", true);
    let mut reviews = Recorder(Vec::new());
    let first = engine::run(
        &clients,
        &stacks,
        options(Mode::Deploy, &[]),
        progress.clone(),
        &mut reviews,
    )
    .await
    .expect("deploy runs");
    assert_eq!(
        results(&first),
        expect(&[
            ("network", StackResult::Deployed),
            ("data", StackResult::Deployed),
            ("compute", StackResult::Deployed)
        ]),
        "{}",
        first.to_text()
    );
    assert!(reviews.0.iter().all(|r| r.change_set_type == "CREATE"));
    let rows = status::read(&clients, &stacks).await.expect("status");
    assert!(rows
        .iter()
        .all(|r| r.status.as_deref() == Some("CREATE_COMPLETE")
            && r.release.as_deref() == Some("rel-1")));
    assert!(rows.iter().all(|r| r.template_current));
    assert!(rows[1].outputs.contains_key("QueueArn"), "{rows:?}");

    // Redeploy with no change: every stack skipped, no change set.
    let before = clients.requests.snapshot();
    let again = engine::run(
        &clients,
        &stacks,
        options(Mode::Deploy, &[]),
        progress.clone(),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("redeploy runs");
    assert!(
        again
            .stacks
            .iter()
            .all(|s| s.result == StackResult::Unchanged),
        "{}",
        again.to_text()
    );
    assert_eq!(again.verdict(), Verdict::NoChanges);
    // moto never reports LastUpdatedTime, so the engine cannot tell from DescribeStacks
    // alone that nobody updated a stack behind its back: each stack's template decides.
    let calls = clients.requests.total() - before.values().sum::<usize>();
    assert_eq!(
        calls,
        1 + stacks.len(),
        "a no-change redeploy on the emulator needs one DescribeStacks and one GetTemplate \
         per stack: {}",
        clients.requests.summary()
    );

    // One parameter changes: only compute gets a change set.
    let changed = environment(prefix, "functions/ingest/bbb.zip", true);
    let creates = clients.requests.count("CloudFormation.CreateChangeSet");
    let mut reviews = Recorder(Vec::new());
    let update = engine::run(
        &clients,
        &changed,
        options(Mode::Deploy, &[]),
        progress.clone(),
        &mut reviews,
    )
    .await
    .expect("update runs");
    assert_eq!(
        results(&update),
        expect(&[
            ("network", StackResult::Unchanged),
            ("data", StackResult::Unchanged),
            ("compute", StackResult::Deployed)
        ]),
        "{}",
        update.to_text()
    );
    assert_eq!(
        clients.requests.count("CloudFormation.CreateChangeSet") - creates,
        1
    );
    assert_eq!(reviews.0.len(), 1);
    assert_eq!(reviews.0[0].stack_name, "life-dev-compute");
    let deployed = clients
        .cloudformation
        .describe_stacks()
        .stack_name("life-dev-compute")
        .send()
        .await
        .expect("describe");
    let parameter = deployed.stacks()[0].parameters()[0]
        .parameter_value()
        .map(str::to_string);
    assert_eq!(parameter.as_deref(), Some("functions/ingest/bbb.zip"));

    // Removing the table is refused, the change set deleted, nothing downstream runs.
    let without_table = environment(prefix, "functions/ingest/bbb.zip", false);
    let mut reviews = Recorder(Vec::new());
    let refused = engine::run(
        &clients,
        &without_table,
        options(Mode::Deploy, &[]),
        progress.clone(),
        &mut reviews,
    )
    .await
    .expect("refusal runs");
    assert_eq!(refused.verdict(), Verdict::Refused);
    let data = &refused.stacks[1];
    assert_eq!(data.result, StackResult::Refused, "{}", refused.to_text());
    assert_eq!(data.refused[0].logical_id, "Records");
    assert_eq!(data.refused[0].effect, "removed");
    assert_eq!(refused.stacks[2].result, StackResult::Blocked);
    assert!(
        refused.to_text().contains("--allow-replace data/Records"),
        "{}",
        refused.to_text()
    );
    let change_sets = clients
        .cloudformation
        .list_change_sets()
        .stack_name("life-dev-data")
        .send()
        .await
        .expect("list change sets");
    // (moto lists every stack's change sets, hence the filter)
    let left: Vec<_> = change_sets
        .summaries()
        .iter()
        .filter(|c| c.stack_name() == Some("life-dev-data"))
        .collect();
    assert!(
        left.is_empty(),
        "the refused change set is deleted: {left:?}"
    );
    let table = clients
        .cloudformation
        .describe_stack_resources()
        .stack_name("life-dev-data")
        .send()
        .await
        .expect("resources");
    assert!(table
        .stack_resources()
        .iter()
        .any(|r| r.logical_resource_id() == Some("Records")));

    // Destroy: dependents first, nothing left.
    let outcome = destroy::destroy(
        &clients,
        &changed,
        &DestroyOptions {
            confirmation: Confirmation::Yes,
            accept_retained: false,
            poll: options(Mode::Deploy, &[]).poll,
            artifact_bucket: "life-dev-artifacts".into(),
        },
        progress.clone(),
        &mut |_| false,
    )
    .await
    .expect("destroy runs");
    assert_eq!(
        outcome.result,
        DestroyResult::Destroyed,
        "{}",
        outcome.to_text()
    );
    let compute_at = outcome.deleted.iter().position(|n| n == "life-dev-compute");
    let data_at = outcome.deleted.iter().position(|n| n == "life-dev-data");
    assert!(
        compute_at < data_at,
        "compute imports from data, so it goes first: {:?}",
        outcome.deleted
    );
    let rows = status::read(&clients, &changed).await.expect("status");
    assert!(rows.iter().all(|r| !r.deployed), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_shows_changes_and_leaves_no_stack_or_change_set_behind() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let clients = connect(&moto).await;
    let progress = Arc::new(Progress::hidden());
    let stacks = environment("plan-dev", "functions/ingest/aaa.zip", true);
    let mut reviews = Recorder(Vec::new());
    let plan = engine::run(
        &clients,
        &stacks,
        options(Mode::Plan, &[]),
        progress.clone(),
        &mut reviews,
    )
    .await
    .expect("plan runs");
    assert_eq!(
        plan.verdict(),
        Verdict::ChangesPresent,
        "{}",
        plan.to_text()
    );
    assert_eq!(plan.stacks[0].result, StackResult::Planned);
    assert_eq!(plan.stacks[0].changes[0].logical_id, "Alarms");
    assert_eq!(plan.stacks[0].changes[0].action, "Add");
    assert!(
        matches!(
            plan.stacks[2].result,
            StackResult::Planned | StackResult::PendingUpstream
        ),
        "{}",
        plan.to_text()
    );
    let listed = clients
        .cloudformation
        .list_stacks()
        .send()
        .await
        .expect("list stacks");
    let alive: Vec<_> = listed
        .stack_summaries()
        .iter()
        .filter(|s| s.stack_status().map(|st| st.as_str()) != Some("DELETE_COMPLETE"))
        .collect();
    assert!(alive.is_empty(), "plan leaves no stack behind: {alive:?}");
    assert_eq!(clients.requests.count("CloudFormation.ExecuteChangeSet"), 0);
}
