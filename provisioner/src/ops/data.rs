//! An environment's data, exported, verified and imported: the gate for decommissioning
//! and the path to another region.
//!
//! `data export` scans the records table and the ledger page by page into gzip-compressed
//! JSON Lines (one item per line, in DynamoDB's typed JSON, so every number and binary
//! value comes back exactly), uploaded to the artifact bucket under
//! `exports/<env>/<id>/` with a manifest: per table and per source the item count and an
//! order-independent checksum (the XOR of each item's sha256 over its canonical line),
//! the sha256 of each file, the export time and the release the environment ran.
//! `data verify` checks an export against itself (file digests, counts, checksums: a
//! tampered export is named as such) and then against the live tables of the
//! environment or of another one, naming every source that differs. `data import` loads
//! an export into another environment's tables (BatchWriteItem, retried until every item
//! is written); importing twice writes the same items again, so it is idempotent. Ledger
//! items still on their way in the exported environment are not imported (the other
//! environment's reconciler would send them again), and a verify against another
//! environment compares the ledger's settled items only. Everything streams: memory does
//! not grow with the table. The checks find damaged or edited files; the manifest itself
//! is trusted as the bucket's content, as release manifests are.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::Environment;
use crate::deploy::clients::AwsClients;
use crate::deploy::DeployError;
use crate::error::Error;

/// The export format this provisioner writes and reads.
pub const FORMAT: u32 = 1;

/// The tables an export holds, by role.
pub const TABLES: [&str; 2] = ["records", "ledger"];

/// Count and checksum of a set of items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub items: u64,
    /// Hex of the XOR of every item's sha256.
    #[serde(with = "hex_digest")]
    pub checksum: [u8; 32],
}

mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(digest: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(digest))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a checksum is 64 hex digits"))
    }
}

impl Tally {
    fn add(&mut self, line: &str) {
        self.items += 1;
        let digest = Sha256::digest(line.as_bytes());
        for (acc, byte) in self.checksum.iter_mut().zip(digest.iter()) {
            *acc ^= byte;
        }
    }
}

/// One table of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableExport {
    /// The table's name in the exported environment.
    pub table: String,
    /// The file's key in the bucket.
    pub key: String,
    /// The sha256 of the compressed file.
    pub sha256: String,
    pub total: Tally,
    pub per_source: BTreeMap<String, Tally>,
}

/// An export's manifest (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportManifest {
    pub format: u32,
    pub id: String,
    pub env: String,
    pub bucket: String,
    pub created_at: String,
    /// The release the environment ran when exported.
    pub release: Option<String>,
    pub tables: BTreeMap<String, TableExport>,
}

/// How one source compares between an export and live tables.
#[derive(Debug, Clone, Serialize)]
pub struct SourceParity {
    pub table: String,
    pub source: String,
    pub exported: Tally,
    pub live: Tally,
    pub same: bool,
}

/// What `data verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub export: String,
    /// The environment whose live tables were compared.
    pub against: String,
    pub sources: Vec<SourceParity>,
    /// `table/source` of every difference.
    pub differing: Vec<String>,
}

impl VerifyReport {
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "export {} against the live tables of {}: {}\n",
            self.export,
            self.against,
            if self.differing.is_empty() {
                "identical".to_string()
            } else {
                format!("DIFFERENT ({})", self.differing.join(", "))
            }
        );
        for s in &self.sources {
            text.push_str(&format!(
                "  {:<8} {:<10} exported {:>8}  live {:>8}  {}\n",
                s.table,
                s.source,
                s.exported.items,
                s.live.items,
                if s.same { "same" } else { "DIFFERS" }
            ));
        }
        text
    }
}

/// What `data import` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub export: String,
    pub env: String,
    /// Items written per table (role).
    pub written: BTreeMap<String, u64>,
    /// Ledger items left out because they were still on their way (accepted, in
    /// progress, waiting for a retry) in the exported environment.
    pub skipped: BTreeMap<String, u64>,
}

fn aws<E>(
    action: String,
    error: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> Error
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    Error::from(DeployError::aws(action, error))
}

/// The live table of `role` in `env`.
fn table_name(env: &Environment, role: &str) -> String {
    match role {
        "records" => env.names.records_table.clone(),
        _ => env.names.ledger_table.clone(),
    }
}

/// The source of an item: its `source` attribute, else the part of its key before `#`.
fn source_of(item: &BTreeMap<String, Value>) -> String {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.get("S"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    text("source")
        .or_else(|| {
            text("pk")
                .or_else(|| text("idempotency_key"))
                .and_then(|k| k.split_once('#').map(|(s, _)| s.to_string()))
        })
        .unwrap_or_else(|| "(none)".into())
}

/// DynamoDB's typed JSON of a value, with map keys sorted (canonical).
pub fn to_json(value: &AttributeValue) -> Value {
    let sorted = |map: &std::collections::HashMap<String, AttributeValue>| {
        let ordered: BTreeMap<&String, Value> = map.iter().map(|(k, v)| (k, to_json(v))).collect();
        Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
    };
    let b64 = |b: &aws_sdk_dynamodb::primitives::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    let one = |tag: &str, v: Value| Value::Object([(tag.to_string(), v)].into_iter().collect());
    match value {
        AttributeValue::S(s) => one("S", Value::String(s.clone())),
        AttributeValue::N(n) => one("N", Value::String(n.clone())),
        AttributeValue::B(b) => one("B", b64(b)),
        AttributeValue::Bool(b) => one("BOOL", Value::Bool(*b)),
        AttributeValue::Null(_) => one("NULL", Value::Bool(true)),
        AttributeValue::M(m) => one("M", sorted(m)),
        AttributeValue::L(l) => one("L", Value::Array(l.iter().map(to_json).collect())),
        AttributeValue::Ss(v) => one("SS", Value::Array(sorted_strings(v))),
        AttributeValue::Ns(v) => one("NS", Value::Array(sorted_strings(v))),
        AttributeValue::Bs(v) => one("BS", Value::Array(v.iter().map(b64).collect())),
        _ => one("NULL", Value::Bool(true)),
    }
}

fn sorted_strings(values: &[String]) -> Vec<Value> {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.into_iter().map(Value::String).collect()
}

/// The value typed JSON describes, or why it describes none.
pub fn from_json(value: &Value) -> Result<AttributeValue, String> {
    let object = value
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| format!("not a typed value: {value}"))?;
    let (tag, inner) = object.iter().next().ok_or("empty typed value")?;
    let text = || {
        inner
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{tag} holds a string"))
    };
    let strings = || {
        inner
            .as_array()
            .ok_or_else(|| format!("{tag} holds a list"))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or(format!("{tag} holds strings"))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let blob = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(aws_sdk_dynamodb::primitives::Blob::new)
            .map_err(|e| format!("bad base64: {e}"))
    };
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(text()?),
        "N" => AttributeValue::N(text()?),
        "B" => AttributeValue::B(blob(&text()?)?),
        "BOOL" => AttributeValue::Bool(inner.as_bool().ok_or("BOOL holds true or false")?),
        "NULL" => AttributeValue::Null(true),
        "M" => AttributeValue::M(
            inner
                .as_object()
                .ok_or("M holds an object")?
                .iter()
                .map(|(k, v)| Ok((k.clone(), from_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        "L" => AttributeValue::L(
            inner
                .as_array()
                .ok_or("L holds a list")?
                .iter()
                .map(from_json)
                .collect::<Result<_, _>>()?,
        ),
        "SS" => AttributeValue::Ss(strings()?),
        "NS" => AttributeValue::Ns(strings()?),
        "BS" => AttributeValue::Bs(
            strings()?
                .iter()
                .map(|s| blob(s))
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(format!("unknown type tag `{other}`")),
    })
}

/// One item as its canonical line, and the line's typed JSON.
fn item_line(
    item: &std::collections::HashMap<String, AttributeValue>,
) -> (String, BTreeMap<String, Value>) {
    let typed: BTreeMap<String, Value> =
        item.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
    let line = serde_json::to_string(&typed).unwrap_or_default();
    (line, typed)
}

/// Scans `table` page by page, calling `each` with every item's canonical line.
async fn scan(
    clients: &AwsClients,
    table: &str,
    mut each: impl FnMut(String, BTreeMap<String, Value>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut start = None;
    loop {
        let page = clients
            .dynamodb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|error| aws(format!("Scan {table}"), &error))?;
        for item in page.items() {
            let (line, typed) = item_line(item);
            each(line, typed)?;
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return Ok(());
        }
    }
}

/// Tallies of `table`'s live items that `keep` keeps, per source.
async fn live_tallies(
    clients: &AwsClients,
    table: &str,
    keep: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> Result<BTreeMap<String, Tally>, Error> {
    let mut per_source: BTreeMap<String, Tally> = BTreeMap::new();
    scan(clients, table, |line, typed| {
        if keep(&typed) {
            per_source.entry(source_of(&typed)).or_default().add(&line);
        }
        Ok(())
    })
    .await?;
    Ok(per_source)
}

fn io(action: &str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        action: action.into(),
        path: path.to_path_buf(),
        source,
    }
}

fn file_sha256(path: &Path) -> Result<String, Error> {
    let mut file = std::fs::File::open(path).map_err(|e| io("read", path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| io("read", path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// An export id: the UTC time it was taken.
pub fn new_id() -> String {
    let now = crate::release::deployments::now();
    // `2026-12-01T15:55:00.123Z` -> `20261201T155500Z`
    let digits: String = now
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("{digits}Z")
}

/// Checks an export id's shape, so a typo is named before any request.
pub fn check_id(id: &str) -> Result<(), Error> {
    let ok = id.len() == 16
        && id.as_bytes()[8] == b'T'
        && id.ends_with('Z')
        && id[..8].chars().all(|c| c.is_ascii_digit())
        && id[9..15].chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::Other {
            message: format!("`{id}` is not an export id (they look like 20261201T155500Z)"),
            help: "`provisioner data export` prints the id of the export it took".into(),
        })
    }
}

fn prefix(env: &str, id: &str) -> String {
    format!("exports/{env}/{id}")
}

/// Exports `env`'s tables into its artifact bucket; `release` is what it runs.
pub async fn export(
    clients: &AwsClients,
    env: &Environment,
    release: Option<String>,
) -> Result<ExportManifest, Error> {
    let id = new_id();
    let bucket = env.names.bootstrap.artifact_bucket.clone();
    let dir =
        tempfile::tempdir().map_err(|e| io("create a directory for", Path::new("(temp)"), e))?;
    let mut tables = BTreeMap::new();
    for role in TABLES {
        let table = table_name(env, role);
        let path = dir.path().join(format!("{role}.jsonl.gz"));
        let file = std::fs::File::create(&path).map_err(|e| io("create", &path, e))?;
        let mut encoder = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(file),
            flate2::Compression::default(),
        );
        let mut total = Tally::default();
        let mut per_source: BTreeMap<String, Tally> = BTreeMap::new();
        scan(clients, &table, |line, typed| {
            total.add(&line);
            per_source.entry(source_of(&typed)).or_default().add(&line);
            encoder
                .write_all(line.as_bytes())
                .and_then(|()| encoder.write_all(b"\n"))
                .map_err(|e| io("write", &path, e))
        })
        .await?;
        encoder
            .finish()
            .and_then(|mut w| w.flush())
            .map_err(|e| io("write", &path, e))?;
        let sha256 = file_sha256(&path)?;
        let key = format!("{}/{role}.jsonl.gz", prefix(&env.name, &id));
        let body = ByteStream::from_path(&path)
            .await
            .map_err(|e| Error::Other {
                message: format!("could not read {}: {e}", path.display()),
                help: String::new(),
            })?;
        crate::release::store::put(
            &clients.s3,
            &bucket,
            &key,
            body,
            "application/gzip",
            &sha256,
        )
        .await?;
        tables.insert(
            role.to_string(),
            TableExport {
                table,
                key,
                sha256,
                total,
                per_source,
            },
        );
    }
    let manifest = ExportManifest {
        format: FORMAT,
        id: id.clone(),
        env: env.name.clone(),
        bucket: bucket.clone(),
        created_at: crate::release::deployments::now(),
        release,
        tables,
    };
    let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let sha256 = hex::encode(Sha256::digest(&text));
    crate::release::store::put(
        &clients.s3,
        &bucket,
        &format!("{}/manifest.json", prefix(&env.name, &id)),
        ByteStream::from(text),
        "application/json",
        &sha256,
    )
    .await?;
    Ok(manifest)
}

/// The ids of `env_name`'s exports in `bucket`, oldest first (ids sort by time).
pub async fn list_exports(
    clients: &AwsClients,
    bucket: &str,
    env_name: &str,
) -> Result<Vec<String>, Error> {
    let prefix = format!("exports/{env_name}/");
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        let page = clients
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&prefix)
            .delimiter("/")
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|error| aws(format!("ListObjectsV2 s3://{bucket}/{prefix}"), &error))?;
        ids.extend(page.common_prefixes().iter().filter_map(|p| {
            let id = p.prefix()?.strip_prefix(&prefix)?.trim_end_matches('/');
            check_id(id).is_ok().then(|| id.to_string())
        }));
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    ids.sort();
    Ok(ids)
}

/// Reads export `id` of environment `env_name` from `env`'s artifact bucket.
pub async fn read_manifest(
    clients: &AwsClients,
    bucket: &str,
    env_name: &str,
    id: &str,
) -> Result<ExportManifest, Error> {
    check_id(id)?;
    let key = format!("{}/manifest.json", prefix(env_name, id));
    let output = clients
        .s3
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .map_err(|error| {
            if error.as_service_error().is_some_and(|e| e.is_no_such_key()) {
                Error::Other {
                    message: format!("no export {id} of `{env_name}` in s3://{bucket}/{key}"),
                    help: format!(
                        "take one with `provisioner data export --env {env_name}`, or check the id"
                    ),
                }
            } else {
                aws(format!("GetObject s3://{bucket}/{key}"), &error)
            }
        })?;
    let bytes = output
        .body
        .collect()
        .await
        .map_err(|e| Error::Other {
            message: format!("could not read s3://{bucket}/{key}: {e}"),
            help: String::new(),
        })?
        .into_bytes();
    let manifest: ExportManifest = serde_json::from_slice(&bytes).map_err(|e| Error::Other {
        message: format!("s3://{bucket}/{key} is not an export manifest: {e}"),
        help: "the export is damaged; take a new one".into(),
    })?;
    if manifest.format != FORMAT {
        return Err(Error::Other {
            message: format!(
                "export {id} has format {}; this provisioner reads format {FORMAT}",
                manifest.format
            ),
            help: "use the provisioner version that took it".into(),
        });
    }
    Ok(manifest)
}

/// One exported item: its canonical line and its typed JSON.
type ExportedItem = (String, BTreeMap<String, Value>);

/// One table file of an export, downloaded and checked (sha256, then its items against
/// the manifest's counts and checksums). The file lives as long as this value.
struct CheckedTable {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    /// Tallies per source of the items `compare` keeps (all of them by default).
    compared: BTreeMap<String, Tally>,
}

impl CheckedTable {
    /// The file's items, one typed JSON object per line.
    fn items(&self) -> Result<impl Iterator<Item = Result<ExportedItem, String>>, Error> {
        let file = std::fs::File::open(&self.path).map_err(|e| io("read", &self.path, e))?;
        let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
        Ok(reader.lines().enumerate().map(|(number, line)| {
            let line = line.map_err(|e| format!("it does not decompress: {e}"))?;
            let typed: BTreeMap<String, Value> = serde_json::from_str(&line)
                .map_err(|e| format!("line {} is not an item: {e}", number + 1))?;
            Ok((line, typed))
        }))
    }
}

/// Ledger states whose items mean the same in any environment. Items still on their way
/// (accepted, in progress, waiting for a retry) belong to the exported environment's
/// queue: imported elsewhere, that environment's reconciler would send them again.
const SETTLED_LEDGER_STATES: [&str; 2] = ["COMPLETED", "FAILED"];

fn settled(role: &str, item: &BTreeMap<String, Value>) -> bool {
    role != "ledger"
        || item
            .get("state")
            .and_then(|v| v.get("S"))
            .and_then(Value::as_str)
            .is_some_and(|state| SETTLED_LEDGER_STATES.contains(&state))
}

/// Downloads table `role` of an export and checks it; `compare` chooses the items its
/// `compared` tallies count.
async fn download_checked(
    clients: &AwsClients,
    manifest: &ExportManifest,
    role: &str,
    compare: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> Result<CheckedTable, Error> {
    let table = manifest.tables.get(role).ok_or_else(|| Error::Other {
        message: format!("export {} has no `{role}` table", manifest.id),
        help: "the export is damaged; take a new one".into(),
    })?;
    let dir =
        tempfile::tempdir().map_err(|e| io("create a directory for", Path::new("(temp)"), e))?;
    let path = dir.path().join("table.jsonl.gz");
    let mut output = clients
        .s3
        .get_object()
        .bucket(&manifest.bucket)
        .key(&table.key)
        .send()
        .await
        .map_err(|error| {
            aws(
                format!("GetObject s3://{}/{}", manifest.bucket, table.key),
                &error,
            )
        })?;
    {
        let mut file = std::fs::File::create(&path).map_err(|e| io("create", &path, e))?;
        while let Some(chunk) = output.body.try_next().await.map_err(|e| Error::Other {
            message: format!(
                "downloading s3://{}/{} failed: {e}",
                manifest.bucket, table.key
            ),
            help: "run the command again".into(),
        })? {
            file.write_all(&chunk).map_err(|e| io("write", &path, e))?;
        }
    }
    let sha256 = file_sha256(&path)?;
    if sha256 != table.sha256 {
        return Err(tampered(
            manifest,
            role,
            "its file's sha256 is not the manifest's",
        ));
    }
    let mut checked = CheckedTable {
        _dir: dir,
        path,
        compared: BTreeMap::new(),
    };
    let mut total = Tally::default();
    let mut per_source: BTreeMap<String, Tally> = BTreeMap::new();
    let mut compared: BTreeMap<String, Tally> = BTreeMap::new();
    for item in checked.items()? {
        let (line, typed) = item.map_err(|why| tampered(manifest, role, &why))?;
        let source = source_of(&typed);
        total.add(&line);
        per_source.entry(source.clone()).or_default().add(&line);
        if compare(&typed) {
            compared.entry(source).or_default().add(&line);
        }
    }
    if total != table.total || per_source != table.per_source {
        return Err(tampered(
            manifest,
            role,
            "its items do not add up to the manifest's counts and checksums",
        ));
    }
    checked.compared = compared;
    Ok(checked)
}

fn tampered(manifest: &ExportManifest, role: &str, why: &str) -> Error {
    Error::Other {
        message: format!(
            "export {} of `{}` is damaged or was changed: the {role} table's file fails its check ({why})",
            manifest.id, manifest.env
        ),
        help: "do not import or trust it; take a new export".into(),
    }
}

/// Verifies `manifest` against itself and against the live tables of `against`. Against
/// another environment, the ledger is compared on settled items only (what an import
/// copies).
pub async fn verify(
    export_clients: &AwsClients,
    manifest: &ExportManifest,
    live_clients: &AwsClients,
    against: &Environment,
) -> Result<VerifyReport, Error> {
    let elsewhere = against.name != manifest.env;
    let mut sources = Vec::new();
    for role in TABLES {
        let keep = |item: &BTreeMap<String, Value>| !elsewhere || settled(role, item);
        let exported = download_checked(export_clients, manifest, role, keep)
            .await?
            .compared;
        let live = live_tallies(live_clients, &table_name(against, role), keep).await?;
        let names: std::collections::BTreeSet<&String> =
            exported.keys().chain(live.keys()).collect();
        for source in names {
            let e = exported.get(source).copied().unwrap_or_default();
            let l = live.get(source).copied().unwrap_or_default();
            sources.push(SourceParity {
                table: role.to_string(),
                source: source.clone(),
                exported: e,
                live: l,
                same: e == l,
            });
        }
    }
    let differing = sources
        .iter()
        .filter(|s| !s.same)
        .map(|s| format!("{}/{}", s.table, s.source))
        .collect();
    Ok(VerifyReport {
        export: manifest.id.clone(),
        against: against.name.clone(),
        sources,
        differing,
    })
}

/// Imports `manifest` into `into`'s tables: each file checked whole first, then written
/// in batches of 25 as it is read. Ledger items still on their way are skipped.
pub async fn import(
    export_clients: &AwsClients,
    manifest: &ExportManifest,
    into_clients: &AwsClients,
    into: &Environment,
) -> Result<ImportReport, Error> {
    let mut written = BTreeMap::new();
    let mut skipped = BTreeMap::new();
    for role in TABLES {
        let checked = download_checked(export_clients, manifest, role, |_| true).await?;
        let table = table_name(into, role);
        let mut batch: Vec<WriteRequest> = Vec::new();
        let (mut count, mut passed) = (0u64, 0u64);
        for item in checked.items()? {
            let (line, typed) = item.map_err(|why| tampered(manifest, role, &why))?;
            if !settled(role, &typed) {
                passed += 1;
                continue;
            }
            let item = typed
                .iter()
                .map(|(k, v)| Ok((k.clone(), from_json(v)?)))
                .collect::<Result<std::collections::HashMap<_, _>, String>>()
                .map_err(|why| Error::Other {
                    message: format!(
                        "an item of export {} cannot be read: {why}: {line}",
                        manifest.id
                    ),
                    help: "take a new export".into(),
                })?;
            let request = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| Error::Other {
                    message: format!("invalid item in export {}: {e}", manifest.id),
                    help: "take a new export".into(),
                })?;
            batch.push(WriteRequest::builder().put_request(request).build());
            if batch.len() == 25 {
                count += 25;
                write_batch(into_clients, &table, std::mem::take(&mut batch)).await?;
            }
        }
        if !batch.is_empty() {
            count += batch.len() as u64;
            write_batch(into_clients, &table, batch).await?;
        }
        written.insert(role.to_string(), count);
        skipped.insert(role.to_string(), passed);
    }
    Ok(ImportReport {
        export: manifest.id.clone(),
        env: into.name.clone(),
        written,
        skipped,
    })
}

/// Writes one batch, retrying unprocessed items with backoff until all are written.
async fn write_batch(
    clients: &AwsClients,
    table: &str,
    mut requests: Vec<WriteRequest>,
) -> Result<(), Error> {
    let mut delay = Duration::from_millis(50);
    for _ in 0..12 {
        let output = clients
            .dynamodb
            .batch_write_item()
            .request_items(table, requests.clone())
            .send()
            .await
            .map_err(|error| aws(format!("BatchWriteItem {table}"), &error))?;
        requests = output
            .unprocessed_items()
            .and_then(|u| u.get(table))
            .cloned()
            .unwrap_or_default();
        if requests.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    Err(Error::Other {
        message: format!(
            "{} item(s) stayed unprocessed by BatchWriteItem on {table}",
            requests.len()
        ),
        help: "the table is throttled: run the import again (it is idempotent)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_json_keeps_every_value_exact_and_is_canonical() {
        let item = std::collections::HashMap::from([
            ("pk".to_string(), AttributeValue::S("hris#E1".into())),
            (
                "big".to_string(),
                AttributeValue::N("123456789012345678901234567890".into()),
            ),
            (
                "nested".to_string(),
                AttributeValue::M(std::collections::HashMap::from([
                    ("z".to_string(), AttributeValue::Bool(true)),
                    ("a".to_string(), AttributeValue::Null(true)),
                ])),
            ),
            (
                "tags".to_string(),
                AttributeValue::Ss(vec!["b".into(), "a".into()]),
            ),
            (
                "blob".to_string(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0, 255])),
            ),
        ]);
        let (line, typed) = item_line(&item);
        let (again, _) = item_line(&item);
        assert_eq!(line, again, "canonical");
        assert!(line.contains("\"big\":{\"N\":\"123456789012345678901234567890\"}"));
        assert!(line.contains("\"nested\":{\"M\":{\"a\":{\"NULL\":true},\"z\":{\"BOOL\":true}}}"));
        let back: std::collections::HashMap<String, AttributeValue> = typed
            .iter()
            .map(|(k, v)| (k.clone(), from_json(v).expect("typed")))
            .collect();
        assert_eq!(back.get("big"), item.get("big"));
        assert_eq!(back.get("blob"), item.get("blob"));
        assert_eq!(source_of(&typed), "hris");
        assert!(from_json(&serde_json::json!({"Q": 1})).is_err());
        assert!(from_json(&serde_json::json!({"S": 1})).is_err());
    }

    #[test]
    fn the_checksum_ignores_order_and_sees_any_change() {
        let mut a = Tally::default();
        a.add("one");
        a.add("two");
        let mut b = Tally::default();
        b.add("two");
        b.add("one");
        assert_eq!(a, b);
        let mut c = Tally::default();
        c.add("one");
        c.add("tw0");
        assert_ne!(a, c);
    }

    #[test]
    fn export_ids_are_checked_before_any_request() {
        assert!(check_id(&new_id()).is_ok(), "{}", new_id());
        for bad in [
            "",
            "latest",
            "2026-12-01",
            "20261201T155500",
            "../20261201T155500Z",
        ] {
            let error = check_id(bad).unwrap_err();
            assert!(error.to_string().contains("is not an export id"), "{bad}");
        }
    }
}
