//! Each function's IAM role allows exactly what its code calls: the AWS SDK operations
//! found in the function's sources (and in the `sync-core` modules it uses), plus what
//! Lambda itself does with the role on the function's behalf (the queue event source,
//! the on-failure destination). A permission the code never uses, or a call without its
//! permission, fails the test, naming both sides.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::Value;

use crate::common::{repo_root, Fixture};
use provisioner::render::Renderer;

/// SDK operations (snake_case method of the client) and the IAM action each needs.
const OPERATIONS: &[(&str, &str)] = &[
    ("get_item", "dynamodb:GetItem"),
    ("put_item", "dynamodb:PutItem"),
    ("update_item", "dynamodb:UpdateItem"),
    ("delete_item", "dynamodb:DeleteItem"),
    ("query", "dynamodb:Query"),
    ("scan", "dynamodb:Scan"),
    ("batch_get_item", "dynamodb:BatchGetItem"),
    ("batch_write_item", "dynamodb:BatchWriteItem"),
    ("transact_write_items", "dynamodb:TransactWriteItems"),
    ("transact_get_items", "dynamodb:TransactGetItems"),
    ("send_message", "sqs:SendMessage"),
    ("send_message_batch", "sqs:SendMessage"),
    ("receive_message", "sqs:ReceiveMessage"),
    ("delete_message", "sqs:DeleteMessage"),
    ("delete_message_batch", "sqs:DeleteMessage"),
    ("change_message_visibility", "sqs:ChangeMessageVisibility"),
    (
        "change_message_visibility_batch",
        "sqs:ChangeMessageVisibility",
    ),
    ("get_queue_attributes", "sqs:GetQueueAttributes"),
    ("get_queue_url", "sqs:GetQueueUrl"),
    ("get_secret_value", "secretsmanager:GetSecretValue"),
    ("get_parameter", "ssm:GetParameter"),
    ("put_metric_data", "cloudwatch:PutMetricData"),
    ("publish", "sns:Publish"),
];

/// What Lambda does with the role for the function (no call in its code).
fn service_side(function: &str) -> &'static [&'static str] {
    match function {
        // The SQS event source mapping polls and deletes with the function's role.
        "worker" => &[
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
        ],
        // The on-failure destination of its asynchronous invocations.
        "reconciler" => &["sqs:SendMessage"],
        _ => &[],
    }
}

/// The non-test Rust sources of a crate (inline `#[cfg(test)]` modules cut off).
fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read sources") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            out.push(code.to_string());
        }
    }
}

/// IAM actions of every SDK operation a function's code calls.
fn called_actions(function: &str) -> BTreeSet<&'static str> {
    let root = repo_root().join("functions");
    let mut code = Vec::new();
    sources(&root.join(function).join("src"), &mut code);
    // The sync-core modules the function uses (`sync_core::<module>`).
    let mut own = String::new();
    for text in &code {
        own.push_str(text);
    }
    let core = root.join("sync-core/src");
    for entry in std::fs::read_dir(&core).expect("sync-core") {
        let path = entry.expect("entry").path();
        let module = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if own.contains(&format!("sync_core::{module}")) {
            let mut module_code = Vec::new();
            if path.is_dir() {
                sources(&path, &mut module_code);
            } else {
                let text = std::fs::read_to_string(&path).expect("read");
                module_code.push(text.split("#[cfg(test)]").next().unwrap_or_default().into());
            }
            code.extend(module_code);
        }
    }
    let mut actions = BTreeSet::new();
    for text in &code {
        for (operation, action) in OPERATIONS {
            // A client call: `.operation()` followed by its builder chain.
            if text.contains(&format!(".{operation}()\n"))
                || text.contains(&format!(".{operation}()."))
            {
                actions.insert(*action);
            }
        }
    }
    actions
}

/// The actions of a role's `data` policy (keys and logs are separate concerns).
fn role_actions(security: &Value, role: &str) -> BTreeSet<String> {
    let policies = security["Resources"][role]["Properties"]["Policies"]
        .as_sequence()
        .expect("policies");
    let data = policies
        .iter()
        .find(|p| p["PolicyName"] == "data")
        .expect("a data policy");
    let mut actions = BTreeSet::new();
    for statement in data["PolicyDocument"]["Statement"]
        .as_sequence()
        .expect("statements")
    {
        match &statement["Action"] {
            Value::String(action) => {
                actions.insert(action.clone());
            }
            Value::Sequence(list) => {
                actions.extend(list.iter().filter_map(|a| a.as_str().map(str::to_string)))
            }
            other => panic!("{role}: action {other:?}"),
        }
    }
    actions.retain(|action| !action.starts_with("kms:"));
    actions
}

#[test]
fn every_role_allows_exactly_what_its_functions_code_calls() {
    let fixture = Fixture::new();
    let project = fixture.project();
    let renderer = Renderer::load(&project).expect("loads");
    for env_name in ["prod", "local"] {
        let env = renderer.load_environment(&project, env_name).expect("env");
        let rendered = renderer.render(&env).expect("renders");
        let security: Value = serde_yaml::from_str(
            &rendered
                .stacks
                .iter()
                .find(|s| s.id == "security")
                .expect("security stack")
                .body,
        )
        .expect("parses");
        // The signing secret is read from the one store the environment configures; the
        // code can read either.
        let other_store = match env.settings.signing_secret.store {
            provisioner::config::model::SecretStore::Secretsmanager => "ssm:GetParameter",
            _ => "secretsmanager:GetSecretValue",
        };
        for (function, role) in [
            ("ingest", "IngestRole"),
            ("worker", "WorkerRole"),
            ("reconciler", "ReconcilerRole"),
        ] {
            let mut needed: BTreeSet<String> = called_actions(function)
                .into_iter()
                .filter(|action| *action != other_store)
                .map(str::to_string)
                .collect();
            needed.extend(service_side(function).iter().map(|a| a.to_string()));
            assert!(!needed.is_empty(), "{function}: no SDK call found");
            let granted = role_actions(&security, role);
            let unused: Vec<_> = granted.difference(&needed).collect();
            let missing: Vec<_> = needed.difference(&granted).collect();
            assert!(
                unused.is_empty() && missing.is_empty(),
                "{env_name} {role}: allowed but never called: {unused:?}; called but not allowed: {missing:?}"
            );
        }
    }
}
