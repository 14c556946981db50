//! `cdcd run`'s Kinesis output: the lake thread puts every masked change on the stream as it
//! buffers it, numbering the records so that the checkpoint can wait for their acknowledgement.
//! Records over the stream's size limit go to the overflow store (`kinesis.oversize = "s3"`).

use anyhow::{Context, Result};

use cdcd_event::dms::DmsWriter;
use cdcd_event::native::NativeWriter;
use cdcd_event::{ChangeEvent, DdlEvent};
use cdcd_kinesis::{Acks, Producer};
use cdcd_sink::Store;

use crate::config::Config;

/// `cdcd run`'s Kinesis output: every masked change (and, in DMS format, a control record per
/// DDL) as one record, tokens numbering them in order for the acknowledgement watermark.
pub struct KinesisOutput {
    pub producer: Producer,
    pub acks: Acks,
    pub format: KinesisFormat,
    /// DMS records, and the partition keys of both formats (`[dms] partition_key_type`).
    pub dms: DmsWriter,
    /// Where oversized records go (`kinesis.oversize = "s3"`); `None`: they are refused.
    pub overflow: Option<Overflow>,
    pub next_token: u64,
    pub buf: String,
}

/// The overflow location of `kinesis.oversize = "s3"`: a store and the key prefix in it.
pub struct Overflow {
    store: Store,
    prefix: &'static str,
}

impl Overflow {
    /// `kinesis.overflow_url`, or the lake's store under `_cdcd/kinesis-overflow/`; probed.
    pub async fn open(config: &Config) -> Result<Overflow> {
        let (url, prefix) = match config.kinesis.overflow_url.as_str() {
            "" => (config.lake.url.as_str(), "_cdcd/kinesis-overflow/"),
            url => (url, ""),
        };
        let store = Store::open(url, &config.lake.s3)
            .await
            .context("kinesis.overflow_url")?;
        store.probe().await.with_context(|| {
            format!("kinesis.overflow_url {url}: cdcd cannot write oversized records there")
        })?;
        Ok(Overflow { store, prefix })
    }

    /// Writes `payload` durably, named by the event id (a replay rewrites the same object), and
    /// returns the pointer record to put in its place.
    fn write(&self, event_id: &str, payload: &[u8]) -> Result<Vec<u8>> {
        use cdcd_kinesis::overflow;
        let key = format!("{}{}", self.prefix, overflow::object_key(event_id));
        let location = self.store.location(&key);
        tokio::runtime::Handle::current()
            .block_on(self.store.put(&key, payload.to_vec()))
            .with_context(|| format!("writing oversized record {event_id} to {location}"))?;
        let url = if location.starts_with("s3://") {
            location
        } else {
            format!("file://{location}")
        };
        tracing::info!(event_id, bytes = payload.len(), %url, "record over the Kinesis size limit written to the overflow store");
        Ok(overflow::encode(&overflow::Pointer::to(
            url, event_id, payload,
        )))
    }
}

pub enum KinesisFormat {
    Dms,
    Native(NativeWriter),
}

impl KinesisOutput {
    pub fn put_change(&mut self, event: &ChangeEvent) -> Result<()> {
        self.buf.clear();
        match &mut self.format {
            KinesisFormat::Dms => self.dms.write_change(&mut self.buf, event),
            KinesisFormat::Native(native) => native.write_change(&mut self.buf, event),
        }
        let key = self.dms.partition_key(event);
        let committed = event.source.transaction.commit_ts_us;
        // The event id only names a record the producer refuses (too large) or one written to
        // the overflow store; it is not worth an allocation for every other record.
        let data = self.buf.trim_end_matches('\n');
        if data.len() + key.len() <= self.producer.record_limit() {
            return self.send(key, None, committed);
        }
        let event_id = event.event_id();
        match &self.overflow {
            Some(overflow) => {
                let pointer = overflow.write(&event_id, data.as_bytes())?;
                self.buf.clear();
                self.buf
                    .push_str(std::str::from_utf8(&pointer).expect("JSON is UTF-8"));
                self.send(key, Some(event_id), committed)
            }
            None => self.send(key, Some(event_id), committed),
        }
    }

    pub fn put_ddl(&mut self, ddl: &DdlEvent) -> Result<()> {
        self.buf.clear();
        match &mut self.format {
            KinesisFormat::Dms => {
                self.dms.write_ddl(&mut self.buf, ddl);
            }
            KinesisFormat::Native(native) => native.write_ddl(&mut self.buf, ddl),
        }
        if self.buf.is_empty() {
            // DMS mode without control records (dms.include_control_details = false).
            return Ok(());
        }
        let key = match &ddl.table {
            Some((schema, table)) => format!("{schema}.{table}"),
            None => ddl.schema.to_string(),
        };
        self.send(key, None, ddl.source.transaction.commit_ts_us)
    }

    /// Puts the rendered record, waiting while the producer's buffer is full.
    fn send(&mut self, key: String, event_id: Option<String>, commit_ts_us: i64) -> Result<()> {
        // One record per change, without the line break that separates them in `cdcd tail`.
        let data = self.buf.trim_end_matches('\n');
        let mut record = cdcd_kinesis::Record::new(
            key,
            bytes::Bytes::copy_from_slice(data.as_bytes()),
            self.next_token,
        )
        .with_commit_ts_us(commit_ts_us);
        if let Some(id) = event_id {
            record = record.with_event_id(id);
        }
        self.next_token += 1;
        tokio::runtime::Handle::current()
            .block_on(self.producer.send(record))
            .map_err(Into::into)
    }

    /// The token of the last record put, if any.
    pub fn last_token(&self) -> Option<u64> {
        self.next_token.checked_sub(1)
    }
}
