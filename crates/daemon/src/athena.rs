//! `cdcd athena-ddl`: the Athena DDL for every captured table, as its masked rows land in the lake.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;

use cdcd_binlog::{Replica, TableFilter};
use cdcd_sink::lake::athena::table_ddl;
use cdcd_sink::Masker;

use crate::config::{Config, SourceArgs};

#[derive(Args)]
pub struct AthenaArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The Athena (Glue) database to create the tables in.
    #[arg(long, default_value = "cdcd")]
    database: String,
    /// The lake's root as Athena reads it (default: lake.url, when it is an s3:// URL).
    #[arg(long)]
    location: Option<String>,
}

pub async fn run(config_path: Option<&Path>, args: AthenaArgs) -> Result<()> {
    let config = Config::load(config_path)?;
    let location = match args.location {
        Some(location) => location,
        None if config.lake.url.starts_with("s3://") => config.lake.url.clone(),
        None => bail!(
            "lake.url {} is not in S3; Athena reads only s3:// locations: give --location \
             s3://BUCKET/PREFIX where the lake is copied to",
            config.lake.url
        ),
    };
    let masker = Masker::new(&config.masking)?;
    let mut options = args.source.options(&config)?;
    options.filter = TableFilter::parse(&config.source.tables)
        .map_err(|e| anyhow::anyhow!("source.tables: {e}"))?;
    let mut replica = Replica::connect(options).await?;
    let tables = replica.captured_tables().await?;
    if tables.is_empty() {
        bail!(
            "no table matches source.tables = `{}`: nothing to describe",
            config.source.tables
        );
    }
    println!(
        "CREATE DATABASE IF NOT EXISTS `{}`;\n",
        cdcd_sink::lake::athena::athena_name(&args.database)
    );
    let prefix = if config.lake.partitioning == "ingest-time" {
        "ingest_"
    } else {
        ""
    };
    for table in tables {
        let masked = masker.masked_table(&Arc::new(table));
        if let Some(column) = masked.columns.iter().find(|c| {
            ["year", "month", "day", "hour"]
                .iter()
                .any(|p| c.name.eq_ignore_ascii_case(&format!("{prefix}{p}")))
        }) {
            bail!(
                "{}.{}: column `{}` has the name of a partition column, which Athena refuses; \
                 drop it from the lake with a masking rule (action = \"drop\") or leave the \
                 table out of source.tables",
                masked.schema,
                masked.table,
                column.name
            );
        }
        println!(
            "{}",
            table_ddl(&masked, &config.lake, &args.database, &location)
        );
    }
    Ok(())
}
