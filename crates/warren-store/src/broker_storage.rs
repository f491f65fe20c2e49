//! The store as the broker model sees it: `warren-core`'s storage traits implemented over
//! [`Store`] (segments, group commit, definitions log) and [`QueueLog`] (one index per
//! durable queue). Only types are converted here; every behaviour is the store's own.

use std::sync::Arc;

use bytes::Bytes;
use warren_core::storage::{
    DefinitionChange, MessageStore, QueueIndex, RecordLocation, RecoveredEntry as CoreEntry,
    StorageError,
};

use crate::{Location, QueueLog, RecoveredEntry, Store, StoreError};

fn to_core(loc: Location) -> RecordLocation {
    RecordLocation {
        file: loc.segment,
        offset: loc.offset,
        len: loc.len,
    }
}

fn from_core(loc: RecordLocation) -> Location {
    Location {
        segment: loc.file,
        offset: loc.offset,
        len: loc.len,
    }
}

fn error(e: StoreError) -> StorageError {
    StorageError(e.to_string())
}

fn entry_to_core(e: RecoveredEntry) -> CoreEntry {
    CoreEntry {
        seq: e.seq,
        loc: to_core(e.loc),
        delivered: e.delivered,
        deadline: e.deadline,
    }
}

impl MessageStore for Store {
    fn append(&self, record: &[u8]) -> RecordLocation {
        to_core(self.append_counted(record))
    }

    fn append_parts(&self, parts: &[&[u8]]) -> RecordLocation {
        to_core(self.append_parts_counted(parts))
    }

    fn read(&self, loc: RecordLocation) -> Result<Bytes, StorageError> {
        Store::read(self, from_core(loc)).map_err(error)
    }

    fn retain(&self, loc: RecordLocation) {
        Store::retain(self, from_core(loc));
    }

    fn release(&self, loc: RecordLocation) {
        Store::release(self, from_core(loc));
    }

    fn queue_index(&self, id: u64) -> Result<Arc<dyn QueueIndex>, StorageError> {
        let log = self.queue_log(id).map_err(error)?;
        Ok(Arc::new(log))
    }

    fn remove_queue_index(&self, id: u64) -> Result<(), StorageError> {
        self.remove_queue_log(id).map_err(error)
    }

    fn queue_index_ids(&self) -> Result<Vec<u64>, StorageError> {
        self.queue_log_ids().map_err(error)
    }

    fn recovery_done(&self) {
        self.collect_garbage();
    }

    fn generation(&self) -> u64 {
        Store::generation(self)
    }

    fn synced(&self) -> tokio::sync::watch::Receiver<u64> {
        Store::synced(self)
    }

    fn request_sync(&self) {
        Store::request_sync(self);
    }

    fn sync_now(&self) -> Result<(), StorageError> {
        Store::sync_now(self).map_err(error)
    }

    fn buffered_bytes(&self) -> u64 {
        Store::buffered_bytes(self)
    }

    fn disk_free_bytes(&self) -> Option<u64> {
        Store::disk_free_bytes(self)
    }

    fn is_failed(&self) -> bool {
        Store::is_failed(self)
    }

    fn io_stats(&self) -> warren_core::storage::IoStats {
        Store::io_stats(self)
    }

    fn apply_definitions(&self, changes: Vec<DefinitionChange>) -> Result<(), StorageError> {
        self.apply_metadata(changes).map_err(error)
    }

    fn definitions(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.metadata_entries()
    }

    fn legacy_definitions(&self) -> Result<Option<Vec<u8>>, StorageError> {
        self.load_metadata().map_err(error)
    }

    fn remove_legacy_definitions(&self) -> Result<(), StorageError> {
        self.remove_legacy_metadata().map_err(error)
    }
}

impl QueueIndex for QueueLog {
    fn id(&self) -> u64 {
        self.queue_id()
    }

    fn enqueue(&self, seq: u64, loc: RecordLocation, deadline: u64) {
        QueueLog::enqueue(self, seq, from_core(loc), deadline);
    }

    fn delivered(&self, seq: u64) {
        QueueLog::delivered(self, seq);
    }

    fn ack(&self, seq: u64) {
        QueueLog::ack(self, seq);
    }

    fn ack_when_durable(&self, seq: u64, loc: Option<RecordLocation>) {
        QueueLog::ack_when_durable(self, seq, loc.map(from_core));
    }

    fn recover(&self) -> Result<Vec<CoreEntry>, StorageError> {
        QueueLog::recover(self)
            .map(|v| v.into_iter().map(entry_to_core).collect())
            .map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The broker's view of an on-disk store: a record appended, indexed, synced and
    /// recovered through the traits, and its segment kept while referenced.
    #[test]
    fn traits_round_trip_through_the_disk_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn MessageStore> =
            Arc::new(Store::open(dir.path(), crate::StoreOptions::default()).unwrap());
        let loc = store.append(b"hello");
        let index = store.queue_index(3).unwrap();
        store.retain(loc);
        index.enqueue(1, loc, 0);
        index.delivered(1);
        let g = store.generation();
        store.sync_now().unwrap();
        assert!(*store.synced().borrow() >= g);
        assert_eq!(store.read(loc).unwrap(), Bytes::from_static(b"hello"));
        let live = index.recover().unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].loc, loc);
        assert!(live[0].delivered);
        assert_eq!(store.queue_index_ids().unwrap(), vec![3]);
        store
            .apply_definitions(vec![(b"k".to_vec(), Some(b"v".to_vec()))])
            .unwrap();
        assert_eq!(store.definitions(), vec![(b"k".to_vec(), b"v".to_vec())]);
        index.ack(1);
        store.release(loc);
        store.release(loc);
        store.sync_now().unwrap();
        assert!(index.recover().unwrap().is_empty());
    }
}
