//! Release bundles in the artifact bucket: publish (immutable: the same content again is
//! a no-op, different content under an existing id is refused), fetch into a local cache
//! with every digest checked, verify the function zips a deploy is about to use, list
//! the published releases, and copy a release into another account's bucket.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_s3::Client;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use super::bundle::{self, release_key, Bundle, BundleManifest, MANIFEST_FILE, RELEASES_PREFIX};
use super::id::ReleaseId;
use super::ReleaseError;
use crate::deploy::DeployError;
use crate::error::Error;
use crate::package::archive::sha256_hex;
use crate::package::release::ReleaseFunction;

/// What publishing did.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub id: ReleaseId,
    pub bucket: String,
    /// False when the same content was already published under this id.
    pub created: bool,
    /// Zips uploaded now (the others were in the bucket already).
    pub uploaded: Vec<String>,
}

fn aws<E>(
    action: String,
    error: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    DeployError::aws(action, error).into()
}

/// Reads an object; `None` when the key does not exist.
pub async fn get(client: &Client, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
    match client.get_object().bucket(bucket).key(key).send().await {
        Ok(output) => {
            let bytes = output.body.collect().await.map_err(|error| Error::Other {
                message: format!("could not read s3://{bucket}/{key}: {error}"),
                help: "run the command again".into(),
            })?;
            Ok(Some(bytes.into_bytes().to_vec()))
        }
        Err(error) if matches!(error.code(), Some("NoSuchKey" | "NotFound")) => Ok(None),
        Err(error) if error.code() == Some("NoSuchBucket") => Ok(None),
        Err(error) => Err(aws(format!("GetObject s3://{bucket}/{key}"), &error)),
    }
}

/// Uploads one object, KMS-encrypted (the bucket refuses anything else), its sha256 in
/// its metadata.
pub(crate) async fn put(
    client: &Client,
    bucket: &str,
    key: &str,
    body: ByteStream,
    content_type: &str,
    sha256: &str,
) -> Result<(), Error> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .metadata("sha256", sha256)
        .body(body)
        .send()
        .await
        .map_err(|error| aws(format!("PutObject s3://{bucket}/{key}"), &error))?;
    Ok(())
}

/// Reads and parses a release's manifest; `None` when it is not published.
pub async fn read_manifest(
    client: &Client,
    bucket: &str,
    id: &ReleaseId,
) -> Result<Option<BundleManifest>, Error> {
    let key = release_key(id, MANIFEST_FILE);
    let Some(bytes) = get(client, bucket, &key).await? else {
        return Ok(None);
    };
    parse_manifest(id, &bytes).map(Some)
}

fn parse_manifest(id: &ReleaseId, bytes: &[u8]) -> Result<BundleManifest, Error> {
    #[derive(serde::Deserialize)]
    struct Format {
        format: u32,
    }
    let format: Format = serde_json::from_slice(bytes).map_err(|error| ReleaseError::Bundle {
        reason: format!("the manifest of release {id} is not valid JSON: {error}"),
    })?;
    if format.format != bundle::BUNDLE_FORMAT {
        return Err(ReleaseError::UnknownFormat {
            id: id.clone(),
            format: format.format,
        }
        .into());
    }
    let manifest: BundleManifest =
        serde_json::from_slice(bytes).map_err(|error| ReleaseError::Bundle {
            reason: format!("the manifest of release {id} is unreadable: {error}"),
        })?;
    if &manifest.id != id {
        return Err(ReleaseError::Bundle {
            reason: format!("releases/{id}/manifest.json names release {}", manifest.id),
        }
        .into());
    }
    let recomputed = bundle::content_digest(
        &manifest.functions,
        &manifest.sources.files,
        &manifest.environments,
    );
    if recomputed != manifest.content_sha256 {
        return Err(ReleaseError::Tampered {
            id: id.clone(),
            what: format!("releases/{id}/manifest.json (its content digest)"),
            expected: manifest.content_sha256.clone(),
            actual: recomputed,
        }
        .into());
    }
    Ok(manifest)
}

/// The keys under `prefix`.
async fn keys(client: &Client, bucket: &str, prefix: &str) -> Result<BTreeSet<String>, Error> {
    let mut keys = BTreeSet::new();
    let mut token = None;
    loop {
        let output = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|error| aws(format!("ListObjectsV2 s3://{bucket}/{prefix}"), &error))?;
        keys.extend(
            output
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = output.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return Ok(keys);
        }
    }
}

/// Publishes `bundle` to `bucket`: the zips not there yet, the sources, then the
/// manifest (whose presence marks the release complete).
pub async fn publish(client: &Client, bucket: &str, bundle: &Bundle) -> Result<Published, Error> {
    let id = &bundle.manifest.id;
    if let Some(existing) = read_manifest(client, bucket, id).await? {
        if existing.content_sha256 == bundle.manifest.content_sha256 {
            return Ok(Published {
                id: id.clone(),
                bucket: bucket.to_string(),
                created: false,
                uploaded: Vec::new(),
            });
        }
        return Err(ReleaseError::Conflict {
            id: id.clone(),
            differences: bundle.manifest.differences(&existing),
        }
        .into());
    }
    let existing = keys(client, bucket, crate::deploy::artifacts::FUNCTIONS_PREFIX).await?;
    let pending: Vec<_> = bundle
        .zips
        .iter()
        .filter(|zip| !existing.contains(&zip.key))
        .collect();
    // Zips shared with earlier releases: keep them, whatever an earlier prune decided.
    for zip in bundle.zips.iter().filter(|zip| existing.contains(&zip.key)) {
        untag(client, bucket, &zip.key).await?;
    }
    let uploads = pending.iter().map(|zip| async move {
        let body = ByteStream::from_path(&zip.path)
            .await
            .map_err(|error| Error::Other {
                message: format!("could not read {}: {error}", zip.path.display()),
                help: "run `provisioner build` again".into(),
            })?;
        put(
            client,
            bucket,
            &zip.key,
            body,
            "application/zip",
            &zip.sha256,
        )
        .await?;
        eprintln!("uploaded {} to s3://{bucket}/{}", zip.function, zip.key);
        Ok::<_, Error>(zip.key.clone())
    });
    let uploaded = futures_util::future::join_all(uploads)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = &bundle.manifest;
    put(
        client,
        bucket,
        &manifest.sources.key,
        ByteStream::from(bundle.sources_zip.clone()),
        "application/zip",
        &manifest.sources.sha256,
    )
    .await?;
    // The manifest last, and only if no other publisher wrote one first (two pipelines
    // publishing the same commit at once): it is what makes the release exist.
    let text = serde_json::to_vec_pretty(manifest).unwrap_or_default();
    let key = release_key(id, MANIFEST_FILE);
    let written = client
        .put_object()
        .bucket(bucket)
        .key(&key)
        .content_type("application/json")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .metadata("sha256", sha256_hex(&text))
        .if_none_match("*")
        .body(ByteStream::from(text))
        .send()
        .await;
    match written {
        Ok(_) => Ok(Published {
            id: id.clone(),
            bucket: bucket.to_string(),
            created: true,
            uploaded,
        }),
        Err(error)
            if error.code() == Some("PreconditionFailed")
                || error
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 412) =>
        {
            let theirs = read_manifest(client, bucket, id).await?;
            match theirs {
                Some(theirs) if theirs.content_sha256 == manifest.content_sha256 => Ok(Published {
                    id: id.clone(),
                    bucket: bucket.to_string(),
                    created: false,
                    uploaded,
                }),
                Some(theirs) => Err(ReleaseError::Conflict {
                    id: id.clone(),
                    differences: manifest.differences(&theirs),
                }
                .into()),
                None => Err(aws(format!("PutObject s3://{bucket}/{key}"), &error)),
            }
        }
        Err(error) => Err(aws(format!("PutObject s3://{bucket}/{key}"), &error)),
    }
}

/// A release on this machine: its manifest and its sources, checked.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub manifest: BundleManifest,
    /// A directory holding the release's `stacks/`, `environments/` and
    /// `functions/manifest.yaml`: a project to render from.
    pub dir: PathBuf,
}

const VERIFIED_MARKER: &str = ".verified";

/// The local cache of releases fetched from `bucket`.
pub fn cache_dir(root: &Path, bucket: &str, id: &ReleaseId) -> PathBuf {
    root.join("build")
        .join("releases")
        .join(bucket)
        .join(id.as_str())
}

/// Writes a published bundle into the cache without fetching it back.
pub fn cache_bundle(root: &Path, bucket: &str, bundle: &Bundle) -> Result<Fetched, Error> {
    store_in_cache(root, bucket, &bundle.manifest, &bundle.sources_zip)
}

fn store_in_cache(
    root: &Path,
    bucket: &str,
    manifest: &BundleManifest,
    sources_zip: &[u8],
) -> Result<Fetched, Error> {
    let dir = cache_dir(root, bucket, &manifest.id);
    let io = |path: &Path, source| Error::Io {
        action: "write".into(),
        path: path.to_path_buf(),
        source,
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    bundle::extract(manifest, sources_zip, &dir)?;
    let text = serde_json::to_vec_pretty(manifest).unwrap_or_default();
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    let marker = dir.join(VERIFIED_MARKER);
    std::fs::write(&marker, &manifest.content_sha256).map_err(|e| io(&marker, e))?;
    Ok(Fetched {
        manifest: manifest.clone(),
        dir,
    })
}

/// The release from the local cache when it was fetched and checked before (releases
/// never change), otherwise from the bucket, checked, then cached.
pub async fn fetch(
    client: &Client,
    root: &Path,
    bucket: &str,
    id: &ReleaseId,
    env: &str,
) -> Result<Fetched, Error> {
    let dir = cache_dir(root, bucket, id);
    if let (Ok(marker), Ok(text)) = (
        std::fs::read_to_string(dir.join(VERIFIED_MARKER)),
        std::fs::read(dir.join(MANIFEST_FILE)),
    ) {
        if let Ok(manifest) = parse_manifest(id, &text) {
            if manifest.content_sha256 == marker {
                return Ok(Fetched { manifest, dir });
            }
        }
    }
    let Some(manifest) = read_manifest(client, bucket, id).await? else {
        return Err(ReleaseError::NotFound {
            id: id.clone(),
            bucket: bucket.to_string(),
            env: env.to_string(),
        }
        .into());
    };
    let Some(sources) = get(client, bucket, &manifest.sources.key).await? else {
        return Err(ReleaseError::Bundle {
            reason: format!(
                "release {id} is incomplete: s3://{bucket}/{} is missing",
                manifest.sources.key
            ),
        }
        .into());
    };
    store_in_cache(root, bucket, &manifest, &sources)
}

/// Downloads each zip and checks its sha256 against the release.
pub async fn verify_zips(
    client: &Client,
    bucket: &str,
    id: &ReleaseId,
    zips: &[&ReleaseFunction],
) -> Result<(), Error> {
    let checks = zips.iter().map(|zip| async move {
        let Some(bytes) = get(client, bucket, &zip.key).await? else {
            return Err(ReleaseError::Bundle {
                reason: format!(
                    "release {id} is incomplete: s3://{bucket}/{} ({}) is missing",
                    zip.key, zip.name
                ),
            }
            .into());
        };
        let actual = sha256_hex(&bytes);
        if actual != zip.sha256 {
            return Err(Error::from(ReleaseError::Tampered {
                id: id.clone(),
                what: format!("s3://{bucket}/{} ({})", zip.key, zip.name),
                expected: zip.sha256.clone(),
                actual,
            }));
        }
        Ok(())
    });
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, Error>>()?;
    Ok(())
}

/// Every published release id in `bucket`, oldest first.
pub async fn list(client: &Client, bucket: &str) -> Result<Vec<ReleaseId>, Error> {
    let mut ids = BTreeSet::new();
    for key in keys(client, bucket, RELEASES_PREFIX).await? {
        let Some(rest) = key.strip_prefix(RELEASES_PREFIX) else {
            continue;
        };
        if let Some((id, file)) = rest.split_once('/') {
            if file == MANIFEST_FILE {
                if let Ok(id) = ReleaseId::parse(id) {
                    ids.insert(id);
                }
            }
        }
    }
    Ok(ids.into_iter().collect())
}

/// What copying a release into another bucket did.
#[derive(Debug, Clone, Serialize)]
pub struct Copied {
    /// False when the target already held the release (same content).
    pub copied: bool,
    /// Objects written to the target, each verified after the copy.
    pub objects: Vec<String>,
}

/// Copies a release (zips, sources, then manifest) from one bucket to another, possibly
/// in another account with other credentials; every object's sha256 is checked on the
/// way and again read back from the target.
pub async fn copy_release(
    from: &Client,
    from_bucket: &str,
    to: &Client,
    to_bucket: &str,
    manifest: &BundleManifest,
) -> Result<Copied, Error> {
    let id = &manifest.id;
    if let Some(existing) = read_manifest(to, to_bucket, id).await? {
        if existing.content_sha256 == manifest.content_sha256 {
            return Ok(Copied {
                copied: false,
                objects: Vec::new(),
            });
        }
        return Err(ReleaseError::Conflict {
            id: id.clone(),
            differences: manifest.differences(&existing),
        }
        .into());
    }
    let existing = keys(to, to_bucket, crate::deploy::artifacts::FUNCTIONS_PREFIX).await?;
    let mut objects: Vec<(String, String, &str)> = manifest
        .functions
        .iter()
        .filter(|f| !existing.contains(&f.key))
        .map(|f| (f.key.clone(), f.sha256.clone(), "application/zip"))
        .collect();
    // Zips the target already holds (shared with earlier releases) are checked too.
    let present: Vec<&ReleaseFunction> = manifest
        .functions
        .iter()
        .filter(|f| existing.contains(&f.key))
        .collect();
    verify_zips(to, to_bucket, id, &present).await?;
    for zip in &present {
        untag(to, to_bucket, &zip.key).await?;
    }
    objects.push((
        manifest.sources.key.clone(),
        manifest.sources.sha256.clone(),
        "application/zip",
    ));
    let mut written = Vec::new();
    for (key, sha256, content_type) in &objects {
        let Some(bytes) = get(from, from_bucket, key).await? else {
            return Err(ReleaseError::Bundle {
                reason: format!("release {id} is incomplete: s3://{from_bucket}/{key} is missing"),
            }
            .into());
        };
        check(id, &format!("s3://{from_bucket}/{key}"), sha256, &bytes)?;
        put(
            to,
            to_bucket,
            key,
            ByteStream::from(bytes),
            content_type,
            sha256,
        )
        .await?;
        let Some(back) = get(to, to_bucket, key).await? else {
            return Err(ReleaseError::Bundle {
                reason: format!("s3://{to_bucket}/{key} is missing right after the copy"),
            }
            .into());
        };
        check(id, &format!("s3://{to_bucket}/{key}"), sha256, &back)?;
        written.push(key.clone());
    }
    let text = serde_json::to_vec_pretty(manifest).unwrap_or_default();
    let digest = sha256_hex(&text);
    let key = release_key(id, MANIFEST_FILE);
    put(
        to,
        to_bucket,
        &key,
        ByteStream::from(text),
        "application/json",
        &digest,
    )
    .await?;
    written.push(key);
    Ok(Copied {
        copied: true,
        objects: written,
    })
}

fn check(id: &ReleaseId, what: &str, expected: &str, bytes: &[u8]) -> Result<(), Error> {
    let actual = sha256_hex(bytes);
    if actual == expected {
        return Ok(());
    }
    Err(ReleaseError::Tampered {
        id: id.clone(),
        what: what.to_string(),
        expected: expected.to_string(),
        actual,
    }
    .into())
}

/// Tags every object of a release (and the zips no kept release uses) so the bucket's
/// lifecycle rule may expire them; returns how many objects were tagged.
pub async fn tag_expirable(
    client: &Client,
    bucket: &str,
    manifest: &BundleManifest,
    zips_kept: &BTreeSet<String>,
) -> Result<usize, Error> {
    use aws_sdk_s3::types::{Tag, Tagging};
    let tagging = Tagging::builder()
        .tag_set(
            Tag::builder()
                .key(crate::render::bootstrap::RETENTION_TAG)
                .value(crate::render::bootstrap::EXPIRABLE)
                .build()
                .map_err(|error| Error::Other {
                    message: format!("could not build the retention tag: {error}"),
                    help: String::new(),
                })?,
        )
        .build()
        .map_err(|error| Error::Other {
            message: format!("could not build the retention tag: {error}"),
            help: String::new(),
        })?;
    let mut keys = vec![
        release_key(&manifest.id, MANIFEST_FILE),
        manifest.sources.key.clone(),
    ];
    keys.extend(
        manifest
            .functions
            .iter()
            .filter(|f| !zips_kept.contains(&f.key))
            .map(|f| f.key.clone()),
    );
    for key in &keys {
        client
            .put_object_tagging()
            .bucket(bucket)
            .key(key)
            .tagging(tagging.clone())
            .send()
            .await
            .map_err(|error| aws(format!("PutObjectTagging s3://{bucket}/{key}"), &error))?;
    }
    Ok(keys.len())
}

/// Removes the expirable tag from one object (a no-op when it has none).
async fn untag(client: &Client, bucket: &str, key: &str) -> Result<(), Error> {
    client
        .delete_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|error| aws(format!("DeleteObjectTagging s3://{bucket}/{key}"), &error))?;
    Ok(())
}

/// Removes the expirable tag from every object of a release, so the bucket keeps it.
pub async fn keep(client: &Client, bucket: &str, manifest: &BundleManifest) -> Result<(), Error> {
    untag(client, bucket, &release_key(&manifest.id, MANIFEST_FILE)).await?;
    untag(client, bucket, &manifest.sources.key).await?;
    for zip in &manifest.functions {
        untag(client, bucket, &zip.key).await?;
    }
    Ok(())
}
