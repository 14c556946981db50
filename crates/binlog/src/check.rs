//! `cdcd check`: is this server ready for change data capture? One finding per setting, each with
//! what to do about it. Failures are settings under which cdcd refuses to run or could not see every
//! change; warnings are settings that work but cost something (no checksums, names from
//! `information_schema`, short binlog retention).

use mysql_async::prelude::Queryable;

use cdcd_event::Flavor;

use crate::error::Result;
use crate::replica::{connect, connection_opts, first_row, first_value, ReplicaOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One checked setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub status: Status,
    pub item: &'static str,
    /// What the server says, and for WARN/FAIL what to do.
    pub detail: String,
}

fn finding(status: Status, item: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        status,
        item,
        detail: detail.into(),
    }
}

/// Connects as `options` describes and checks the server. Connection failures are errors (they
/// already say what to fix); everything after is a list of findings.
pub async fn check_source(options: &ReplicaOptions) -> Result<Vec<Finding>> {
    let opts = connection_opts(options)?;
    let mut conn = connect(&opts).await?;
    let mut findings = Vec::new();
    let version = first_value(&mut conn, "SELECT @@version")
        .await?
        .unwrap_or_default();
    let flavor = if version.contains("MariaDB") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    findings.push(finding(
        Status::Ok,
        "server",
        format!("{} {version}", flavor.as_str()),
    ));
    let tls = first_row(&mut conn, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await?
        .and_then(|row| row.get(1).cloned().flatten())
        .unwrap_or_default();
    findings.push(if tls.is_empty() {
        finding(
            Status::Warn,
            "tls",
            "the connection is not encrypted: set source.tls_mode = \"verify-identity\" and \
             source.tls_ca to the server's CA",
        )
    } else {
        finding(Status::Ok, "tls", format!("encrypted ({tls})"))
    });

    let variable = |name: &'static str| format!("SELECT @@GLOBAL.{name}");
    let get = |row: Option<String>| row.unwrap_or_default();

    let log_bin = get(first_value(&mut conn, &variable("log_bin")).await?);
    findings.push(if log_bin == "1" {
        finding(Status::Ok, "log_bin", "ON")
    } else {
        finding(
            Status::Fail,
            "log_bin",
            "OFF: start the server with --log-bin",
        )
    });

    let format = get(first_value(&mut conn, &variable("binlog_format")).await?);
    findings.push(if format.eq_ignore_ascii_case("ROW") {
        finding(Status::Ok, "binlog_format", "ROW")
    } else {
        finding(
            Status::Fail,
            "binlog_format",
            format!("{format}: row changes are only in the binlog with ROW; set binlog_format=ROW"),
        )
    });

    let image = get(first_value(&mut conn, &variable("binlog_row_image")).await?);
    findings.push(if image.eq_ignore_ascii_case("FULL") {
        finding(Status::Ok, "binlog_row_image", "FULL")
    } else {
        finding(
            Status::Fail,
            "binlog_row_image",
            format!("{image}: cdcd needs complete rows; set binlog_row_image=FULL"),
        )
    });

    let metadata = first_value(&mut conn, &variable("binlog_row_metadata")).await;
    findings.push(match metadata {
        Ok(Some(m)) if m.eq_ignore_ascii_case("FULL") => {
            finding(Status::Ok, "binlog_row_metadata", "FULL")
        }
        Ok(Some(m)) => finding(
            Status::Warn,
            "binlog_row_metadata",
            format!(
                "{m}: column names come from information_schema, and reading history after a \
                 RENAME COLUMN would mislabel columns; set binlog_row_metadata=FULL"
            ),
        ),
        _ => finding(
            Status::Warn,
            "binlog_row_metadata",
            "not supported by this server: column names come from information_schema",
        ),
    });

    let checksum = get(first_value(&mut conn, &variable("binlog_checksum")).await?);
    findings.push(if checksum.eq_ignore_ascii_case("NONE") {
        finding(
            Status::Warn,
            "binlog_checksum",
            "NONE: corruption in transit or on disk cannot be detected; set binlog_checksum=CRC32",
        )
    } else {
        finding(Status::Ok, "binlog_checksum", checksum)
    });

    match flavor {
        Flavor::MySql => {
            let mode = get(first_value(&mut conn, &variable("gtid_mode")).await?);
            findings.push(if mode.eq_ignore_ascii_case("ON") {
                finding(Status::Ok, "gtid_mode", "ON")
            } else {
                finding(
                    Status::Warn,
                    "gtid_mode",
                    format!(
                        "{mode}: positions are file offsets only, which do not survive a \
                         failover; set gtid_mode=ON (with enforce_gtid_consistency=ON)"
                    ),
                )
            });
            let options = first_value(&mut conn, &variable("binlog_row_value_options"))
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            findings.push(finding(
                Status::Ok,
                "binlog_row_value_options",
                if options.is_empty() {
                    "'' (JSON updates logged whole)".to_string()
                } else {
                    format!("{options} (partial JSON updates are applied to the before image)")
                },
            ));
        }
        Flavor::MariaDb => {
            let position = get(first_value(&mut conn, &variable("gtid_binlog_pos")).await?);
            findings.push(finding(
                Status::Ok,
                "gtid_binlog_pos",
                if position.is_empty() {
                    "(no transactions yet)".to_string()
                } else {
                    position
                },
            ));
            let compress = get(first_value(&mut conn, &variable("log_bin_compress")).await?);
            findings.push(if compress == "1" || compress.eq_ignore_ascii_case("ON") {
                finding(
                    Status::Fail,
                    "log_bin_compress",
                    "ON: cdcd does not decode compressed events; set log_bin_compress=OFF",
                )
            } else {
                finding(Status::Ok, "log_bin_compress", "OFF")
            });
        }
    }

    let server_id = get(first_value(&mut conn, &variable("server_id")).await?);
    findings.push(if server_id == options.server_id.to_string() {
        finding(
            Status::Fail,
            "server_id",
            format!(
                "the server's id is {server_id}, the same as cdcd's replica id; change \
                 source.server_id"
            ),
        )
    } else {
        finding(
            Status::Ok,
            "server_id",
            format!("{server_id} (cdcd registers as {})", options.server_id),
        )
    });

    findings.push(privileges(&mut conn, flavor).await?);
    findings.push(retention(&mut conn).await);
    Ok(findings)
}

/// REPLICATION SLAVE, REPLICATION CLIENT (MariaDB: BINLOG MONITOR) and SELECT, from SHOW GRANTS.
async fn privileges(conn: &mut mysql_async::Conn, flavor: Flavor) -> Result<Finding> {
    let grants: Vec<String> =
        conn.query("SHOW GRANTS")
            .await
            .map_err(crate::error::Error::server(
                "reading the user's grants (SHOW GRANTS)",
            ))?;
    let text = grants.join(" ").to_ascii_uppercase();
    let all = text.contains("ALL PRIVILEGES ON *.*");
    let client = if flavor == Flavor::MariaDb {
        "BINLOG MONITOR"
    } else {
        "REPLICATION CLIENT"
    };
    let missing: Vec<&str> = ["REPLICATION SLAVE", client, "SELECT"]
        .into_iter()
        .filter(|p| !all && !text.contains(p))
        .collect();
    Ok(if missing.is_empty() {
        finding(
            Status::Ok,
            "privileges",
            format!("REPLICATION SLAVE, {client}, SELECT"),
        )
    } else {
        finding(
            Status::Fail,
            "privileges",
            format!(
                "missing {}: GRANT {} ON *.* TO the cdcd user",
                missing.join(", "),
                missing.join(", ")
            ),
        )
    })
}

/// How long the server keeps binlogs: a stopped cdcd must restart within that time.
async fn retention(conn: &mut mysql_async::Conn) -> Finding {
    // Aurora keeps binlogs as `binlog retention hours` says (NULL: purged as soon as possible).
    if let Ok(rows) = conn
        .query::<(Option<String>, Option<String>), _>("CALL mysql.rds_show_configuration")
        .await
    {
        let hours = rows
            .into_iter()
            .find(|(name, _)| name.as_deref() == Some("binlog retention hours"))
            .and_then(|(_, value)| value);
        return match hours {
            Some(h) => finding(Status::Ok, "binlog retention", format!("{h} hours (Aurora)")),
            None => finding(
                Status::Fail,
                "binlog retention",
                "Aurora purges binlogs as soon as it can: CALL mysql.rds_set_configuration('binlog \
                 retention hours', 72)",
            ),
        };
    }
    // MySQL 8+ and MariaDB 10.6+ count seconds; older servers count days.
    let seconds: u64 = match first_value(conn, "SELECT @@GLOBAL.binlog_expire_logs_seconds").await {
        Ok(Some(s)) => s.parse().unwrap_or(0),
        _ => first_value(conn, "SELECT @@GLOBAL.expire_logs_days")
            .await
            .ok()
            .flatten()
            .and_then(|d| d.parse::<f64>().ok())
            .map_or(0, |days| (days * 86_400.0) as u64),
    };
    match seconds {
        0 => finding(
            Status::Ok,
            "binlog retention",
            "binlogs are never purged automatically",
        ),
        s if s < 24 * 3600 => finding(
            Status::Warn,
            "binlog retention",
            format!(
                "{} hours: a cdcd stopped longer than that cannot resume; keep at least a day \
                 (binlog_expire_logs_seconds)",
                s / 3600
            ),
        ),
        s => finding(
            Status::Ok,
            "binlog retention",
            format!("{} hours", s / 3600),
        ),
    }
}
