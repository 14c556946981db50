//! The AWS side: the client, what an error means (retry or stop, and what the user should do),
//! and the control-plane calls made at start and on resharding.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::{RecordDistributionStrategy, StreamStatus};
use aws_sdk_kinesis::Client;

use crate::config::KinesisConfig;
use crate::error::ProducerError;
use crate::shards::ShardMap;

/// The classic record size limit, when the stream does not report its own.
pub(crate) const DEFAULT_RECORD_LIMIT: usize = 1 << 20;

/// What `DescribeStreamSummary` said about the stream at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    pub arn: String,
    /// `ACTIVE` or `UPDATING`.
    pub status: String,
    /// `PROVISIONED` or `ON_DEMAND`, when reported.
    pub mode: Option<String>,
    pub open_shards: usize,
    /// The largest record (data + partition key) the stream takes, in bytes.
    pub record_limit: usize,
    /// The KMS key of a server-side encrypted stream.
    pub kms_key: Option<String>,
    pub retention_hours: i32,
}

/// Builds the client: standard credential chain and region, the configured endpoint, and no SDK
/// retries (the producer retries, orders and counts them itself).
pub(crate) async fn client(config: &KinesisConfig) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let shared = loader.load().await;
    let timeout = Duration::from_secs(config.request_timeout_seconds);
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .operation_attempt_timeout(timeout)
        .build();
    let mut builder = aws_sdk_kinesis::config::Builder::from(&shared)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Client::from_conf(builder.build())
}

/// Where the client sends requests, for messages: the region, and the endpoint if overridden.
pub(crate) fn whereabouts(client: &Client, config: &KinesisConfig) -> String {
    let region = client
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "no region".into());
    match &config.endpoint {
        Some(endpoint) => format!("region {region}, endpoint {endpoint}"),
        None => format!("region {region}"),
    }
}

/// Sets the stream on a request builder: by ARN when the configured stream is one.
macro_rules! with_stream {
    ($builder:expr, $stream:expr) => {{
        let stream: &str = $stream;
        if stream.starts_with("arn:") {
            $builder.stream_arn(stream)
        } else {
            $builder.stream_name(stream)
        }
    }};
}
pub(crate) use with_stream;

/// How a failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Throughput exceeded, throttling: retry after a backoff.
    Throttled,
    /// A server-side or passing failure (5xx, internal failure): retry.
    Transient,
    /// No usable response (timeout, connection refused or reset): retry.
    Transport,
    /// Retrying cannot help: stop and say why.
    Permanent,
}

/// A failed call (or a failed record of a `PutRecords` call), classified and described.
#[derive(Debug, Clone)]
pub(crate) struct CallError {
    pub(crate) class: Class,
    pub(crate) code: Option<String>,
    /// Code, message and what to do, for the user.
    pub(crate) message: String,
}

/// The class of an AWS error code; `None` for codes this crate does not know (then the HTTP
/// status decides).
pub(crate) fn classify_code(code: &str) -> Option<Class> {
    Some(match code {
        "ProvisionedThroughputExceededException"
        | "LimitExceededException"
        | "ThrottlingException"
        | "Throttling"
        | "KMSThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException" => Class::Throttled,
        "InternalFailure"
        | "InternalFailureException"
        | "InternalServerError"
        | "InternalError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "ResourceInUseException"
        | "RequestTimeout"
        | "RequestTimeoutException"
        // Refreshable credentials (instance role, IRSA) may be renewed meanwhile.
        | "ExpiredTokenException"
        | "ExpiredToken" => Class::Transient,
        "ResourceNotFoundException"
        | "AccessDeniedException"
        | "AccessDenied"
        | "ValidationException"
        | "InvalidArgumentException"
        | "SerializationException"
        | "KMSDisabledException"
        | "KMSInvalidStateException"
        | "KMSAccessDeniedException"
        | "KMSNotFoundException"
        | "KMSOptInRequired"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "InvalidClientTokenId"
        | "OptInRequired"
        | "NotAuthorized" => Class::Permanent,
        _ => return None,
    })
}

/// What the user can do about an error, as a parenthesised suffix ("" when nothing useful).
pub(crate) fn hint(code: Option<&str>, status: Option<u16>, operation: &str) -> String {
    let text = match (code, status) {
        (Some("ResourceNotFoundException"), _) => {
            "the stream does not exist here: create it, or fix kinesis.stream, kinesis.region or \
             kinesis.endpoint"
                .to_string()
        }
        (Some("AccessDeniedException" | "AccessDenied" | "NotAuthorized"), _)
        | (None, Some(403)) => {
            format!("grant kinesis:{operation} on the stream to the IAM identity cdcd runs as")
        }
        (Some("KMSAccessDeniedException"), _) => {
            "grant kms:GenerateDataKey on the stream's KMS key to the IAM identity cdcd runs as"
                .into()
        }
        (Some("KMSDisabledException"), _) => {
            "the stream's KMS key is disabled: enable it, or change the stream's encryption".into()
        }
        (Some("KMSInvalidStateException"), _) => {
            "the stream's KMS key is not usable (pending deletion or import?): fix the key, or \
             change the stream's encryption"
                .into()
        }
        (Some("KMSNotFoundException"), _) => {
            "the stream's KMS key does not exist: fix the stream's encryption settings".into()
        }
        (Some("KMSOptInRequired" | "OptInRequired"), _) => {
            "the AWS account is not subscribed to the service: subscribe it".into()
        }
        (
            Some(
                "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "IncompleteSignature"
                | "MissingAuthenticationToken"
                | "InvalidClientTokenId"
                | "ExpiredTokenException"
                | "ExpiredToken",
            ),
            _,
        ) => "check the AWS credentials cdcd runs with (AWS_PROFILE, AWS_ACCESS_KEY_ID, the \
              instance or IRSA role) and the region"
            .into(),
        (
            Some("ValidationException" | "InvalidArgumentException" | "SerializationException"),
            _,
        ) => "Kinesis refused the request as invalid: if no setting explains it, this is a cdcd \
             bug; please report it with this message"
            .into(),
        (Some("ProvisionedThroughputExceededException" | "LimitExceededException"), _) => {
            "the stream's shards are at their write limit: add shards, use on-demand mode, or \
             spread the partition keys"
                .into()
        }
        _ => return String::new(),
    };
    format!(" ({text})")
}

impl CallError {
    /// Classifies and describes an SDK error of `operation`.
    pub(crate) fn from_sdk<E>(error: &SdkError<E>, operation: &str) -> CallError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = error.raw_response().map(|r| r.status().as_u16());
        let code = error.code();
        let class = code.and_then(classify_code).unwrap_or(match error {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Class::Transport,
            SdkError::ResponseError(_) => Class::Transient,
            SdkError::ConstructionFailure(_) => Class::Permanent,
            _ => match status {
                Some(429) => Class::Throttled,
                Some(408) | Some(500..) | None => Class::Transient,
                Some(_) => Class::Permanent,
            },
        });
        let hint = hint(code, status, operation);
        let message = match (code, error.message()) {
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
                        "{} (is the endpoint right and reachable? kinesis.endpoint, \
                         AWS_ENDPOINT_URL_KINESIS, kinesis.region)",
                        causes.join(": ")
                    )
                }
            },
        };
        CallError {
            class,
            code: code.map(str::to_string),
            message,
        }
    }
}

/// A random delay in `[0, min(max, initial * 2^(attempts - 1))]` ("full jitter").
pub(crate) fn backoff(config: &KinesisConfig, attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let cap_ms = config
        .backoff_initial_ms
        .saturating_mul(1 << exponent)
        .min(config.backoff_max_ms);
    Duration::from_micros(fastrand::u64(0..=cap_ms * 1000))
}

/// How a control-plane call finally failed.
pub(crate) enum Failure {
    Permanent(CallError),
    GaveUp(CallError),
}

impl Failure {
    pub(crate) fn into_error(
        self,
        operation: &'static str,
        config: &KinesisConfig,
    ) -> ProducerError {
        match self {
            Failure::Permanent(e) => ProducerError::Aws {
                operation,
                stream: config.stream.clone(),
                message: e.message,
            },
            Failure::GaveUp(e) => ProducerError::GaveUp {
                operation,
                stream: config.stream.clone(),
                seconds: config.retry_seconds,
                message: e.message,
            },
        }
    }
}

/// Sends a control-plane request until it succeeds, fails permanently, or `retry_seconds` pass.
pub(crate) async fn retrying<T, F, Fut>(
    config: &KinesisConfig,
    operation: &'static str,
    mut send: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let deadline = Instant::now() + Duration::from_secs(config.retry_seconds);
    let mut attempts = 0;
    loop {
        let error = match send().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if error.class == Class::Permanent {
            return Err(Failure::Permanent(error));
        }
        attempts += 1;
        let delay = backoff(config, attempts).max(Duration::from_millis(50));
        if Instant::now() + delay > deadline {
            return Err(Failure::GaveUp(error));
        }
        tracing::warn!(operation, stream = %config.stream, error = %error.message, retry_in = ?delay, "Kinesis request failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// `DescribeStreamSummary`: the checks made at start (see the crate docs).
pub(crate) async fn describe(
    client: &Client,
    config: &KinesisConfig,
) -> Result<StreamInfo, ProducerError> {
    const OPERATION: &str = "DescribeStreamSummary";
    let stream = config.stream.clone();
    let deadline = Instant::now() + Duration::from_secs(config.retry_seconds);
    loop {
        let summary = retrying(config, OPERATION, || async {
            with_stream!(client.describe_stream_summary(), &config.stream)
                .send()
                .await
                .map_err(|e| CallError::from_sdk(&e, OPERATION))
        })
        .await;
        let summary = match summary {
            Ok(output) => output.stream_description_summary,
            Err(Failure::Permanent(e))
                if e.code.as_deref() == Some("ResourceNotFoundException") =>
            {
                return Err(ProducerError::StreamNotFound {
                    stream,
                    where_: whereabouts(client, config),
                })
            }
            Err(e) => return Err(e.into_error(OPERATION, config)),
        };
        let Some(summary) = summary else {
            return Err(ProducerError::Aws {
                operation: OPERATION,
                stream,
                message: "the response has no stream description".into(),
            });
        };
        let status = summary.stream_status().clone();
        match status {
            StreamStatus::Active | StreamStatus::Updating => {}
            StreamStatus::Creating if Instant::now() < deadline => {
                tracing::info!(stream = %config.stream, "the Kinesis stream is being created; waiting until it is ACTIVE");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            StreamStatus::Creating => {
                return Err(ProducerError::StreamNotWritable {
                    stream,
                    reason: format!(
                        "still CREATING after {} s (kinesis.retry_seconds)",
                        config.retry_seconds
                    ),
                })
            }
            other => {
                return Err(ProducerError::StreamNotWritable {
                    stream,
                    reason: format!(
                        "its status is {other} (only ACTIVE and UPDATING streams take records): \
                         recreate it, or point kinesis.stream at another stream"
                    ),
                })
            }
        }
        if summary.record_distribution_strategy() == Some(&RecordDistributionStrategy::Auto) {
            return Err(ProducerError::StreamNotWritable {
                stream,
                reason: "its record distribution strategy is AUTO, which ignores partition keys, \
                         so no per-key order could hold: switch it to USER_PARTITION_KEY (aws \
                         kinesis update-stream-record-distribution-strategy)"
                    .into(),
            });
        }
        let record_limit = summary
            .max_record_size_in_kib()
            .filter(|kib| *kib > 0)
            .map_or(DEFAULT_RECORD_LIMIT, |kib| kib as usize * 1024);
        let kms_key = summary.key_id().map(str::to_string);
        return Ok(StreamInfo {
            name: summary.stream_name().to_string(),
            arn: summary.stream_arn().to_string(),
            status: status.to_string(),
            mode: summary
                .stream_mode_details()
                .map(|m| m.stream_mode().to_string()),
            open_shards: summary.open_shard_count().max(0) as usize,
            record_limit,
            kms_key,
            retention_hours: summary.retention_period_hours(),
        });
    }
}

/// `ListShards`: the open shards' hash-key ranges. `Ok(None)` when the identity may not call it
/// (the caller falls back to equal ranges).
pub(crate) async fn list_shards(
    client: &Client,
    config: &KinesisConfig,
) -> Result<Option<ShardMap>, ProducerError> {
    const OPERATION: &str = "ListShards";
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let page = retrying(config, OPERATION, || async {
            let request = match &next_token {
                // With a token, the stream must not be named again.
                Some(token) => client.list_shards().next_token(token),
                None => with_stream!(client.list_shards(), &config.stream),
            };
            request
                .send()
                .await
                .map_err(|e| CallError::from_sdk(&e, OPERATION))
        })
        .await;
        let page = match page {
            Ok(page) => page,
            Err(Failure::Permanent(e))
                if matches!(
                    e.code.as_deref(),
                    Some("AccessDeniedException" | "AccessDenied")
                ) =>
            {
                tracing::warn!(stream = %config.stream, error = %e.message, "no permission for ListShards: spreading requests over equal hash-key ranges, one per open shard");
                return Ok(None);
            }
            Err(Failure::Permanent(e))
                if e.code.as_deref() == Some("ResourceNotFoundException") =>
            {
                return Err(ProducerError::StreamNotFound {
                    stream: config.stream.clone(),
                    where_: whereabouts(client, config),
                })
            }
            Err(e) => return Err(e.into_error(OPERATION, config)),
        };
        for shard in page.shards() {
            let open = shard
                .sequence_number_range()
                .is_none_or(|r| r.ending_sequence_number().is_none());
            let Some(range) = shard.hash_key_range() else {
                continue;
            };
            let (Ok(start), Ok(end)) = (
                range.starting_hash_key().parse::<u128>(),
                range.ending_hash_key().parse::<u128>(),
            ) else {
                continue;
            };
            if open {
                shards.push((shard.shard_id().to_string(), start, end));
            }
        }
        match page.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
            _ => break,
        }
    }
    Ok(ShardMap::from_shards(shards))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(
            classify_code("ProvisionedThroughputExceededException"),
            Some(Class::Throttled)
        );
        assert_eq!(
            classify_code("KMSThrottlingException"),
            Some(Class::Throttled)
        );
        assert_eq!(classify_code("InternalFailure"), Some(Class::Transient));
        assert_eq!(
            classify_code("KMSDisabledException"),
            Some(Class::Permanent)
        );
        assert_eq!(
            classify_code("AccessDeniedException"),
            Some(Class::Permanent)
        );
        assert_eq!(classify_code("SomethingNew"), None);
        assert!(hint(Some("AccessDeniedException"), Some(400), "PutRecords")
            .contains("kinesis:PutRecords"));
    }

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let config = KinesisConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            ..KinesisConfig::default()
        };
        for attempts in 1..40 {
            let cap = (100u64 << (attempts - 1).min(30)).min(1000);
            let delay = backoff(&config, attempts);
            assert!(delay <= Duration::from_millis(cap), "{attempts}: {delay:?}");
        }
    }
}
