//! Property tests of the environment loader: whatever text an environment file holds,
//! loading it never panics and ends in either a validated environment or a specific
//! error naming the file (and, for a bad value, the key and the fix). Case counts are
//! bounded so the suite stays fast; `PROPTEST_CASES` raises them for a longer hunt.

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_yaml::{Mapping, Value};

use crate::common::Fixture;
use provisioner::config::{self, ConfigError};

const STACKS: [&str; 6] = [
    "network",
    "data",
    "messaging",
    "security",
    "compute",
    "observability",
];

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Never write regression files into the source tree from CI.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

/// Loads `text` as `environments/test.yaml` and checks the outcome is one of the two
/// allowed shapes.
fn load_is_an_environment_or_a_specific_error(fixture: &Fixture, text: &str) {
    fixture.write_env("test", text);
    match config::load(&fixture.project(), "test", &STACKS) {
        Ok(env) => assert_eq!(env.name, "test"),
        Err(ConfigError::Invalid { issues }) => {
            assert!(
                !issues.is_empty(),
                "an invalid file with no issue: {text:?}"
            );
            for issue in &issues {
                assert!(
                    issue.file.starts_with("environments/"),
                    "issue without its file: {issue:?} for {text:?}"
                );
                assert!(
                    !issue.message.is_empty(),
                    "issue without a message: {issue:?}"
                );
                if !issue.key.is_empty() {
                    assert!(
                        !issue.help.is_empty(),
                        "keyed issue without a fix: {issue:?}"
                    );
                }
            }
        }
        Err(ConfigError::UnknownEnvironment { name, .. }) => {
            // Only through `extends:` naming a file that does not exist.
            assert!(!name.is_empty() && name != "test", "{text:?}");
        }
        Err(other) => panic!("unexpected error kind for {text:?}: {other}"),
    }
}

/// YAML-ish text: lines of keys, values, indentation, list markers and punctuation.
fn yamlish_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("extends: dev".to_string()),
        Just("extends: test".to_string()),
        Just("extends: defaults".to_string()),
        Just("version: 1".to_string()),
        Just("  ".to_string()),
        Just("- ".to_string()),
        Just(": ".to_string()),
        Just("\n".to_string()),
        Just("{".to_string()),
        Just("[".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("!Ref ".to_string()),
        Just("\"".to_string()),
        Just("network:\n  vpc_cidr: ".to_string()),
        Just("ci:\n  deploy_from: ".to_string()),
        "[a-z_]{1,12}: ".prop_map(|s| s),
        "[ -~]{0,12}".prop_map(|s| s),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        (0u64..100_000).prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|f| Value::Number(f.into())),
        "[ -~]{0,20}".prop_map(Value::String),
        Just(Value::String("environment:prod".into())),
        Just(Value::String("branch:*".into())),
        Just(Value::String("10.20.0.0/16".into())),
        Just(Value::String("dev".into())),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((key(), inner), 0..4).prop_map(|entries| {
                Value::Mapping(
                    entries
                        .into_iter()
                        .map(|(k, v)| (Value::String(k), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// Keys the format has (so the values reach the validation) and a few it has not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("network"),
        Just("vpc_cidr"),
        Just("subnets"),
        Just("functions"),
        Just("worker"),
        Just("memory_mb"),
        Just("queue"),
        Just("batch_size"),
        Just("alarms"),
        Just("logs"),
        Just("retention_days"),
        Just("downstream"),
        Just("url"),
        Just("ci"),
        Just("github"),
        Just("owner"),
        Just("repo"),
        Just("oidc_provider"),
        Just("deploy_from"),
        Just("account_id"),
        Just("region"),
        Just("tags"),
        Just("unknown_key"),
    ]
    .prop_map(str::to_string)
}

/// A real environment with some keys set to arbitrary values.
fn mutated_environment() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("dev"),
            Just("prod"),
            Just("local"),
            Just("test"),
            Just("nope")
        ],
        prop::collection::vec((key(), value()), 0..6),
    )
        .prop_map(|(extends, entries)| {
            let mut map = Mapping::new();
            map.insert(
                Value::String("extends".into()),
                Value::String(extends.into()),
            );
            for (k, v) in entries {
                map.insert(Value::String(k), v);
            }
            serde_yaml::to_string(&Value::Mapping(map)).unwrap_or_default()
        })
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn any_yamlish_text_loads_or_fails_with_a_specific_error(text in yamlish_text()) {
        let fixture = Fixture::new();
        load_is_an_environment_or_a_specific_error(&fixture, &text);
    }

    #[test]
    fn any_values_at_real_keys_load_or_fail_with_a_specific_error(text in mutated_environment()) {
        let fixture = Fixture::new();
        load_is_an_environment_or_a_specific_error(&fixture, &text);
    }
}
