//! `cdcd run`'s Kinesis output: the lake thread puts every masked change on the stream as it
//! buffers it, numbering the records so that the checkpoint can wait for their acknowledgement.

use anyhow::Result;

use cdcd_event::dms::DmsWriter;
use cdcd_event::native::NativeWriter;
use cdcd_event::{ChangeEvent, DdlEvent};
use cdcd_kinesis::{Acks, Producer};

/// `cdcd run`'s Kinesis output: every masked change (and, in DMS format, a control record per
/// DDL) as one record, tokens numbering them in order for the acknowledgement watermark.
pub struct KinesisOutput {
    pub producer: Producer,
    pub acks: Acks,
    pub format: KinesisFormat,
    /// DMS records, and the partition keys of both formats (`[dms] partition_key_type`).
    pub dms: DmsWriter,
    pub next_token: u64,
    pub buf: String,
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
        // The event id only names a record the producer refuses (too large); it is not worth an
        // allocation for every other record.
        let oversized = self.buf.len() + key.len() > self.producer.record_limit();
        self.send(key, oversized.then(|| event.event_id()))
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
        self.send(key, None)
    }

    /// Puts the rendered record, waiting while the producer's buffer is full.
    fn send(&mut self, key: String, event_id: Option<String>) -> Result<()> {
        // One record per change, without the line break that separates them in `cdcd tail`.
        let data = self.buf.trim_end_matches('\n');
        let mut record = cdcd_kinesis::Record::new(
            key,
            bytes::Bytes::copy_from_slice(data.as_bytes()),
            self.next_token,
        );
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
