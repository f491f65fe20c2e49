//! A producer: encodes batches of publishes and hands each batch to its
//! connection's writer as one unit.
//!
//! The `basic.publish` method frame and the content header frame of each
//! routing key are encoded once, up front, with `warren-amqp`; a message is
//! then that template, a body frame header, the 8-byte send timestamp, an
//! 8-byte sequence number and padding. Padding of large bodies is a shared
//! slice of zeros sent with vectored writes, so a 64 KiB body costs a
//! refcount, not a copy. A batch is bounded by ~64 KiB of frames, the
//! confirm window's free permits, the rate limiter's tokens and the count.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::sleep_until;
use warren_amqp::constants::{FRAME_BODY, FRAME_END};
use warren_amqp::{
    encode_header_frame, encode_method_frame, max_body_payload, BasicProperties, BasicPublish,
    FieldTable, FieldValue, Method,
};

use crate::conn::{Chunk, Run};
use crate::rate::TokenBucket;

/// Target size of one batch of frames.
const BATCH_BYTES: usize = 64 * 1024;
/// Most messages in one batch.
const BATCH_MAX: u64 = 4096;
/// Padding at least this long is sent by reference instead of copied.
const ZERO_COPY_MIN: usize = 2048;

/// What one producer does.
pub struct ProducerCfg {
    /// Its channel.
    pub channel: u16,
    /// Exchange to publish to.
    pub exchange: String,
    /// Routing keys, cycled through.
    pub keys: Vec<String>,
    /// Put the key in a `key` header too (headers exchanges).
    pub key_header: bool,
    /// delivery-mode 2.
    pub persistent: bool,
    /// Body size (>= 16).
    pub size: usize,
    /// Negotiated frame_max.
    pub frame_max: u32,
    /// Confirm window permits (None = no confirms).
    pub permits: Option<Arc<Semaphore>>,
    /// Window size (to wait for the last confirms).
    pub window: u32,
    /// Messages per second (0 = unlimited).
    pub rate: f64,
    /// Messages to send (None = until stopped).
    pub count: Option<u64>,
    /// Hard stop.
    pub deadline: tokio::time::Instant,
}

/// The encoded method + header frames of one routing key.
pub fn templates(cfg: &ProducerCfg) -> Vec<Bytes> {
    cfg.keys
        .iter()
        .map(|k| {
            let mut out = BytesMut::with_capacity(128);
            encode_method_frame(
                &mut out,
                cfg.channel,
                &Method::BasicPublish(BasicPublish {
                    reserved_1: 0,
                    exchange: cfg.exchange.as_str().into(),
                    routing_key: k.as_str().into(),
                    mandatory: false,
                    immediate: false,
                }),
            );
            let mut props = BasicProperties {
                delivery_mode: cfg.persistent.then_some(2),
                ..BasicProperties::default()
            };
            if cfg.key_header {
                let mut h = FieldTable::new();
                h.insert(
                    "key",
                    FieldValue::LongString(Bytes::copy_from_slice(k.as_bytes())),
                );
                props.headers = Some(h);
            }
            encode_header_frame(
                &mut out,
                cfg.channel,
                60,
                cfg.size as u64,
                &props.to_bytes(),
            );
            out.freeze()
        })
        .collect()
}

/// Appends whole messages to a batch.
pub struct Encoder {
    channel: u16,
    size: usize,
    chunk: usize,
    templates: Vec<Bytes>,
    zeros: Bytes,
    next_key: usize,
    /// Sequence number of the next message.
    pub seq: u64,
    /// Approximate encoded bytes per message.
    pub per_message: usize,
}

impl Encoder {
    /// An encoder for `cfg`.
    pub fn new(cfg: &ProducerCfg) -> Encoder {
        let templates = templates(cfg);
        let chunk = max_body_payload(cfg.frame_max.max(4096));
        let frames = cfg.size.div_ceil(chunk);
        let tmpl = templates.iter().map(Bytes::len).max().unwrap_or(0);
        Encoder {
            channel: cfg.channel,
            size: cfg.size,
            chunk,
            templates,
            zeros: Bytes::from(vec![0u8; cfg.size.min(chunk)]),
            next_key: 0,
            seq: 0,
            per_message: tmpl + cfg.size + 8 * frames,
        }
    }

    /// Append `n` messages stamped `ts_ns` to `out`; large padding goes to
    /// `pieces` by reference (with what `out` held before it).
    pub fn encode(&mut self, n: u64, ts_ns: u64, out: &mut BytesMut, pieces: &mut Chunk) {
        for _ in 0..n {
            let t = &self.templates[self.next_key];
            self.next_key = if self.next_key + 1 == self.templates.len() {
                0
            } else {
                self.next_key + 1
            };
            out.extend_from_slice(t);
            let mut remaining = self.size;
            let mut first = true;
            while remaining > 0 {
                let len = remaining.min(self.chunk);
                out.reserve(len.min(ZERO_COPY_MIN) + 32);
                out.put_u8(FRAME_BODY);
                out.put_u16(self.channel);
                out.put_u32(len as u32);
                let mut fill = len;
                if first {
                    out.put_u64(ts_ns);
                    out.put_u64(self.seq);
                    fill -= 16;
                    first = false;
                }
                if fill >= ZERO_COPY_MIN {
                    pieces.push(out.split().freeze());
                    pieces.push(self.zeros.slice(..fill));
                } else {
                    out.put_bytes(0, fill);
                }
                out.put_u8(FRAME_END);
                remaining -= len;
            }
            self.seq += 1;
        }
        pieces.push(out.split().freeze());
    }
}

/// Publish until the count, the deadline or `stop`.
pub async fn run_producer(
    cfg: ProducerCfg,
    data_tx: mpsc::Sender<Chunk>,
    mut blocked: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    run: Arc<Run>,
) {
    let mut enc = Encoder::new(&cfg);
    let max_batch = ((BATCH_BYTES / enc.per_message.max(1)) as u64).clamp(1, BATCH_MAX);
    let mut bucket = (cfg.rate > 0.0).then(|| TokenBucket::new(cfg.rate, Instant::now()));
    let mut out = BytesMut::with_capacity(BATCH_BYTES + enc.per_message);
    let mut sent = 0u64;
    let deadline = cfg.deadline;
    loop {
        if *stop.borrow() || tokio::time::Instant::now() >= deadline {
            return;
        }
        let remaining = cfg.count.map_or(u64::MAX, |c| c - sent);
        if remaining == 0 {
            break;
        }
        if *blocked.borrow() {
            tokio::select! {
                r = blocked.changed() => if r.is_err() { return },
                _ = stop.changed() => {}
                _ = sleep_until(deadline) => {}
            }
            continue;
        }
        let mut n = max_batch.min(remaining);
        if let Some(b) = bucket.as_mut() {
            match b.take(n, Instant::now()) {
                Ok(k) => n = k,
                Err(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                        _ = sleep_until(deadline) => {}
                    }
                    continue;
                }
            }
        }
        if let Some(sem) = &cfg.permits {
            let avail = sem.available_permits() as u64;
            let got = if avail == 0 {
                tokio::select! {
                    p = sem.acquire() => match p {
                        Ok(p) => { p.forget(); 1 }
                        Err(_) => return,
                    },
                    _ = stop.changed() => 0,
                    _ = sleep_until(deadline) => 0,
                }
            } else {
                let k = n.min(avail);
                match sem.try_acquire_many(k as u32) {
                    Ok(p) => {
                        p.forget();
                        k
                    }
                    Err(_) => 0,
                }
            };
            if got < n {
                if let Some(b) = bucket.as_mut() {
                    b.give_back(n - got);
                }
            }
            if got == 0 {
                continue;
            }
            n = got;
        }
        let mut pieces = Vec::with_capacity(if enc.per_message >= ZERO_COPY_MIN {
            2 * n as usize + 1
        } else {
            1
        });
        enc.encode(n, run.stats.now_ns(), &mut out, &mut pieces);
        if out.capacity() < BATCH_BYTES / 2 {
            out.reserve(BATCH_BYTES + enc.per_message);
        }
        tokio::select! {
            r = data_tx.send(pieces) => if r.is_err() { return },
            _ = stop.changed() => return,
        }
        sent += n;
        run.stats.published.fetch_add(n, Relaxed);
    }
    // count reached: wait for the last confirms
    if let Some(sem) = &cfg.permits {
        tokio::select! {
            p = sem.acquire_many(cfg.window) => if let Ok(p) = p { p.forget() },
            _ = stop.changed() => {}
            _ = sleep_until(deadline) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{header_body_size, next_frame, peek_hot, Hot};
    use warren_amqp::constants::{FRAME_HEADER, FRAME_METHOD};

    fn cfg(size: usize, frame_max: u32) -> ProducerCfg {
        ProducerCfg {
            channel: 7,
            exchange: "ex".into(),
            keys: vec!["a".into(), "b".into()],
            key_header: false,
            persistent: true,
            size,
            frame_max,
            permits: None,
            window: 0,
            rate: 0.0,
            count: None,
            deadline: tokio::time::Instant::now(),
        }
    }

    fn frames(pieces: &[Bytes]) -> Vec<(u8, u16, Vec<u8>)> {
        let all: Vec<u8> = pieces.iter().flat_map(|b| b.iter().copied()).collect();
        let mut v = vec![];
        let mut p = 0;
        while let Some((f, n)) = next_frame(&all[p..], 0).unwrap() {
            v.push((f.kind, f.channel, f.payload.to_vec()));
            p += n;
        }
        assert_eq!(p, all.len());
        v
    }

    #[test]
    fn encodes_valid_publishes() {
        for &(size, fm) in &[
            (16usize, 131_072u32),
            (5000, 4096),
            (65_536, 131_072),
            (100_000, 4096),
        ] {
            let c = cfg(size, fm);
            let mut e = Encoder::new(&c);
            let mut out = BytesMut::new();
            let mut pieces = vec![];
            e.encode(3, 42, &mut out, &mut pieces);
            let f = frames(&pieces);
            let mut i = 0;
            for m in 0..3u64 {
                assert_eq!((f[i].0, f[i].1), (FRAME_METHOD, 7));
                let pm = Method::decode(&f[i].2).unwrap();
                let Method::BasicPublish(p) = pm else {
                    panic!("{pm:?}")
                };
                assert_eq!(p.routing_key, if m == 1 { "b" } else { "a" });
                assert_eq!(peek_hot(&f[i].2).unwrap(), Hot::Other);
                assert_eq!(f[i + 1].0, FRAME_HEADER);
                assert_eq!(header_body_size(&f[i + 1].2).unwrap(), size as u64);
                assert_eq!(warren_amqp::peek_delivery_mode(&f[i + 1].2[12..]), Some(2));
                i += 2;
                let mut got = 0;
                let first = &f[i].2;
                assert_eq!(u64::from_be_bytes(first[..8].try_into().unwrap()), 42);
                assert_eq!(u64::from_be_bytes(first[8..16].try_into().unwrap()), m);
                while got < size {
                    assert_eq!(f[i].0, FRAME_BODY);
                    assert!(f[i].2.len() + 8 <= fm as usize);
                    got += f[i].2.len();
                    i += 1;
                }
                assert_eq!(got, size);
            }
            assert_eq!(i, f.len());
        }
    }
}
