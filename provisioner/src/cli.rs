//! Command-line interface: every subcommand, its arguments and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Renders, validates, packages, deploys and operates the data-sync platform on AWS.
///
/// Results go to stdout (`--output json` for machines); progress and logs go to stderr.
///
/// Exit codes: 0 success (or no changes), 1 failure, 2 bad arguments,
/// 3 validation failed, 4 refused by a safety guard, 5 changes present
/// (`plan --detailed-exitcode`).
#[derive(Debug, Parser)]
#[command(name = "provisioner", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Repository root (the directory holding `environments/` and `stacks/`).
    /// Defaults to the nearest parent of the current directory that has both.
    #[arg(long, global = true, env = "PROVISIONER_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Result format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// More logging on stderr (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned, human-readable text.
    Text,
    /// One JSON document with stable keys.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect environments: list them, show one resolved, compare two.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Render every stack of an environment to CloudFormation templates.
    Render(RenderArgs),
    /// Render and validate an environment's templates (render checks, then cfn-lint).
    Lint(LintArgs),
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// List the environments defined under `environments/`.
    List,
    /// Print an environment's resolved configuration (after `extends`).
    Show {
        /// Environment name (a file `environments/<ENV>.yaml`).
        env: String,
    },
    /// Show which resolved settings differ between two environments.
    Diff {
        /// First environment.
        a: String,
        /// Second environment.
        b: String,
    },
}

/// Which environments a command applies to.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct EnvSelection {
    /// Environment to work on.
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Every environment under `environments/`.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub selection: EnvSelection,
    /// Output directory: `<DIR>/<stack>.yaml` for one environment,
    /// `<DIR>/<env>/<stack>.yaml` with `--all`.
    #[arg(long, value_name = "DIR", default_value = "build")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    #[command(flatten)]
    pub selection: EnvSelection,
    /// Run only the built-in checks, even when cfn-lint is installed.
    #[arg(long, conflicts_with = "require_cfn_lint")]
    pub no_cfn_lint: bool,
    /// Fail when cfn-lint is not installed instead of running only the built-in checks.
    #[arg(long)]
    pub require_cfn_lint: bool,
}
