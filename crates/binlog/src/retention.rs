//! Binlog retention: how long the server keeps binlogs, and how long until it purges the oldest
//! binlog a reader still needs (the *headroom*).
//!
//! Servers expire a binlog file by its modification time, which is when its last event was
//! written: MySQL and MariaDB purge a file once `binlog_expire_logs_seconds` (older servers:
//! `expire_logs_days`) have passed since then; Aurora MySQL keeps binlogs for `binlog retention
//! hours` (`CALL mysql.rds_show_configuration`). A file's last write is its rotation, so its
//! modification time is the creation time of the next file, which that file's
//! FORMAT_DESCRIPTION event records. The current (last) file is never purged, whatever its age.
//!
//! Invariants: the headroom is never more than the retention period; a file the server no longer
//! lists has a headroom of 0; a server that never purges binlogs has an infinite headroom.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn};

use crate::error::{Error, Result};
use crate::replica::{connect, connection_opts, first_value, ReplicaOptions};

/// How long the server keeps binlogs, and which setting says so.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// `None`: binlogs are never purged automatically.
    pub period: Option<Duration>,
    /// The setting that decides it, for messages (`binlog_expire_logs_seconds`, …).
    pub setting: &'static str,
}

/// The binlog retention the server applies.
///
/// Aurora's `binlog retention hours` wins where `mysql.rds_show_configuration` exists (NULL there
/// means Aurora purges binlogs as soon as it can: a period of 0).
pub async fn retention(conn: &mut Conn) -> Result<Retention> {
    if let Ok(rows) = conn
        .query::<(Option<String>, Option<String>, Option<String>), _>(
            "CALL mysql.rds_show_configuration",
        )
        .await
    {
        let hours = rows
            .into_iter()
            .find(|(name, _, _)| name.as_deref() == Some("binlog retention hours"))
            .and_then(|(_, value, _)| value)
            .and_then(|h| h.trim().parse::<u64>().ok());
        return Ok(Retention {
            period: Some(Duration::from_secs(hours.unwrap_or(0) * 3600)),
            setting: "binlog retention hours (Aurora)",
        });
    }
    // MySQL 8.0.29+: automatic purging can be switched off altogether.
    if first_value(conn, "SELECT @@GLOBAL.binlog_expire_logs_auto_purge")
        .await
        .ok()
        .flatten()
        .is_some_and(|on| on == "0" || on.eq_ignore_ascii_case("OFF"))
    {
        return Ok(Retention {
            period: None,
            setting: "binlog_expire_logs_auto_purge",
        });
    }
    // MySQL 8+ and MariaDB 10.6+ count seconds; older servers count days (0: never).
    let seconds = first_value(conn, "SELECT @@GLOBAL.binlog_expire_logs_seconds")
        .await
        .ok()
        .flatten()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let (seconds, setting) = match seconds {
        Some(s) if s > 0 => (s, "binlog_expire_logs_seconds"),
        _ => {
            let days = first_value(conn, "SELECT @@GLOBAL.expire_logs_days")
                .await
                .ok()
                .flatten()
                .and_then(|d| d.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            ((days * 86_400.0) as u64, "expire_logs_days")
        }
    };
    Ok(Retention {
        period: (seconds > 0).then(|| Duration::from_secs(seconds)),
        setting: if seconds > 0 {
            setting
        } else {
            "binlog_expire_logs_seconds"
        },
    })
}

/// Seconds until the server may purge `file` (a binlog a reader still needs): `f64::INFINITY`
/// when it never purges binlogs or `file` is the current binlog, 0 when `file` is already gone.
///
/// Connects as `options` says. Reading the next file's creation time opens a short binlog dump as
/// replica id `probe_server_id`, which must differ from every other replica's (a server drops an
/// older dump of the same id).
pub async fn headroom(options: &ReplicaOptions, file: &str, probe_server_id: u32) -> Result<f64> {
    let opts = connection_opts(options)?;
    let mut conn = connect(&opts).await?;
    let retention = retention(&mut conn).await?;
    let files: Vec<String> = conn
        .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| {
            row.get::<String, _>(0).unwrap_or_default()
        })
        .await
        .map_err(Error::server("listing the binlogs (SHOW BINARY LOGS)"))?;
    let Some(index) = files.iter().position(|f| f == file) else {
        return Ok(0.0);
    };
    let (Some(period), Some(next)) = (retention.period, files.get(index + 1)) else {
        // Never purged, or the current binlog (purged only once it is rotated and has aged).
        return Ok(f64::INFINITY);
    };
    let rotated_at = created_at(conn, next, probe_server_id).await?;
    Ok(remaining(period, rotated_at, now_seconds()))
}

/// What is left of `period` for a file last written at `written_at` (seconds since the epoch),
/// at `now`; never negative.
fn remaining(period: Duration, written_at: u64, now: u64) -> f64 {
    let age = now.saturating_sub(written_at);
    period.as_secs().saturating_sub(age) as f64
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// When `file` was created: the timestamp of its FORMAT_DESCRIPTION event, read with a
/// non-blocking binlog dump that is dropped right after it.
async fn created_at(conn: Conn, file: &str, probe_server_id: u32) -> Result<u64> {
    /// FORMAT_DESCRIPTION_EVENT.
    const FORMAT_DESCRIPTION: u8 = 15;
    let request = BinlogStreamRequest::new(probe_server_id)
        .with_non_blocking()
        .with_filename(file.as_bytes())
        .with_pos(4u64);
    let context = || format!("reading the creation time of binlog {file}");
    let mut stream = conn
        .get_binlog_stream(request)
        .await
        .map_err(Error::server(context()))?;
    // The server first sends a ROTATE to `file` (timestamp 0), then the file's first event.
    for _ in 0..4 {
        let Some(event) = stream.next().await else {
            break;
        };
        let event = event.map_err(Error::server(context()))?;
        let header = event.header();
        if header.event_type_raw() == FORMAT_DESCRIPTION && header.timestamp() > 0 {
            return Ok(u64::from(header.timestamp()));
        }
    }
    Err(Error::Setup(format!(
        "{}: the server sent no FORMAT_DESCRIPTION event",
        context()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_counts_down_from_the_last_write_and_stops_at_zero() {
        let day = Duration::from_secs(86_400);
        assert_eq!(remaining(day, 1_000, 1_000), 86_400.0);
        assert_eq!(remaining(day, 1_000, 1_000 + 3_600), 82_800.0);
        assert_eq!(remaining(day, 1_000, 1_000 + 90_000), 0.0);
        // A clock behind the server's: the file looks new, not older than it is.
        assert_eq!(remaining(day, 2_000, 1_000), 86_400.0);
    }
}
