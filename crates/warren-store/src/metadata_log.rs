//! The definitions log: the broker's metadata as an append-only log of batches of key/value
//! changes, so that a change costs one small append and one fdatasync, however many objects
//! exist (10,000 durable queues and one more is one record, not a rewrite of 10,001).
//!
//! File `metadata.log`: header `b"WRNMLOG1"` + 8 zero bytes, then records
//! `[len u32][crc32c u32 of payload][payload]` (little endian). A payload is one batch:
//! `count u32`, then per change `op u8` (1 put, 2 delete), `key len u32`, key, and for a put
//! `value len u32`, value. A batch is applied whole or not at all: a torn batch at the end
//! fails its checksum and is dropped.
//!
//! Appends are always fdatasynced, whatever the store's `fsync` option says: definitions
//! change rarely, and a declare-ok must mean the object survives a power cut. When the file
//! holds more than four times the live bytes (and at least 1 MiB), it is compacted: one batch
//! of every live key, written to `metadata.log.tmp`, fsynced, renamed over the log, directory
//! fsynced.
//!
//! Damage: replay stops at the first record that fails its checksum. What follows is set
//! aside as `metadata.log.damaged` (for inspection), the log is cut back to the last good
//! batch, and the broker starts from there, saying so in its log.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::io_stats::IoCounters;
use crate::sys;

const MAGIC: &[u8; 8] = b"WRNMLOG1";
const HEADER_LEN: u64 = 16;
pub(crate) const LOG_FILE: &str = "metadata.log";
const TMP_FILE: &str = "metadata.log.tmp";
const DAMAGED_FILE: &str = "metadata.log.damaged";
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
/// Compaction threshold: the file may hold this many times the live bytes...
const COMPACT_FACTOR: u64 = 4;
/// ...once it is at least this large.
const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// Largest batch accepted on replay (a corrupt length must not allocate gigabytes).
const MAX_BATCH: u32 = 256 << 20;

/// One change to the definitions: set `key` to the value, or delete it (`None`).
pub type MetaChange = (Vec<u8>, Option<Vec<u8>>);

/// The open log and the live state it describes.
pub(crate) struct MetaLog {
    path: PathBuf,
    dir: PathBuf,
    file: File,
    len: u64,
    live: HashMap<Vec<u8>, Vec<u8>>,
    live_bytes: u64,
    /// The file existed when the store was opened (false: a new or legacy directory).
    pub existed: bool,
}

fn encode_batch(changes: &[MetaChange]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for (key, value) in changes {
        p.push(if value.is_some() { OP_PUT } else { OP_DELETE });
        p.extend_from_slice(&(key.len() as u32).to_le_bytes());
        p.extend_from_slice(key);
        if let Some(v) = value {
            p.extend_from_slice(&(v.len() as u32).to_le_bytes());
            p.extend_from_slice(v);
        }
    }
    let mut rec = Vec::with_capacity(8 + p.len());
    rec.extend_from_slice(&(p.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
    rec.extend_from_slice(&p);
    rec
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Some(head)
}

fn take_u32(buf: &mut &[u8]) -> Option<u32> {
    take(buf, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn decode_batch(mut p: &[u8]) -> Option<Vec<MetaChange>> {
    let count = take_u32(&mut p)?;
    let mut out = Vec::new();
    for _ in 0..count {
        let op = *take(&mut p, 1)?.first()?;
        let klen = take_u32(&mut p)? as usize;
        let key = take(&mut p, klen)?.to_vec();
        let value = match op {
            OP_PUT => {
                let vlen = take_u32(&mut p)? as usize;
                Some(take(&mut p, vlen)?.to_vec())
            }
            OP_DELETE => None,
            _ => return None,
        };
        out.push((key, value));
    }
    p.is_empty().then_some(out)
}

fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h
}

impl MetaLog {
    /// Opens (creating) the log in `dir` and replays it.
    pub(crate) fn open(dir: &Path) -> Result<MetaLog, StoreError> {
        let path = dir.join(LOG_FILE);
        let _ = fs::remove_file(dir.join(TMP_FILE));
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut log = MetaLog {
            path,
            dir: dir.to_path_buf(),
            file,
            len: 0,
            live: HashMap::new(),
            live_bytes: 0,
            existed,
        };
        let data = fs::read(&log.path)?;
        if (data.len() as u64) < HEADER_LEN || &data[..8] != MAGIC {
            if !data.is_empty() {
                log.set_aside(&data, 0, "the header is damaged")?;
            }
            log.file.set_len(0)?;
            log.file.write_all_at(&header(), 0)?;
            log.file.sync_data()?;
            if !existed {
                sys::sync_dir(dir)?;
            }
            log.len = HEADER_LEN;
            return Ok(log);
        }
        let mut at = HEADER_LEN as usize;
        let mut batches = 0u64;
        while at < data.len() {
            let rest = &data[at..];
            let good = (|| {
                let mut r = rest;
                let len = take_u32(&mut r)?;
                if len > MAX_BATCH {
                    return None;
                }
                let crc = take_u32(&mut r)?;
                let payload = take(&mut r, len as usize)?;
                if crc32c::crc32c(payload) != crc {
                    return None;
                }
                Some((8 + len as usize, decode_batch(payload)?))
            })();
            let Some((n, changes)) = good else {
                log.set_aside(&data, at, "a record fails its checksum")?;
                log.file.set_len(at as u64)?;
                log.file.sync_data()?;
                tracing::error!(
                    file = %log.path.display(),
                    kept_batches = batches,
                    cut_at = at,
                    "metadata log damaged or torn: starting from the last good change; the rest is kept in metadata.log.damaged"
                );
                break;
            };
            log.apply_in_memory(changes);
            batches += 1;
            at += n;
        }
        log.len = at as u64;
        Ok(log)
    }

    /// Keeps the bytes from `from` on as `metadata.log.damaged` (only when there is more than
    /// a torn tail's worth: a short tail is the normal result of a crash mid-append).
    fn set_aside(&self, data: &[u8], from: usize, why: &str) -> Result<(), StoreError> {
        let tail = &data[from..];
        if tail.len() < 8 {
            return Ok(());
        }
        let kept = self.dir.join(DAMAGED_FILE);
        tracing::warn!(reason = why, bytes = tail.len(), kept_as = %kept.display(), "metadata log tail set aside");
        let mut f = File::create(&kept)?;
        f.write_all(data)?;
        f.sync_data()?;
        Ok(())
    }

    fn apply_in_memory(&mut self, changes: Vec<MetaChange>) {
        for (key, value) in changes {
            let klen = key.len() as u64;
            if let Some(old) = self.live.remove(&key) {
                self.live_bytes -= klen + old.len() as u64;
            }
            if let Some(v) = value {
                self.live_bytes += klen + v.len() as u64;
                self.live.insert(key, v);
            }
        }
    }

    /// Every live key and value.
    pub(crate) fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.live
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Appends one batch and fdatasyncs it; on error nothing is applied (the file is cut
    /// back to where it was, so a later append does not follow a half-written batch).
    pub(crate) fn append(
        &mut self,
        changes: Vec<MetaChange>,
        io: &IoCounters,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let rec = encode_batch(&changes);
        let written = io
            .write_all_at(&self.file, &rec, self.len)
            .and_then(|()| io.sync_data(&self.file));
        if let Err(e) = written {
            let _ = self.file.set_len(self.len);
            return Err(e.into());
        }
        self.len += rec.len() as u64;
        self.apply_in_memory(changes);
        if self.len >= COMPACT_MIN_BYTES && self.len > COMPACT_FACTOR * (self.live_bytes + 64) {
            // On failure the log is intact (the rename is the last step): try again next time.
            if let Err(e) = self.compact(io) {
                tracing::warn!(error = %e, "metadata log compaction failed");
            }
        }
        Ok(())
    }

    /// Rewrites the log as one batch of every live key.
    fn compact(&mut self, io: &IoCounters) -> Result<(), StoreError> {
        let changes: Vec<MetaChange> = self
            .live
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        let mut data = header().to_vec();
        data.extend_from_slice(&encode_batch(&changes));
        let tmp = self.dir.join(TMP_FILE);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        io.write_all_at(&f, &data, 0)?;
        io.sync_data(&f)?;
        fs::rename(&tmp, &self.path)?;
        io.sync_dir(&self.dir)?;
        tracing::debug!(
            before = self.len,
            after = data.len(),
            "metadata log compacted"
        );
        self.file = f;
        self.len = data.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> MetaChange {
        (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()))
    }

    fn del(k: &str) -> MetaChange {
        (k.as_bytes().to_vec(), None)
    }

    fn sorted(log: &MetaLog) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = log
            .entries()
            .into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k).unwrap_or_default(),
                    String::from_utf8(v).unwrap_or_default(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn batches_replay_and_a_torn_or_damaged_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut log = MetaLog::open(dir.path()).expect("open");
            assert!(!log.existed);
            log.append(vec![put("a", "1"), put("b", "2")], &IoCounters::default())
                .expect("append");
            log.append(vec![del("a"), put("c", "3")], &IoCounters::default())
                .expect("append");
        }
        let log = MetaLog::open(dir.path()).expect("reopen");
        assert!(log.existed);
        let want = vec![("b".into(), "2".into()), ("c".into(), "3".into())];
        assert_eq!(sorted(&log), want);
        drop(log);
        // A batch torn in the middle: dropped whole, the rest kept.
        let path = dir.path().join(LOG_FILE);
        {
            let mut log = MetaLog::open(dir.path()).expect("reopen");
            log.append(vec![put("d", "4"), put("e", "5")], &IoCounters::default())
                .expect("append");
        }
        let len = fs::metadata(&path).expect("meta").len();
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(len - 3).expect("tear");
        let mut log = MetaLog::open(dir.path()).expect("reopen torn");
        assert_eq!(sorted(&log), want);
        // Appends continue after the cut.
        log.append(vec![put("f", "6")], &IoCounters::default())
            .expect("append");
        drop(log);
        // Flipped bits in the middle: the good prefix is kept, the rest set aside.
        let mut data = fs::read(&path).expect("read");
        let at = HEADER_LEN as usize + 12;
        data[at] ^= 0xff;
        fs::write(&path, &data).expect("write");
        let log = MetaLog::open(dir.path()).expect("reopen damaged");
        assert!(log.entries().is_empty());
        assert!(dir.path().join(DAMAGED_FILE).exists());
    }

    #[test]
    fn compaction_keeps_the_live_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let value = "v".repeat(1000);
        {
            let mut log = MetaLog::open(dir.path()).expect("open");
            for i in 0..3000 {
                log.append(
                    vec![put(&format!("k{}", i % 10), &value)],
                    &IoCounters::default(),
                )
                .expect("append");
            }
            assert!(log.len < COMPACT_MIN_BYTES * 2, "compacted: {}", log.len);
        }
        let log = MetaLog::open(dir.path()).expect("reopen");
        assert_eq!(log.entries().len(), 10);
    }
}
