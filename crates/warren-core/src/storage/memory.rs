//! The storage traits kept in memory: records in a map with their reference counts, queue
//! indexes as ordered maps, definitions as a map. Everything is "durable" as soon as it is
//! written (the synced generation is always the newest), so confirms never wait. Serves the
//! core's tests, which can inspect what a queue logged, and brokers that need no disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::{
    DefinitionChange, MessageStore, QueueIndex, RecordLocation, RecoveredEntry, StorageError,
};

/// Record bytes and reference counts, shared by the store and its indexes (a deferred ack
/// releases its location).
type Records = Arc<Mutex<HashMap<RecordLocation, (Bytes, usize)>>>;

fn release_in(records: &Records, loc: RecordLocation) {
    let mut records = records.lock();
    if let Some(r) = records.get_mut(&loc) {
        r.1 -= 1;
        if r.1 == 0 {
            records.remove(&loc);
        }
    }
}

/// In-memory [`MessageStore`].
pub struct MemoryStore {
    next_record: AtomicU64,
    records: Records,
    indexes: Mutex<BTreeMap<u64, Arc<MemoryIndex>>>,
    definitions: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    generation: AtomicU64,
    synced: tokio::sync::watch::Sender<u64>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            next_record: AtomicU64::new(0),
            records: Arc::new(Mutex::new(HashMap::new())),
            indexes: Mutex::new(BTreeMap::new()),
            definitions: Mutex::new(BTreeMap::new()),
            generation: AtomicU64::new(0),
            // Every generation is durable at once.
            synced: tokio::sync::watch::Sender::new(u64::MAX),
        }
    }
}

impl MemoryStore {
    pub fn new() -> Arc<MemoryStore> {
        Arc::new(MemoryStore::default())
    }

    /// Records still referenced (for tests that check nothing leaks).
    pub fn record_count(&self) -> usize {
        self.records.lock().len()
    }

    /// References counted on the record at `loc` (0 once it is gone).
    pub fn references(&self, loc: RecordLocation) -> usize {
        self.records.lock().get(&loc).map_or(0, |r| r.1)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl MessageStore for MemoryStore {
    fn append(&self, record: &[u8]) -> RecordLocation {
        let n = self.next_record.fetch_add(1, Ordering::Relaxed);
        let loc = RecordLocation {
            file: (n >> 32) as u32,
            offset: n as u32,
            len: record.len().try_into().unwrap_or(u32::MAX),
        };
        self.records
            .lock()
            .insert(loc, (Bytes::copy_from_slice(record), 1));
        self.bump();
        loc
    }

    fn read(&self, loc: RecordLocation) -> Result<Bytes, StorageError> {
        self.records
            .lock()
            .get(&loc)
            .map(|r| r.0.clone())
            .ok_or_else(|| StorageError(format!("{loc:?}: no such record")))
    }

    fn retain(&self, loc: RecordLocation) {
        if let Some(r) = self.records.lock().get_mut(&loc) {
            r.1 += 1;
        }
    }

    fn release(&self, loc: RecordLocation) {
        release_in(&self.records, loc);
    }

    fn queue_index(&self, id: u64) -> Result<Arc<dyn QueueIndex>, StorageError> {
        let index = self
            .indexes
            .lock()
            .entry(id)
            .or_insert_with(|| Arc::new(MemoryIndex::new(id, self.records.clone())))
            .clone();
        Ok(index)
    }

    fn remove_queue_index(&self, id: u64) -> Result<(), StorageError> {
        self.indexes.lock().remove(&id);
        Ok(())
    }

    fn queue_index_ids(&self) -> Result<Vec<u64>, StorageError> {
        Ok(self.indexes.lock().keys().copied().collect())
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn synced(&self) -> tokio::sync::watch::Receiver<u64> {
        self.synced.subscribe()
    }

    fn request_sync(&self) {}

    fn sync_now(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn buffered_bytes(&self) -> u64 {
        0
    }

    fn apply_definitions(&self, changes: Vec<DefinitionChange>) -> Result<(), StorageError> {
        let mut defs = self.definitions.lock();
        for (key, value) in changes {
            match value {
                Some(v) => defs.insert(key, v),
                None => defs.remove(&key),
            };
        }
        self.bump();
        Ok(())
    }

    fn definitions(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let defs = self.definitions.lock();
        defs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// In-memory [`QueueIndex`]. It does not count references itself (the queue does), as the
/// on-disk index does not; a deferred ack releases the location it is given.
pub struct MemoryIndex {
    id: u64,
    entries: Mutex<BTreeMap<u64, RecoveredEntry>>,
    records: Records,
}

impl std::fmt::Debug for MemoryIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryIndex").field("id", &self.id).finish()
    }
}

impl MemoryIndex {
    fn new(id: u64, records: Records) -> MemoryIndex {
        MemoryIndex {
            id,
            entries: Mutex::new(BTreeMap::new()),
            records,
        }
    }
}

impl QueueIndex for MemoryIndex {
    fn id(&self) -> u64 {
        self.id
    }

    fn enqueue(&self, seq: u64, loc: RecordLocation, deadline: u64) {
        self.entries.lock().insert(
            seq,
            RecoveredEntry {
                seq,
                loc,
                delivered: false,
                deadline,
            },
        );
    }

    fn delivered(&self, seq: u64) {
        if let Some(e) = self.entries.lock().get_mut(&seq) {
            e.delivered = true;
        }
    }

    fn ack(&self, seq: u64) {
        self.entries.lock().remove(&seq);
    }

    fn ack_when_durable(&self, seq: u64, loc: Option<RecordLocation>) {
        self.entries.lock().remove(&seq);
        if let Some(loc) = loc {
            release_in(&self.records, loc);
        }
    }

    fn recover(&self) -> Result<Vec<RecoveredEntry>, StorageError> {
        Ok(self.entries.lock().values().cloned().collect())
    }
}
