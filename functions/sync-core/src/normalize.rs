//! Normalizers for single field values: text, e-mail, phone (E.164), date, timestamp and
//! enumerations. Each takes the JSON pointer (for error messages) and the raw value.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::Value;

use crate::record::{dotted, FieldError, FieldErrorCode};

/// Longest text value accepted.
pub const MAX_TEXT_CHARS: usize = 1024;

/// The result of normalizing one value.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalized {
    /// The normalized value.
    Value(Value),
    /// Absent, null or empty.
    Absent,
    /// Present but not normalizable without being wrong (a phone number that does not
    /// parse): kept unchanged among the unmapped attributes.
    KeptRaw(Value),
}

fn wrong_type(pointer: &str, expected: &str) -> FieldError {
    FieldError::new(
        pointer,
        FieldErrorCode::WrongType,
        format!("`{}` must be {expected}", dotted(pointer)),
    )
}

/// The trimmed string of a value; numbers are accepted as their decimal text.
fn trimmed<'a>(
    pointer: &str,
    value: Option<&'a Value>,
) -> Result<Option<std::borrow::Cow<'a, str>>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            // A character is at least one byte: only long texts need counting.
            if text.len() > MAX_TEXT_CHARS && text.chars().count() > MAX_TEXT_CHARS {
                return Err(FieldError::new(
                    pointer,
                    FieldErrorCode::TooLong,
                    format!(
                        "`{}` must be at most {MAX_TEXT_CHARS} characters",
                        dotted(pointer)
                    ),
                ));
            }
            Ok(Some(std::borrow::Cow::Borrowed(text)))
        }
        Some(Value::Number(number)) => Ok(Some(std::borrow::Cow::Owned(number.to_string()))),
        Some(_) => Err(wrong_type(pointer, "a string")),
    }
}

/// A trimmed string.
pub fn text(pointer: &str, value: Option<&Value>) -> Result<Normalized, FieldError> {
    Ok(match trimmed(pointer, value)? {
        Some(text) => Normalized::Value(Value::String(text.into_owned())),
        None => Normalized::Absent,
    })
}

/// A trimmed, lower-cased e-mail address with one `@` and a dotted domain.
pub fn email(pointer: &str, value: Option<&Value>) -> Result<Normalized, FieldError> {
    let Some(text) = trimmed(pointer, value)? else {
        return Ok(Normalized::Absent);
    };
    let address = text.to_lowercase();
    let valid = match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && address.len() <= 254
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !address.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if valid {
        Ok(Normalized::Value(Value::String(address)))
    } else {
        Err(FieldError::new(
            pointer,
            FieldErrorCode::InvalidEmail,
            format!(
                "`{}` is not an e-mail address (expected one `@` followed by a domain such as example.com)",
                dotted(pointer)
            ),
        ))
    }
}

/// A phone number in E.164 where it parses as a valid number (numbers without a country
/// code are read in `region`; a number given with its own `+` or `00` country code is read
/// with that country's rules only, never the default region's, whose national prefix
/// would otherwise be stripped from it); otherwise the raw value is kept aside.
pub fn phone(
    pointer: &str,
    value: Option<&Value>,
    region: Option<phonenumber::country::Id>,
) -> Result<Normalized, FieldError> {
    let Some(text) = trimmed(pointer, value)? else {
        return Ok(Normalized::Absent);
    };
    let international = text.starts_with('+') || text.starts_with("00");
    let region = if international { None } else { region };
    let digits_from_00;
    let text_to_parse = match text.strip_prefix("00") {
        Some(rest) => {
            digits_from_00 = format!("+{rest}");
            digits_from_00.as_str()
        }
        None => text.as_ref(),
    };
    match phonenumber::parse(region, text_to_parse) {
        Ok(number) if phonenumber::is_valid(&number) => Ok(Normalized::Value(Value::String(
            number.format().mode(phonenumber::Mode::E164).to_string(),
        ))),
        _ => Ok(Normalized::KeptRaw(Value::String(text.into_owned()))),
    }
}

/// An ISO-8601 calendar date (`2024-05-01`); an RFC 3339 timestamp gives its UTC date.
pub fn date(pointer: &str, value: Option<&Value>) -> Result<Normalized, FieldError> {
    let Some(text) = trimmed(pointer, value)? else {
        return Ok(Normalized::Absent);
    };
    if let Some(date) = plain_iso_date(&text) {
        // Already in its normal form: no need to format it again.
        return Ok(Normalized::Value(Value::String(date.to_string())));
    }
    let parsed = NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(&text)
                .ok()
                .map(|t| t.with_timezone(&Utc).date_naive())
        });
    match parsed {
        Some(date) => Ok(Normalized::Value(Value::String(
            date.format("%Y-%m-%d").to_string(),
        ))),
        None => Err(FieldError::new(
            pointer,
            FieldErrorCode::InvalidDate,
            format!(
                "`{}` must be an ISO-8601 date such as 2024-05-01",
                dotted(pointer)
            ),
        )),
    }
}

/// `text` when it is exactly `YYYY-MM-DD` and a real calendar date.
fn plain_iso_date(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(at, b)| at == 4 || at == 7 || b.is_ascii_digit());
    if !shaped {
        return None;
    }
    let year = text[..4].parse().ok()?;
    let month = text[5..7].parse().ok()?;
    let day = text[8..].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day).map(|_| text)
}

fn parse_instant(
    pointer: &str,
    value: Option<&Value>,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    let Some(text) = trimmed(pointer, value)? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(&text)
        .map(|instant| Some(instant.with_timezone(&Utc)))
        .map_err(|_| {
            FieldError::new(
                pointer,
                FieldErrorCode::InvalidTimestamp,
                format!(
                    "`{}` must be an RFC 3339 timestamp such as 2024-05-01T12:00:00Z",
                    dotted(pointer)
                ),
            )
        })
}

/// An RFC 3339 timestamp, normalized to UTC with milliseconds.
pub fn timestamp(pointer: &str, value: Option<&Value>) -> Result<Normalized, FieldError> {
    Ok(match parse_instant(pointer, value)? {
        Some(instant) => Normalized::Value(Value::String(
            instant.to_rfc3339_opts(SecondsFormat::Millis, true),
        )),
        None => Normalized::Absent,
    })
}

/// An RFC 3339 timestamp as microseconds since the Unix epoch (a source version).
pub fn timestamp_micros(pointer: &str, value: Option<&Value>) -> Result<u64, FieldError> {
    let invalid = || {
        FieldError::new(
            pointer,
            FieldErrorCode::InvalidTimestamp,
            format!(
                "`{}` must be an RFC 3339 timestamp after 1970 such as 2024-05-01T12:00:00Z",
                dotted(pointer)
            ),
        )
    };
    let instant = parse_instant(pointer, value)?.ok_or_else(invalid)?;
    u64::try_from(instant.timestamp_micros()).map_err(|_| invalid())
}

/// One of the mapping's canonical values, looked up case-insensitively.
pub fn enumerated(
    pointer: &str,
    value: Option<&Value>,
    lookup: Option<&BTreeMap<String, String>>,
) -> Result<Normalized, FieldError> {
    let Some(text) = trimmed(pointer, value)? else {
        return Ok(Normalized::Absent);
    };
    let canonical = lookup.and_then(|lookup| lookup.get(&text.to_lowercase()));
    match canonical {
        Some(canonical) => Ok(Normalized::Value(Value::String(canonical.clone()))),
        None => {
            let mut known: Vec<&str> = lookup
                .map(|lookup| lookup.keys().map(String::as_str).collect())
                .unwrap_or_default();
            known.sort_unstable();
            Err(FieldError::new(
                pointer,
                FieldErrorCode::UnknownValue,
                format!("`{}` must be one of: {}", dotted(pointer), known.join(", ")),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(normalized: Normalized) -> Value {
        match normalized {
            Normalized::Value(value) => value,
            other => panic!("expected a value, got {other:?}"),
        }
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        let normalized = email("/email", Some(&json!("  Ada.Lovelace@Example.COM "))).unwrap();
        assert_eq!(value(normalized), json!("ada.lovelace@example.com"));
    }

    #[test]
    fn bad_emails_are_refused_without_echoing_the_value() {
        for bad in [
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "a@b@c.com",
        ] {
            let error = email("/email", Some(&json!(bad))).unwrap_err();
            assert_eq!(error.code, FieldErrorCode::InvalidEmail, "{bad}");
            assert!(!error.message.contains(bad), "{}", error.message);
        }
    }

    #[test]
    fn phones_become_e164_with_the_default_region() {
        let us = Some(phonenumber::country::Id::US);
        let normalized = phone("/phone", Some(&json!("(415) 555-2671")), us).unwrap();
        assert_eq!(value(normalized), json!("+14155552671"));
        let normalized = phone("/phone", Some(&json!("+44 20 7946 0958")), us).unwrap();
        assert_eq!(value(normalized), json!("+442079460958"));
    }

    #[test]
    fn a_number_with_its_own_country_code_keeps_it_whatever_the_default_region() {
        // National parts starting with 1: a Paris landline, a German mobile, a Belgian
        // (Leuven) landline, a Dutch (Leiden) landline, read with a US default region,
        // whose national prefix is 1.
        let us = Some(phonenumber::country::Id::US);
        for (given, e164) in [
            ("+33 1 42 68 53 00", "+33142685300"),
            ("+49 151 23456789", "+4915123456789"),
            ("+32 16 31 03 11", "+3216310311"),
            ("+31 71 527 2727", "+31715272727"),
            ("0033 1 42 68 53 00", "+33142685300"),
        ] {
            let normalized = phone("/phone", Some(&json!(given)), us).unwrap();
            assert_eq!(normalized, Normalized::Value(json!(e164)), "{given}");
        }
    }

    #[test]
    fn an_unparseable_phone_is_kept_raw_not_refused() {
        let normalized = phone("/phone", Some(&json!("call reception")), None).unwrap();
        assert_eq!(normalized, Normalized::KeptRaw(json!("call reception")));
    }

    #[test]
    fn dates_and_timestamps_are_iso_8601() {
        assert_eq!(
            value(date("/d", Some(&json!("2021-03-04"))).unwrap()),
            json!("2021-03-04")
        );
        assert_eq!(
            value(date("/d", Some(&json!("2021-03-04T23:30:00-02:00"))).unwrap()),
            json!("2021-03-05")
        );
        assert_eq!(
            date("/d", Some(&json!("04/03/2021"))).unwrap_err().code,
            FieldErrorCode::InvalidDate
        );
        assert_eq!(
            value(timestamp("/t", Some(&json!("2024-05-01T14:00:00+02:00"))).unwrap()),
            json!("2024-05-01T12:00:00.000Z")
        );
    }

    #[test]
    fn plain_dates_are_checked_against_the_calendar() {
        for (raw, expected) in [
            ("2024-02-29", Some("2024-02-29")),
            ("2021-9-4", Some("2021-09-04")),
            ("2023-02-29", None),
            ("2021-13-01", None),
            ("2021-00-10", None),
            ("2021-01-32", None),
            ("2021-01-0x", None),
        ] {
            let normalized = date("/d", Some(&json!(raw)));
            match expected {
                Some(expected) => assert_eq!(value(normalized.unwrap()), json!(expected), "{raw}"),
                None => assert_eq!(
                    normalized.unwrap_err().code,
                    FieldErrorCode::InvalidDate,
                    "{raw}"
                ),
            }
        }
    }

    #[test]
    fn versions_from_timestamps_grow_with_time() {
        let earlier = timestamp_micros("/u", Some(&json!("2024-05-01T12:00:00Z"))).unwrap();
        let later = timestamp_micros("/u", Some(&json!("2024-05-01T12:00:00.000001Z"))).unwrap();
        assert_eq!(later - earlier, 1);
        assert_eq!(
            timestamp_micros("/u", Some(&json!("1969-12-31T00:00:00Z")))
                .unwrap_err()
                .code,
            FieldErrorCode::InvalidTimestamp
        );
    }

    #[test]
    fn enums_map_spellings_case_insensitively_and_list_known_values() {
        let lookup: BTreeMap<String, String> = [
            ("a".to_string(), "active".to_string()),
            ("t".to_string(), "terminated".to_string()),
        ]
        .into();
        assert_eq!(
            value(enumerated("/s", Some(&json!(" A ")), Some(&lookup)).unwrap()),
            json!("active")
        );
        let error = enumerated("/s", Some(&json!("x")), Some(&lookup)).unwrap_err();
        assert_eq!(error.code, FieldErrorCode::UnknownValue);
        assert!(error.message.contains("a, t"), "{}", error.message);
    }

    #[test]
    fn empty_strings_are_absent_and_objects_are_the_wrong_type() {
        assert_eq!(text("/x", Some(&json!("   "))).unwrap(), Normalized::Absent);
        assert_eq!(
            text("/x", Some(&json!({"a": 1}))).unwrap_err().code,
            FieldErrorCode::WrongType
        );
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(
            text("/x", Some(&json!(long))).unwrap_err().code,
            FieldErrorCode::TooLong
        );
    }
}
