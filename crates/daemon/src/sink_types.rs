//! Column types for DMS records, which carry none (`cdcd sink`).
//!
//! In order of preference: the `control.table-def` of the last CREATE/ALTER control record read
//! for the table, which is also kept next to the shard checkpoints (`tables/<schema>.<table>.json`)
//! before any record after it is checkpointed, so that a restart knows it; then, with
//! `sink.source_types = true`, the table's definition in the source database's
//! `information_schema` (as it is now); otherwise the record is refused with an error naming
//! the table and both fixes.
//!
//! Control records are keyed by task (`partition-key-type: task-id`), so with several shards a
//! table's control record and its data records may be on different shards, read in no
//! particular order: a data record read before its table's first control record needs the
//! source (or fails), one read across an ALTER may be read with the definition of the other side
//! (an unknown column is then an error, never a shifted value).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value as Json};

use cdcd_binlog::SchemaReader;
use cdcd_event::dms_read::table_from_def;
use cdcd_event::TableSchema;
use cdcd_sink::Store;

use crate::config::Config;

pub struct TableTypes {
    known: HashMap<(String, String), Arc<TableSchema>>,
    /// The checkpoint directory, where table-defs are kept.
    store: Store,
    source: Source,
}

enum Source {
    Off,
    NotConnected(Box<cdcd_binlog::ReplicaOptions>),
    Connected(SchemaReader),
}

impl TableTypes {
    pub async fn open(config: &Config, directory: &str) -> Result<TableTypes> {
        let store = Store::open(directory, &config.lake.s3)
            .await
            .with_context(|| format!("sink.checkpoint_url {directory}"))?;
        let source = if config.sink.source_types {
            let args = crate::config::SourceArgs {
                source: None,
                tls_mode: None,
                tls_ca: None,
            };
            Source::NotConnected(Box::new(args.options(config)?))
        } else {
            Source::Off
        };
        Ok(TableTypes {
            known: HashMap::new(),
            store,
            source,
        })
    }

    fn key(schema: &str, table: &str) -> String {
        format!("tables/{schema}.{table}.json")
    }

    /// A control record's definition: used from now on, and kept for restarts.
    pub async fn remember(
        &mut self,
        schema: &str,
        table: &str,
        definition: TableSchema,
        table_def: &Json,
    ) -> Result<()> {
        let document = json!({"schema": schema, "table": table, "table-def": table_def});
        self.store
            .put(
                &Self::key(schema, table),
                format!("{document}\n").into_bytes(),
            )
            .await
            .with_context(|| format!("keeping the definition of {schema}.{table}"))?;
        self.known
            .insert((schema.into(), table.into()), Arc::new(definition));
        Ok(())
    }

    /// The definition to read `schema.table`'s records with.
    pub async fn get(&mut self, schema: &str, table: &str) -> Result<Arc<TableSchema>> {
        let key = (schema.to_string(), table.to_string());
        if let Some(known) = self.known.get(&key) {
            return Ok(known.clone());
        }
        let definition = match self.load(schema, table).await? {
            Some(definition) => definition,
            None => self.look_up_source(schema, table).await?,
        };
        let definition = Arc::new(definition);
        self.known.insert(key, definition.clone());
        Ok(definition)
    }

    async fn load(&self, schema: &str, table: &str) -> Result<Option<TableSchema>> {
        let key = Self::key(schema, table);
        let Some((body, _)) = self.store.get(&key).await? else {
            return Ok(None);
        };
        let location = self.store.location(&key);
        let document: Json = serde_json::from_slice(&body)
            .with_context(|| format!("{location} is not JSON; remove it"))?;
        let definition = table_from_def(schema, table, &document["table-def"])
            .with_context(|| location.clone())?;
        Ok(Some(definition))
    }

    async fn look_up_source(&mut self, schema: &str, table: &str) -> Result<TableSchema> {
        if let Source::NotConnected(options) = &self.source {
            let reader = SchemaReader::connect(options)
                .await
                .context("sink.source_types: connecting to [source] for column types")?;
            self.source = Source::Connected(reader);
        }
        let Source::Connected(reader) = &mut self.source else {
            bail!(
                "no column types for {schema}.{table}: DMS records carry none, and no control \
                 record with its table-def was read. Either turn on control records where the \
                 stream is written (DMS IncludeControlDetails, or cdcd run's \
                 dms.include_control_details) before the table's records, or set \
                 sink.source_types = true with a [source] that reaches the database"
            );
        };
        match reader.table(schema, table).await? {
            Some(definition) => Ok(definition),
            None => bail!(
                "no column types for {schema}.{table}: no control record with its table-def was \
                 read, and the source database has no such table (dropped or renamed since)"
            ),
        }
    }
}
