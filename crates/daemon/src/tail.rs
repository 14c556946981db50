//! `cdcd tail`: print row changes as native or DMS JSON lines, from a server or from files.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use cdcd_binlog::{FileReader, Position, Record, Replica, ReplicaOptions, StartFrom, TableFilter};
use cdcd_event::dms::DmsWriter;
use cdcd_event::native::NativeWriter;
use cdcd_event::Flavor;
use cdcd_sink::Masker;

use crate::checkpoint::Checkpoint;
use crate::config::{Config, SourceArgs};

#[derive(Args)]
pub struct TailArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// start | end | gtid:SET | file:NAME:POS
    #[arg(long, default_value = "end")]
    from: String,
    /// native | dms (default: tail.format from the config).
    #[arg(long)]
    format: Option<String>,
    /// Stop once caught up with the end of the binlog.
    #[arg(long)]
    until_end: bool,
    /// Tables to print, as schema.table globs separated by commas.
    #[arg(long)]
    tables: Option<String>,
    /// Skip events of this type code instead of stopping on them (repeatable). Only for event
    /// types you know carry no row changes.
    #[arg(long = "skip-event-type", value_name = "CODE")]
    skip_event_types: Vec<u8>,
    /// Resume from this checkpoint file (when it exists) and keep it at the last transaction
    /// whose output was written and flushed.
    #[arg(long, value_name = "FILE", conflicts_with = "file")]
    checkpoint: Option<PathBuf>,
    /// Read binlog files instead of a server.
    #[arg(long, num_args = 1.., conflicts_with_all = ["from", "until_end"])]
    file: Vec<PathBuf>,
}

enum Output {
    Native(NativeWriter),
    Dms(Box<DmsWriter>),
}

impl Output {
    fn render(&mut self, record: &Record, buf: &mut String) {
        match (self, record) {
            (Output::Native(w), Record::Change(e)) => {
                w.write_change(buf, e);
                buf.push('\n');
            }
            (Output::Native(w), Record::Ddl(e)) => {
                w.write_ddl(buf, e);
                buf.push('\n');
            }
            (Output::Dms(w), Record::Change(e)) => w.write_change(buf, e),
            (Output::Dms(w), Record::Ddl(e)) => {
                w.write_ddl(buf, e);
            }
            _ => {}
        }
    }
}

pub async fn run(config_path: Option<&Path>, args: TailArgs) -> Result<()> {
    let config = Config::load(config_path)?;
    let format = args.format.as_deref().unwrap_or(&config.tail.format);
    let output = match format {
        "native" => Output::Native(NativeWriter::new()),
        "dms" => Output::Dms(Box::new(DmsWriter::new(config.dms.options()?))),
        other => bail!("--format {other}: use native or dms"),
    };
    let tables = args.tables.as_deref().unwrap_or(&config.source.tables);
    let filter = TableFilter::parse(tables).map_err(|e| anyhow::anyhow!("--tables: {e}"))?;

    let masker = Masker::new(&config.masking)?;
    let (writer, produced) = if args.file.is_empty() {
        let checkpoint = args.checkpoint.clone();
        let mut options = replica_options(&config, args, filter)?;
        if let Some(resume) = checkpoint
            .as_deref()
            .map(Checkpoint::load)
            .transpose()?
            .flatten()
        {
            tracing::info!(position = ?resume.position, "resuming from the checkpoint");
            options.start = StartFrom::Position(resume.position, resume.server_uuid);
        }
        let replica = Replica::connect(options).await?;
        let target = checkpoint.map(|path| CheckpointTarget {
            path,
            flavor: replica.server().flavor,
            server_uuid: replica.server().server_uuid.clone(),
        });
        let (batches, writer) = spawn_writer(output, masker, target);
        (writer, follow_server(replica, batches).await)
    } else {
        let (batches, writer) = spawn_writer(output, masker, None);
        let produced = read_files(&args.file, filter, args.skip_event_types, batches).await;
        (writer, produced)
    };
    // The writer's error (a closed stdout ends it quietly) explains a failed send; report it first.
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the output thread panicked"))??;
    produced
}

/// Records travel to the output thread in batches, so that decoding and JSON rendering run on
/// both cores. Rendered batches come back, so that their records are freed on the thread that
/// allocated them (a cross-thread free costs the allocator far more) and their vectors are reused.
struct Batches {
    to_output: tokio::sync::mpsc::Sender<Vec<Record>>,
    rendered: std::sync::mpsc::Receiver<Vec<Record>>,
}

impl Batches {
    /// An empty batch, recycled from a rendered one when there is one.
    fn empty(&self) -> Vec<Record> {
        match self.rendered.try_recv() {
            Ok(mut batch) => {
                batch.clear();
                batch
            }
            Err(_) => Vec::with_capacity(BATCH),
        }
    }

    /// Hands `batch` to the output thread; false when the output has stopped (stdout closed).
    async fn send(&self, batch: &mut Vec<Record>) -> bool {
        let full = std::mem::replace(batch, self.empty());
        self.to_output.send(full).await.is_ok()
    }
}

const BATCH: usize = 4096;

/// Where `--checkpoint` keeps the position, and the server it belongs to.
struct CheckpointTarget {
    path: PathBuf,
    flavor: Flavor,
    server_uuid: Option<String>,
}

fn spawn_writer(
    mut output: Output,
    mut masker: Masker,
    checkpoint: Option<CheckpointTarget>,
) -> (Batches, std::thread::JoinHandle<Result<()>>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Record>>(4);
    let (rendered_tx, rendered) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        let mut buf = String::with_capacity(1 << 18);
        // The last transaction boundary rendered into `buf`, and the last one flushed.
        let mut rendered: Option<Position> = None;
        let mut flushed: Option<Position> = None;
        let save = |rendered: &Option<Position>, flushed: &mut Option<Position>| -> Result<()> {
            if let (Some(target), Some(position)) = (&checkpoint, rendered) {
                if flushed.as_ref() != Some(position) {
                    Checkpoint {
                        flavor: target.flavor,
                        server_uuid: target.server_uuid.clone(),
                        position: position.clone(),
                        pending: Vec::new(),
                        // `cdcd tail` writes what it decoded, not a lake: nothing to compare.
                        schemas: Default::default(),
                    }
                    .store(&target.path)?;
                    *flushed = Some(position.clone());
                }
            }
            Ok(())
        };
        while let Some(mut batch) = rx.blocking_recv() {
            for record in &mut batch {
                match record {
                    Record::Change(event) => masker.mask(event),
                    Record::Commit(position) => rendered = Some(position.clone()),
                    _ => {}
                }
                output.render(record, &mut buf);
            }
            let _ = rendered_tx.send(batch);
            // Write when the buffer is large, or when nothing else is queued: then the reader has
            // caught up, and whoever watches should see the changes now.
            if buf.len() >= 1 << 18 || rx.is_empty() {
                let written = stdout
                    .write_all(buf.as_bytes())
                    .and_then(|()| stdout.flush());
                buf.clear();
                match written {
                    Ok(()) => save(&rendered, &mut flushed)?,
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e).context("writing to stdout"),
                }
            }
        }
        match stdout
            .write_all(buf.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => save(&rendered, &mut flushed),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(e).context("writing to stdout"),
        }
    });
    (
        Batches {
            to_output: tx,
            rendered,
        },
        handle,
    )
}

async fn read_files(
    paths: &[PathBuf],
    filter: TableFilter,
    skip_event_types: Vec<u8>,
    batches: Batches,
) -> Result<()> {
    let mut reader = FileReader::open_all(paths, filter, skip_event_types)?;
    let mut batch = batches.empty();
    loop {
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(e) => {
                // Print what was decoded before the error, then report it.
                batches.send(&mut batch).await;
                return Err(e.into());
            }
        };
        batch.push(record);
        if batch.len() == BATCH && !batches.send(&mut batch).await {
            return Ok(());
        }
    }
    batches.send(&mut batch).await;
    Ok(())
}

async fn follow_server(mut replica: Replica, batches: Batches) -> Result<()> {
    let mut batch = batches.empty();
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let more = tokio::select! {
            more = replica.next_records(&mut batch) => more,
            _ = &mut stop => Ok(false),
        };
        let more = match more {
            Ok(more) => more,
            Err(e) => {
                // Print what was decoded before the error, then report it.
                batches.send(&mut batch).await;
                return Err(e.into());
            }
        };
        // Transaction ends and heartbeats hand the batch over, so changes show up at once.
        let boundary = batch
            .last()
            .is_some_and(|r| matches!(r, Record::Commit(_) | Record::Heartbeat));
        if (!more || boundary || batch.len() >= BATCH) && (!batches.send(&mut batch).await || !more)
        {
            return Ok(());
        }
    }
}

fn replica_options(config: &Config, args: TailArgs, filter: TableFilter) -> Result<ReplicaOptions> {
    let mut options = args.source.options(config)?;
    options.filter = filter;
    options.until_end = args.until_end;
    options.start = parse_from(&args.from)?;
    options.skip_event_types = args.skip_event_types;
    Ok(options)
}

pub(crate) fn parse_from(from: &str) -> Result<StartFrom> {
    Ok(match from {
        "start" => StartFrom::Start,
        "end" => StartFrom::End,
        _ => {
            if let Some(set) = from.strip_prefix("gtid:") {
                StartFrom::Gtid(set.to_string())
            } else if let Some(rest) = from.strip_prefix("file:") {
                let (name, pos) = rest
                    .rsplit_once(':')
                    .with_context(|| format!("--from {from}: write file:NAME:POS"))?;
                let pos = pos
                    .parse()
                    .with_context(|| format!("--from {from}: `{pos}` is not an offset"))?;
                StartFrom::File(name.to_string(), pos)
            } else {
                bail!("--from {from}: use start, end, gtid:SET or file:NAME:POS")
            }
        }
    })
}
