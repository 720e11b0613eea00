//! The stateful-resource guard: a change set that would remove or replace a resource
//! holding data or an identity others depend on (a DynamoDB table, an SQS queue, a KMS
//! key, an S3 bucket, a log group, the signing secret in Secrets Manager or SSM, an
//! Elastic IP a downstream may allow-list, the HTTP API whose URL senders call) is
//! refused unless the person names that resource with `--allow-replace`, as
//! `<stack>/<LogicalId>` (the stack's id, e.g. `data`, or its full name) or as a bare
//! `<LogicalId>` for that logical id in any stack.

use std::collections::BTreeSet;

use serde::Serialize;

use super::changeset::ResourceChange;

/// Resource types whose removal or replacement loses data, or an identity (a key, an
/// address, a URL) that other systems hold on to.
pub const STATEFUL_TYPES: &[&str] = &[
    "AWS::DynamoDB::Table",
    "AWS::DynamoDB::GlobalTable",
    "AWS::SQS::Queue",
    "AWS::KMS::Key",
    "AWS::S3::Bucket",
    "AWS::Logs::LogGroup",
    "AWS::SecretsManager::Secret",
    "AWS::SSM::Parameter",
    "AWS::EC2::EIP",
    "AWS::ApiGatewayV2::Api",
];

/// A change the guard will not let through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The stack's id (`data`, `compute`...).
    pub stack: String,
    pub logical_id: String,
    pub resource_type: String,
    /// `removed`, `replaced` or `may be replaced`.
    pub effect: String,
}

impl Refusal {
    /// One line for a person, with the flag that would let it through.
    pub fn explain(&self) -> String {
        format!(
            "{} ({}) would be {}, losing what it holds; pass --allow-replace {}/{} if that is intended",
            self.logical_id, self.resource_type, self.effect, self.stack, self.logical_id
        )
    }
}

/// True for a resource type that holds data.
pub fn is_stateful(resource_type: &str) -> bool {
    STATEFUL_TYPES.contains(&resource_type)
}

/// True when `allowed` names `logical_id` of the stack with id `stack` and name
/// `stack_name`: as `stack/LogicalId`, `stack-name/LogicalId` or a bare `LogicalId`.
pub fn is_allowed(
    allowed: &BTreeSet<String>,
    stack: &str,
    stack_name: &str,
    logical_id: &str,
) -> bool {
    allowed.iter().any(|entry| match entry.split_once('/') {
        Some((owner, id)) => id == logical_id && (owner == stack || owner == stack_name),
        None => entry == logical_id,
    })
}

/// Checks each `--allow-replace` value: `LogicalId` or `<stack>/<LogicalId>` naming one of
/// `stacks` (ids and names).
pub fn check_allowed(allowed: &BTreeSet<String>, stacks: &[(&str, &str)]) -> Result<(), String> {
    for entry in allowed {
        let valid_id = |id: &str| {
            !id.is_empty() && id.len() <= 255 && id.chars().all(|c| c.is_ascii_alphanumeric())
        };
        match entry.split_once('/') {
            Some((owner, id)) => {
                if !stacks.iter().any(|(s, n)| *s == owner || *n == owner) {
                    return Err(format!(
                        "--allow-replace {entry}: `{owner}` is not a stack of this environment \
                         (stacks: {})",
                        stacks
                            .iter()
                            .map(|(s, _)| *s)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if !valid_id(id) {
                    return Err(format!(
                        "--allow-replace {entry}: `{id}` is not a logical id (letters and digits)"
                    ));
                }
            }
            None if !valid_id(entry) => {
                return Err(format!(
                    "--allow-replace {entry}: not a logical id; use `<stack>/<LogicalId>`, e.g. \
                     data/RecordsTable"
                ))
            }
            None => {}
        }
    }
    Ok(())
}

/// The changes to refuse in stack `stack` (id) / `stack_name`: stateful resources
/// removed or (possibly) replaced, except those `allowed` names.
pub fn refusals(
    changes: &[ResourceChange],
    allowed: &BTreeSet<String>,
    stack: &str,
    stack_name: &str,
) -> Vec<Refusal> {
    changes
        .iter()
        .filter(|change| {
            is_stateful(&change.resource_type)
                && !is_allowed(allowed, stack, stack_name, &change.logical_id)
        })
        .filter_map(|change| {
            let effect = match (change.action.as_str(), change.replacement.as_deref()) {
                ("Remove", _) => "removed",
                ("Modify", Some("True")) => "replaced",
                ("Modify", Some("Conditional")) => "may be replaced",
                _ => return None,
            };
            Some(Refusal {
                stack: stack.to_string(),
                logical_id: change.logical_id.clone(),
                resource_type: change.resource_type.clone(),
                effect: effect.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(action: &str, id: &str, kind: &str, replacement: Option<&str>) -> ResourceChange {
        ResourceChange {
            action: action.into(),
            logical_id: id.into(),
            resource_type: kind.into(),
            replacement: replacement.map(str::to_string),
            physical_id: None,
            details: Vec::new(),
        }
    }

    #[test]
    fn refuses_removing_or_replacing_data_but_not_stateless_or_in_place_changes() {
        let changes = [
            change("Modify", "Records", "AWS::DynamoDB::Table", Some("True")),
            change("Remove", "Logs", "AWS::Logs::LogGroup", None),
            change("Modify", "Queue", "AWS::SQS::Queue", Some("Conditional")),
            change("Modify", "Key", "AWS::KMS::Key", Some("False")),
            change("Modify", "Role", "AWS::IAM::Role", Some("True")),
            change("Add", "Bucket", "AWS::S3::Bucket", None),
        ];
        let refused = refusals(&changes, &BTreeSet::new(), "data", "app-dev-data");
        let ids: Vec<(&str, &str)> = refused
            .iter()
            .map(|r| (r.logical_id.as_str(), r.effect.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("Records", "replaced"),
                ("Logs", "removed"),
                ("Queue", "may be replaced")
            ]
        );
        assert!(refused[0]
            .explain()
            .contains("--allow-replace data/Records"));
    }

    #[test]
    fn a_named_resource_is_let_through_and_only_that_one() {
        let changes = [
            change("Modify", "Records", "AWS::DynamoDB::Table", Some("True")),
            change("Modify", "Ledger", "AWS::DynamoDB::Table", Some("True")),
        ];
        for named in ["Records", "data/Records", "app-dev-data/Records"] {
            let allowed = BTreeSet::from([named.to_string()]);
            let refused = refusals(&changes, &allowed, "data", "app-dev-data");
            assert_eq!(refused.len(), 1, "{named}");
            assert_eq!(refused[0].logical_id, "Ledger");
        }
        // Naming it in another stack lets nothing through.
        let allowed = BTreeSet::from(["compute/Records".to_string()]);
        assert_eq!(
            refusals(&changes, &allowed, "data", "app-dev-data").len(),
            2
        );
    }

    #[test]
    fn the_signing_secret_the_egress_address_and_the_api_are_guarded_too() {
        let changes = [
            change(
                "Remove",
                "SigningSecret",
                "AWS::SecretsManager::Secret",
                None,
            ),
            change("Modify", "SigningKeys", "AWS::SSM::Parameter", Some("True")),
            change("Modify", "NatAddressA", "AWS::EC2::EIP", Some("True")),
            change("Remove", "IngestApi", "AWS::ApiGatewayV2::Api", None),
        ];
        let refused = refusals(&changes, &BTreeSet::new(), "security", "app-dev-security");
        assert_eq!(refused.len(), 4);
    }

    #[test]
    fn allow_replace_values_name_a_stack_of_the_environment_and_a_logical_id() {
        let stacks = [("data", "app-dev-data"), ("compute", "app-dev-compute")];
        let ok = |v: &[&str]| check_allowed(&v.iter().map(|s| s.to_string()).collect(), &stacks);
        assert!(ok(&["Records", "data/Records", "app-dev-compute/IngestApi"]).is_ok());
        let error = ok(&["dtaa/Records"]).unwrap_err();
        assert!(
            error.contains("`dtaa` is not a stack") && error.contains("data, compute"),
            "{error}"
        );
        let error = ok(&["data/"]).unwrap_err();
        assert!(error.contains("is not a logical id"), "{error}");
        let error = ok(&["Records Table"]).unwrap_err();
        assert!(error.contains("<stack>/<LogicalId>"), "{error}");
    }
}
