//! The `ci:` section of an environment: which GitHub repository may deploy, through
//! which OIDC identity provider, and from which GitHub environment or branch. The
//! bootstrap stack turns it into the deploy role's trust policy, so every value is
//! checked here before it can widen who may assume that role.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::types::invalid;

/// The issuer of GitHub Actions' OIDC tokens (the provider's URL without `https://`).
pub const GITHUB_OIDC_HOST: &str = "token.actions.githubusercontent.com";
/// The audience `aws-actions/configure-aws-credentials` asks GitHub's tokens for.
pub const GITHUB_OIDC_AUDIENCE: &str = "sts.amazonaws.com";

/// How CI deploys this environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ci {
    pub github: GitHub,
    /// The GitHub environment or branch whose workflow runs may assume this
    /// environment's deploy role; without it the environment has no deploy role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_from: Option<DeployFrom>,
    /// The GitHub environments or branches whose runs may read this environment to
    /// promote what it runs into another account (`promote --from <this env>
    /// --from-profile ...`): the bootstrap stack gives them a read-only role,
    /// `<app>-<env>-promotion-source`. Needs `deploy_from`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotion_readers: Vec<DeployFrom>,
}

/// The repository whose workflows deploy the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHub {
    pub owner: GitHubOwner,
    pub repo: GitHubRepo,
    /// `create` (the bootstrap stack creates the account's GitHub OIDC provider) or the
    /// ARN of the one the account already has (an account holds one per issuer).
    pub oidc_provider: OidcProvider,
}

macro_rules! checked_string {
    ($(#[$meta:meta])* $name:ident, $check:path) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

checked_string!(
    /// A GitHub user or organization name.
    GitHubOwner,
    check_owner
);
checked_string!(
    /// A GitHub repository name (without the owner).
    GitHubRepo,
    check_repo
);

fn check_owner(value: &str) -> Result<(), String> {
    let ok = (1..=39).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
        && !value.contains("--");
    if ok {
        return Ok(());
    }
    Err(invalid(
        format!("`{value}` is not a GitHub owner name"),
        "write the user or organization as GitHub spells it in the repository's URL: \
         1-39 letters, digits or single hyphens, not starting or ending with a hyphen \
         (e.g. owner: example-org)",
    ))
}

fn check_repo(value: &str) -> Result<(), String> {
    let ok = (1..=100).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value != "."
        && value != "..";
    if ok {
        return Ok(());
    }
    Err(invalid(
        format!("`{value}` is not a GitHub repository name"),
        "write the repository's name alone, without the owner or `.git`: 1-100 letters, \
         digits, `-`, `_` or `.` (e.g. repo: datasync)",
    ))
}

/// `create`, or the ARN of an existing GitHub OIDC provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum OidcProvider {
    Create,
    Existing(String),
}

impl OidcProvider {
    /// The account id in an existing provider's ARN.
    pub fn existing_account(&self) -> Option<&str> {
        match self {
            Self::Create => None,
            Self::Existing(arn) => arn.split(':').nth(4),
        }
    }
}

impl TryFrom<String> for OidcProvider {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value == "create" {
            return Ok(Self::Create);
        }
        let parts: Vec<&str> = value.split(':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && matches!(parts[1], "aws" | "aws-cn" | "aws-us-gov")
            && parts[2] == "iam"
            && parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5] == format!("oidc-provider/{GITHUB_OIDC_HOST}");
        if ok {
            return Ok(Self::Existing(value));
        }
        Err(invalid(
            format!("`{value}` is neither `create` nor the ARN of a GitHub OIDC provider"),
            format!(
                "write `create` to have the bootstrap stack create it, or the existing \
                 provider's ARN: arn:aws:iam::<account id>:oidc-provider/{GITHUB_OIDC_HOST}"
            ),
        ))
    }
}

impl From<OidcProvider> for String {
    fn from(value: OidcProvider) -> String {
        match value {
            OidcProvider::Create => "create".to_string(),
            OidcProvider::Existing(arn) => arn,
        }
    }
}

/// What a workflow run must come from to assume the deploy role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeployFrom {
    /// A job that names this GitHub environment (`environment: prod`), with whatever
    /// protection rules (reviewers, branches) the environment has.
    Environment(String),
    /// A job running on a push to this branch, outside any GitHub environment.
    Branch(String),
}

impl DeployFrom {
    /// The OIDC token's `sub` claim such a run carries, for `owner/repo`.
    pub fn subject(&self, owner: &GitHubOwner, repo: &GitHubRepo) -> String {
        match self {
            Self::Environment(name) => format!("repo:{owner}/{repo}:environment:{name}"),
            Self::Branch(name) => format!("repo:{owner}/{repo}:ref:refs/heads/{name}"),
        }
    }
}

const DEPLOY_FROM_HELP: &str = "write `environment:<GitHub environment>` (e.g. \
     deploy_from: environment:prod) or `branch:<branch>` (e.g. deploy_from: branch:main); \
     names are letters, digits, `.`, `_`, `-` (and `/` in branches), without wildcards";

impl TryFrom<String> for DeployFrom {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let Some((kind, name)) = value.split_once(':') else {
            return Err(invalid(
                format!("`{value}` does not say whether it is a GitHub environment or a branch"),
                DEPLOY_FROM_HELP,
            ));
        };
        let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        match kind {
            "environment" => {
                if (1..=255).contains(&name.len()) && name.bytes().all(plain) {
                    return Ok(Self::Environment(name.to_string()));
                }
                Err(invalid(
                    format!("`{name}` is not a usable GitHub environment name"),
                    DEPLOY_FROM_HELP,
                ))
            }
            "branch" => {
                let ok = (1..=255).contains(&name.len())
                    && name.bytes().all(|b| plain(b) || b == b'/')
                    && !name.starts_with(['/', '-', '.'])
                    && !name.ends_with(['/', '.'])
                    && !name.contains("..")
                    && !name.contains("//");
                if ok {
                    return Ok(Self::Branch(name.to_string()));
                }
                Err(invalid(
                    format!("`{name}` is not a usable branch name"),
                    DEPLOY_FROM_HELP,
                ))
            }
            other => Err(invalid(
                format!("`{other}:` in `{value}` is neither `environment:` nor `branch:`"),
                DEPLOY_FROM_HELP,
            )),
        }
    }
}

impl From<DeployFrom> for String {
    fn from(value: DeployFrom) -> String {
        match value {
            DeployFrom::Environment(name) => format!("environment:{name}"),
            DeployFrom::Branch(name) => format!("branch:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(s: &str) -> GitHubOwner {
        GitHubOwner::try_from(s.to_string()).expect("owner")
    }
    fn repo(s: &str) -> GitHubRepo {
        GitHubRepo::try_from(s.to_string()).expect("repo")
    }

    #[test]
    fn deploy_from_becomes_the_token_subject_of_that_environment_or_branch() {
        let env = DeployFrom::try_from("environment:prod".to_string()).expect("env");
        assert_eq!(
            env.subject(&owner("example-org"), &repo("datasync")),
            "repo:example-org/datasync:environment:prod"
        );
        let branch = DeployFrom::try_from("branch:release/v2".to_string()).expect("branch");
        assert_eq!(
            branch.subject(&owner("example-org"), &repo("datasync")),
            "repo:example-org/datasync:ref:refs/heads/release/v2"
        );
    }

    #[test]
    fn wildcards_and_malformed_values_are_refused_with_the_fix() {
        for bad in [
            "prod",
            "environment:",
            "environment:pr*d",
            "branch:*",
            "branch:main/",
            "branch:a..b",
            "tag:v1",
        ] {
            let error = DeployFrom::try_from(bad.to_string()).expect_err(bad);
            assert!(
                error.contains("\nhelp: write `environment:"),
                "{bad}: {error}"
            );
        }
        for bad in ["-org", "org-", "a--b", "has space", "x/y", ""] {
            assert!(GitHubOwner::try_from(bad.to_string()).is_err(), "{bad}");
        }
        for bad in ["x/y", "..", "a*", "", "repo.git "] {
            assert!(GitHubRepo::try_from(bad.to_string()).is_err(), "{bad}");
        }
        for bad in [
            "arn:aws:iam::123456789012:oidc-provider/example.com",
            "arn:aws:iam::1234:oidc-provider/token.actions.githubusercontent.com",
            "existing",
        ] {
            let error = OidcProvider::try_from(bad.to_string()).expect_err(bad);
            assert!(error.contains("write `create`"), "{bad}: {error}");
        }
        let arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com";
        let existing = OidcProvider::try_from(arn.to_string()).expect("arn");
        assert_eq!(existing.existing_account(), Some("123456789012"));
    }
}
