//! The provisioner library: everything the `provisioner` binary does, callable in-process.
//!
//! Data flows `environments/<env>.yaml` -> [`config`] (typed, validated) -> [`render`]
//! (one typed context per stack, tera templates from `stacks/`, checks on the output).

pub mod cli;
pub mod commands;
pub mod config;
pub mod deploy;
pub mod error;
pub mod exit;
pub mod local;
pub mod logging;
pub mod ops;
pub mod output;
pub mod package;
pub mod project;
pub mod release;
pub mod render;

use std::io::Write;

use cli::{Cli, Command, DataCommand, DlqCommand, EnvCommand, LocalCommand};
use error::Error;
use exit::Exit;

/// Runs one command. Results are written to `out`; progress and logs go to stderr.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<Exit, Error> {
    let project = project::Project::locate(cli.global.root.as_deref())?;
    let format = cli.global.output;
    match cli.command {
        Command::Env(EnvCommand::List) => commands::env::list(&project, format, out),
        Command::Env(EnvCommand::Show { env }) => commands::env::show(&project, &env, format, out),
        Command::Env(EnvCommand::Diff { a, b }) => {
            commands::env::diff(&project, &a, &b, format, out)
        }
        Command::Render(args) => commands::render::run(&project, &args, format, out),
        Command::Lint(args) => commands::lint::run(&project, &args, format, out),
        Command::Build(args) => commands::build::run(&project, &args, format, out),
        Command::Release(args) => commands::release::run(&project, &args, format, out),
        Command::Bootstrap(args) => commands::bootstrap::run(&project, &args, format, out),
        Command::Deploy(args) => commands::deploy::run(&project, &args, format, out),
        Command::Promote(args) => commands::promote::run(&project, &args, format, out),
        Command::Rollback(args) => commands::rollback::run(&project, &args, format, out),
        Command::Probe(args) => commands::probe::run(&project, &args, format, out),
        Command::Doctor(args) => commands::doctor::run(&project, &args, format, out),
        Command::History(args) => commands::history::run(&project, &args, format, out),
        Command::Unlock(args) => commands::unlock::run(&project, &args, format, out),
        Command::Plan(args) => commands::plan::run(&project, &args, format, out),
        Command::Status(args) => commands::status::run(&project, &args, format, out),
        Command::Destroy(args) => commands::destroy::run(&project, &args, format, out),
        Command::Decommission(args) => commands::decommission::run(&project, &args, format, out),
        Command::Drift(args) => commands::drift::run(&project, &args, format, out),
        Command::Recover(args) => commands::recover::run(&project, &args, format, out),
        Command::Dlq(DlqCommand::Peek(args)) => commands::dlq::peek(&project, &args, format, out),
        Command::Redrive(args) => commands::dlq::redrive(&project, &args, format, out),
        Command::Replay(args) => commands::replay::run(&project, &args, format, out),
        Command::Data(DataCommand::Export(args)) => {
            commands::data::export(&project, &args, format, out)
        }
        Command::Data(DataCommand::Verify(args)) => {
            commands::data::verify(&project, &args, format, out)
        }
        Command::Data(DataCommand::Import(args)) => {
            commands::data::import(&project, &args, format, out)
        }
        Command::Up(args) => commands::up::run(&project, &args, format, out),
        Command::Local(LocalCommand::Send(args)) => {
            commands::local::send(&project, &args, format, out)
        }
        Command::Local(LocalCommand::Down(args)) => {
            commands::local::down(&project, &args, format, out)
        }
    }
}
