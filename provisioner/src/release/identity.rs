//! Who is calling: STS GetCallerIdentity before any write, the account guard that
//! refuses to touch an environment from another account, and one-line explanations of
//! the credential problems people actually hit (none found, expired, unknown profile)
//! instead of the SDK's nested error dump.

use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use crate::config::Environment;
use crate::error::{Error, Refusal};

/// The identity the credentials in use belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
}

/// What went wrong with the credentials, as a person would say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialProblem {
    NoCredentials,
    Expired,
    UnknownProfile,
    Invalid,
}

/// Calls STS GetCallerIdentity.
pub async fn caller_identity(sts: &aws_sdk_sts::Client) -> Result<CallerIdentity, Error> {
    match sts.get_caller_identity().send().await {
        Ok(output) => Ok(CallerIdentity {
            account: output.account().unwrap_or_default().to_string(),
            arn: output.arn().unwrap_or_default().to_string(),
        }),
        Err(error) => {
            let code = error.code().map(str::to_string);
            let text = DisplayErrorContext(&error).to_string();
            Err(credentials_error(code.as_deref(), &text))
        }
    }
}

/// Classifies an STS failure from its error code and its full error text.
pub fn classify(code: Option<&str>, text: &str) -> Option<CredentialProblem> {
    let lower = text.to_ascii_lowercase();
    match code {
        Some("ExpiredToken" | "ExpiredTokenException" | "RequestExpired") => {
            return Some(CredentialProblem::Expired)
        }
        Some(
            "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "SignatureDoesNotMatch"
            | "InvalidAccessKeyId",
        ) => return Some(CredentialProblem::Invalid),
        _ => {}
    }
    if lower.contains("profile")
        && (lower.contains("not defined")
            || lower.contains("could not find")
            || lower.contains("was not found"))
    {
        Some(CredentialProblem::UnknownProfile)
    } else if lower.contains("expired") || lower.contains("token has expired") {
        Some(CredentialProblem::Expired)
    } else if lower.contains("credentialsnotloaded")
        || lower.contains("no credentials")
        || lower.contains("no providers in chain")
        || lower.contains("failed to load credentials")
    {
        Some(CredentialProblem::NoCredentials)
    } else {
        None
    }
}

/// One line saying what is wrong with the credentials and how to fix it.
pub fn credentials_error(code: Option<&str>, text: &str) -> Error {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_default();
    let problem = match classify(code, text) {
        // The default chain passes over a profile it cannot find and then finds nothing.
        Some(CredentialProblem::NoCredentials)
            if !profile.is_empty() && !profile_defined(&profile) =>
        {
            Some(CredentialProblem::UnknownProfile)
        }
        other => other,
    };
    let (message, help) = match problem {
        Some(CredentialProblem::NoCredentials) => (
            "no AWS credentials found".to_string(),
            "set AWS_PROFILE to a profile of ~/.aws/config (then `aws sso login` for an SSO \
             profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), \
             or AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN in CI"
                .to_string(),
        ),
        Some(CredentialProblem::Expired) => (
            "the AWS credentials have expired".to_string(),
            if profile.is_empty() {
                "refresh them: `aws sso login` for an SSO profile, or new values for \
                 AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN"
                    .to_string()
            } else {
                format!("refresh them: `aws sso login --profile {profile}`")
            },
        ),
        Some(CredentialProblem::UnknownProfile) => (
            format!(
                "the AWS profile `{profile}` is not defined in ~/.aws/config or ~/.aws/credentials"
            ),
            "set AWS_PROFILE to a profile that exists (`aws configure list-profiles`), or \
             unset it to use the default chain"
                .to_string(),
        ),
        Some(CredentialProblem::Invalid) => (
            "AWS does not recognise the credentials in use (unknown access key or bad signature)"
                .to_string(),
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the profile in AWS_PROFILE"
                .to_string(),
        ),
        None => (
            format!(
                "could not ask STS who the caller is{}",
                code.map(|c| format!(" ({c})")).unwrap_or_default()
            ),
            "check the network and the region; `-vv` shows the requests".to_string(),
        ),
    };
    Error::Other { message, help }
}

/// True when the shared AWS files (`AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`, or
/// their defaults under `~/.aws/`) define `profile`.
pub fn profile_defined(profile: &str) -> bool {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |variable: &str, default: &str| {
        std::env::var_os(variable)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let sections = |path: Option<std::path::PathBuf>| -> Vec<String> {
        path.and_then(|p| std::fs::read_to_string(p).ok())
            .map(|text| {
                text.lines()
                    .filter_map(|line| {
                        let line = line.trim();
                        line.strip_prefix('[')?
                            .strip_suffix(']')
                            .map(|s| s.trim().to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let config = sections(file("AWS_CONFIG_FILE", "config"));
    let credentials = sections(file("AWS_SHARED_CREDENTIALS_FILE", "credentials"));
    config
        .iter()
        .any(|s| s == &format!("profile {profile}") || (profile == "default" && s == "default"))
        || credentials.iter().any(|s| s == profile)
}

/// Clients for `env` (credentials from the named `profile` when given), after checking
/// that they are for `env`'s account: what every command that touches an environment
/// starts with. Returns the caller too.
pub async fn connect_checked(
    env: &Environment,
    profile: Option<&str>,
) -> Result<(crate::deploy::clients::AwsClients, CallerIdentity), Error> {
    let clients = crate::deploy::clients::AwsClients::connect_with_profile(
        &crate::deploy::setup::target(env),
        profile,
    )
    .await;
    let caller = caller_identity(&clients.sts).await?;
    ensure_account(env, &caller)?;
    Ok((clients, caller))
}

/// Refuses when `identity` is not in `env`'s account.
pub fn ensure_account(env: &Environment, identity: &CallerIdentity) -> Result<(), Error> {
    let wanted = env.settings.account_id.as_str();
    if identity.account == wanted {
        return Ok(());
    }
    Err(Error::Refused {
        refusal: Refusal::WrongAccount,
        message: format!(
            "environment `{}` is in account {wanted}, but the credentials in use are for account {} ({})",
            env.name, identity.account, identity.arn
        ),
        help: format!(
            "use credentials for account {wanted} (e.g. AWS_PROFILE set to that account's \
             profile), or fix account_id in environments/{}.yaml",
            env.name
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_credential_problem_is_recognised() {
        assert_eq!(
            classify(None, "dispatch failure: other: the credential provider was not enabled: CredentialsNotLoaded(CredentialsNotLoaded { source: \"no providers in chain provided credentials\" })"),
            Some(CredentialProblem::NoCredentials)
        );
        assert_eq!(
            classify(
                Some("ExpiredToken"),
                "The security token included in the request is expired"
            ),
            Some(CredentialProblem::Expired)
        );
        assert_eq!(
            classify(
                None,
                "ProviderError: profile `nope` was not defined: could not find source profile"
            ),
            Some(CredentialProblem::UnknownProfile)
        );
        assert_eq!(
            classify(
                Some("InvalidClientTokenId"),
                "The security token included in the request is invalid"
            ),
            Some(CredentialProblem::Invalid)
        );
        assert_eq!(classify(Some("Throttling"), "Rate exceeded"), None);
    }
}
