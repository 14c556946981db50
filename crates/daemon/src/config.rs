//! Configuration: the repository's `config.toml` is compiled in as the defaults; a config file and
//! `CDCD_<SECTION>__<KEY>` environment variables override it. Unknown keys are errors that name the
//! key. Secrets are read from the environment or files and are never printed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

use cdcd_binlog::ReplicaOptions;
use cdcd_event::dms::{BeforeImage, BeforeImageColumns, DmsOptions, PartitionKeyType};
use cdcd_kinesis::KinesisConfig;
use cdcd_sink::{LakeConfig, MaskingConfig};

const DEFAULTS: &str = include_str!("../../../config.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub source: SourceConfig,
    pub tail: TailConfig,
    pub dms: DmsConfig,
    #[serde(default)]
    pub masking: MaskingConfig,
    pub run: RunConfig,
    pub lake: LakeConfig,
    pub checkpoint: CheckpointConfig,
    /// `cdcd run`'s Kinesis output; off while `kinesis.stream` is empty.
    #[serde(default)]
    pub kinesis: KinesisConfig,
    pub sink: SinkConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address for `/metrics`, `/healthz` and `/readyz` of `cdcd run`; empty: no endpoint.
    pub listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json` (one object per line, for log shippers).
    pub format: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Where the first run starts (later runs resume from the checkpoint): start | end |
    /// gtid:SET | file:NAME:POS.
    pub start: String,
    /// The records put on Kinesis (when `kinesis.stream` is set): `dms` (as AWS DMS writes them,
    /// shaped by `[dms]`) or `native`.
    pub kinesis_format: String,
}

/// `[sink]`: `cdcd sink` (Kinesis → masking → lake).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// The stream to read (name or ARN).
    pub stream: String,
    /// trim-horizon | latest | at-timestamp:<RFC 3339>, for shards without a checkpoint.
    pub start: String,
    /// Directory (s3://, file:// or a path) of the per-shard checkpoints and leases; empty:
    /// `_cdcd/sink-<stream>/` in the lake.
    pub checkpoint_url: String,
    /// A lease not renewed for this long is taken over by another replica.
    pub lease_seconds: u64,
    /// How often to list the shards again.
    pub list_shards_seconds: u64,
    /// How often to poll an idle shard.
    pub poll_ms: u64,
    /// Read the column types of DMS records without a control record from `[source]`'s
    /// `information_schema`.
    pub source_types: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// `s3://bucket/key`, `file:///path` or a path; empty: `_cdcd/checkpoint-<server_id>.json`
    /// in the lake.
    pub url: String,
    /// How often an idle or fully filtered source still writes the checkpoint.
    pub interval_seconds: u64,
    /// A checkpoint written by another process less than this long ago means that process
    /// still runs: cdcd refuses to start beside it.
    pub lease_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub url: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls_mode: String,
    pub tls_ca: Option<PathBuf>,
    pub server_id: u32,
    pub heartbeat_seconds: u64,
    pub tables: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailConfig {
    pub format: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmsConfig {
    pub include_null_and_empty: bool,
    pub include_transaction_details: bool,
    pub include_partition_value: bool,
    pub include_control_details: bool,
    pub partition_include_schema_table: bool,
    pub message_format: String,
    pub no_hex_prefix: bool,
    pub before_image: String,
    pub before_image_field: String,
    pub partition_key_type: String,
}

impl Config {
    /// Defaults, then `path` (if given), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = path {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(
            Env::prefixed("CDCD_")
                .split("__")
                .filter(|key| key.as_str().contains("__") || key.as_str().contains('.')),
        );
        let config: Config = figment.extract().map_err(|e| {
            let mut message = String::new();
            for error in e {
                let key = error.path.join(".");
                message.push_str(&format!("config: {error}"));
                if !key.is_empty() && !error.to_string().contains(&key) {
                    message.push_str(&format!(" (key `{key}`)"));
                }
                message.push('\n');
            }
            anyhow::anyhow!(message.trim_end().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Ranges the types cannot express.
    fn validate(&self) -> Result<()> {
        let heartbeat = self.source.heartbeat_seconds;
        if !(1..=3600).contains(&heartbeat) {
            bail!("config: source.heartbeat_seconds = {heartbeat}: use 1 to 3600");
        }
        if !matches!(self.run.kinesis_format.as_str(), "dms" | "native") {
            bail!(
                "config: run.kinesis_format = `{}`: use dms or native",
                self.run.kinesis_format
            );
        }
        if self.kinesis.aggregate && self.run.kinesis_format == "dms" {
            bail!(
                "config: kinesis.aggregate = true with run.kinesis_format = \"dms\": DMS consumers \
                 cannot read KPL aggregated records; set run.kinesis_format = \"native\" (for \
                 consumers that deaggregate, such as cdcd sink or the KCL) or kinesis.aggregate = false"
            );
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!(
                "config: log.format = `{}`: use text or json",
                self.log.format
            );
        }
        let checkpoint = &self.checkpoint;
        if checkpoint.interval_seconds == 0
            || checkpoint.lease_seconds < 2 * checkpoint.interval_seconds
        {
            bail!(
                "config: checkpoint.interval_seconds = {} and checkpoint.lease_seconds = {}: the \
                 interval must be at least 1 and the lease at least twice the interval",
                checkpoint.interval_seconds,
                checkpoint.lease_seconds
            );
        }
        let sink = &self.sink;
        if sink.lease_seconds < 2 * checkpoint.interval_seconds {
            bail!(
                "config: sink.lease_seconds = {} must be at least twice checkpoint.interval_seconds \
                 ({}): leases are renewed at every checkpoint",
                sink.lease_seconds,
                checkpoint.interval_seconds
            );
        }
        if sink.list_shards_seconds == 0 || sink.poll_ms == 0 {
            bail!("config: sink.list_shards_seconds and sink.poll_ms must be at least 1");
        }
        if matches!(
            self.dms.before_image_field.as_str(),
            "data" | "metadata" | "control" | "cdcd" | ""
        ) {
            bail!(
                "config: dms.before_image_field = `{}` would collide with another key of the record",
                self.dms.before_image_field
            );
        }
        Ok(())
    }
}

/// Command-line overrides of the `[source]` section, shared by the commands that connect.
#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// mysql://USER[:PASSWORD]@HOST[:PORT] (default: source.url from the config).
    #[arg(long)]
    pub source: Option<String>,
    /// disabled | preferred | required | verify-ca | verify-identity
    #[arg(long)]
    pub tls_mode: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

impl SourceArgs {
    /// How to connect: the config's `[source]` with these overrides.
    pub fn options(self, config: &Config) -> Result<ReplicaOptions> {
        let source = &config.source;
        let mut options = ReplicaOptions::new(self.source.unwrap_or_else(|| source.url.clone()));
        options.password = source.password()?;
        options.tls_mode = self
            .tls_mode
            .as_deref()
            .unwrap_or(&source.tls_mode)
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--tls-mode: {e}"))?;
        options.tls_ca = self.tls_ca.or_else(|| source.tls_ca.clone());
        options.server_id = source.server_id;
        options.heartbeat = std::time::Duration::from_secs(source.heartbeat_seconds);
        Ok(options)
    }
}

impl SourceConfig {
    /// The password from `password_file` or the variable named by `password_env`, if any.
    pub fn password(&self) -> Result<Option<String>> {
        if let Some(file) = &self.password_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("source.password_file: cannot read {}", file.display()))?;
            return Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()));
        }
        Ok(self
            .password_env
            .as_deref()
            .filter(|name| !name.is_empty())
            .and_then(|name| std::env::var(name).ok()))
    }
}

impl DmsConfig {
    pub fn options(&self) -> Result<DmsOptions> {
        let before_image = match self.before_image.as_str() {
            "" => None,
            filter => Some(BeforeImage {
                field_name: self.before_image_field.clone(),
                columns: match filter {
                    "pk-only" => BeforeImageColumns::PkOnly,
                    "non-lob" => BeforeImageColumns::NonLob,
                    "all" => BeforeImageColumns::All,
                    other => bail!(
                        "dms.before_image = `{other}`: use \"\" (off), pk-only, non-lob or all"
                    ),
                },
            }),
        };
        let pretty = match self.message_format.as_str() {
            "json" => true,
            "json-unformatted" => false,
            other => bail!("dms.message_format = `{other}`: use json or json-unformatted"),
        };
        let partition_key_type = match self.partition_key_type.as_str() {
            "primary-key" => PartitionKeyType::PrimaryKey,
            "schema-table" => PartitionKeyType::SchemaTable,
            "transaction-id" => PartitionKeyType::TransactionId,
            other => bail!(
                "dms.partition_key_type = `{other}`: use primary-key, schema-table or transaction-id"
            ),
        };
        Ok(DmsOptions {
            include_null: self.include_null_and_empty,
            before_image,
            include_transaction_details: self.include_transaction_details,
            include_partition_value: self.include_partition_value,
            include_control_details: self.include_control_details,
            partition_include_schema_table: self.partition_include_schema_table,
            pretty,
            no_hex_prefix: self.no_hex_prefix,
            partition_key_type,
            ..DmsOptions::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_unknown_keys_are_named() {
        let config = Config::load(None).unwrap();
        assert_eq!(config.tail.format, "native");
        config.dms.options().unwrap();
        let dir = std::env::temp_dir().join(format!("cdcd-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[source]\nurll = \"x\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn passwords_come_from_a_file_or_the_named_variable() {
        let dir = std::env::temp_dir().join(format!("cdcd-password-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut source = Config::load(None).unwrap().source;
        source.password_file = Some(file);
        assert_eq!(source.password().unwrap().as_deref(), Some("s3cret"));
        source.password_file = None;
        source.password_env = Some("CDCD_TEST_PASSWORD_VARIABLE_UNSET".into());
        assert_eq!(source.password().unwrap(), None);
        source.password_env = Some("PATH".into());
        assert!(source.password().unwrap().is_some());
        source.password_file = Some(dir.join("missing"));
        let err = source.password().unwrap_err().to_string();
        assert!(err.contains("source.password_file"), "{err}");
    }

    #[test]
    fn aggregation_is_refused_in_dms_format() {
        let dir = std::env::temp_dir().join(format!("cdcd-kpl-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("aggregate.toml");
        let write = |format: &str| {
            let text = format!(
                "[run]\nkinesis_format = \"{format}\"\n[kinesis]\nstream = \"s\"\naggregate = true\n"
            );
            std::fs::write(&path, text).unwrap();
        };
        write("dms");
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("kinesis.aggregate") && err.contains("DMS consumers"),
            "{err}"
        );
        write("native");
        assert!(Config::load(Some(&path)).unwrap().kinesis.aggregate);
    }
}
