//! The provisioner library: everything the `provisioner` binary does, callable in-process.
//!
//! Data flows `environments/<env>.yaml` -> [`config`] (typed, validated) -> [`render`]
//! (one typed context per stack, tera templates from `stacks/`, checks on the output).

pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod exit;
pub mod logging;
pub mod output;
pub mod project;
pub mod render;

use std::io::Write;

use cli::{Cli, Command, EnvCommand};
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
    }
}
