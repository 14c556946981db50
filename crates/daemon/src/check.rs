//! `cdcd check` and `cdcd run`'s preflight: the source server's settings and privileges, then the
//! outputs the configuration names (the lake's store, a separate S3 checkpoint location, the
//! Kinesis stream). One line per item with OK, WARN or FAIL and, for the last two, the fix.
//!
//! Invariant: `cdcd check` and `cdcd run` run the same checks ([`preflight`]) and print the same
//! lines; `check` exits non-zero and `run` refuses to start when any item fails. Warnings are
//! recommendations: `check` prints them, `run` logs them and starts.

use std::path::Path;

use anyhow::{bail, Result};
use clap::Args;

use cdcd_binlog::{check_source, Finding, ReplicaOptions, Status};
use cdcd_kinesis::Producer;
use cdcd_sink::{S3Config, Store};

use crate::config::{Config, SourceArgs};

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    source: SourceArgs,
}

pub async fn run(config_path: Option<&Path>, args: CheckArgs) -> Result<()> {
    let config = Config::load(config_path)?;
    let options = args.source.options(&config)?;
    let findings = preflight(&config, &options).await;
    for f in &findings {
        println!("{}", line(f));
    }
    verdict(&findings)
}

/// Every check, in the order printed: the source, the lake, the checkpoint location, Kinesis.
pub async fn preflight(config: &Config, options: &ReplicaOptions) -> Vec<Finding> {
    let mut findings = match check_source(options).await {
        Ok(findings) => findings,
        Err(e) => vec![item(
            Status::Fail,
            "source",
            format!("{} ({e})", cdcd_binlog::redact_url(&options.url)),
        )],
    };
    findings.push(store_check("lake", &config.lake.url, &config.lake.s3).await);
    if let Some(directory) = config
        .checkpoint
        .url
        .strip_prefix("s3://")
        .and_then(|rest| rest.rsplit_once('/'))
        .map(|(directory, _)| format!("s3://{directory}"))
    {
        findings.push(store_check("checkpoint", &directory, &config.lake.s3).await);
    }
    if !config.kinesis.stream.is_empty() {
        findings.push(kinesis_check(config).await);
    }
    findings
}

/// `cdcd run`: logs the warnings; with a failure, prints every WARN and FAIL line to stderr and
/// returns an error naming the failures.
pub fn refuse_on_failure(findings: &[Finding]) -> Result<()> {
    let failed = findings.iter().any(|f| f.status == Status::Fail);
    for f in findings.iter().filter(|f| f.status != Status::Ok) {
        if failed {
            eprintln!("{}", line(f));
        } else {
            tracing::warn!(item = f.item, "{}", f.detail);
        }
    }
    verdict(findings)
}

/// One printed line: status, item, what was found and the fix.
fn line(f: &Finding) -> String {
    format!("{:<4}  {:<26} {}", f.status.as_str(), f.item, f.detail)
}

/// An error naming every failed item, if any failed.
fn verdict(findings: &[Finding]) -> Result<()> {
    let failures: Vec<String> = findings
        .iter()
        .filter(|f| f.status == Status::Fail)
        .map(|f| format!("{}: {}", f.item, f.detail))
        .collect();
    if !failures.is_empty() {
        bail!(
            "{} check(s) failed; fix them before running cdcd: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(())
}

fn item(status: Status, item: &'static str, detail: String) -> Finding {
    Finding {
        status,
        item,
        detail,
    }
}

/// Writes, reads and deletes a probe object at `url`: the store answers, the bucket exists and
/// the credentials may put, get and delete objects there.
async fn store_check(name: &'static str, url: &str, s3: &S3Config) -> Finding {
    let probed = match Store::open(url, s3).await {
        Ok(store) => store.probe().await,
        Err(e) => Err(e),
    };
    match probed {
        Ok(()) => item(
            Status::Ok,
            name,
            format!("{url}: a probe object was written, read and deleted"),
        ),
        Err(e) => item(
            Status::Fail,
            name,
            // The store's errors name the cause and the fix (bucket, permission, endpoint).
            format!("{url}: cdcd cannot write there: {e}"),
        ),
    }
}

/// The stream exists, takes records and routes by partition key (`DescribeStreamSummary`).
async fn kinesis_check(config: &Config) -> Finding {
    match Producer::check_stream(&config.kinesis).await {
        Ok(stream) => item(
            Status::Ok,
            "kinesis",
            format!(
                "{} is {} with {} open shards, records up to {} KiB{}; PutRecords permission is \
                 exercised by the first write, not probed (a probe record would reach the \
                 stream's consumers)",
                stream.name,
                stream.status,
                stream.open_shards,
                stream.record_limit / 1024,
                stream
                    .kms_key
                    .as_deref()
                    .map(|key| format!(", encrypted with {key} (needs kms:GenerateDataKey)"))
                    .unwrap_or_default()
            ),
        ),
        Err(e) => item(Status::Fail, "kinesis", e.to_string()),
    }
}
