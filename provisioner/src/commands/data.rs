//! `provisioner data export|verify|import`: an environment's tables exported with
//! per-source counts and checksums, verified against live tables, imported elsewhere
//! ([`crate::ops::data`]). Each environment touched is account-checked first.

use std::io::Write;

use crate::cli::{DataExportArgs, DataImportArgs, DataVerifyArgs, OutputFormat};
use crate::config::Environment;
use crate::deploy::clients::AwsClients;
use crate::deploy::setup::runtime;
use crate::error::{Error, Refusal};
use crate::exit::Exit;
use crate::ops::data;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::release::deployments::Deployments;
use crate::release::{identity, rollout};

/// Clients for `env` (with a named profile's credentials when given), its account
/// checked.
async fn checked(env: &Environment, profile: Option<&str>) -> Result<AwsClients, Error> {
    Ok(identity::connect_checked(env, profile).await?.0)
}

pub fn export(
    project: &Project,
    args: &DataExportArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let (_, env) = rollout::locate(project, &args.env)?;
    let manifest = runtime()?.block_on(async {
        let clients = checked(&env, None).await?;
        let release = Deployments::new(
            clients.dynamodb.clone(),
            &env.names.bootstrap.deployments_table,
        )
        .state_if_bootstrapped(&env.name)
        .await?
        .and_then(|state| state.release);
        data::export(&clients, &env, release).await
    })?;
    match format {
        OutputFormat::Json => write_json(out, &manifest)?,
        OutputFormat::Text => {
            let mut text = format!(
                "exported {} as {} to s3://{}/exports/{}/{}/\n",
                manifest.env, manifest.id, manifest.bucket, manifest.env, manifest.id
            );
            for (role, table) in &manifest.tables {
                text.push_str(&format!("  {role:<8} {} item(s)", table.total.items));
                for (source, tally) in &table.per_source {
                    text.push_str(&format!(", {source} {}", tally.items));
                }
                text.push('\n');
            }
            write_text(out, text.trim_end())?;
        }
    }
    Ok(Exit::Success)
}

pub fn verify(
    project: &Project,
    args: &DataVerifyArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    data::check_id(&args.export)?;
    let (_, env) = rollout::locate(project, &args.env)?;
    let against = match &args.against_env {
        Some(name) => Some(rollout::locate(project, name)?.1),
        None => None,
    };
    let report = runtime()?.block_on(async {
        let clients = checked(&env, None).await?;
        let manifest = data::read_manifest(
            &clients,
            &env.names.bootstrap.artifact_bucket,
            &env.name,
            &args.export,
        )
        .await?;
        match &against {
            Some(other) => {
                let other_clients = checked(other, args.against_profile.as_deref()).await?;
                data::verify(&clients, &manifest, &other_clients, other).await
            }
            None => data::verify(&clients, &manifest, &clients, &env).await,
        }
    })?;
    match format {
        OutputFormat::Json => write_json(out, &report)?,
        OutputFormat::Text => write_text(out, report.to_text().trim_end())?,
    }
    if report.differing.is_empty() {
        Ok(Exit::Success)
    } else {
        eprintln!(
            "error: the live tables of {} differ from export {} in {}",
            report.against,
            report.export,
            report.differing.join(", ")
        );
        Ok(Exit::Failed)
    }
}

pub fn import(
    project: &Project,
    args: &DataImportArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    data::check_id(&args.export)?;
    let (_, into) = rollout::locate(project, &args.env)?;
    let from = match &args.from_env {
        Some(name) => rollout::locate(project, name)?.1,
        None => into.clone(),
    };
    if from.name == into.name && !args.yes {
        return Err(Error::Refused {
            refusal: Refusal::NeedsConfirmation,
            message: format!(
                "importing export {} into `{}`, the environment it came from, overwrites its \
                 live items with the export's",
                args.export, into.name
            ),
            help: "pass --yes to restore it on purpose, or --from-env <env> to import another \
                   environment's export"
                .into(),
        });
    }
    let report = runtime()?.block_on(async {
        let from_clients = checked(&from, args.from_profile.as_deref()).await?;
        let manifest = data::read_manifest(
            &from_clients,
            &from.names.bootstrap.artifact_bucket,
            &from.name,
            &args.export,
        )
        .await?;
        let into_clients = checked(&into, None).await?;
        data::import(&from_clients, &manifest, &into_clients, &into).await
    })?;
    match format {
        OutputFormat::Json => write_json(out, &report)?,
        OutputFormat::Text => write_text(
            out,
            &format!(
                "imported export {} into {}: {} (ledger items still on their way, not \
                 imported: {})",
                report.export,
                report.env,
                report
                    .written
                    .iter()
                    .map(|(role, n)| format!("{role} {n} item(s)"))
                    .collect::<Vec<_>>()
                    .join(", "),
                report.skipped.get("ledger").copied().unwrap_or(0)
            ),
        )?,
    }
    Ok(Exit::Success)
}
