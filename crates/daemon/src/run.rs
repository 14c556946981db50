//! `cdcd run`: follow the source into the lake, resuming from the checkpoint.
//!
//! The binlog reader feeds the lake pipeline ([`crate::pipeline`]): decoding and masking,
//! buffering, and encoding run on different threads, so a catch-up uses both cores. A flush's
//! boundary is a transaction's binlog position, checkpointed once its objects are durable.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use tokio::sync::mpsc;

use cdcd_binlog::{Position, Record, Replica, StartFrom, Status, TableFilter};
use cdcd_event::dms::DmsWriter;
use cdcd_event::native::NativeWriter;
use cdcd_event::{DdlEvent, TableSchema};
use cdcd_kinesis::{OversizeMode, Producer};
use cdcd_sink::{Lake, Masker, Spent, Store};

use crate::checkpoint::{Checkpoint, CheckpointStore, Schemas};
use crate::config::{Config, SourceArgs};
use crate::kinesis_output::{KinesisFormat, KinesisOutput, Overflow};
use crate::metrics::Metrics;
use crate::notify;
use crate::pipeline::{self, Checkpoints, Input, Item, Progress};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Stop once caught up with the end of the binlog (backfills, tests, benchmarks).
    #[arg(long)]
    until_end: bool,
}

pub async fn run(config_path: Option<&Path>, args: RunArgs) -> Result<()> {
    let config = Config::load(config_path)?;
    let masker = Masker::new(&config.masking)?;
    let lake = Lake::new(&config.lake)?;
    let interval = Duration::from_secs(config.checkpoint.interval_seconds);
    // Not ready when the checkpoint stands still for several intervals (and flushes).
    let stall = (interval * 6).max(Duration::from_secs_f64(config.lake.flush_seconds * 6.0));
    let metrics = Metrics::new(stall)?;
    metrics.watch_masking(masker.counters());
    let mut options = args.source.options(&config)?;
    // The same checks as `cdcd check`: the source's settings, the lake, Kinesis.
    let findings = crate::check::preflight(&config, &options).await;
    crate::check::refuse_on_failure(&findings)?;
    let row_metadata_full = findings
        .iter()
        .any(|f| f.item == "binlog_row_metadata" && f.status == Status::Ok);
    let store = Store::open(&config.lake.url, &config.lake.s3).await?;
    let checkpoint_url = checkpoint_url(&config);
    let mut checkpoints = CheckpointStore::open(
        &checkpoint_url,
        &config.lake.s3,
        config.checkpoint.lease_seconds,
    )
    .await?;
    let resume = checkpoints.load().await?;
    if !config.metrics.listen.is_empty() {
        crate::metrics::serve(&config.metrics.listen, metrics.clone()).await?;
    }

    let filter = TableFilter::parse(&config.source.tables)
        .map_err(|e| anyhow::anyhow!("source.tables: {e}"))?;
    metrics.watch_source(options.counters.clone());
    options.filter = filter;
    options.until_end = args.until_end;
    options.start = match &resume {
        Some(checkpoint) => {
            tracing::info!(
                checkpoint = %checkpoints.location(),
                file = %checkpoint.position.file,
                pos = checkpoint.position.pos,
                gtids = %checkpoint.position.gtids,
                "resuming from the checkpoint"
            );
            StartFrom::Position(checkpoint.position.clone(), checkpoint.server_uuid.clone())
        }
        None => crate::tail::parse_from(&config.run.start).context("run.start")?,
    };
    let retention = crate::metrics::watch_retention(metrics.clone(), options.clone());
    let mut replica = Replica::connect(options).await?;
    let tables = replica.captured_tables().await?;
    let unmatched = masker.unmatched(&tables);
    if !unmatched.is_empty() {
        bail!(
            "masking: {} selects no column of the {} captured tables; fix the pattern \
             (schema.table.column globs) or remove the rule",
            unmatched.join(", "),
            tables.len()
        );
    }
    let server = replica.server().clone();
    let start = Checkpoint {
        flavor: server.flavor,
        server_uuid: server.server_uuid.clone(),
        position: replica.position().clone(),
        pending: Vec::new(),
        schemas: fingerprints(&tables),
    };
    if let Some(previous) = &resume {
        let changed = changed_tables(&previous.schemas, &start.schemas);
        if !changed.is_empty() && !row_metadata_full {
            bail!(
                "{} changed since the checkpoint was written, and the server's \
                 binlog_row_metadata is not FULL: cdcd would read the rows written before the \
                 change with today's definition. Set binlog_row_metadata=FULL (the binlog then \
                 names every column), or start over from a new position (remove the checkpoint \
                 {} and set run.start)",
                changed.join(", "),
                checkpoints.location()
            );
        }
        if !changed.is_empty() {
            tracing::info!(
                tables = %changed.join(", "),
                "table definitions changed since the checkpoint; the binlog's column metadata \
                 describes the rows before the change"
            );
        }
    }
    metrics.checkpointed(Some(&start.position));
    if let Some(previous) = &resume {
        // Parts of a large transaction that the last run cut: this run cuts them anew.
        for key in &previous.pending {
            store.delete(key).await.with_context(|| {
                format!("removing {key}, written past the checkpoint by the last run")
            })?;
        }
    }
    if resume.as_ref().is_none_or(|r| !r.pending.is_empty()) {
        // From here on nothing is skipped: with run.start = "end", a restart before the first
        // flush would otherwise begin at a later "end".
        checkpoints.save(&start, false).await?;
    }
    let kinesis = if config.kinesis.stream.is_empty() {
        None
    } else {
        let (producer, acks) = Producer::start(config.kinesis.clone()).await?;
        metrics.watch_kinesis(producer.metrics());
        let format = match config.run.kinesis_format.as_str() {
            // With column types, so that `cdcd sink` can rebuild every value exactly.
            "native" => KinesisFormat::Native(NativeWriter::with_column_types()),
            _ => KinesisFormat::Dms,
        };
        Some(KinesisOutput {
            producer,
            acks,
            format,
            dms: DmsWriter::new(config.dms.options()?),
            overflow: match config.kinesis.oversize {
                OversizeMode::S3 => Some(Overflow::open(&config).await?),
                OversizeMode::Fail => None,
            },
            next_token: 0,
            buf: String::new(),
        })
    };
    let acks = kinesis.as_ref().map(|k| k.acks.clone());
    tracing::info!(
        kinesis = %config.kinesis.stream,
        lake = %config.lake.url,
        checkpoint = %checkpoints.location(),
        tables = tables.len(),
        "connected to {} {}; writing the lake",
        server.flavor.as_str(),
        server.version
    );
    metrics.set_following(true);
    notify::ready();
    let watchdog = notify::spawn_watchdog(metrics.clone());

    let start_position = RunProgress {
        position: start.position.clone(),
        schemas: start.schemas.clone(),
    };
    let checkpoints = RunCheckpoints {
        store: checkpoints,
        checkpoint: start,
    };
    // Encoded rows come back to the reader, which allocated them, to be freed.
    let (spent_tx, spent_rx) = mpsc::unbounded_channel();
    let (records_tx, running) = pipeline::start(
        lake,
        (interval, start_position),
        (store, Some(spent_tx)),
        (checkpoints, acks),
        &metrics,
        kinesis,
    )?;

    let read = read(replica, (records_tx, spent_rx), &metrics, masker).await;
    metrics.set_following(false);
    let finished = running.finish(read).await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    retention.abort();
    finished
}

fn checkpoint_url(config: &Config) -> String {
    if !config.checkpoint.url.is_empty() {
        return config.checkpoint.url.clone();
    }
    let name = format!("_cdcd/checkpoint-{}.json", config.source.server_id);
    let lake = config.lake.url.trim_end_matches('/');
    if lake.starts_with("s3://") {
        format!("{lake}/{name}")
    } else {
        let dir = lake.strip_prefix("file://").unwrap_or(lake);
        Path::new(dir).join(name).display().to_string()
    }
}

/// Reads the binlog into batches until the end (with `--until-end`), a signal, or an error.
/// Masks as it reads, so that masking runs beside the lake thread's buffering and the encoders,
/// and frees the rows the encoders are done with (`spent`), which it allocated.
async fn read(
    mut replica: Replica,
    (to_lake, mut spent): (mpsc::Sender<Vec<Record>>, mpsc::UnboundedReceiver<Spent>),
    metrics: &Metrics,
    mut masker: Masker,
) -> Result<()> {
    let mut batch = Vec::with_capacity(4096);
    let mut masked = 0;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        while let Ok(rows) = spent.try_recv() {
            drop(rows);
        }
        let more = tokio::select! {
            more = replica.next_records(&mut batch) => more,
            _ = terminate.recv() => Ok(false),
            _ = &mut interrupt => Ok(false),
        };
        if matches!(more, Ok(false)) {
            // Stopping (a signal, or the end with --until-end): say so before the final flush.
            notify::stopping();
            metrics.set_following(false);
        }
        for record in &mut batch[masked..] {
            if let Record::Change(event) = record {
                masker.mask(event);
            }
        }
        masked = batch.len();
        let failed = more.is_err();
        // Everything decoded before an error or a signal still goes out, so that it is
        // checkpointed; the open transaction is read again on the next start.
        let last = !matches!(more, Ok(true));
        let boundary = batch
            .last()
            .is_some_and(|r| matches!(r, Record::Commit(_) | Record::Heartbeat));
        if last || boundary || batch.len() >= 4096 {
            masked = 0;
            let full = std::mem::replace(&mut batch, Vec::with_capacity(4096));
            // While the lake is full, free what the encoders hand back, so that the memory is
            // reused for the next rows rather than new memory faulted in.
            let send = to_lake.send(full);
            tokio::pin!(send);
            let sent = loop {
                tokio::select! {
                    sent = &mut send => break sent,
                    Some(rows) = spent.recv() => drop(rows),
                }
            };
            if sent.is_err() {
                // The lake stage stopped; its error is the one to report.
                return Ok(());
            }
        }
        if failed {
            return more.map(drop).map_err(Into::into);
        }
        if last {
            return Ok(());
        }
    }
}

impl Input for Record {
    type Progress = RunProgress;

    fn into_item(self) -> Item<Position> {
        match self {
            Record::Change(event) => Item::Change(event, None),
            Record::Commit(position) => Item::Commit(position),
            Record::Heartbeat => Item::Heartbeat,
            Record::Ddl(ddl) => Item::Ddl(ddl),
        }
    }
}

/// Where `cdcd run` stands: a transaction boundary, and the captured tables' definitions there.
#[derive(Debug, Clone, PartialEq)]
pub struct RunProgress {
    position: Position,
    schemas: Schemas,
}

impl Progress for RunProgress {
    type Step = Position;
    const SPLITS_TRANSACTIONS: bool = true;

    fn advance(&mut self, step: Position) {
        self.position = step;
    }

    /// A definition read with the statement replaces the table's fingerprint; a dropped table
    /// has none.
    fn ddl(&mut self, ddl: &DdlEvent) {
        let Some((schema, table)) = &ddl.table else {
            return;
        };
        let name = format!("{schema}.{table}");
        match &ddl.definition {
            Some(definition) => {
                Arc::make_mut(&mut self.schemas).insert(name, definition.fingerprint());
            }
            None if ddl.operation == "drop-table" => {
                Arc::make_mut(&mut self.schemas).remove(&name);
            }
            None => {}
        }
    }

    fn binlog(&self) -> Option<&Position> {
        Some(&self.position)
    }
}

/// Fingerprints of the captured tables' definitions.
fn fingerprints(tables: &[TableSchema]) -> Schemas {
    Arc::new(
        tables
            .iter()
            .map(|t| (format!("{}.{}", t.schema, t.table), t.fingerprint()))
            .collect(),
    )
}

/// The captured tables whose definition differs from the checkpoint's: changed while cdcd was
/// stopped, or by a statement after the checkpoint that this run reads again.
fn changed_tables(checkpoint: &Schemas, now: &Schemas) -> Vec<String> {
    checkpoint
        .iter()
        .filter(|(table, fingerprint)| now.get(*table).is_some_and(|now| now != *fingerprint))
        .map(|(table, _)| table.clone())
        .collect()
}

/// The binlog checkpoint, in one file or object.
struct RunCheckpoints {
    store: CheckpointStore,
    checkpoint: Checkpoint,
}

impl Checkpoints for RunCheckpoints {
    type Progress = RunProgress;

    fn advance(&mut self, progress: RunProgress) {
        self.checkpoint.position = progress.position;
        self.checkpoint.schemas = progress.schemas;
        self.checkpoint.pending.clear();
    }

    fn add_pending(&mut self, keys: Vec<String>) {
        self.checkpoint.pending.extend(keys);
    }

    async fn save(&mut self, release: bool) -> Result<()> {
        self.store.save(&self.checkpoint, release).await?;
        if release {
            let position = &self.checkpoint.position;
            tracing::info!(
                file = %position.file,
                pos = position.pos,
                gtids = %position.gtids,
                "stopped; checkpoint released"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_tables_are_those_both_know_with_other_definitions() {
        let schemas = |entries: &[(&str, &str)]| -> Schemas {
            Arc::new(
                entries
                    .iter()
                    .map(|(t, f)| (t.to_string(), f.to_string()))
                    .collect(),
            )
        };
        let checkpoint = schemas(&[("a.kept", "1"), ("a.altered", "2"), ("a.dropped", "3")]);
        let now = schemas(&[("a.kept", "1"), ("a.altered", "9"), ("a.created", "4")]);
        assert_eq!(changed_tables(&checkpoint, &now), ["a.altered"]);
        assert!(changed_tables(&schemas(&[]), &now).is_empty());
    }
}
