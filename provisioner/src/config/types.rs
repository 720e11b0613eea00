//! Newtypes for the values an environment names: each parses and checks itself, so a
//! bad value is reported at its key with what is wrong and how to fix it.
//!
//! Parse errors are `"<what is wrong>\nhelp: <the fix>"`, split apart by the loader.

use std::fmt;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// A message with its fix, in the form the loader splits.
pub(super) fn invalid(message: impl fmt::Display, help: impl fmt::Display) -> String {
    format!("{message}\nhelp: {help}")
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident, $check:path) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                $check(&value)?;
                Ok(Self(value))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// A 12-digit AWS account id (quoted in YAML so leading zeros survive).
    AccountId,
    check_account_id
);
string_newtype!(
    /// An AWS region code such as `eu-west-1`.
    Region,
    check_region
);
string_newtype!(
    /// The application name: the first part of every resource name.
    AppName,
    check_app_name
);
string_newtype!(
    /// An `http(s)://host[:port]` URL.
    HttpUrl,
    check_http_url
);
string_newtype!(
    /// An EventBridge schedule expression: `rate(N unit)` or `cron(...)`.
    Schedule,
    check_schedule
);
string_newtype!(
    /// An e-mail address for alarm notifications.
    Email,
    check_email
);
string_newtype!(
    /// A length of time: `90s`, `15m`, `2h`, `7d` (or a number of seconds).
    DurationText,
    check_duration
);

impl DurationText {
    pub fn duration(&self) -> std::time::Duration {
        parse_duration(&self.0).unwrap_or_default()
    }
}

fn check_duration(value: &str) -> Result<(), String> {
    parse_duration(value)
        .map(drop)
        .map_err(|message| invalid(message, "write a number and a unit, e.g. 15m or 7d"))
}

/// `90s`, `10m`, `2h`, `7d` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration: give a number and a unit, e.g. 90s, 10m, 2h or 7d")
    })?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "`{other}` is not a duration unit: use s, m, h or d (e.g. 10m)"
            ))
        }
    };
    number
        .checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is too long a duration"))
}

fn check_account_id(value: &str) -> Result<(), String> {
    if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    Err(invalid(
        format!("`{value}` is not an AWS account id: it must be exactly 12 digits"),
        "write the account id as a quoted 12-digit string, e.g. account_id: \"012345678901\"",
    ))
}

/// Region codes CloudFormation deploys to (commercial, GovCloud and China partitions).
pub const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

fn check_region(value: &str) -> Result<(), String> {
    if KNOWN_REGIONS.contains(&value) {
        return Ok(());
    }
    let help = match crate::config::suggest::closest(value, KNOWN_REGIONS.iter().copied()) {
        Some(near) => format!("did you mean `{near}`?"),
        None => "use a region code such as `eu-west-1` or `us-east-1`".to_string(),
    };
    Err(invalid(
        format!("`{value}` is not an AWS region code"),
        help,
    ))
}

fn check_app_name(value: &str) -> Result<(), String> {
    let valid = !value.is_empty()
        && value.len() <= 20
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && !value.ends_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        return Ok(());
    }
    Err(invalid(
        format!("`{value}` is not a valid app name"),
        "use 1-20 lower-case letters, digits and hyphens, starting with a letter \
         (it prefixes every resource name, S3 bucket names included)",
    ))
}

fn check_http_url(value: &str) -> Result<(), String> {
    let help = "write a URL such as https://host.example.com/path or http://127.0.0.1:5056";
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| invalid(format!("`{value}` is not an http(s) URL"), help))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|port| port > 0));
    if !host_ok || !port_ok || value.contains(char::is_whitespace) {
        return Err(invalid(format!("`{value}` is not a valid URL"), help));
    }
    Ok(())
}

impl HttpUrl {
    /// The TCP port the URL connects to.
    pub fn port(&self) -> u16 {
        let (default, rest) = match self.0.strip_prefix("https://") {
            Some(rest) => (443, rest),
            None => (80, self.0.trim_start_matches("http://")),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        authority
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or(default)
    }

    /// True when the URL points at this machine (127.0.0.0/8 or localhost).
    pub fn is_loopback(&self) -> bool {
        let rest = self
            .0
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = rest.split(['/', ':']).next().unwrap_or_default();
        host == "localhost" || host.starts_with("127.")
    }
}

impl Schedule {
    /// Seconds between two runs of a `rate(...)` schedule; `None` for a cron expression.
    pub fn interval_seconds(&self) -> Option<u64> {
        let inner = self.as_str().strip_prefix("rate(")?.strip_suffix(')')?;
        let mut parts = inner.split_whitespace();
        let count: u64 = parts.next()?.parse().ok()?;
        let unit = match parts.next()?.trim_end_matches('s') {
            "minute" => 60,
            "hour" => 3_600,
            "day" => 86_400,
            _ => return None,
        };
        Some(count * unit)
    }
}

fn check_schedule(value: &str) -> Result<(), String> {
    let help = "write `rate(5 minutes)`, `rate(1 hour)` or a six-field `cron(0/15 * * * ? *)`";
    if let Some(inner) = value
        .strip_prefix("rate(")
        .and_then(|v| v.strip_suffix(')'))
    {
        let mut parts = inner.split_whitespace();
        let (Some(count), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid(
                format!("`{value}` is not a valid rate expression"),
                help,
            ));
        };
        let Ok(count) = count.parse::<u32>() else {
            return Err(invalid(
                format!("`{value}`: `{count}` is not a whole number"),
                help,
            ));
        };
        let expected = if count == 1 {
            ["minute", "hour", "day"]
        } else {
            ["minutes", "hours", "days"]
        };
        if count == 0 || !expected.contains(&unit) {
            return Err(invalid(
                format!(
                    "`{value}`: a rate needs a positive count and a unit ({}) that agrees with it",
                    expected.join(", ")
                ),
                help,
            ));
        }
        return Ok(());
    }
    if let Some(inner) = value
        .strip_prefix("cron(")
        .and_then(|v| v.strip_suffix(')'))
    {
        if inner.split_whitespace().count() == 6 {
            return Ok(());
        }
        return Err(invalid(
            format!("`{value}`: a cron expression needs six fields (minutes hours day-of-month month day-of-week year)"),
            help,
        ));
    }
    Err(invalid(
        format!("`{value}` is not a schedule expression"),
        help,
    ))
}

fn check_email(value: &str) -> Result<(), String> {
    let valid = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    }) && !value.contains(char::is_whitespace);
    if valid {
        return Ok(());
    }
    Err(invalid(
        format!("`{value}` is not an e-mail address"),
        "write an address such as platform-alerts@example.com",
    ))
}

/// An IPv4 network in CIDR notation, in its canonical form (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(Ipv4Net);

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let help = "write an IPv4 network such as 10.20.0.0/16";
        let net: Ipv4Net = value
            .parse()
            .map_err(|_| invalid(format!("`{value}` is not an IPv4 CIDR block"), help))?;
        if net.trunc() != net {
            return Err(invalid(
                format!("`{value}` has host bits set"),
                format!("did you mean `{}`?", net.trunc()),
            ));
        }
        Ok(Self(net))
    }
}

impl From<Cidr> for String {
    fn from(value: Cidr) -> String {
        value.0.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Cidr {
    pub fn net(&self) -> Ipv4Net {
        self.0
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    pub fn contains(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0) || other.0.contains(&self.0)
    }
}
