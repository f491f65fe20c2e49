//! Retained messages: the last message published with the retain flag on each topic, per
//! vhost, handed to every new matching subscription. Kept in memory and, with a data
//! directory, in an append-only file (each change fsynced before the publisher's
//! acknowledgement; the file rewritten compactly at boot and whenever replaced messages
//! make it several times larger than what it holds), as RabbitMQ keeps them in a per-node
//! store of its own rather than in queues. Bounded in count and bytes.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tracing::warn;

use crate::codec::{put_string, Cursor, Properties};
use crate::topic;

const SET: u8 = 1;
const CLEAR: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedMessage {
    pub topic: String,
    pub qos: u8,
    pub payload: Bytes,
    /// The MQTT 5 properties it was published with (what a subscriber receives).
    pub props: Properties,
    /// Seconds since the epoch, for the message expiry interval.
    pub stored_at: u64,
}

impl RetainedMessage {
    fn size(&self) -> usize {
        self.topic.len() + self.payload.len() + 64
    }

    /// Whether its message expiry interval has run out.
    pub fn expired(&self, now: u64) -> bool {
        self.props
            .message_expiry
            .is_some_and(|e| self.stored_at + e as u64 <= now)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RetainedLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RetainError {
    #[error("the retained message store is full ({0})")]
    Full(&'static str),
    #[error("cannot write the retained message store: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Default)]
struct State {
    by_vhost: HashMap<String, HashMap<String, Arc<RetainedMessage>>>,
    count: usize,
    bytes: usize,
}

impl State {
    fn apply(&mut self, vhost: &str, topic: &str, msg: Option<Arc<RetainedMessage>>) {
        let topics = self.by_vhost.entry(vhost.to_string()).or_default();
        if let Some(old) = topics.remove(topic) {
            self.count -= 1;
            self.bytes -= old.size();
        }
        if let Some(msg) = msg {
            self.count += 1;
            self.bytes += msg.size();
            topics.insert(topic.to_string(), msg);
        }
    }
}

/// The store's file: appended to, and its length, for deciding when to compact.
struct Log {
    file: File,
    path: PathBuf,
    len: u64,
}

impl Log {
    /// Writes every live message to a fresh file that replaces the log atomically.
    fn rewrite(path: &Path, state: &State) -> std::io::Result<Log> {
        let tmp = path.with_extension("tmp");
        let mut out = BytesMut::new();
        for (vhost, topics) in &state.by_vhost {
            for msg in topics.values() {
                encode_record(SET, vhost, msg, &mut out);
            }
        }
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        sync_dir(path);
        Ok(Log {
            file: OpenOptions::new().append(true).open(path)?,
            path: path.to_path_buf(),
            len: out.len() as u64,
        })
    }
}

/// The log is rewritten once it exceeds this and four times the live messages' bytes.
const COMPACT_AFTER_BYTES: u64 = 1 << 20;

pub struct RetainedStore {
    state: Mutex<State>,
    /// Held through each change (limit check, append, apply), so that changes are applied
    /// in the order the log has them and two cannot both pass the limits; `None` inside
    /// without a data directory.
    writer: Mutex<Option<Log>>,
    limits: RetainedLimits,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn encode_record(kind: u8, vhost: &str, msg: &RetainedMessage, out: &mut BytesMut) {
    let mut body = BytesMut::new();
    body.put_u8(kind);
    put_string(&mut body, vhost);
    put_string(&mut body, &msg.topic);
    body.put_u8(msg.qos);
    body.put_u64(msg.stored_at);
    msg.props.encode(&mut body);
    body.put_slice(&msg.payload);
    out.put_u32(body.len() as u32);
    out.put_u32(crc32c::crc32c(&body));
    out.put_slice(&body);
}

fn decode_record(body: Bytes) -> Option<(u8, String, RetainedMessage)> {
    let mut c = Cursor::new(body);
    let kind = c.u8().ok()?;
    let vhost = c.string().ok()?;
    let topic = c.string().ok()?;
    let qos = c.u8().ok()?;
    let stored_at = c.u32().ok()? as u64 * (1 << 32) + c.u32().ok()? as u64;
    let props = Properties::decode(&mut c, crate::codec::allowed::PUBLISH).ok()?;
    let payload = c.rest();
    Some((
        kind,
        vhost,
        RetainedMessage {
            topic,
            qos,
            payload,
            props,
            stored_at,
        },
    ))
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

impl RetainedStore {
    /// An in-memory store (no data directory).
    pub fn in_memory(limits: RetainedLimits) -> RetainedStore {
        RetainedStore {
            state: Mutex::new(State::default()),
            writer: Mutex::new(None),
            limits,
        }
    }

    /// Opens (or creates) the store file, replays it and rewrites it compactly. A torn
    /// last record (a crash mid-append) is dropped: its publisher was never acknowledged.
    pub fn open(path: &Path, limits: RetainedLimits) -> std::io::Result<RetainedStore> {
        let mut state = State::default();
        if let Ok(mut f) = File::open(path) {
            let mut raw = Vec::new();
            f.read_to_end(&mut raw)?;
            let mut buf = Bytes::from(raw);
            while buf.len() >= 8 {
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                let crc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                if buf.len() < 8 + len {
                    break;
                }
                buf.advance(8);
                let body = buf.split_to(len);
                if crc32c::crc32c(&body) != crc {
                    warn!(path = %path.display(), "retained store: a damaged record; the rest is dropped");
                    break;
                }
                match decode_record(body) {
                    Some((SET, vhost, msg)) => {
                        let t = msg.topic.clone();
                        state.apply(&vhost, &t, Some(Arc::new(msg)))
                    }
                    Some((CLEAR, vhost, msg)) => state.apply(&vhost, &msg.topic, None),
                    _ => break,
                }
            }
        }
        let log = Log::rewrite(path, &state)?;
        Ok(RetainedStore {
            state: Mutex::new(state),
            writer: Mutex::new(Some(log)),
            limits,
        })
    }

    /// Appends a change durably (under the writer lock), then compacts a log grown
    /// several times larger than the messages it holds.
    fn append(
        &self,
        log: &mut Option<Log>,
        kind: u8,
        vhost: &str,
        msg: &RetainedMessage,
    ) -> std::io::Result<()> {
        let Some(l) = log else {
            return Ok(());
        };
        let mut out = BytesMut::new();
        encode_record(kind, vhost, msg, &mut out);
        l.file.write_all(&out)?;
        l.file.sync_data()?;
        l.len += out.len() as u64;
        Ok(())
    }

    fn maybe_compact(&self, log: &mut Option<Log>) {
        let Some(l) = log else {
            return;
        };
        let live = self.state.lock().bytes as u64;
        if l.len <= COMPACT_AFTER_BYTES || l.len <= live.saturating_mul(4) {
            return;
        }
        let path = l.path.clone();
        // The state is read under its lock while the new file is written: readers wait
        // for one rewrite of at most the store's byte limit, only now and then.
        let rewritten = Log::rewrite(&path, &self.state.lock());
        match rewritten {
            Ok(fresh) => *log = Some(fresh),
            // The old log is complete and still appended to; compaction is tried again.
            Err(e) => {
                warn!(path = %path.display(), error = %e, "retained store: compaction failed")
            }
        }
    }

    /// Retains `msg` on its topic (replacing what was there), durably before it returns.
    /// Blocks on an fsync: call it off the I/O threads.
    pub fn set(&self, vhost: &str, msg: RetainedMessage) -> Result<(), RetainError> {
        let mut log = self.writer.lock();
        {
            let st = self.state.lock();
            let replaced = st
                .by_vhost
                .get(vhost)
                .and_then(|t| t.get(&msg.topic))
                .map_or(0, |m| m.size());
            if replaced == 0 && st.count >= self.limits.max_messages {
                return Err(RetainError::Full("message count limit"));
            }
            if st.bytes - replaced + msg.size() > self.limits.max_bytes {
                return Err(RetainError::Full("byte limit"));
            }
        }
        self.append(&mut log, SET, vhost, &msg)?;
        let topic = msg.topic.clone();
        self.state.lock().apply(vhost, &topic, Some(Arc::new(msg)));
        self.maybe_compact(&mut log);
        Ok(())
    }

    /// Clears the retained message of a topic (an empty retained publish).
    pub fn clear(&self, vhost: &str, topic: &str) -> Result<(), RetainError> {
        let mut log = self.writer.lock();
        let present = self
            .state
            .lock()
            .by_vhost
            .get(vhost)
            .is_some_and(|t| t.contains_key(topic));
        if !present {
            return Ok(());
        }
        let marker = RetainedMessage {
            topic: topic.to_string(),
            qos: 0,
            payload: Bytes::new(),
            props: Properties::default(),
            stored_at: 0,
        };
        self.append(&mut log, CLEAR, vhost, &marker)?;
        self.state.lock().apply(vhost, topic, None);
        self.maybe_compact(&mut log);
        Ok(())
    }

    /// The unexpired retained messages a filter matches.
    pub fn matching(&self, vhost: &str, filter: &str) -> Vec<Arc<RetainedMessage>> {
        let now = now_secs();
        let st = self.state.lock();
        let Some(topics) = st.by_vhost.get(vhost) else {
            return Vec::new();
        };
        let mut found: Vec<_> = topics
            .values()
            .filter(|m| topic::matches(filter, &m.topic) && !m.expired(now))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.topic.cmp(&b.topic));
        found
    }

    /// (messages, bytes) held.
    pub fn usage(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.count, st.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: &'static [u8]) -> RetainedMessage {
        RetainedMessage {
            topic: topic.into(),
            qos: 1,
            payload: Bytes::from_static(payload),
            props: Properties {
                content_type: Some("text/plain".into()),
                ..Default::default()
            },
            stored_at: now_secs(),
        }
    }

    const LIMITS: RetainedLimits = RetainedLimits {
        max_messages: 3,
        max_bytes: 1 << 20,
    };

    #[test]
    fn retained_messages_survive_a_reopen_and_clears_stick() {
        let dir = std::env::temp_dir().join(format!("warren-retained-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("retained.log");
        {
            let s = RetainedStore::open(&path, LIMITS).unwrap();
            s.set("/", msg("a/b", b"one")).unwrap();
            s.set("/", msg("a/b", b"two")).unwrap();
            s.set("/", msg("a/c", b"three")).unwrap();
            s.set("other", msg("a/b", b"elsewhere")).unwrap();
            s.clear("/", "a/c").unwrap();
        }
        // A torn record at the end is dropped.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0, 0, 0, 50, 1, 2]).unwrap();
        drop(f);
        let s = RetainedStore::open(&path, LIMITS).unwrap();
        let found = s.matching("/", "a/#");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].payload, Bytes::from_static(b"two"));
        assert_eq!(found[0].props.content_type.as_deref(), Some("text/plain"));
        assert_eq!(s.matching("other", "#").len(), 1);
        assert_eq!(s.usage().0, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_topic_retained_over_and_over_keeps_the_log_small() {
        let dir = std::env::temp_dir().join(format!("warren-retained-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("retained.log");
        static BIG: [u8; 64 * 1024] = [7; 64 * 1024];
        {
            let s = RetainedStore::open(&path, LIMITS).unwrap();
            // 64 MiB written in all, one message of 64 KiB live.
            for _ in 0..1024 {
                s.set("/", msg("sensor/1", &BIG)).unwrap();
            }
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(
                len <= COMPACT_AFTER_BYTES + 128 * 1024,
                "log of {len} bytes"
            );
        }
        let s = RetainedStore::open(&path, LIMITS).unwrap();
        assert_eq!(s.matching("/", "#").len(), 1);
        assert_eq!(s.usage().0, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_store_is_bounded() {
        let s = RetainedStore::in_memory(LIMITS);
        for t in ["a", "b", "c"] {
            s.set("/", msg(t, b"x")).unwrap();
        }
        assert!(matches!(
            s.set("/", msg("d", b"x")),
            Err(RetainError::Full(_))
        ));
        // Replacing an existing topic is fine at the limit.
        s.set("/", msg("a", b"y")).unwrap();
        let small = RetainedStore::in_memory(RetainedLimits {
            max_messages: 10,
            max_bytes: 100,
        });
        assert!(matches!(
            small.set("/", msg("a", &[0u8; 200])),
            Err(RetainError::Full(_))
        ));
    }
}
