//! Quick throughput numbers, not run by default:
//! `cargo test -p warren-store --release --test bench -- --ignored --nocapture --test-threads=1`

use std::time::{Duration, Instant};

use warren_store::{Location, Store, StoreOptions};

const RUN: Duration = Duration::from_secs(3);

#[test]
#[ignore]
fn bench_append_1k_request_sync_every_100() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let payload = vec![0x5au8; 1024];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..100 {
            store.append(&payload).location();
        }
        n += 100;
        store.request_sync();
    }
    let appended = start.elapsed();
    store.sync_now().expect("sync");
    let total = start.elapsed();
    let fsyncs = store.fsync_count();
    println!(
        "append 1 KiB, request_sync every 100: {n} appends in {appended:.2?} = {:.0} appends/s ({:.0} MiB/s); \
         all durable after {total:.2?}: {:.0} appends/s durable; {fsyncs} fsyncs = {:.0} fsyncs/s",
        n as f64 / appended.as_secs_f64(),
        n as f64 * 1024.0 / appended.as_secs_f64() / (1 << 20) as f64,
        n as f64 / total.as_secs_f64(),
        fsyncs as f64 / total.as_secs_f64(),
    );
}

#[test]
#[ignore]
fn bench_confirming_publishers() {
    for threads in [1usize, 4, 16] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        let start = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let store = store.clone();
                    // One queue per publisher: a round fsyncs `threads` queue logs.
                    let log = store.queue_log(t as u64).expect("log");
                    s.spawn(move || {
                        let payload = vec![t as u8; 1024];
                        let rx = store.synced();
                        let mut n = 0u64;
                        let mut seq = (t as u64) << 40;
                        while start.elapsed() < RUN {
                            for _ in 0..100 {
                                let loc = store.append(&payload).location();
                                log.enqueue(seq, loc, 0);
                                seq += 1;
                            }
                            n += 100;
                            let g = store.generation();
                            store.request_sync();
                            while *rx.borrow() < g {
                                std::thread::sleep(Duration::from_micros(20));
                            }
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{threads} publishers, batches of 100 x 1 KiB + enqueue on its own queue, each batch waits for its fsync: \
             {:.0} confirmed msgs/s, {:.0} fsyncs/s",
            total as f64 / secs,
            store.fsync_count() as f64 / secs
        );
    }
}

#[test]
#[ignore]
fn bench_recover_one_million_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 1_000_000u64;
    {
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        let log = store.queue_log(1).expect("log");
        let start = Instant::now();
        for i in 0..n {
            log.enqueue(
                i,
                Location {
                    segment: 1,
                    offset: 16 + i as u32,
                    len: 100,
                },
                0,
            );
            if i % 2 == 1 {
                log.delivered(i);
            }
        }
        for i in (0..n).step_by(4) {
            log.ack(i);
        }
        store.sync_now().expect("sync");
        println!(
            "wrote {} queue-log records in {:.2?}",
            n + n / 2 + n / 4,
            start.elapsed()
        );
    }
    let start = Instant::now();
    let store = Store::open(dir.path(), StoreOptions::default()).expect("reopen");
    let log = store.queue_log(1).expect("log");
    let live = log.recover().expect("recover");
    let recovered = start.elapsed();
    assert_eq!(live.len() as u64, n - n / 4);
    println!(
        "recovered {} live entries from {} records in {recovered:.2?}",
        live.len(),
        n + n / 2 + n / 4
    );
    let start = Instant::now();
    log.compact(&live).expect("compact");
    println!(
        "compacted to {} entries in {:.2?}",
        live.len(),
        start.elapsed()
    );
}
