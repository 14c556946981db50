//! Where the lake's objects go: S3 (any S3 API) or a local directory.
//!
//! Either way an object becomes visible whole or not at all: a local object is written to a
//! temporary file, synced and renamed into place (then its directory synced); an S3 object is one
//! PUT, or a multipart upload that S3 shows only once it completes. Transient failures (timeouts,
//! throttling, 5xx, a store that is down) are retried with backoff (doubling from 200 ms, capped
//! at 10 s) for up to `retry_seconds`, or for as long as it takes when that is 0 (the default: a
//! long outage stalls the writer instead of stopping it); permanent ones (no such bucket, access
//! denied) fail at once with the reason. [`RETRIES`] counts the retries by kind, for metrics.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use serde::Deserialize;

/// `[lake.s3]` (and the S3 settings of a checkpoint in S3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// AWS region; default: the standard chain (`AWS_REGION`, profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint of an S3-compatible store; default: AWS (or `AWS_ENDPOINT_URL_S3`).
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    pub force_path_style: bool,
    /// Server-side encryption: `AES256` (SSE-S3) or `aws:kms` (SSE-KMS).
    pub sse: Option<String>,
    /// KMS key for `sse = "aws:kms"`; default: the bucket's or account's AWS-managed key.
    pub kms_key_id: Option<String>,
    /// Objects larger than this go up as multipart uploads of this part size.
    pub multipart_bytes: usize,
    /// How long to keep retrying a transiently failing request before giving up; 0: forever.
    pub retry_seconds: u64,
}

impl S3Config {
    /// `sse` as the SDK spells it (validated in [`Store::open`]).
    fn encryption(&self) -> Option<ServerSideEncryption> {
        self.sse.as_deref().map(ServerSideEncryption::from)
    }
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            region: None,
            endpoint: None,
            force_path_style: false,
            sse: None,
            kms_key_id: None,
            multipart_bytes: 16 << 20,
            retry_seconds: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{url}: {message}")]
    Config { url: String, message: String },
    #[error("writing {location}: {source}")]
    Local {
        location: String,
        source: std::io::Error,
    },
    #[error("{operation} {location}: {message}")]
    S3 {
        operation: &'static str,
        location: String,
        message: String,
    },
    /// A conditional write found the object changed since it was read.
    #[error("{location} was changed by someone else since cdcd read it")]
    Conflict { location: String },
}

/// An object store rooted at a URL: `s3://bucket/prefix`, `file:///dir`, or a directory path.
pub enum Store {
    Local {
        root: PathBuf,
    },
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
        config: S3Config,
    },
}

/// The version of an object read from a store, for conditional writes (S3: the ETag).
#[derive(Debug, Clone, PartialEq)]
pub struct Version(Option<String>);

impl Store {
    pub async fn open(url: &str, s3: &S3Config) -> Result<Store, StoreError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::Config {
                    url: url.into(),
                    message: "no bucket: write s3://BUCKET/PREFIX".into(),
                });
            }
            if let Some(sse) = &s3.sse {
                if sse != "AES256" && sse != "aws:kms" {
                    return Err(StoreError::Config {
                        url: url.into(),
                        message: format!("s3.sse = {sse:?}: use \"AES256\" or \"aws:kms\""),
                    });
                }
            }
            if s3.multipart_bytes < 5 << 20 {
                return Err(StoreError::Config {
                    url: url.into(),
                    message: format!(
                        "s3.multipart_bytes = {}: S3's parts are at least 5 MiB (5242880)",
                        s3.multipart_bytes
                    ),
                });
            }
            if s3.kms_key_id.is_some() && s3.sse.as_deref() != Some("aws:kms") {
                return Err(StoreError::Config {
                    url: url.into(),
                    message: "s3.kms_key_id needs s3.sse = \"aws:kms\"".into(),
                });
            }
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(10))
                        // A hung request fails and is retried instead of stalling the pipeline.
                        .operation_attempt_timeout(Duration::from_secs(120))
                        .build(),
                );
            if let Some(region) = &s3.region {
                loader = loader.region(aws_config::Region::new(region.clone()));
            }
            let shared = loader.load().await;
            let mut builder =
                aws_sdk_s3::config::Builder::from(&shared).force_path_style(s3.force_path_style);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.endpoint_url(endpoint);
            }
            return Ok(Store::S3 {
                client: aws_sdk_s3::Client::from_conf(builder.build()),
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
                config: s3.clone(),
            });
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.is_empty() {
            return Err(StoreError::Config {
                url: url.into(),
                message: "empty path".into(),
            });
        }
        Ok(Store::Local {
            root: PathBuf::from(path),
        })
    }

    /// The URL of `key`, for messages.
    pub fn location(&self, key: &str) -> String {
        match self {
            Store::Local { root } => root.join(key).display().to_string(),
            Store::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{}", join(prefix, key)),
        }
    }

    /// Checks that objects can be written, read and deleted here, by doing it once. A store
    /// that does not answer fails this within 30 s, not after `retry_seconds`.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let quick;
        let store = match self {
            Store::S3 {
                client,
                bucket,
                prefix,
                config,
            } => {
                quick = Store::S3 {
                    client: client.clone(),
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                    config: S3Config {
                        retry_seconds: match config.retry_seconds {
                            0 => 30,
                            seconds => seconds.min(30),
                        },
                        ..config.clone()
                    },
                };
                &quick
            }
            local => local,
        };
        let key = format!("_cdcd/probe-{}", std::process::id());
        store.put(&key, b"cdcd write probe".to_vec()).await?;
        store.get(&key).await?;
        store.delete(&key).await
    }

    /// Writes `body` at `key`, replacing any object there; visible whole or not at all.
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        match self {
            Store::Local { root } => {
                let path = root.join(key);
                let location = path.display().to_string();
                tokio::task::spawn_blocking(move || write_atomically(&path, &body))
                    .await
                    .expect("local writes do not panic")
                    .map_err(|source| StoreError::Local { location, source })
            }
            Store::S3 { config, .. } if body.len() > config.multipart_bytes => {
                self.put_multipart(key, body).await
            }
            Store::S3 { .. } => self.put_s3(key, body, None).await.map(drop),
        }
    }

    /// Reads `key`; `None` when there is no such object.
    pub async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>, StoreError> {
        match self {
            Store::Local { root } => match tokio::fs::read(root.join(key)).await {
                Ok(body) => Ok(Some((body, Version(None)))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(self.local_error(key, source)),
            },
            Store::S3 {
                client,
                bucket,
                prefix,
                config,
            } => {
                let full = join(prefix, key);
                let response = retry(config, "GET", self.location(key), || {
                    client.get_object().bucket(bucket).key(&full).send()
                })
                .await;
                let response = match response {
                    Ok(response) => response,
                    Err(Failure::NotFound) => return Ok(None),
                    Err(e) => return Err(e.into_error("GET", self.location(key))),
                };
                let version = Version(response.e_tag().map(str::to_string));
                let body = response.body.collect().await.map_err(|e| StoreError::S3 {
                    operation: "GET",
                    location: self.location(key),
                    message: e.to_string(),
                })?;
                Ok(Some((body.to_vec(), version)))
            }
        }
    }

    /// Writes `key` only if it is still at `expected` (`None`: only if it does not exist), and
    /// returns the new version. On a local directory the caller's lock stands in for the
    /// condition.
    pub async fn put_if(
        &self,
        key: &str,
        body: Vec<u8>,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
        match self {
            Store::Local { .. } => self.put(key, body).await.map(|()| Version(None)),
            Store::S3 { .. } => {
                let condition = match expected {
                    Some(Version(Some(etag))) => Condition::Match(etag.clone()),
                    _ => Condition::Absent,
                };
                self.put_s3(key, body, Some(condition)).await
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Local { root } => match tokio::fs::remove_file(root.join(key)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(self.local_error(key, source)),
            },
            Store::S3 {
                client,
                bucket,
                prefix,
                config,
            } => {
                let full = join(prefix, key);
                retry(config, "DELETE", self.location(key), || {
                    client.delete_object().bucket(bucket).key(&full).send()
                })
                .await
                .map(drop)
                .map_err(|e| e.into_error("DELETE", self.location(key)))
            }
        }
    }

    fn local_error(&self, key: &str, source: std::io::Error) -> StoreError {
        StoreError::Local {
            location: self.location(key),
            source,
        }
    }

    async fn put_s3(
        &self,
        key: &str,
        body: Vec<u8>,
        condition: Option<Condition>,
    ) -> Result<Version, StoreError> {
        let Store::S3 {
            client,
            bucket,
            prefix,
            config,
        } = self
        else {
            unreachable!("S3 only")
        };
        let full = join(prefix, key);
        let body = bytes::Bytes::from(body);
        let response = retry(config, "PUT", self.location(key), || {
            let mut request = client
                .put_object()
                .bucket(bucket)
                .key(&full)
                .body(ByteStream::from(body.clone()));
            request = match &condition {
                Some(Condition::Absent) => request.if_none_match("*"),
                Some(Condition::Match(etag)) => request.if_match(etag),
                None => request,
            };
            request = request
                .set_server_side_encryption(config.encryption())
                .set_ssekms_key_id(config.kms_key_id.clone());
            // The body's CRC32 checksum (sent with it) guards its integrity; a SigV4 SHA-256 of
            // every object would only add CPU.
            request.customize().disable_payload_signing().send()
        })
        .await
        .map_err(|e| match e {
            Failure::Precondition => StoreError::Conflict {
                location: self.location(key),
            },
            e => e.into_error("PUT", self.location(key)),
        })?;
        Ok(Version(response.e_tag().map(str::to_string)))
    }

    async fn put_multipart(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let Store::S3 {
            client,
            bucket,
            prefix,
            config,
        } = self
        else {
            unreachable!("S3 only")
        };
        let full = join(prefix, key);
        let location = self.location(key);
        let fail = |e: Failure| e.into_error("multipart upload", location.clone());
        let created = retry(config, "CreateMultipartUpload", location.clone(), || {
            client
                .create_multipart_upload()
                .bucket(bucket)
                .key(&full)
                .set_server_side_encryption(config.encryption())
                .set_ssekms_key_id(config.kms_key_id.clone())
                .send()
        })
        .await
        .map_err(fail)?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let body = bytes::Bytes::from(body);
        let mut parts = Vec::new();
        let mut outcome = Ok(());
        for (index, start) in (0..body.len()).step_by(config.multipart_bytes).enumerate() {
            let number = index as i32 + 1;
            let chunk = body.slice(start..(start + config.multipart_bytes).min(body.len()));
            let uploaded = retry(config, "UploadPart", location.clone(), || {
                client
                    .upload_part()
                    .bucket(bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk.clone()))
                    .customize()
                    .disable_payload_signing()
                    .send()
            })
            .await;
            match uploaded {
                Ok(part) => parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                ),
                Err(e) => {
                    outcome = Err(fail(e));
                    break;
                }
            }
        }
        if outcome.is_ok() {
            let completed = CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build();
            outcome = retry(config, "CompleteMultipartUpload", location.clone(), || {
                client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .multipart_upload(completed.clone())
                    .send()
            })
            .await
            .map(drop)
            .map_err(fail);
        }
        if outcome.is_err() {
            // Parts of an abandoned upload are invisible but billed until aborted.
            let _ = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(&full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        outcome
    }
}

enum Condition {
    Absent,
    Match(String),
}

/// Why an S3 request finally failed.
enum Failure {
    NotFound,
    Precondition,
    Permanent(String),
    GaveUp(String),
}

impl Failure {
    fn into_error(self, operation: &'static str, location: String) -> StoreError {
        let message = match self {
            Failure::NotFound => "no such object".into(),
            Failure::Precondition => "precondition failed".into(),
            Failure::Permanent(message) => message,
            Failure::GaveUp(message) => format!("still failing after retrying: {message}"),
        };
        StoreError::S3 {
            operation,
            location,
            message,
        }
    }
}

/// S3 requests that failed transiently and were sent again, by kind. Process-wide: every store
/// of the process (lake and checkpoint) counts here.
#[derive(Debug, Default)]
pub struct RetryCounters {
    /// 429, 503 and `SlowDown`: the store asks for less.
    pub throttled: AtomicU64,
    /// Other 5xx answers.
    pub server: AtomicU64,
    /// 408 and `RequestTimeout`, and requests that timed out on our side.
    pub timeout: AtomicU64,
    /// No answer: connection refused or reset, DNS.
    pub transport: AtomicU64,
}

impl RetryCounters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub static RETRIES: RetryCounters = RetryCounters {
    throttled: AtomicU64::new(0),
    server: AtomicU64::new(0),
    timeout: AtomicU64::new(0),
    transport: AtomicU64::new(0),
};

/// Sends a request until it succeeds, fails permanently, or `retry_seconds` (if not 0) have
/// passed.
async fn retry<T, E, F, Fut>(
    config: &S3Config,
    operation: &str,
    location: String,
    mut send: F,
) -> Result<T, Failure>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<
        Output = Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    >,
{
    let deadline = (config.retry_seconds > 0)
        .then(|| std::time::Instant::now() + Duration::from_secs(config.retry_seconds));
    let mut backoff = Duration::from_millis(200);
    loop {
        let error = match send().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let status = error.raw_response().map(|r| r.status().as_u16());
        let code = error.code().unwrap_or_default().to_string();
        let message = describe(&error, status);
        let kind = match (status, code.as_str()) {
            (_, "NoSuchBucket") => return Err(Failure::Permanent(message)),
            (Some(404), _) | (_, "NoSuchKey") => return Err(Failure::NotFound),
            (Some(412), _) | (_, "PreconditionFailed") => return Err(Failure::Precondition),
            (Some(429 | 503), _) | (_, "SlowDown") => &RETRIES.throttled,
            (Some(408), _) | (_, "RequestTimeout") => &RETRIES.timeout,
            (_, "InternalError") => &RETRIES.server,
            (Some(400..=499), _) => return Err(Failure::Permanent(message)),
            (Some(_), _) => &RETRIES.server,
            (None, _) if matches!(error, SdkError::TimeoutError(_)) => &RETRIES.timeout,
            (None, _) => &RETRIES.transport,
        };
        if deadline.is_some_and(|deadline| std::time::Instant::now() + backoff > deadline) {
            return Err(Failure::GaveUp(message));
        }
        kind.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(operation, location, error = %message, retry_in = ?backoff, "S3 request failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// The error as a user can act on it: code and message from S3, or the transport failure.
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    status: Option<u16>,
) -> String {
    let hint = match (status, error.code()) {
        (_, Some("NoSuchBucket")) => " (create the bucket, or fix lake.url)",
        (Some(403), _) | (_, Some("AccessDenied")) => {
            " (grant s3:PutObject, s3:GetObject and s3:DeleteObject on this prefix to cdcd's role)"
        }
        (_, Some("InvalidAccessKeyId" | "SignatureDoesNotMatch")) => {
            " (check the AWS credentials cdcd runs with)"
        }
        _ => "",
    };
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}{hint}"),
        (Some(code), None) => format!("{code}{hint}"),
        _ => match status {
            Some(status) => format!("HTTP {status}{hint}"),
            // No response: the chain of causes says why (connection refused, DNS, timeout).
            None => {
                let mut causes: Vec<String> = Vec::new();
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
                while let Some(e) = cause {
                    let text = e.to_string();
                    if !causes.iter().any(|c| c.contains(&text)) {
                        causes.push(text);
                    }
                    cause = e.source();
                }
                format!(
                    "{} (is the endpoint right and reachable? lake.s3.endpoint, AWS_ENDPOINT_URL_S3)",
                    causes.join(": ")
                )
            }
        },
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}/{key}")
    }
}

/// Temporary file, fsync, rename, fsync of the directory (and of the directories above it, which
/// may be new): after a crash the object is either absent or complete. The temporary file's name
/// starts with a dot, which Athena, Hive and Spark skip, so a crash's leftover is never read.
pub fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let directory = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(directory)?;
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".tmp-{}", std::process::id()));
    let temporary = path.with_file_name(name);
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(body)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    // The partition directories (year=/month=/day=/hour=) may have just been created.
    for dir in directory.ancestors().take(5) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
