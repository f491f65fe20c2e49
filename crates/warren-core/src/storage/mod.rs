//! The storage the broker model needs, as the core defines it: a message store (append a
//! record, read it back, count references to it, learn when it is durable), a per-queue
//! index of persistent messages, and a definitions log. In the spirit of NATS server's
//! `StreamStore`: the core states what it needs and knows nothing of how it is kept.
//! `warren-store` implements these traits on disk (segments, queue logs, group commit);
//! [`memory::MemoryStore`] implements them in memory for tests and transient-only brokers.
//! The binary wires one of them in.

pub mod memory;

use std::sync::Arc;

use bytes::Bytes;

pub use memory::MemoryStore;

/// Where a message record lives, as the store named it. The core never interprets it; it
/// only hands it back to the store that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RecordLocation {
    pub file: u32,
    pub offset: u32,
    pub len: u32,
}

/// A storage failure, as the broker reports it (the store's own error, rendered).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(pub String);

/// One definitions change: a key and its new value, or `None` to remove the key.
pub type DefinitionChange = (Vec<u8>, Option<Vec<u8>>);

/// A live entry read back from a queue index after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredEntry {
    /// The queue's sequence number (orders the queue).
    pub seq: u64,
    pub loc: RecordLocation,
    /// The message was delivered before: it goes out with `redelivered` set.
    pub delivered: bool,
    /// Expiry given at enqueue, Unix milliseconds (0: none).
    pub deadline: u64,
}

/// The store's file operations since it opened: counts, bytes and the time they took, in
/// nanoseconds (RabbitMQ's `io_*` node statistics). Reads are of message records paged out
/// or stored before a restart, and of index logs at recovery and compaction; writes and
/// syncs (fdatasyncs and directory fsyncs) are every one made while the store runs. What
/// the store does while it opens its directory (its definitions log replayed, segment
/// headers read, directories made durable) is not counted, nor are opens and renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoStats {
    pub read_ops: u64,
    pub read_bytes: u64,
    pub read_nanos: u64,
    pub write_ops: u64,
    pub write_bytes: u64,
    pub write_nanos: u64,
    pub sync_ops: u64,
    pub sync_nanos: u64,
}

/// Largest deadline an index entry holds (48 bits of Unix milliseconds).
pub const MAX_DEADLINE: u64 = (1 << 48) - 1;

/// Message records and the generations that make them durable.
///
/// Every write (append, index record) bumps the generation; [`MessageStore::synced`] reports
/// the highest generation that is durable. A record's space is reclaimed once every
/// reference to it is released: `append` returns a location that already counts one.
pub trait MessageStore: Send + Sync + 'static {
    /// Writes a record; the returned location counts one reference, owned by the caller.
    fn append(&self, record: &[u8]) -> RecordLocation;
    /// Appends the concatenation of `parts` as one record (what `append` of the joined
    /// bytes would do, without the caller joining them first).
    fn append_parts(&self, parts: &[&[u8]]) -> RecordLocation {
        self.append(&parts.concat())
    }
    /// Reads a record back, verified.
    fn read(&self, loc: RecordLocation) -> Result<Bytes, StorageError>;
    /// Counts one more reference to a record.
    fn retain(&self, loc: RecordLocation);
    /// Drops one reference.
    fn release(&self, loc: RecordLocation);

    /// Opens (or creates) the index of a durable queue or delayed exchange.
    fn queue_index(&self, id: u64) -> Result<Arc<dyn QueueIndex>, StorageError>;
    /// Deletes an index and everything it held.
    fn remove_queue_index(&self, id: u64) -> Result<(), StorageError>;
    /// The ids of the indexes the store holds.
    fn queue_index_ids(&self) -> Result<Vec<u64>, StorageError>;
    /// Recovery is over: space that no index references may be reclaimed.
    fn recovery_done(&self) {}

    /// Generation of everything written so far.
    fn generation(&self) -> u64;
    /// Watch of the highest durable generation.
    fn synced(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Asks for the next group commit to start now.
    fn request_sync(&self);
    /// Makes everything written so far durable, blocking.
    fn sync_now(&self) -> Result<(), StorageError>;
    /// Bytes written but not durable yet (held in memory meanwhile).
    fn buffered_bytes(&self) -> u64;
    /// Free space where the store writes, if it writes to a disk.
    fn disk_free_bytes(&self) -> Option<u64> {
        None
    }
    /// The store could not make writes durable and refuses more.
    fn is_failed(&self) -> bool {
        false
    }
    /// File operations so far (zero for a store without files).
    fn io_stats(&self) -> IoStats {
        IoStats::default()
    }

    /// Makes a batch of definition changes durable (all or nothing).
    fn apply_definitions(&self, changes: Vec<DefinitionChange>) -> Result<(), StorageError>;
    /// Every saved definition, key and value.
    fn definitions(&self) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// A definitions snapshot of an older layout, to be moved into the log once.
    fn legacy_definitions(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(None)
    }
    /// The older snapshot was moved: remove it.
    fn remove_legacy_definitions(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// The index of one durable queue: which records it holds, in which order, and which it has
/// delivered and acknowledged. Writes are buffered; they are durable with the generation
/// that follows them.
pub trait QueueIndex: Send + Sync + std::fmt::Debug {
    fn id(&self) -> u64;
    /// The queue holds `loc` as entry `seq`, expiring at `deadline` (Unix ms, 0: never).
    fn enqueue(&self, seq: u64, loc: RecordLocation, deadline: u64);
    /// Entry `seq` was delivered (a restart redelivers it flagged).
    fn delivered(&self, seq: u64);
    /// Entry `seq` is gone.
    fn ack(&self, seq: u64);
    /// Entry `seq` is gone once everything written so far is durable; `loc`'s reference is
    /// released then too. (A message moved to another queue leaves this one only after its
    /// copy there is durable.)
    fn ack_when_durable(&self, seq: u64, loc: Option<RecordLocation>);
    /// The live entries, in sequence order (read at start-up, before any write).
    fn recover(&self) -> Result<Vec<RecoveredEntry>, StorageError>;
}

/// A counted reference to a record: cloning retains, dropping releases. A message holds one
/// while routing hands it to queues (each retains the location for itself), so its record
/// can never be reclaimed in the middle of one publish.
pub struct StoredRecord {
    loc: RecordLocation,
    store: Arc<dyn MessageStore>,
}

impl StoredRecord {
    /// Appends `record` to `store` and holds the reference `append` counted.
    pub fn append(store: &Arc<dyn MessageStore>, record: &[u8]) -> StoredRecord {
        StoredRecord {
            loc: store.append(record),
            store: Arc::clone(store),
        }
    }

    /// [`StoredRecord::append`] of the concatenation of `parts`.
    pub fn append_parts(store: &Arc<dyn MessageStore>, parts: &[&[u8]]) -> StoredRecord {
        StoredRecord {
            loc: store.append_parts(parts),
            store: Arc::clone(store),
        }
    }

    /// Takes over one already-counted reference to `loc`.
    pub fn adopt(store: &Arc<dyn MessageStore>, loc: RecordLocation) -> StoredRecord {
        StoredRecord {
            loc,
            store: Arc::clone(store),
        }
    }

    pub fn location(&self) -> RecordLocation {
        self.loc
    }
}

impl Clone for StoredRecord {
    fn clone(&self) -> Self {
        self.store.retain(self.loc);
        StoredRecord {
            loc: self.loc,
            store: Arc::clone(&self.store),
        }
    }
}

impl Drop for StoredRecord {
    fn drop(&mut self) {
        self.store.release(self.loc);
    }
}

impl std::fmt::Debug for StoredRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StoredRecord").field(&self.loc).finish()
    }
}
