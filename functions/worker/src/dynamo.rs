//! Sends the writes that `sync_core` builds as plain data to DynamoDB.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use sync_core::classify::{classify_aws_code, ErrorClass, Failure};
use sync_core::ledger::LedgerUpdate;
use sync_core::store::{AttrValue, RecordUpdate};

/// The outcome of a conditional write.
#[derive(Debug)]
pub enum WriteError {
    /// The condition did not hold; the item as it was, when DynamoDB returned it.
    ConditionFailed(Option<HashMap<String, AttributeValue>>),
    /// Any other failure, classified.
    Failed(Failure),
}

/// Converts plain data to an SDK attribute value, moving its strings.
pub fn into_sdk(value: AttrValue) -> AttributeValue {
    match value {
        AttrValue::S(s) => AttributeValue::S(s),
        AttrValue::N(n) => AttributeValue::N(n),
        AttrValue::Bool(b) => AttributeValue::Bool(b),
        AttrValue::Null => AttributeValue::Null(true),
        AttrValue::M(map) => {
            AttributeValue::M(map.into_iter().map(|(k, v)| (k, into_sdk(v))).collect())
        }
        AttrValue::L(items) => AttributeValue::L(items.into_iter().map(into_sdk).collect()),
    }
}

/// Attribute values keyed by their static names, for the SDK.
fn sdk_values(values: BTreeMap<&'static str, AttrValue>) -> HashMap<String, AttributeValue> {
    values
        .into_iter()
        .map(|(name, value)| (name.to_string(), into_sdk(value)))
        .collect()
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &str,
    error: SdkError<E, R>,
) -> Failure {
    let code = error.code().map(str::to_string);
    let message = format!(
        "DynamoDB {operation} failed: {}",
        DisplayErrorContext(&error)
    );
    let message: String = message.chars().take(500).collect();
    match classify_aws_code(code.as_deref()) {
        ErrorClass::Permanent => Failure::permanent(message),
        ErrorClass::Retryable => Failure::retryable(message),
    }
}

/// Sends a conditional ledger update; returns the updated attributes.
pub async fn update(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    update: LedgerUpdate,
) -> Result<HashMap<String, AttributeValue>, WriteError> {
    let result = client
        .update_item()
        .table_name(table)
        .key("idempotency_key", AttributeValue::S(update.key))
        .update_expression(update.update)
        .condition_expression(update.condition)
        .set_expression_attribute_names(Some(
            update
                .names
                .iter()
                .map(|(alias, name)| (alias.clone(), name.clone()))
                .collect(),
        ))
        .set_expression_attribute_values(Some(sdk_values(update.values)))
        .return_values(ReturnValue::UpdatedNew)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match result {
        Ok(output) => Ok(output.attributes.unwrap_or_default()),
        Err(error) => match error.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                Err(WriteError::ConditionFailed(refused.item.clone()))
            }
            _ => Err(WriteError::Failed(classify("UpdateItem", error))),
        },
    }
}

/// Sends a conditional update of a records-table item; on a refused condition, returns
/// the item as it was.
pub async fn update_record(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    update: RecordUpdate,
) -> Result<(), WriteError> {
    let result = client
        .update_item()
        .table_name(table)
        .key("pk", AttributeValue::S(update.pk))
        .key("sk", AttributeValue::S(update.sk))
        .update_expression(update.update)
        .condition_expression(update.condition)
        .set_expression_attribute_names(Some(
            update
                .names
                .into_iter()
                .map(|(alias, name)| (alias.to_string(), name.to_string()))
                .collect(),
        ))
        .set_expression_attribute_values(Some(sdk_values(update.values)))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(error) => match error.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                Err(WriteError::ConditionFailed(refused.item.clone()))
            }
            _ => Err(WriteError::Failed(classify("UpdateItem", error))),
        },
    }
}

/// A string attribute of an item.
pub fn string_attr<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// A number attribute of an item.
pub fn number_attr(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}
