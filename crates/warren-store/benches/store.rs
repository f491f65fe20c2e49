//! Micro-benchmarks of the message store.
//!
//! Publishing a persistent message costs one [`Store::append`] plus one
//! [`QueueLog::enqueue`] per durable queue, its acknowledgement one
//! [`QueueLog::ack`], and a paged-out or recovered message one
//! [`Store::read`]. The first three only copy into memory under a short lock
//! (the flusher thread does the I/O), so they are measured with fsync off to
//! isolate that CPU path. Group commit is measured with fsync on: it shows
//! what one `fdatasync` shared by a batch of publishers costs per message.
//!
//! * `append_1KiB`: append 1 KiB records (fsync off; the flusher still writes).
//! * `read_1KiB`: read back synced 1 KiB records (page cache + CRC check).
//! * `queue_log`: one enqueue + one ack record (fsync off).
//! * `group_commit`: 1,000 x 1 KiB appends, then `request_sync` and a wait
//!   until `synced >= generation` (fsync on); throughput is per message.
//!
//! Run with `cargo bench -p warren-store --bench store`. The store lives in a
//! temporary directory (so on whatever disk backs `$TMPDIR`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use warren_store::{Location, Store, StoreOptions};

const RECORD: usize = 1024;
const READ_RECORDS: usize = 10_000;
const GROUP: usize = 1_000;

fn no_fsync() -> StoreOptions {
    StoreOptions {
        fsync: false,
        ..Default::default()
    }
}

fn bench_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), no_fsync()).expect("open");
    let payload = vec![0x5au8; RECORD];
    let mut g = c.benchmark_group("append_1KiB");
    g.throughput(Throughput::Elements(1));
    g.bench_function("fsync_off", |b| {
        b.iter(|| store.append(black_box(&payload)).location())
    });
    g.finish();
}

fn bench_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), no_fsync()).expect("open");
    let payload = vec![0xa5u8; RECORD];
    let locs: Vec<Location> = (0..READ_RECORDS)
        .map(|_| {
            let loc = store.append(&payload).location();
            store.retain(loc);
            loc
        })
        .collect();
    // Written out, so reads go to the segment file rather than the write buffer.
    store.sync_now().expect("sync");
    let mut g = c.benchmark_group("read_1KiB");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("synced", |b| {
        b.iter(|| {
            i = (i + 1) % READ_RECORDS;
            store.read(black_box(locs[i])).expect("read")
        })
    });
    g.finish();
}

fn bench_queue_log(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), no_fsync()).expect("open");
    let log = store.queue_log(1).expect("queue log");
    let loc = store.append(&[0u8; RECORD]).location();
    let mut seq = 0u64;
    let mut g = c.benchmark_group("queue_log");
    g.throughput(Throughput::Elements(1));
    g.bench_function("enqueue_ack_fsync_off", |b| {
        b.iter(|| {
            log.enqueue(black_box(seq), loc, 0);
            log.ack(black_box(seq));
            seq += 1;
        })
    });
    g.finish();
}

fn bench_group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let payload = vec![0x3cu8; RECORD];
    let synced = store.synced();
    let mut g = c.benchmark_group("group_commit");
    g.sample_size(10);
    g.throughput(Throughput::Elements(GROUP as u64));
    g.bench_function("append_1k_x_1KiB_then_fsync", |b| {
        b.iter(|| {
            for _ in 0..GROUP {
                store.append(&payload).location();
            }
            let generation = store.generation();
            store.request_sync();
            // No async runtime here: poll the watch like a blocking publisher would.
            while *synced.borrow() < generation {
                std::thread::sleep(Duration::from_micros(20));
            }
        })
    });
    g.finish();
    assert!(store.fsync_count() > 0, "fsync was on");
}

criterion_group!(
    benches,
    bench_append,
    bench_read,
    bench_queue_log,
    bench_group_commit
);
criterion_main!(benches);
