//! The stateful-resource guard: a change set that would remove or replace a resource
//! holding data (a DynamoDB table, an SQS queue, a KMS key, an S3 bucket, a log group)
//! is refused unless the person names that resource with `--allow-replace`.

use std::collections::BTreeSet;

use serde::Serialize;

use super::changeset::ResourceChange;

/// Resource types whose removal or replacement loses data.
pub const STATEFUL_TYPES: &[&str] = &[
    "AWS::DynamoDB::Table",
    "AWS::DynamoDB::GlobalTable",
    "AWS::SQS::Queue",
    "AWS::KMS::Key",
    "AWS::S3::Bucket",
    "AWS::Logs::LogGroup",
];

/// A change the guard will not let through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub logical_id: String,
    pub resource_type: String,
    /// `removed`, `replaced` or `may be replaced`.
    pub effect: String,
}

impl Refusal {
    /// One line for a person, with the flag that would let it through.
    pub fn explain(&self) -> String {
        format!(
            "{} ({}) would be {}, losing what it holds; pass --allow-replace {} if that is intended",
            self.logical_id, self.resource_type, self.effect, self.logical_id
        )
    }
}

/// True for a resource type that holds data.
pub fn is_stateful(resource_type: &str) -> bool {
    STATEFUL_TYPES.contains(&resource_type)
}

/// The changes to refuse: stateful resources removed or (possibly) replaced, except
/// those whose logical id is in `allowed`.
pub fn refusals(changes: &[ResourceChange], allowed: &BTreeSet<String>) -> Vec<Refusal> {
    changes
        .iter()
        .filter(|change| {
            is_stateful(&change.resource_type) && !allowed.contains(&change.logical_id)
        })
        .filter_map(|change| {
            let effect = match (change.action.as_str(), change.replacement.as_deref()) {
                ("Remove", _) => "removed",
                ("Modify", Some("True")) => "replaced",
                ("Modify", Some("Conditional")) => "may be replaced",
                _ => return None,
            };
            Some(Refusal {
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
        let refused = refusals(&changes, &BTreeSet::new());
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
        assert!(refused[0].explain().contains("--allow-replace Records"));
    }

    #[test]
    fn a_named_resource_is_let_through_and_only_that_one() {
        let changes = [
            change("Modify", "Records", "AWS::DynamoDB::Table", Some("True")),
            change("Modify", "Ledger", "AWS::DynamoDB::Table", Some("True")),
        ];
        let allowed = BTreeSet::from(["Records".to_string()]);
        let refused = refusals(&changes, &allowed);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].logical_id, "Ledger");
    }
}
