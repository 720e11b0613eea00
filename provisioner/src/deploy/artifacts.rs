//! The environment's artifact bucket, created by deploy outside CloudFormation
//! (versioned, encrypted, public access blocked), and the function zips in it under
//! content-addressed keys: a zip already there is never uploaded again.

use std::collections::BTreeSet;
use std::path::PathBuf;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use aws_sdk_s3::Client;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use super::DeployError;

/// Key prefix of the function zips.
pub const FUNCTIONS_PREFIX: &str = "functions/";

/// `{app}-{env}-artifacts-{account_id}-{region}`, checked against S3's length limit.
pub fn bucket_name(
    app: &str,
    env: &str,
    account_id: &str,
    region: &str,
) -> Result<String, DeployError> {
    let name = format!("{app}-{env}-artifacts-{account_id}-{region}");
    if name.len() > 63 {
        return Err(DeployError::BucketNameTooLong {
            length: name.len(),
            name,
        });
    }
    Ok(name)
}

/// A zip to make available in the bucket.
#[derive(Debug, Clone)]
pub struct Upload {
    pub function: String,
    pub key: String,
    pub sha256: String,
    pub size: u64,
    pub path: PathBuf,
}

/// What happened to one zip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedArtifact {
    pub function: String,
    pub key: String,
    pub sha256: String,
    pub size: u64,
    /// False when the key was already in the bucket.
    pub uploaded: bool,
}

/// The bucket and its zips after publishing.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub bucket: String,
    pub bucket_created: bool,
    pub artifacts: Vec<PublishedArtifact>,
}

/// Ensures the bucket exists and holds every zip in `uploads`.
pub async fn publish(
    client: &Client,
    bucket: &str,
    region: &str,
    uploads: &[Upload],
) -> Result<Published, DeployError> {
    let (bucket_created, existing) = match existing_keys(client, bucket).await? {
        Some(keys) => (false, keys),
        None => {
            create_bucket(client, bucket, region).await?;
            (true, BTreeSet::new())
        }
    };
    let pending: Vec<&Upload> = uploads
        .iter()
        .filter(|u| !existing.contains(&u.key))
        .collect();
    let results = futures_util::future::join_all(
        pending.iter().map(|upload| put_zip(client, bucket, upload)),
    )
    .await;
    results
        .into_iter()
        .collect::<Result<Vec<()>, DeployError>>()?;
    let artifacts = uploads
        .iter()
        .map(|u| PublishedArtifact {
            function: u.function.clone(),
            key: u.key.clone(),
            sha256: u.sha256.clone(),
            size: u.size,
            uploaded: !existing.contains(&u.key),
        })
        .collect();
    Ok(Published {
        bucket: bucket.to_string(),
        bucket_created,
        artifacts,
    })
}

/// Keys under [`FUNCTIONS_PREFIX`], or `None` when the bucket does not exist. One call
/// answers both questions.
async fn existing_keys(
    client: &Client,
    bucket: &str,
) -> Result<Option<BTreeSet<String>>, DeployError> {
    let mut keys = BTreeSet::new();
    let mut token = None;
    loop {
        let result = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(FUNCTIONS_PREFIX)
            .set_continuation_token(token)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(error) if error.code() == Some("NoSuchBucket") => return Ok(None),
            Err(error) => {
                return Err(DeployError::aws(
                    format!("ListObjectsV2 on s3://{bucket}"),
                    &error,
                ))
            }
        };
        keys.extend(
            output
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = output.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return Ok(Some(keys));
        }
    }
}

async fn create_bucket(client: &Client, bucket: &str, region: &str) -> Result<(), DeployError> {
    eprintln!(
        "creating artifact bucket s3://{bucket} (versioned, encrypted, public access blocked)"
    );
    let mut create = client.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match create.send().await {
        Ok(_) => {}
        Err(error) if error.code() == Some("BucketAlreadyOwnedByYou") => {}
        Err(error) => {
            return Err(DeployError::aws(
                format!("CreateBucket s3://{bucket}"),
                &error,
            ))
        }
    }
    client
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|error| DeployError::aws(format!("PutBucketVersioning s3://{bucket}"), &error))?;
    let encryption = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::Aes256)
                        .build()
                        .map_err(|error| invalid_request(bucket, error))?,
                )
                .build(),
        )
        .build()
        .map_err(|error| invalid_request(bucket, error))?;
    client
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(encryption)
        .send()
        .await
        .map_err(|error| DeployError::aws(format!("PutBucketEncryption s3://{bucket}"), &error))?;
    client
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|error| DeployError::aws(format!("PutPublicAccessBlock s3://{bucket}"), &error))?;
    Ok(())
}

fn invalid_request(bucket: &str, error: impl std::fmt::Display) -> DeployError {
    DeployError::Invalid {
        message: format!("could not describe the encryption of s3://{bucket}: {error}"),
        help: String::new(),
    }
}

async fn put_zip(client: &Client, bucket: &str, upload: &Upload) -> Result<(), DeployError> {
    let body = ByteStream::from_path(&upload.path)
        .await
        .map_err(|error| DeployError::Io {
            path: upload.path.clone(),
            source: std::io::Error::other(error.to_string()),
        })?;
    client
        .put_object()
        .bucket(bucket)
        .key(&upload.key)
        .content_type("application/zip")
        .metadata("sha256", &upload.sha256)
        .body(body)
        .send()
        .await
        .map_err(|error| {
            DeployError::aws(format!("PutObject s3://{bucket}/{}", upload.key), &error)
        })?;
    eprintln!(
        "uploaded {} to s3://{bucket}/{}",
        upload.function, upload.key
    );
    Ok(())
}
