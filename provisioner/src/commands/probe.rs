//! `provisioner probe`: one synthetic record through the deployed pipeline, each hop
//! timed ([`crate::ops::probe`]). Exit 0 when it went through, 1 naming the hop that
//! broke.

use std::io::Write;

use crate::cli::{OutputFormat, ProbeArgs};
use crate::deploy::setup::runtime;
use crate::error::Error;
use crate::exit::Exit;
use crate::ops::probe;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::release::{identity, rollout};

pub fn run(
    project: &Project,
    args: &ProbeArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let (_, env) = rollout::locate(project, &args.env)?;
    let report = runtime()?.block_on(async {
        let (clients, _) = identity::connect_checked(&env, None).await?;
        probe::probe(&clients, &env, args.timeout).await
    })?;
    match format {
        OutputFormat::Json => write_json(out, &report)?,
        OutputFormat::Text => write_text(out, report.to_text().trim_end())?,
    }
    if let Some(hop) = report.broken_hop() {
        eprintln!("error: the probe broke at `{}`: {}", hop.hop, hop.detail);
        return Ok(Exit::Failed);
    }
    Ok(Exit::Success)
}
