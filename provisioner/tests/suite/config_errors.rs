//! Every class of configuration mistake gets an error naming the file, the key path,
//! what is wrong and the fix.

use crate::common;

use common::Fixture;
use provisioner::config::{self, ConfigError, Issue};

const STACKS: [&str; 6] = [
    "network",
    "data",
    "messaging",
    "security",
    "compute",
    "observability",
];

fn load(fixture: &Fixture, env: &str) -> Result<config::Environment, ConfigError> {
    config::load(&fixture.project(), env, &STACKS)
}

/// Loads `text` as `environments/test.yaml` and returns its issues.
fn issues(text: &str) -> Vec<Issue> {
    let fixture = Fixture::new();
    fixture.write_env("test", text);
    match load(&fixture, "test") {
        Err(ConfigError::Invalid { issues }) => issues,
        Err(other) => panic!("expected invalid configuration, got: {other}"),
        Ok(_) => panic!("expected invalid configuration, but it loaded"),
    }
}

fn one_issue(text: &str) -> Issue {
    let found = issues(text);
    assert_eq!(found.len(), 1, "expected exactly one issue, got {found:#?}");
    found.into_iter().next().expect("one issue")
}

fn assert_issue(issue: &Issue, file: &str, key: &str, message: &str, help: &str) {
    assert_eq!(issue.file, file, "file of {issue}");
    assert_eq!(issue.key, key, "key of {issue}");
    assert!(
        issue.message.contains(message),
        "message `{}` lacks `{message}`",
        issue.message
    );
    assert!(
        issue.help.contains(help),
        "help `{}` lacks `{help}`",
        issue.help
    );
}

#[test]
fn every_shipped_environment_loads() {
    let fixture = Fixture::new();
    for env in ["local", "dev", "staging", "prod"] {
        let loaded = load(&fixture, env).unwrap_or_else(|error| panic!("{env}: {error}"));
        assert_eq!(loaded.name, env);
        assert_eq!(
            loaded.files.last().map(String::as_str),
            Some("environments/defaults.yaml")
        );
    }
}

#[test]
fn inheritance_merges_maps_and_replaces_lists() {
    let fixture = Fixture::new();
    let prod = load(&fixture, "prod").expect("prod loads");
    // prod extends staging extends defaults.
    assert_eq!(
        prod.files,
        [
            "environments/prod.yaml",
            "environments/staging.yaml",
            "environments/defaults.yaml"
        ]
    );
    // From prod itself.
    assert_eq!(
        prod.settings.functions.worker.reserved_concurrency,
        Some(50)
    );
    // From staging, untouched by prod.
    assert_eq!(prod.settings.functions.worker.memory_mb, 1024);
    assert!(prod.settings.retain_stateful_resources);
    // From defaults, through both.
    assert_eq!(prod.settings.functions.ingest.memory_mb, 256);
    // Lists replace: prod's own three subnets, not staging's plus prod's.
    assert_eq!(prod.settings.network.subnets.len(), 3);
    assert_eq!(
        prod.settings.network.subnets[0].private.to_string(),
        "10.40.0.0/19"
    );
    assert_eq!(prod.settings.alarms.email_subscriptions.len(), 2);
}

#[test]
fn unknown_key_suggests_the_nearest_one() {
    let issue = one_issue("extends: dev\nfunctions:\n  worker:\n    memroy_mb: 512\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "functions.worker.memroy_mb",
        "unknown key `memroy_mb`",
        "did you mean `memory_mb`?",
    );
}

#[test]
fn unknown_top_level_key_lists_what_is_allowed_when_nothing_is_close() {
    let issue = one_issue("extends: dev\nzebra: 1\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "zebra",
        "unknown key `zebra`",
        "allowed here are",
    );
}

#[test]
fn bad_account_id() {
    let issue = one_issue("extends: dev\naccount_id: \"12345\"\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "account_id",
        "`12345` is not an AWS account id",
        "12-digit",
    );
}

#[test]
fn bad_region_suggests_the_intended_one() {
    let issue = one_issue("extends: dev\nregion: eu-wset-1\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "region",
        "`eu-wset-1` is not an AWS region",
        "did you mean `eu-west-1`?",
    );
}

#[test]
fn invalid_cidr() {
    let issue = one_issue("extends: dev\nnetwork:\n  vpc_cidr: 10.20.0.0/33\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "network.vpc_cidr",
        "not an IPv4 CIDR block",
        "10.20.0.0/16",
    );
}

#[test]
fn cidr_with_host_bits_suggests_the_network() {
    let issue = one_issue("extends: dev\nnetwork:\n  vpc_cidr: 10.20.1.0/16\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "network.vpc_cidr",
        "host bits set",
        "did you mean `10.20.0.0/16`?",
    );
}

#[test]
fn overlapping_subnets() {
    let issue = one_issue(
        "extends: dev\nnetwork:\n  subnets:\n    - {zone: a, private: 10.20.0.0/19, public: 10.20.128.0/24}\n    - {zone: b, private: 10.20.16.0/20, public: 10.20.129.0/24}\n",
    );
    assert_issue(
        &issue,
        "environments/test.yaml",
        "network.subnets[1].private",
        "10.20.16.0/20 overlaps network.subnets[0].private",
        "non-overlapping",
    );
}

#[test]
fn subnet_outside_the_vpc() {
    let issue = one_issue(
        "extends: dev\nnetwork:\n  subnets:\n    - {zone: a, private: 10.20.0.0/19, public: 10.99.0.0/24}\n    - {zone: b, private: 10.20.32.0/19, public: 10.20.129.0/24}\n",
    );
    assert_issue(
        &issue,
        "environments/test.yaml",
        "network.subnets[0].public",
        "10.99.0.0/24 is outside the VPC block 10.20.0.0/16",
        "inside 10.20.0.0/16",
    );
}

#[test]
fn a_vpc_change_in_a_parent_is_blamed_on_the_file_that_set_the_subnets() {
    // The subnets come from defaults.yaml; test.yaml moves the VPC away from them.
    let found = issues("extends: dev\nnetwork:\n  vpc_cidr: 10.99.0.0/16\n");
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(
        found
            .iter()
            .all(|issue| issue.file == "environments/defaults.yaml"),
        "{found:#?}"
    );
    assert!(found[0]
        .message
        .contains("outside the VPC block 10.99.0.0/16"));
}

#[test]
fn memory_outside_lambda_limits() {
    let issue = one_issue("extends: dev\nfunctions:\n  worker:\n    memory_mb: 64\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "functions.worker.memory_mb",
        "64 is outside Lambda memory (MB)'s range 128-10240",
        "between 128 and 10240",
    );
}

#[test]
fn timeout_outside_lambda_limits() {
    let found = issues("extends: dev\nfunctions:\n  reconciler:\n    timeout_seconds: 901\n");
    assert_issue(
        &found[0],
        "environments/test.yaml",
        "functions.reconciler.timeout_seconds",
        "901 is outside Lambda timeout (seconds)'s range 1-900",
        "between 1 and 900",
    );
}

#[test]
fn visibility_timeout_shorter_than_six_worker_timeouts() {
    let issue = one_issue("extends: dev\nfunctions:\n  worker:\n    timeout_seconds: 60\n");
    // The queue's 180 s comes from defaults.yaml; the worker timeout from test.yaml.
    assert_issue(
        &issue,
        "environments/defaults.yaml",
        "queue.visibility_timeout_seconds",
        "180 s is shorter than 6x the worker timeout (60 s)",
        "at least 360",
    );
}

#[test]
fn log_retention_cloudwatch_does_not_accept() {
    let issue = one_issue("extends: dev\nlogs:\n  retention_days: 10\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "logs.retention_days",
        "does not accept a retention of 10 days",
        "nearest: 7",
    );
}

#[test]
fn names_over_aws_length_limits() {
    // The app name check itself refuses more than 20 characters.
    let issue = one_issue("extends: dev\napp: a-much-too-long-app-name\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "app",
        "not a valid app name",
        "1-20 lower-case letters",
    );

    // Within those limits, the longest app, environment and region names still give
    // names AWS accepts (the bucket, role and stack names of the bootstrap included).
    let fixture = Fixture::new();
    fixture.write_env(
        "integration-test",
        "extends: dev\napp: datasyncplatform2026\nregion: ap-southeast-2\n",
    );
    let env = load(&fixture, "integration-test").expect("the longest names fit");
    assert_eq!(
        env.names.bootstrap.artifact_bucket,
        "datasyncplatform2026-artifacts-210987654321-ap-southeast-2"
    );
    assert!(env.names.bootstrap.artifact_bucket.len() <= 63);
}

#[test]
fn extends_cycle() {
    let fixture = Fixture::new();
    fixture.write_env("one", "extends: two\n");
    fixture.write_env("two", "extends: one\n");
    let Err(ConfigError::Invalid { issues }) = load(&fixture, "one") else {
        panic!("a cycle must not load");
    };
    assert_issue(
        &issues[0],
        "environments/two.yaml",
        "extends",
        "cycle: one -> two -> one",
        "extend `defaults`",
    );
}

#[test]
fn missing_parent() {
    let issue = one_issue("extends: stagign\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "extends",
        "`test` extends `stagign`, but environments/stagign.yaml does not exist",
        "did you mean `extends: staging`?",
    );
}

#[test]
fn no_extends_at_all() {
    let issue = one_issue("account_id: \"123456789012\"\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "extends",
        "does not extend anything",
        "extends: defaults",
    );
}

#[test]
fn missing_required_key() {
    let issue = one_issue("extends: defaults\nregion: eu-west-1\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "account_id",
        "required key `account_id` is missing",
        "add `account_id`",
    );
}

#[test]
fn wrong_type_and_unknown_variant() {
    let issue = one_issue("extends: dev\nfunctions:\n  worker:\n    memory_mb: lots\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "functions.worker.memory_mb",
        "invalid type",
        "whole, non-negative number",
    );
    let issue = one_issue("extends: dev\nfunctions:\n  worker:\n    architecture: arm\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "functions.worker.architecture",
        "unknown variant `arm`",
        "x86_64, arm64",
    );
}

#[test]
fn unsupported_format_version() {
    let issue = one_issue("extends: dev\nversion: 2\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "version",
        "format version 2 is not supported",
        "upgrade the provisioner",
    );
}

#[test]
fn invalid_yaml_names_the_position() {
    let issue = one_issue("extends: dev\nfunctions:\n  worker: [unclosed\n");
    assert_eq!(issue.file, "environments/test.yaml");
    assert!(issue.message.contains("is not valid YAML (line"), "{issue}");
}

#[test]
fn several_problems_are_reported_together() {
    let found = issues(
        "extends: dev\nfunctions:\n  ingest:\n    memory_mb: 100\n    timeout_seconds: 45\nlogs:\n  retention_days: 2\n",
    );
    let keys: Vec<&str> = found.iter().map(|issue| issue.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "functions.ingest.memory_mb",
            "functions.ingest.timeout_seconds",
            "logs.retention_days"
        ],
        "{found:#?}"
    );
    assert!(found[1]
        .message
        .contains("HTTP API's 30 s integration timeout"));
}

#[test]
fn a_signing_key_in_a_file_is_only_for_emulated_environments() {
    let issue = one_issue("extends: dev\nsigning_secret:\n  store: ssm\n  value: hunter2\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "signing_secret.value",
        "only allowed for an emulated environment",
        "store: secretsmanager",
    );
}

#[test]
fn reserved_and_aws_tags_are_refused() {
    let found = issues("extends: dev\ntags:\n  env: prod\n  aws:owner: me\n");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found
        .iter()
        .any(|i| i.key == "tags.env" && i.message.contains("set by the provisioner")));
    assert!(found
        .iter()
        .any(|i| i.key == "tags.aws:owner" && i.message.contains("reserved by AWS")));
}

#[test]
fn unknown_environment_and_the_base_are_refused() {
    let fixture = Fixture::new();
    match load(&fixture, "prdo") {
        Err(error @ ConfigError::UnknownEnvironment { .. }) => {
            assert!(error.to_string().contains("no environment `prdo`"));
            assert_eq!(error.help().as_deref(), Some("did you mean `prod`?"));
        }
        other => panic!("expected an unknown environment, got {other:?}"),
    }
    match load(&fixture, "defaults") {
        Err(error @ ConfigError::BaseIsNotAnEnvironment { .. }) => {
            assert!(error
                .help()
                .is_some_and(|help| help.contains("dev, local, prod, staging")));
        }
        other => panic!("expected the base to be refused, got {other:?}"),
    }
}

#[test]
fn a_downstream_burst_smaller_than_the_worker_concurrency() {
    let issue = one_issue("extends: dev\ndownstream:\n  burst: 2\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "downstream.burst",
        "shared by up to 5 worker instances",
        "at least queue.maximum_concurrency",
    );
}

#[test]
fn the_workers_reserved_concurrency_covers_the_event_sources_maximum() {
    let issue = one_issue("extends: dev\nfunctions:\n  worker:\n    reserved_concurrency: 3\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "functions.worker.reserved_concurrency",
        "below the queue event source's maximum concurrency (5)",
        "at least queue.maximum_concurrency",
    );
    let issue = one_issue("extends: dev\nfunctions:\n  ingest:\n    reserved_concurrency: 0\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "functions.ingest.reserved_concurrency",
        "stops `ingest` from ever running",
        "set at least 1",
    );
}

#[test]
fn a_real_environment_needs_an_https_downstream() {
    let issue =
        one_issue("extends: dev\ndownstream:\n  url: http://sync-target.dev.example.com/api\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "downstream.url",
        "is not https",
        "plain http is accepted only for emulated environments",
    );
}

#[test]
fn decommission_pauses_must_be_durations() {
    let issue = one_issue("extends: dev\ndecommission:\n  hold: a week\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "decommission.hold",
        "is not a duration",
        "e.g. 15m or 7d",
    );
}

#[test]
fn bad_ci_owner_repo_and_deploy_from_name_the_key_and_the_fix() {
    let issue = one_issue("extends: dev\nci:\n  github:\n    owner: -example\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "ci.github.owner",
        "`-example` is not a GitHub owner name",
        "1-39 letters, digits or single hyphens",
    );
    let issue = one_issue("extends: dev\nci:\n  github:\n    repo: example-org/datasync\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "ci.github.repo",
        "`example-org/datasync` is not a GitHub repository name",
        "without the owner",
    );
    let issue = one_issue("extends: dev\nci:\n  deploy_from: prod\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "ci.deploy_from",
        "does not say whether it is a GitHub environment or a branch",
        "deploy_from: environment:prod",
    );
    let issue = one_issue("extends: dev\nci:\n  deploy_from: \"branch:*\"\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "ci.deploy_from",
        "`*` is not a usable branch name",
        "without wildcards",
    );
    let issue = one_issue("extends: dev\nci:\n  deploy_from: tag:v1\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "ci.deploy_from",
        "neither `environment:` nor `branch:`",
        "branch:main",
    );
    let issue = one_issue("extends: dev\nci:\n  github:\n    oidc_provider: exists\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "ci.github.oidc_provider",
        "neither `create` nor the ARN",
        "oidc-provider/token.actions.githubusercontent.com",
    );
}

#[test]
fn promotion_readers_are_checked_like_deploy_from_and_need_it() {
    // `local` has no `deploy_from`: nothing is promoted from an environment CI does not deploy.
    let issue = one_issue("extends: local\nci:\n  github:\n    owner: example-org\n    repo: datasync\n    oidc_provider: create\n  promotion_readers: [environment:staging]\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "ci.promotion_readers",
        "no `ci.deploy_from`",
        "set `ci.deploy_from`",
    );
    let issue = one_issue("extends: dev\nci:\n  promotion_readers: [environment:dev]\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "ci.promotion_readers",
        "the environment's own `deploy_from`",
        "environment:staging",
    );
    let found = issues("extends: dev\nci:\n  promotion_readers: [\"environment:st*ging\"]\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].key.starts_with("ci.promotion_readers"),
        "{}",
        found[0]
    );
    assert!(
        found[0]
            .message
            .contains("`st*ging` is not a usable GitHub environment name"),
        "{}",
        found[0]
    );
    assert!(found[0].help.contains("without wildcards"), "{}", found[0]);
}

#[test]
fn an_existing_oidc_provider_of_another_account_is_refused() {
    let issue = one_issue(
        "extends: dev\nci:\n  github:\n    oidc_provider: \
         arn:aws:iam::999999999999:oidc-provider/token.actions.githubusercontent.com\n",
    );
    assert_issue(
        &issue,
        "environments/test.yaml",
        "ci.github.oidc_provider",
        "the OIDC provider is in account 999999999999, but this environment deploys to account 210987654321",
        "in this environment's account",
    );
}

#[test]
fn an_unknown_ci_key_is_refused() {
    let issue = one_issue("extends: dev\nci:\n  github:\n    branch: main\n");
    assert_issue(
        &issue,
        "environments/test.yaml",
        "ci.github.branch",
        "unknown key `branch`",
        "owner, repo, oidc_provider",
    );
}
