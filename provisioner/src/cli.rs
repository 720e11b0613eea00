//! Command-line interface: every subcommand, its arguments and its help text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Renders, validates, packages, deploys and operates the data-sync platform on AWS.
///
/// Results go to stdout (`--output json` for machines); progress and logs go to stderr.
///
/// Exit codes: 0 success (or no changes), 1 failure, 2 bad arguments,
/// 3 validation failed, 4 refused by the stateful guard, 5 changes present
/// (`plan --detailed-exitcode`), 6 locked by another deploy, 7 wrong AWS account,
/// 8 release older than the running one, 9 promotion refused (source not healthy),
/// 10 needs confirmation (no terminal, no --yes), 11 declined at the prompt,
/// 12 rolled back, 13 drift found, 14 unhealthy (`status --detailed-exitcode`),
/// 130 interrupted (Ctrl-C).
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
    /// Render and validate an environment's templates: the built-in checks, the policy rules
    /// of `stacks/policies/*.guard` (waivers listed), then cfn-lint.
    Lint(LintArgs),
    /// Build every function for Lambda's provided.al2023 runtime and zip it
    /// deterministically (`build/functions/`).
    Build(BuildArgs),
    /// Work with releases: `publish` the checkout once, `list` and `show` published
    /// ones. Without a subcommand, writes the checkout's manifest to build/release.json.
    Release(ReleaseArgs),
    /// Deploy the bootstrap stack of an environment's account and region: the artifact
    /// bucket, the deployments table (lock, state, history) and the CloudFormation
    /// execution role every change set runs with. Once per account and region.
    Bootstrap(BootstrapArgs),
    /// Deploy a release to an environment under its lock: `--release <id>` takes
    /// everything from the published bundle; without it the checkout is published as a
    /// release first. Per stack a change set, its diff, the stateful guard,
    /// confirmation, execution with live events; the attempt is recorded in the history.
    Deploy(DeployArgs),
    /// Show what `deploy` would change (change sets computed, then deleted). Writes
    /// nothing: no upload, no lock, no history.
    Plan(PlanArgs),
    /// Deploy the release one environment runs (or a named one that ran there) to
    /// another, unchanged, once the source is healthy.
    Promote(PromoteArgs),
    /// Put the previous successful release back (functions and infrastructure
    /// together), or the one `--to` names, through the ordinary deploy path; recorded
    /// in the history as a rollback.
    Rollback(RollbackArgs),
    /// Send one signed synthetic record through the deployed pipeline, time each hop
    /// (ingest, worker and records table, downstream where observable), and remove it.
    Probe(ProbeArgs),
    /// Check that the credentials in use can deploy an environment: identity and
    /// account, region, the bootstrap stack and its outputs, and every permission the
    /// deploy path needs (IAM policy simulation where the endpoint has it). Exit 1 when
    /// anything is missing.
    Doctor(DoctorArgs),
    /// An environment's deployment history: every deploy attempt, promotion and broken
    /// lock, newest first.
    History(HistoryArgs),
    /// Break an environment's deploy lock (a deploy that died holding it), recorded in
    /// the history.
    Unlock(UnlockArgs),
    /// List an environment's stacks: status, deployed release, last update, outputs.
    Status(StatusArgs),
    /// Delete an environment's stacks, dependents first.
    Destroy(DestroyArgs),
    /// End an environment in four phases, each behind a measured gate and recorded in
    /// the history, resumable: 1 stop-traffic (ingest answers 410, the schedule stops;
    /// gate: no ingest invocation over the quiet window, queue and dead-letter queue
    /// empty, nothing in flight in the ledger), 2 remove-compute (observability and
    /// compute stacks), 3 hold (gate: the hold window passed, or --force-window --reason;
    /// an export taken after traffic stopped verifies against the live tables),
    /// 4 remove-data (data, messaging, security, network; what deletion policies keep is
    /// listed, retained tables and queues deleted with --delete-retained). Asks for the
    /// environment's name typed back (CI: --confirm <env>). Exits 4 while a gate refuses.
    Decommission(DecommissionArgs),
    /// Detect drift on every stack of an environment (CloudFormation DetectStackDrift):
    /// the resources changed outside CloudFormation, property by property, expected
    /// against actual. Exits 13 when anything drifted.
    Drift(DriftArgs),
    /// Get an environment's stacks out of stuck CloudFormation states, under its lock:
    /// UPDATE_ROLLBACK_FAILED is rolled back further (ContinueUpdateRollback; `--skip`
    /// for resources that cannot be), an operation left running by an interrupted deploy
    /// is waited for (`--cancel` cancels an update), a new stack left in
    /// ROLLBACK_COMPLETE is deleted once confirmed. Settled stacks are left alone.
    Recover(RecoverArgs),
    /// The dead-letter queue: `peek` shows what waits there (source, record id,
    /// version, receive count, the ledger's reason), without taking it off the queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Move dead-lettered messages back to the records queue, losing none (deleted from
    /// the dead-letter queue only once the records queue holds them); counts before and
    /// after. Safe to run twice and while the pipeline runs.
    Redrive(RedriveArgs),
    /// Send ledger items that ended FAILED (or wait in RETRY) through the pipeline again,
    /// after fixing the downstream or a mapping: each item taken once (a conditional
    /// update), its body sent to the records queue. Safe to run twice and while the
    /// pipeline runs.
    Replay(ReplayArgs),
    /// An environment's data: `export` the records table and the ledger to the artifact
    /// bucket with per-source counts and checksums, `verify` an export against live
    /// tables (exit 1 naming each source that differs), `import` one into another
    /// environment. Together, the region-migration path and the decommission gate.
    #[command(subcommand)]
    Data(DataCommand),
    /// Run the whole platform on this machine: start the emulator, deploy every stack to
    /// it, and host the functions in the foreground until Ctrl-C.
    Up(UpArgs),
    /// Work with the platform running locally: send records, stop what `up` started.
    #[command(subcommand)]
    Local(LocalCommand),
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Export the records table and the ledger (gzip JSON Lines and a manifest).
    Export(DataExportArgs),
    /// Check an export's files, then compare it with live tables, source by source.
    Verify(DataVerifyArgs),
    /// Load an export into an environment's tables (idempotent).
    Import(DataImportArgs),
}

#[derive(Debug, Args)]
pub struct DataExportArgs {
    /// Environment whose tables to export.
    #[arg(long, value_name = "ENV")]
    pub env: String,
}

#[derive(Debug, Args)]
pub struct DataVerifyArgs {
    /// Environment the export was taken from (its bucket holds it).
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// The export's id, as `data export` printed it (e.g. 20261201T155500Z).
    #[arg(long, value_name = "ID")]
    pub export: String,
    /// Compare with this environment's live tables instead (after an import).
    #[arg(long, value_name = "ENV")]
    pub against_env: Option<String>,
    /// AWS profile whose credentials read --against-env (another account).
    #[arg(long, value_name = "PROFILE", requires = "against_env")]
    pub against_profile: Option<String>,
}

#[derive(Debug, Args)]
pub struct DataImportArgs {
    /// Environment whose tables to load the export into.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// The export's id.
    #[arg(long, value_name = "ID")]
    pub export: String,
    /// Environment the export was taken from (default: --env itself, which needs --yes).
    #[arg(long, value_name = "ENV")]
    pub from_env: Option<String>,
    /// AWS profile whose credentials read the export (--from-env in another account).
    #[arg(long, value_name = "PROFILE")]
    pub from_profile: Option<String>,
    /// Import into the environment the export came from, overwriting its live items
    /// with the export's.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show dead-lettered messages (no payload unless `--show-payload`).
    Peek(DlqPeekArgs),
}

#[derive(Debug, Args)]
pub struct DlqPeekArgs {
    /// Environment whose dead-letter queue to read.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Show at most this many messages (1-1000).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    /// Also show each message's body, personal fields included.
    #[arg(long)]
    pub show_payload: bool,
}

/// Ledger states `replay` takes items from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayState {
    /// Ended with a permanent failure (its reason in the ledger).
    #[value(name = "FAILED")]
    Failed,
    /// Waiting for a retry after a retryable failure (held back by its backoff).
    #[value(name = "RETRY")]
    Retry,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Environment whose ledger to replay from.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Which items: FAILED or RETRY.
    #[arg(long, value_enum)]
    pub state: ReplayState,
    /// Only items of this source (e.g. hris).
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// Only items last changed since then: an RFC 3339 time (2026-12-01T00:00:00Z) or a
    /// duration back from now (24h).
    #[arg(long, value_name = "TIME|DURATION")]
    pub since: Option<String>,
    /// Replay at most this many items.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Count what would be replayed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// Environment whose dead-letter queue to move back.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Move at most this many messages (default: all).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Count what would move; move nothing.
    #[arg(long)]
    pub dry_run: bool,
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
    /// Run only the built-in checks and the policy rules, even when cfn-lint is installed.
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
#[command(args_conflicts_with_subcommands = true)]
pub struct ReleaseArgs {
    #[command(subcommand)]
    pub command: Option<ReleaseCommand>,
    /// The artifact index `provisioner build` wrote.
    #[arg(long, value_name = "DIR", default_value = "build/functions")]
    pub artifacts: PathBuf,
    /// Where to write the manifest.
    #[arg(long, value_name = "FILE", default_value = "build/release.json")]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Publish the checkout as a release to the environment's artifact bucket, once:
    /// the same content again is a no-op, different content under an existing id is
    /// refused.
    Publish(PublishArgs),
    /// List the releases published to the environment's artifact bucket, oldest first.
    List(ReleaseEnvArgs),
    /// Show one published release's manifest.
    Show(ReleaseShowArgs),
    /// Tag the releases no environment runs or ran among its last `--keep` as
    /// expirable, so the bucket's lifecycle rule removes them.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Environment whose artifact bucket to prune (every environment sharing the
    /// bucket keeps its releases).
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Releases of each environment's history to keep.
    #[arg(long, default_value_t = 10)]
    pub keep: usize,
    /// Only say what would be tagged.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Environment whose artifact bucket receives the release.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Build the functions first (otherwise the zips of the last `provisioner build`).
    #[arg(long)]
    pub build: bool,
    /// The artifact index `provisioner build` wrote.
    #[arg(long, value_name = "DIR", default_value = "build/functions")]
    pub artifacts: PathBuf,
    /// Publish a tree with uncommitted changes to a non-emulated environment.
    #[arg(long)]
    pub allow_dirty: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseEnvArgs {
    /// Environment whose artifact bucket to read.
    #[arg(long, value_name = "ENV")]
    pub env: String,
}

#[derive(Debug, Args)]
pub struct ReleaseShowArgs {
    /// Environment whose artifact bucket to read.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// The release id (`provisioner release list` shows them).
    #[arg(value_name = "RELEASE")]
    pub release: String,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// An environment of the account and region to bootstrap.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Execute the change set without asking (for CI).
    #[arg(long)]
    pub yes: bool,
}

/// What `deploy` and `plan` share.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Environment to work on.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Let the change set remove or replace this stateful resource, as
    /// <stack>/<LogicalId> (e.g. data/RecordsTable; a bare LogicalId matches it in any
    /// stack). Repeat for several.
    #[arg(long, value_name = "STACK/LOGICAL_ID")]
    pub allow_replace: Vec<String>,
    /// Build the functions first (otherwise the zips of the last `provisioner build`).
    #[arg(long)]
    pub build: bool,
    /// The artifact index `provisioner build` wrote.
    #[arg(long, value_name = "DIR", default_value = "build/functions")]
    pub artifacts: PathBuf,
    /// A published release to take everything from (zips, templates, the environment's
    /// configuration) instead of the checkout.
    #[arg(long, value_name = "RELEASE", conflicts_with = "build")]
    pub release: Option<String>,
    /// Use a tree with uncommitted changes for a non-emulated environment.
    #[arg(long)]
    pub allow_dirty: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub change: ChangeArgs,
    /// Execute change sets without asking (for CI). Without a terminal and without
    /// this flag, nothing is executed.
    #[arg(long)]
    pub yes: bool,
    /// Deploy a release older than the one the environment runs.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Wait this long for another deploy's lock (e.g. 10m); by default fail at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub lock_timeout: Duration,
    /// Execute exactly the change sets of this plan file (`plan --release <id> --out
    /// <file>`), refusing if any stack changed since it was made.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["release", "build", "allow_dirty"])]
    pub plan: Option<PathBuf>,
    /// After the last stack settles, watch the environment's alarms this long (e.g.
    /// 15m); an alarm entering ALARM rolls back to the previous release (exit 12).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub bake: Option<Duration>,
    /// Run the end-to-end probe at the start of the bake; a failed probe rolls back too.
    #[arg(long, requires = "bake")]
    pub probe: bool,
    /// How long the bake's probe waits for its record at each hop.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s", requires = "probe")]
    pub probe_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The environment whose release to promote.
    #[arg(long, value_name = "ENV")]
    pub from: String,
    /// The environment to deploy it to.
    #[arg(long, value_name = "ENV")]
    pub to: String,
    /// A release that ran successfully in the source (default: the one it runs).
    #[arg(long, value_name = "RELEASE")]
    pub release: Option<String>,
    /// The release must have run in the source at least this long (e.g. 2h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub soak: Duration,
    /// Probe the source first and refuse when the probe fails.
    #[arg(long)]
    pub probe: bool,
    /// With --probe: give up on a hop of the probe after this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub probe_timeout: Duration,
    /// AWS profile whose credentials read the source environment (default: the same
    /// credentials as the target).
    #[arg(long, value_name = "PROFILE")]
    pub from_profile: Option<String>,
    /// Let the change set remove or replace this stateful resource, as
    /// <stack>/<LogicalId> (e.g. data/RecordsTable). Repeat for several.
    #[arg(long, value_name = "STACK/LOGICAL_ID")]
    pub allow_replace: Vec<String>,
    /// Execute change sets without asking (for CI).
    #[arg(long)]
    pub yes: bool,
    /// Wait this long for another deploy's lock of the target.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub lock_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Environment to roll back.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// The release to go back to (default: the one before the running release in the
    /// environment's history).
    #[arg(long, value_name = "RELEASE")]
    pub to: Option<String>,
    /// Let the change set remove or replace this stateful resource, as
    /// <stack>/<LogicalId> (e.g. data/RecordsTable). Repeat for several.
    #[arg(long, value_name = "STACK/LOGICAL_ID")]
    pub allow_replace: Vec<String>,
    /// Execute change sets without asking (for CI).
    #[arg(long)]
    pub yes: bool,
    /// Wait this long for another deploy's lock.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub lock_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Environment to probe.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Give up on a hop after this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Environment to check.
    #[arg(long, value_name = "ENV")]
    pub env: String,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Environment whose history to list.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// At most this many entries, newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Environment whose deploy lock to break.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Why (recorded in the history).
    #[arg(long)]
    pub reason: String,
    /// Break a lock whose lease is still being renewed (its holder looks alive).
    #[arg(long)]
    pub force: bool,
}

pub use crate::config::types::parse_duration;

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub change: ChangeArgs,
    /// Exit 5 when there are changes to deploy, 0 when there are none.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Keep the change sets and record them in this file, for `deploy --plan` to
    /// execute exactly them (needs --release: a plan is of a published release).
    #[arg(long, value_name = "FILE", requires = "release")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Environment to inspect.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Exit 14 when any stack is missing or not in a settled, healthy state
    /// (CREATE_COMPLETE, UPDATE_COMPLETE, UPDATE_ROLLBACK_COMPLETE or IMPORT_COMPLETE).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct DecommissionArgs {
    /// Environment to decommission.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Print every phase and its gates (the next phase's measured now) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The environment's name, typed back ahead of time (for CI, where no terminal asks).
    #[arg(long, value_name = "ENV")]
    pub confirm: Option<String>,
    /// End the hold window now instead of at its end (recorded with --reason, caller
    /// and time in the history).
    #[arg(long, requires = "reason")]
    pub force_window: bool,
    /// Why the hold window is ended early.
    #[arg(long, value_name = "TEXT", requires = "force_window")]
    pub reason: Option<String>,
    /// The export the hold's gate verifies (default: the environment's newest).
    #[arg(long, value_name = "ID")]
    pub export: Option<String>,
    /// After the verified export, also delete the tables and queues that deletion
    /// policies keep.
    #[arg(long)]
    pub delete_retained: bool,
    /// Stop after this phase (run again without it to go on).
    #[arg(long, value_enum, value_name = "PHASE")]
    pub until: Option<crate::ops::decommission::Phase>,
    /// How long to wait for another command's deploy lock.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub lock_timeout: Duration,
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
pub struct DriftArgs {
    /// Environment whose stacks to check.
    #[arg(long, value_name = "ENV")]
    pub env: String,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Environment whose stacks to recover.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Skip this resource when continuing a failed rollback (ResourcesToSkip): a
    /// logical id that failed to roll back, or `stack/LogicalId`. Repeat for several.
    /// CloudFormation then marks it rolled back without touching it.
    #[arg(long, value_name = "LOGICAL_ID")]
    pub skip: Vec<String>,
    /// Cancel an update in progress (CancelUpdateStack) instead of waiting for it.
    #[arg(long)]
    pub cancel: bool,
    /// Delete a stack left in ROLLBACK_COMPLETE without asking (for CI).
    #[arg(long)]
    pub yes: bool,
    /// Wait this long for another deploy's lock.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub lock_timeout: Duration,
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
