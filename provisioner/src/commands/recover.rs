//! `provisioner recover`: gets an environment's stacks out of stuck CloudFormation
//! states (a failed rollback, an interrupted update, a failed first create) under the
//! environment's lock; see [`crate::ops::recover`].

use std::io::{BufRead, Write};

use crate::cli::{OutputFormat, RecoverArgs};
use crate::error::Error;
use crate::exit::Exit;
use crate::ops::recover::{self, Request};
use crate::output::{write_json, write_text};
use crate::project::Project;

fn ask(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok()
        && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

pub fn run(
    project: &Project,
    args: &RecoverArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let request = Request {
        env: args.env.clone(),
        skip: args.skip.clone(),
        cancel: args.cancel,
        yes: args.yes,
        lock_timeout: args.lock_timeout,
    };
    let recovery = match recover::run(project, &request, out, &mut ask)? {
        Ok(recovery) => recovery,
        Err(exit) => return Ok(exit),
    };
    match format {
        OutputFormat::Json => write_json(
            out,
            &serde_json::json!({"env": args.env, "settled": recovery.all_settled(), "stacks": recovery.stacks}),
        )?,
        OutputFormat::Text => write_text(out, recovery.to_text().trim_end())?,
    }
    Ok(recovery.exit())
}
