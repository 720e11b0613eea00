//! `provisioner unlock`: breaks an environment's deploy lock (left by a deploy that
//! died holding it) and records who broke it and why in the history.

use std::io::Write;

use crate::cli::{OutputFormat, UnlockArgs};
use crate::deploy::setup::runtime;
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::release::deployments::{or_not_bootstrapped, Deployments};
use crate::release::{identity, rollout};

pub fn run(
    project: &Project,
    args: &UnlockArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    if args.reason.trim().is_empty() {
        return Err(Error::Other {
            message: "--reason is empty".into(),
            help: "say why the lock may be broken (it is recorded in the history), e.g. \
                   --reason \"CI run 4211 was cancelled mid-deploy\""
                .into(),
        });
    }
    let (_, env) = rollout::locate(project, &args.env)?;
    let broken = runtime()?.block_on(async {
        let (clients, caller) = identity::connect_checked(&env, None).await?;
        let deployments = Deployments::new(
            clients.dynamodb.clone(),
            &env.names.bootstrap.deployments_table,
        );
        or_not_bootstrapped(
            deployments
                .break_lock(&env.name, &caller.arn, args.reason.trim(), args.force)
                .await,
            &env,
        )
    })?;
    let Some((holder, entry)) = broken else {
        match format {
            OutputFormat::Json => write_json(
                out,
                &serde_json::json!({"env": env.name, "unlocked": false}),
            )?,
            OutputFormat::Text => {
                write_text(out, &format!("{} is not locked; nothing to do", env.name))?
            }
        }
        return Ok(Exit::Success);
    };
    match format {
        OutputFormat::Json => write_json(
            out,
            &serde_json::json!({"env": env.name, "unlocked": true, "holder": holder, "history": entry}),
        )?,
        OutputFormat::Text => write_text(
            out,
            &format!(
                "broke the deploy lock of {} held by {}\n  recorded in the history as {}",
                env.name,
                holder.describe(),
                entry.id
            ),
        )?,
    }
    Ok(Exit::Success)
}
