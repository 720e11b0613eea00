//! Entering accepted records in the ledger before their messages are sent, so that every
//! accepted record is accounted for from the moment it is accepted (a message that is
//! never claimed still has its `ACCEPTED` item, which the reconciler re-drives), and
//! withdrawing the entries of records the queue did not take.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::stream::{self, StreamExt};
use sync_core::classify::{classify_aws_code, ErrorClass};
use sync_core::ledger::{LedgerDelete, LedgerUpdate};
use sync_core::store::AttrValue;

use crate::queue::NotQueued;

/// Ledger writes in flight at once for one request.
pub const CONCURRENT_WRITES: usize = 16;

fn into_sdk(value: &AttrValue) -> AttributeValue {
    match value {
        AttrValue::S(s) => AttributeValue::S(s.clone()),
        AttrValue::N(n) => AttributeValue::N(n.clone()),
        AttrValue::Bool(b) => AttributeValue::Bool(*b),
        AttrValue::Null => AttributeValue::Null(true),
        AttrValue::M(map) => {
            AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), into_sdk(v))).collect())
        }
        AttrValue::L(items) => AttributeValue::L(items.iter().map(into_sdk).collect()),
    }
}

fn values(values: &BTreeMap<&'static str, AttrValue>) -> HashMap<String, AttributeValue> {
    values
        .iter()
        .map(|(name, value)| (name.to_string(), into_sdk(value)))
        .collect()
}

fn names(names: &BTreeMap<String, String>) -> HashMap<String, String> {
    names
        .iter()
        .map(|(alias, name)| (alias.clone(), name.clone()))
        .collect()
}

/// Enters each `(index, entry)`; returns the indexes that could not be entered (and so
/// must not be queued), with the reason. An entry refused because the key is in the
/// ledger already is entered: the record is known, and the worker settles the re-send.
pub async fn enter_all(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    entries: Vec<(usize, LedgerUpdate)>,
) -> BTreeMap<usize, NotQueued> {
    stream::iter(entries)
        .map(|(index, entry)| async move {
            let result = dynamodb
                .update_item()
                .table_name(table)
                .key("idempotency_key", AttributeValue::S(entry.key.clone()))
                .update_expression(entry.update)
                .condition_expression(entry.condition)
                .set_expression_attribute_names(Some(names(&entry.names)))
                .set_expression_attribute_values(Some(values(&entry.values)))
                .send()
                .await;
            match result {
                Ok(_) => None,
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    None
                }
                Err(error) => {
                    let retryable = classify_aws_code(error.code()) == ErrorClass::Retryable;
                    let reason = format!(
                        "the ledger did not take the record ({})",
                        DisplayErrorContext(&error)
                            .to_string()
                            .chars()
                            .take(200)
                            .collect::<String>()
                    );
                    Some((index, NotQueued { reason, retryable }))
                }
            }
        })
        .buffer_unordered(CONCURRENT_WRITES)
        .filter_map(|refused| async move { refused })
        .collect()
        .await
}

/// Withdraws the entries of records that were not queued, so the ledger holds no record
/// the caller was told was not accepted. A withdrawal that fails leaves the entry, which
/// the reconciler then re-drives: the record is synced once rather than lost.
pub async fn withdraw_all(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    withdrawals: Vec<LedgerDelete>,
) {
    stream::iter(withdrawals)
        .for_each_concurrent(CONCURRENT_WRITES, |withdrawal| async move {
            let result = dynamodb
                .delete_item()
                .table_name(table)
                .key("idempotency_key", AttributeValue::S(withdrawal.key.clone()))
                .condition_expression(withdrawal.condition)
                .set_expression_attribute_names(Some(names(&withdrawal.names)))
                .set_expression_attribute_values(Some(values(&withdrawal.values)))
                .send()
                .await;
            if let Err(error) = result {
                let taken = error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception());
                if !taken {
                    tracing::warn!(error = %DisplayErrorContext(&error), "could not withdraw the ledger entry of a record that was not queued; the reconciler will send it");
                }
            }
        })
        .await;
}
