//! `cdcd athena-ddl`: the Athena tables over the lake, and a view of each table's current rows.
//!
//! Tables use partition projection, so no crawler or `MSCK REPAIR` is needed: Athena computes the
//! partitions from the table properties. Names follow Athena's rules: lower case, `[a-z0-9_]`.
//! `CREATE EXTERNAL TABLE` is Hive DDL (backticks); the view is Trino SQL (double quotes).

use std::fmt::Write as _;

use cdcd_event::TableSchema;

use super::types::{LakeType, CDC_COLUMNS};
use super::LakeConfig;

/// The DDL for one captured table: `CREATE EXTERNAL TABLE` and, when the table has a primary
/// key, `CREATE OR REPLACE VIEW <table>_latest`.
///
/// `location` is the lake's root as Athena sees it (`s3://bucket/prefix`).
pub fn table_ddl(
    table: &TableSchema,
    config: &LakeConfig,
    database: &str,
    location: &str,
) -> String {
    let name = athena_name(&format!("{}_{}", table.schema, table.table));
    let database = athena_name(database);
    let location = format!(
        "{}/{}/{}",
        location.trim_end_matches('/'),
        table.schema,
        table.table
    );
    let json = config.format == "jsonl";
    let ingest = if config.partitioning == "ingest-time" {
        "ingest_"
    } else {
        ""
    };
    let mut ddl = String::new();
    let _ = writeln!(
        ddl,
        "-- {}.{}: every change, partitioned by {}",
        table.schema,
        table.table,
        if ingest.is_empty() {
            "commit hour"
        } else {
            "ingest hour"
        }
    );
    let _ = writeln!(
        ddl,
        "-- After an ALTER TABLE, DROP TABLE `{database}`.`{name}` (external: the data stays) and \
         run this again."
    );
    let _ = writeln!(
        ddl,
        "CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{name}` ("
    );
    let mut columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let lake_type = LakeType::of(c);
            // JSON lines hold BIT as a string of binary digits, like the native format.
            let numeric = matches!(lake_type, LakeType::Int32 | LakeType::Int64)
                && c.kind != cdcd_event::ColumnType::Bit;
            let athena = if json && !numeric {
                "string".to_string()
            } else {
                lake_type.athena()
            };
            format!("  `{}` {athena}", c.name.to_lowercase().replace('`', "``"))
        })
        .collect();
    for (cdc, lake_type) in CDC_COLUMNS {
        let athena = match (json, cdc) {
            (true, "_cdc_commit_ts") => "bigint".to_string(),
            (true, _) => "string".to_string(),
            _ => lake_type.athena(),
        };
        columns.push(format!("  `{cdc}` {athena}"));
    }
    let _ = writeln!(ddl, "{}\n)", columns.join(",\n"));
    let parts = ["year", "month", "day", "hour"].map(|p| format!("{ingest}{p}"));
    let _ = writeln!(
        ddl,
        "PARTITIONED BY ({})",
        parts
            .iter()
            .map(|p| format!("`{p}` string"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if json {
        let _ = writeln!(
            ddl,
            "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\nSTORED AS TEXTFILE"
        );
    } else {
        let _ = writeln!(ddl, "STORED AS PARQUET");
    }
    let _ = writeln!(ddl, "LOCATION '{location}/'");
    let ranges = [("2000,2099", 4), ("1,12", 2), ("1,31", 2), ("0,23", 2)];
    let mut properties = vec!["'projection.enabled'='true'".to_string()];
    for (part, (range, digits)) in parts.iter().zip(ranges) {
        properties.push(format!("'projection.{part}.type'='integer'"));
        properties.push(format!("'projection.{part}.range'='{range}'"));
        properties.push(format!("'projection.{part}.digits'='{digits}'"));
    }
    let template = parts
        .iter()
        .map(|p| format!("{p}=${{{p}}}"))
        .collect::<Vec<_>>()
        .join("/");
    properties.push(format!(
        "'storage.location.template'='{location}/{template}/'"
    ));
    let _ = writeln!(ddl, "TBLPROPERTIES (\n  {}\n);", properties.join(",\n  "));

    if table.primary_key.is_empty() {
        let _ = writeln!(
            ddl,
            "-- {}.{} has no primary key: no `{name}_latest` view (rows cannot be told apart).",
            table.schema, table.table
        );
        return ddl;
    }
    let quoted = |c: &str| format!("\"{}\"", c.to_lowercase().replace('"', "\"\""));
    let keys: Vec<String> = table.primary_key_names().map(quoted).collect();
    let order = if json {
        "CAST(\"_cdc_seq\" AS decimal(38,0))"
    } else {
        "\"_cdc_seq\""
    };
    let select: Vec<String> = table.columns.iter().map(|c| quoted(&c.name)).collect();
    let _ = writeln!(
        ddl,
        "\n-- {}.{} as it is now: the latest change per primary key, deleted rows left out",
        table.schema, table.table
    );
    let _ = writeln!(
        ddl,
        "CREATE OR REPLACE VIEW \"{database}\".\"{name}_latest\" AS\n\
         SELECT {}\n\
         FROM (\n  SELECT *, row_number() OVER (PARTITION BY {} ORDER BY {order} DESC) AS \"_cdc_rank\"\n  \
         FROM \"{database}\".\"{name}\"\n)\n\
         WHERE \"_cdc_rank\" = 1 AND \"_cdc_op\" <> 'delete';",
        select.join(", "),
        keys.join(", "),
    );
    ddl
}

/// Athena's table and database names: lower case letters, digits and underscores.
pub fn athena_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}
