//! The acknowledgement watermark: which prefix of the pushed records Kinesis has.
//!
//! Records complete out of order (shards run concurrently, records are retried); the window
//! remembers, for every record from the oldest unacknowledged one on, its token and whether it is
//! done, and moves its start past every done record. The watermark is the token of the last record
//! it moved past.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use tokio::sync::watch;

use crate::error::ProducerError;

/// The producer's progress, as published on the [`Acks`] channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// How many records, counted from the first pushed, are all acknowledged.
    pub acknowledged: u64,
    /// The token of the last of them (`None` until the first record is acknowledged).
    pub watermark: Option<u64>,
}

/// The receiving side of the watermark. Cheap to clone; every clone sees every advance.
#[derive(Debug, Clone)]
pub struct Acks {
    pub(crate) progress: watch::Receiver<Progress>,
    pub(crate) failure: Arc<OnceLock<ProducerError>>,
}

impl Acks {
    /// The highest token T such that every record pushed so far with a token ≤ T is in Kinesis.
    pub fn watermark(&self) -> Option<u64> {
        self.progress.borrow().watermark
    }

    /// The full progress (watermark and the count of acknowledged records).
    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Why the producer stopped, if it failed.
    pub fn error(&self) -> Option<ProducerError> {
        self.failure.get().cloned()
    }

    /// Waits until the watermark moves (or returns at once if it moved since the last call) and
    /// returns it. Errors once the producer has stopped: with its failure, or
    /// [`ProducerError::Closed`] after a clean shutdown.
    pub async fn changed(&mut self) -> Result<Option<u64>, ProducerError> {
        match self.progress.changed().await {
            Ok(()) => Ok(self.progress.borrow_and_update().watermark),
            Err(_) => Err(self.failure.get().cloned().unwrap_or(ProducerError::Closed)),
        }
    }

    /// Waits until the watermark is at least `token`.
    pub async fn wait_for(&mut self, token: u64) -> Result<(), ProducerError> {
        loop {
            if self
                .progress
                .borrow_and_update()
                .watermark
                .is_some_and(|w| w >= token)
            {
                return Ok(());
            }
            self.changed().await?;
        }
    }

    /// A plain watch receiver of the progress, for `tokio::select!` loops.
    pub fn watch(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }
}

/// Tokens and done flags of the records from the oldest unacknowledged one on.
#[derive(Debug, Default)]
pub(crate) struct AckWindow {
    /// Sequence number (push order) of the first record in the window.
    base: u64,
    done: VecDeque<bool>,
    tokens: VecDeque<u64>,
    watermark: Option<u64>,
}

impl AckWindow {
    /// Adds the next pushed record (its sequence number is `base + len`).
    pub(crate) fn push(&mut self, seq: u64, token: u64) {
        debug_assert_eq!(
            seq,
            self.base + self.done.len() as u64,
            "records arrive in order"
        );
        self.done.push_back(false);
        self.tokens.push_back(token);
    }

    /// Marks record `seq` acknowledged; true when the progress (the acknowledged prefix) moved.
    pub(crate) fn complete(&mut self, seq: u64) -> bool {
        let index = (seq - self.base) as usize;
        self.done[index] = true;
        let base = self.base;
        while self.done.front() == Some(&true) {
            self.done.pop_front();
            self.watermark = self.tokens.pop_front();
            self.base += 1;
        }
        self.base != base
    }

    pub(crate) fn progress(&self) -> Progress {
        Progress {
            acknowledged: self.base,
            watermark: self.watermark,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_contiguous() {
        let mut window = AckWindow::default();
        for (seq, token) in [(0, 10), (1, 11), (2, 15), (3, 16)] {
            window.push(seq, token);
        }
        assert!(!window.complete(1));
        assert!(!window.complete(3));
        assert_eq!(window.progress().watermark, None);
        assert!(window.complete(0));
        assert_eq!(
            window.progress(),
            Progress {
                acknowledged: 2,
                watermark: Some(11)
            }
        );
        assert!(window.complete(2));
        assert_eq!(
            window.progress(),
            Progress {
                acknowledged: 4,
                watermark: Some(16)
            }
        );
    }
}
