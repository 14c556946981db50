//! `cdcd check`: is this server ready for change data capture? One finding per setting, each with
//! what to do about it. Failures are settings under which cdcd refuses to run or could not see every
//! change (or would lose its position after a short stop); warnings are settings that work but cost
//! something (no checksums, names from `information_schema`, binlog retention under a day, no
//! GTIDs).

use mysql_async::prelude::Queryable;

use cdcd_event::Flavor;

use crate::error::Result;
use crate::replica::{connect, connection_opts, first_row, first_value, ReplicaOptions};
use crate::retention::retention;

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
            let strict = get(first_value(&mut conn, &variable("gtid_strict_mode")).await?);
            findings.push(if strict == "1" || strict.eq_ignore_ascii_case("ON") {
                finding(Status::Ok, "gtid_strict_mode", "ON")
            } else {
                finding(
                    Status::Warn,
                    "gtid_strict_mode",
                    "OFF: a domain's sequence numbers may go backwards (alternative futures after \
                     a failover), and a GTID position then names no single point; set \
                     gtid_strict_mode=ON",
                )
            });
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
    } else if let Some(host) = replica_with_id(&mut conn, flavor, options.server_id).await {
        // An earlier run of this cdcd stays registered until the server notices it is gone.
        finding(
            Status::Warn,
            "server_id",
            format!(
                "a replica with id {} is connected ({host}): unless that is this cdcd's last run, \
                 which the server drops within a heartbeat, give each replica and cdcd its own \
                 source.server_id (the server disconnects the older of two with one id)",
                options.server_id
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
    findings.push(retention_finding(&mut conn).await);
    Ok(findings)
}

/// The host of a connected replica registered with `server_id`, from SHOW REPLICAS (MySQL 8.0.22+)
/// or SHOW SLAVE HOSTS; `None` when there is none or the user may not list them.
async fn replica_with_id(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
    server_id: u32,
) -> Option<String> {
    let statements: &[&str] = match flavor {
        Flavor::MySql => &["SHOW REPLICAS", "SHOW SLAVE HOSTS"],
        Flavor::MariaDb => &["SHOW SLAVE HOSTS"],
    };
    for statement in statements {
        // Columns: Server_id, Host, Port, Source/Master id, …
        if let Ok(rows) = conn.query::<mysql_async::Row, _>(*statement).await {
            return rows.into_iter().find_map(|row| {
                let id: Option<u32> = row.get(0);
                let host: Option<String> = row.get(1);
                (id == Some(server_id)).then(|| host.unwrap_or_default())
            });
        }
    }
    None
}

/// The privileges of SHOW GRANTS lines: global ones (`ON *.*`), and whether SELECT is granted
/// anywhere (a schema-level SELECT on the captured schemas is enough).
fn granted(grants: &[String]) -> (Vec<String>, bool) {
    let mut global = Vec::new();
    let mut select_anywhere = false;
    for grant in grants {
        let upper = grant.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix("GRANT ") else {
            continue;
        };
        let Some((privileges, object)) = rest.split_once(" ON ") else {
            continue;
        };
        let is_global = object.trim_start().starts_with("*.*");
        for privilege in privileges.split(',').map(str::trim) {
            if privilege == "SELECT" || privilege.starts_with("ALL") {
                select_anywhere = true;
            }
            if is_global {
                global.push(privilege.to_string());
            }
        }
    }
    (global, select_anywhere)
}

/// REPLICATION SLAVE, REPLICATION CLIENT (MariaDB: BINLOG MONITOR) and SELECT, from SHOW GRANTS.
async fn privileges(conn: &mut mysql_async::Conn, flavor: Flavor) -> Result<Finding> {
    let grants: Vec<String> =
        conn.query("SHOW GRANTS")
            .await
            .map_err(crate::error::Error::server(
                "reading the user's grants (SHOW GRANTS)",
            ))?;
    let (global, select_anywhere) = granted(&grants);
    let all = global.iter().any(|p| p.starts_with("ALL"));
    let has = |names: &[&str]| all || global.iter().any(|p| names.contains(&p.as_str()));
    let client = if flavor == Flavor::MariaDb {
        "BINLOG MONITOR"
    } else {
        "REPLICATION CLIENT"
    };
    let mut missing = Vec::new();
    if !has(&["REPLICATION SLAVE"]) {
        missing.push("REPLICATION SLAVE");
    }
    // MariaDB 10.5 renamed REPLICATION CLIENT to BINLOG MONITOR (the old name is an alias).
    if !has(&["REPLICATION CLIENT", "BINLOG MONITOR"]) {
        missing.push(client);
    }
    if !select_anywhere {
        missing.push("SELECT");
    }
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
                "missing {}: GRANT {} ON *.* TO the cdcd user (SELECT may be granted on the \
                 captured schemas only)",
                missing.join(", "),
                missing.join(", ")
            ),
        )
    })
}

/// Retention under this fails: a restart, a deploy or an S3 outage would lose the position.
const MIN_RETENTION_SECONDS: u64 = 3600;
/// Retention under this warns: a cdcd stopped over a weekend night could not resume.
const RECOMMENDED_RETENTION_SECONDS: u64 = 24 * 3600;

/// How long the server keeps binlogs: a stopped cdcd must restart within that time.
async fn retention_finding(conn: &mut mysql_async::Conn) -> Finding {
    const ITEM: &str = "binlog retention";
    let retention = match retention(conn).await {
        Ok(retention) => retention,
        Err(e) => {
            return finding(
                Status::Warn,
                ITEM,
                format!("cannot read the retention settings: {e}"),
            )
        }
    };
    let aurora = retention.setting.contains("Aurora");
    let fix = if aurora {
        "CALL mysql.rds_set_configuration('binlog retention hours', 72)"
    } else {
        "SET PERSIST binlog_expire_logs_seconds = 259200 (MariaDB: SET GLOBAL, and in the config)"
    };
    let Some(period) = retention.period else {
        return finding(
            Status::Ok,
            ITEM,
            format!(
                "binlogs are never purged automatically ({}); watch the server's disk",
                retention.setting
            ),
        );
    };
    let seconds = period.as_secs();
    let shown = if seconds % 3600 == 0 {
        format!("{} hours", seconds / 3600)
    } else {
        format!("{seconds} s")
    };
    if seconds < MIN_RETENTION_SECONDS {
        finding(
            Status::Fail,
            ITEM,
            format!(
                "{shown} ({}): a cdcd stopped longer than that (a restart, a deploy, an S3 \
                 outage) loses its position; keep at least a day: {fix}",
                retention.setting
            ),
        )
    } else if seconds < RECOMMENDED_RETENTION_SECONDS {
        finding(
            Status::Warn,
            ITEM,
            format!(
                "{shown} ({}): a cdcd stopped longer than that cannot resume; keep at least a \
                 day: {fix}",
                retention.setting
            ),
        )
    } else {
        finding(Status::Ok, ITEM, format!("{shown} ({})", retention.setting))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_read_per_privilege_and_scope() {
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (global, select) = granted(&lines(&[
            "GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `repl`@`%` IDENTIFIED BY PASSWORD '*X'",
        ]));
        assert_eq!(global, ["SELECT", "REPLICATION SLAVE", "BINLOG MONITOR"]);
        assert!(select);
        // REPLICATION SLAVE ADMIN is not REPLICATION SLAVE; a schema-level SELECT counts.
        let (global, select) = granted(&lines(&[
            "GRANT REPLICATION SLAVE ADMIN ON *.* TO `u`@`%`",
            "GRANT SELECT ON `shop`.* TO `u`@`%`",
        ]));
        assert_eq!(global, ["REPLICATION SLAVE ADMIN"]);
        assert!(select);
        let (global, select) = granted(&lines(&["GRANT USAGE ON *.* TO `u`@`%`"]));
        assert_eq!(global, ["USAGE"]);
        assert!(!select);
    }
}
