//! `cdcd tail`: print row changes as native or DMS JSON lines, from a server or from files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use cdcd_binlog::{FileReader, Record, Replica, ReplicaOptions, StartFrom, TableFilter};
use cdcd_event::dms::DmsWriter;
use cdcd_event::native;

use crate::config::Config;

#[derive(Args)]
pub struct TailArgs {
    /// mysql://USER[:PASSWORD]@HOST[:PORT] (default: source.url from the config).
    #[arg(long)]
    source: Option<String>,
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
    /// disabled | preferred | required | verify-ca | verify-identity
    #[arg(long)]
    tls_mode: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Skip events of this type code instead of stopping on them (repeatable). Only for event
    /// types you know carry no row changes.
    #[arg(long = "skip-event-type", value_name = "CODE")]
    skip_event_types: Vec<u8>,
    /// Read binlog files instead of a server.
    #[arg(long, num_args = 1.., conflicts_with_all = ["source", "from", "until_end"])]
    file: Vec<PathBuf>,
}

enum Output {
    Native,
    Dms(Box<DmsWriter>),
}

impl Output {
    fn render(&mut self, record: &Record, buf: &mut String) {
        match (self, record) {
            (Output::Native, Record::Change(e)) => {
                native::write_change(buf, e);
                buf.push('\n');
            }
            (Output::Native, Record::Ddl(e)) => {
                native::write_ddl(buf, e);
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
    let mut output = match format {
        "native" => Output::Native,
        "dms" => Output::Dms(Box::new(DmsWriter::new(config.dms.options()?))),
        other => bail!("--format {other}: use native or dms"),
    };
    let tables = args.tables.as_deref().unwrap_or(&config.source.tables);
    let filter = TableFilter::parse(tables).map_err(|e| anyhow::anyhow!("--tables: {e}"))?;

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut buf = String::with_capacity(1 << 16);
    let mut flush = |buf: &mut String, force: bool| -> Result<bool> {
        if buf.len() >= 1 << 15 || (force && !buf.is_empty()) {
            let result = out.write_all(buf.as_bytes());
            buf.clear();
            let result = result.and_then(|()| if force { out.flush() } else { Ok(()) });
            if let Err(e) = result {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(false);
                }
                return Err(e).context("writing to stdout");
            }
        }
        Ok(true)
    };

    if !args.file.is_empty() {
        let mut reader = FileReader::open_all(&args.file, filter, args.skip_event_types)?;
        while let Some(record) = reader.next_record()? {
            output.render(&record, &mut buf);
            if !flush(&mut buf, false)? {
                return Ok(());
            }
        }
        flush(&mut buf, true)?;
        return Ok(());
    }

    let mut options = ReplicaOptions::new(args.source.unwrap_or(config.source.url.clone()));
    options.password = config.source.password()?;
    options.tls_mode = args
        .tls_mode
        .as_deref()
        .unwrap_or(&config.source.tls_mode)
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--tls-mode: {e}"))?;
    options.tls_ca = args.tls_ca.or(config.source.tls_ca.clone());
    options.server_id = config.source.server_id;
    options.heartbeat = Duration::from_secs(config.source.heartbeat_seconds.max(1));
    options.filter = filter;
    options.until_end = args.until_end;
    options.start = parse_from(&args.from)?;
    options.skip_event_types = args.skip_event_types;
    let mut replica = Replica::connect(options).await?;
    loop {
        let record = tokio::select! {
            record = replica.next_record() => record?,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(record) = record else { break };
        let idle = matches!(record, Record::Commit(_) | Record::Heartbeat);
        output.render(&record, &mut buf);
        // Flush at transaction ends and when idle, so a human watching sees changes at once.
        if !flush(&mut buf, idle)? {
            return Ok(());
        }
    }
    flush(&mut buf, true)?;
    Ok(())
}

fn parse_from(from: &str) -> Result<StartFrom> {
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
