//! Typed errors of the store. I/O failures keep their `std::io::Error`; anything that reads
//! back wrong (bad checksum, a location past the end of its segment, a foreign file) is
//! `Corrupt`, which the caller treats as "this one record is lost", never as a reason to stop.

use thiserror::Error;

/// An error from the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The operating system refused a read, write, fsync, rename or directory operation.
    #[error("store I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// What was read back is not what was written: bad checksum, bad length, missing segment,
    /// truncated file, or a file that is not ours.
    #[error("corrupt store data: {what}")]
    Corrupt {
        /// Which record or file, and what was wrong with it.
        what: String,
    },
    /// Another process (or another `Store` in this process) already has the directory open.
    #[error("store directory {dir} is locked by another store instance")]
    Locked {
        /// The directory passed to `Store::open`.
        dir: String,
    },
    /// The queue log was removed with `Store::remove_queue_log`; its handle is dead.
    #[error("queue log {queue_id} was removed")]
    QueueLogRemoved {
        /// The queue id whose log was removed.
        queue_id: u64,
    },
}

impl StoreError {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt { what: what.into() }
    }
}
