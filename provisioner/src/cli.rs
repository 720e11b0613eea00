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
    /// Build every function for Lambda's provided.al2023 runtime and zip it
    /// deterministically (`build/functions/`).
    Build(BuildArgs),
    /// Write the release manifest: git revision, function zip digests, template digests
    /// per environment.
    Release(ReleaseArgs),
    /// Deploy an environment: upload artifacts, then per stack a change set, its diff,
    /// the stateful guard, confirmation, execution with live events.
    Deploy(DeployArgs),
    /// Show what `deploy` would change (change sets computed, then deleted).
    Plan(PlanArgs),
    /// List an environment's stacks: status, deployed release, last update, outputs.
    Status(StatusArgs),
    /// Delete an environment's stacks, dependents first.
    Destroy(DestroyArgs),
    /// Run the whole platform on this machine: start the emulator, deploy every stack to
    /// it, and host the functions in the foreground until Ctrl-C.
    Up(UpArgs),
    /// Work with the platform running locally: send records, stop what `up` started.
    #[command(subcommand)]
    Local(LocalCommand),
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

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build the architectures this environment uses (default: those of every environment).
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Where zips and the artifact index go.
    #[arg(long, value_name = "DIR", default_value = "build/functions")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The artifact index `provisioner build` wrote.
    #[arg(long, value_name = "DIR", default_value = "build/functions")]
    pub artifacts: PathBuf,
    /// Where to write the manifest.
    #[arg(long, value_name = "FILE", default_value = "build/release.json")]
    pub out: PathBuf,
}

/// What `deploy` and `plan` share.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Environment to work on.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Let the change set remove or replace this stateful resource (logical id, e.g.
    /// RecordsTable). Repeat for several.
    #[arg(long, value_name = "LOGICAL_ID")]
    pub allow_replace: Vec<String>,
    /// Build the functions first (otherwise the zips of the last `provisioner build`).
    #[arg(long)]
    pub build: bool,
    /// The artifact index `provisioner build` wrote.
    #[arg(long, value_name = "DIR", default_value = "build/functions")]
    pub artifacts: PathBuf,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub change: ChangeArgs,
    /// Execute change sets without asking (for CI). Without a terminal and without
    /// this flag, nothing is executed.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub change: ChangeArgs,
    /// Exit 5 when there are changes to deploy, 0 when there are none.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Environment to inspect.
    #[arg(long, value_name = "ENV")]
    pub env: String,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Environment whose stacks to delete.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Delete without asking (for CI). Without a terminal and without this flag,
    /// nothing is deleted.
    #[arg(long)]
    pub yes: bool,
    /// Go ahead although resources kept by their DeletionPolicy (tables, queues, keys,
    /// log groups) will outlive their stacks.
    #[arg(long)]
    pub accept_retained: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Environment to run (it must have endpoint_url and function_host).
    #[arg(long, value_name = "ENV", default_value = "local")]
    pub env: String,
    /// Deploy the zips of the last build instead of building the functions first.
    #[arg(long)]
    pub no_build: bool,
    /// Where the function zips and their index are.
    #[arg(long, value_name = "DIR", default_value = "build/functions")]
    pub artifacts: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Sign a feed of records and post it to the local ingest route.
    Send(LocalSendArgs),
    /// Stop what `provisioner up` started (function host, emulator), and nothing else.
    Down(LocalDownArgs),
}

#[derive(Debug, Args)]
pub struct LocalSendArgs {
    /// A JSON array of records, `{"records": [...]}`, one record, or JSON Lines.
    pub file: PathBuf,
    /// The source system (hris, crm); by default the first word of the file name.
    #[arg(long)]
    pub source: Option<String>,
    /// Records per request (default 100; at most the environment's
    /// api.max_records_per_request).
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long, value_name = "ENV", default_value = "local")]
    pub env: String,
}

#[derive(Debug, Args)]
pub struct LocalDownArgs {
    #[arg(long, value_name = "ENV", default_value = "local")]
    pub env: String,
}
