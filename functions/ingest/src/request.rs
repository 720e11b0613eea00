//! Reading an API Gateway HTTP API (payload format 2.0) request: route, headers, body
//! and the records it carries.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::Engine;
use serde_json::Value;

/// Header carrying the correlation id.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// The route's source, if the path is `/integrations/{source}/records` (after any stage
/// prefix).
pub fn route_source(request: &ApiGatewayV2httpRequest) -> Option<String> {
    if let Some(source) = request.path_parameters.get("source") {
        return Some(source.clone());
    }
    let path = path(request)?;
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        [.., "integrations", source, "records"] if !source.is_empty() => {
            Some((*source).to_string())
        }
        _ => None,
    }
}

/// The request's path as the caller sent it (API Gateway's `rawPath`, with any stage
/// prefix, without the query string): what the signature covers.
pub fn path(request: &ApiGatewayV2httpRequest) -> Option<&str> {
    request
        .raw_path
        .as_deref()
        .or(request.request_context.http.path.as_deref())
}

/// A header's value as text.
pub fn header<'a>(request: &'a ApiGatewayV2httpRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// The caller's correlation id when it is usable (1-128 of `A-Z a-z 0-9 - _ . :`), else a
/// new one.
pub fn correlation_id(request: &ApiGatewayV2httpRequest) -> String {
    header(request, CORRELATION_HEADER)
        .map(str::trim)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Whether the content type is JSON (`application/json`, any parameters).
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The body's bytes (decoding base64 when API Gateway encoded it).
pub fn body_bytes(request: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, String> {
    let body = request.body.as_deref().unwrap_or_default();
    if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| "the body is flagged base64-encoded but does not decode".to_string())
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

/// The records of a parsed body: one record object, or `{"records": [...]}`.
pub fn records(body: Value) -> Result<Vec<Value>, String> {
    match body {
        Value::Object(mut object) if object.contains_key("records") => {
            match object.remove("records") {
                Some(Value::Array(records)) if records.is_empty() => {
                    Err("`records` is empty; send at least one record".to_string())
                }
                Some(Value::Array(records)) => Ok(records),
                _ => Err("`records` must be an array of record objects".to_string()),
            }
        }
        Value::Object(object) => Ok(vec![Value::Object(object)]),
        _ => Err("the body must be one record object or {\"records\": [...]}".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_source_is_read_from_path_parameters_or_the_raw_path() {
        let mut request = ApiGatewayV2httpRequest::default();
        request.raw_path = Some("/prod/integrations/crm/records".into());
        assert_eq!(route_source(&request).as_deref(), Some("crm"));
        request.raw_path = Some("/integrations/crm".into());
        assert_eq!(route_source(&request), None);
        request
            .path_parameters
            .insert("source".into(), "hris".into());
        assert_eq!(route_source(&request).as_deref(), Some("hris"));
    }

    #[test]
    fn json_content_types_with_parameters_are_json() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
    }

    #[test]
    fn bodies_are_one_record_or_a_records_array() {
        assert_eq!(records(json!({"id": 1})).unwrap().len(), 1);
        assert_eq!(
            records(json!({"records": [{"id": 1}, {"id": 2}]}))
                .unwrap()
                .len(),
            2
        );
        assert!(records(json!({"records": []}))
            .unwrap_err()
            .contains("empty"));
        assert!(records(json!({"records": {"id": 1}}))
            .unwrap_err()
            .contains("array"));
        assert!(records(json!([{"id": 1}]))
            .unwrap_err()
            .contains("one record object"));
    }

    #[test]
    fn unusable_correlation_ids_are_replaced() {
        let mut request = ApiGatewayV2httpRequest::default();
        request
            .headers
            .insert(CORRELATION_HEADER, "abc-123".parse().unwrap());
        assert_eq!(correlation_id(&request), "abc-123");
        request
            .headers
            .insert(CORRELATION_HEADER, "has spaces".parse().unwrap());
        assert_ne!(correlation_id(&request), "has spaces");
    }
}
