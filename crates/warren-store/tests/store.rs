//! Behaviour of the store through its public API: round trips, group commit, reference
//! counted segments, queue logs and their recovery from damage, metadata.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use warren_store::{Location, RecoveredEntry, Store, StoreError, StoreOptions};

fn opts() -> StoreOptions {
    StoreOptions::default()
}

fn payload(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect()
}

fn seg_path(dir: &Path, seg: u32) -> PathBuf {
    dir.join("segments").join(format!("{seg:08}.seg"))
}

fn seg_files(dir: &Path) -> usize {
    fs::read_dir(dir.join("segments"))
        .expect("segments dir")
        .filter(|e| {
            e.as_ref()
                .map(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .unwrap_or(false)
        })
        .count()
}

fn wait_synced(store: &Store, g: u64) {
    let rx = store.synced();
    let deadline = Instant::now() + Duration::from_secs(10);
    while *rx.borrow() < g {
        assert!(Instant::now() < deadline, "synced never reached {g}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn round_trip_including_empty_and_large_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sizes = [0usize, 1, 100, 4096, 1 << 20, 3];
    let locs: Vec<(Location, Vec<u8>)> = {
        let store = Store::open(dir.path(), opts()).expect("open");
        let locs: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let p = payload(i as u64, n);
                (store.append(&p).location(), p)
            })
            .collect();
        store.sync_now().expect("sync");
        for (loc, p) in &locs {
            assert_eq!(&store.read(*loc).expect("read")[..], &p[..]);
        }
        locs
    };
    let store = Store::open(dir.path(), opts()).expect("reopen");
    for (loc, p) in &locs {
        assert_eq!(loc.len as usize, p.len());
        assert_eq!(&store.read(*loc).expect("read after reopen")[..], &p[..]);
    }
    // A new run writes a new segment: the old one's tail is never appended to.
    let loc = store.append(b"new run").location();
    assert!(loc.segment > locs[0].0.segment);
}

#[test]
fn unflushed_data_reads_back_from_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path(),
        StoreOptions {
            flush_interval: Duration::from_secs(3600),
            ..opts()
        },
    )
    .expect("open");
    let locs: Vec<_> = (0..50)
        .map(|i| store.append(&payload(i, 300)).location())
        .collect();
    assert!(store.buffered_bytes() >= 50 * 308);
    assert_eq!(seg_files(dir.path()), 0, "nothing written before a flush");
    for (i, loc) in locs.iter().enumerate() {
        assert_eq!(
            &store.read(*loc).expect("read")[..],
            &payload(i as u64, 300)[..]
        );
    }
    store.sync_now().expect("sync");
    assert_eq!(store.buffered_bytes(), 0);
    assert_eq!(seg_files(dir.path()), 1);
    for (i, loc) in locs.iter().enumerate() {
        assert_eq!(
            &store.read(*loc).expect("read")[..],
            &payload(i as u64, 300)[..]
        );
    }
}

#[test]
fn generation_and_synced_semantics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path(),
        StoreOptions {
            flush_interval: Duration::from_secs(3600),
            ..opts()
        },
    )
    .expect("open");
    let rx = store.synced();
    let g0 = store.generation();
    store.append(b"a").location();
    let log = store.queue_log(1).expect("log");
    let g1 = store.generation();
    assert!(g1 > g0);
    log.ack(5);
    let g2 = store.generation();
    assert!(g2 > g1, "queue-log records advance the generation too");
    // With an hour-long interval nothing is synced without being asked...
    std::thread::sleep(Duration::from_millis(50));
    assert!(*rx.borrow() < g2);
    // ...request_sync makes it happen promptly...
    store.request_sync();
    wait_synced(&store, g2);
    // ...and sync_now covers everything before the call.
    store.append(b"b").location();
    let g3 = store.generation();
    store.sync_now().expect("sync");
    assert!(*rx.borrow() >= g3);
    assert!(!store.is_failed());
    assert_eq!(store.last_error(), None);
}

#[test]
fn unrequested_data_is_flushed_by_the_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path(),
        StoreOptions {
            flush_interval: Duration::from_millis(10),
            ..opts()
        },
    )
    .expect("open");
    store.append(b"x").location();
    let g = store.generation();
    wait_synced(&store, g);
}

#[test]
fn group_commit_coalesces_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), opts()).expect("open");
    let log = store.queue_log(7).expect("log");
    // Creating the log synced it and its directory.
    let at_start = store.fsync_count();
    let n = 20_000u64;
    for i in 0..n {
        let loc = store.append(&payload(i, 64)).location();
        log.enqueue(i, loc, 0);
        store.request_sync();
    }
    store.sync_now().expect("sync");
    let fsyncs = store.fsync_count() - at_start;
    assert!(fsyncs > 0);
    assert!(
        fsyncs < n / 10,
        "{fsyncs} fsyncs for {n} appends with a sync request after each"
    );
    assert_eq!(log.recover().expect("recover").len(), n as usize);
}

#[test]
fn waiting_publishers_share_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), opts()).expect("open");
    let threads = 4;
    let per_thread = 200;
    std::thread::scope(|s| {
        for t in 0..threads {
            let store = store.clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    store.append(&payload(t * 1000 + i, 128)).location();
                    let g = store.generation();
                    store.request_sync();
                    wait_synced(&store, g);
                }
            });
        }
    });
    // Each confirm needs a round after its append; rounds cover several publishers' appends.
    // (Each round fsyncs the segment, sometimes the directory too.)
    let confirms = threads * per_thread;
    assert!(
        store.fsync_count() <= confirms + 8,
        "{} fsyncs",
        store.fsync_count()
    );
}

#[test]
fn segments_are_deleted_when_unreferenced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path(),
        StoreOptions {
            segment_size: 4096,
            ..opts()
        },
    )
    .expect("open");
    // Two queues hold every message.
    let locs: Vec<_> = (0..100)
        .map(|i| {
            let loc = store.append(&payload(i, 200)).location();
            store.retain(loc);
            store.retain(loc);
            loc
        })
        .collect();
    store.sync_now().expect("sync");
    let segments = locs.last().map(|l| l.segment).unwrap_or(0) - locs[0].segment + 1;
    assert!(segments >= 5, "{segments} segments");
    assert_eq!(store.segment_count(), segments as usize);
    assert_eq!(seg_files(dir.path()), segments as usize);
    let usage = store.disk_usage_bytes();
    assert!(usage >= 100 * 208, "{usage}");
    assert!(store.disk_free_bytes().is_some_and(|b| b > 0));

    // One queue lets go of everything: nothing is deleted.
    for loc in &locs {
        store.release(*loc);
    }
    store.sync_now().expect("sync");
    assert_eq!(seg_files(dir.path()), segments as usize);

    // The second one too, except for the last record: only its segment (the current one)
    // survives.
    let (last, rest) = locs.split_last().expect("records");
    for loc in rest {
        store.release(*loc);
    }
    store.sync_now().expect("sync");
    assert_eq!(seg_files(dir.path()), 1);
    assert_eq!(store.segment_count(), 1);
    assert!(seg_path(dir.path(), last.segment).exists());
    assert!(matches!(
        store.read(locs[0]),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(&store.read(*last).expect("read")[..], &payload(99, 200)[..]);

    // The current segment is kept at zero references (it is still being written)...
    store.release(*last);
    store.sync_now().expect("sync");
    assert_eq!(seg_files(dir.path()), 1);
    // ...and goes once it is sealed with zero references and the grace period is over.
    let mut newest = *last;
    while newest.segment == last.segment {
        // Not retained: as if every queue had already consumed them.
        newest = store.append(&payload(1, 200)).location();
    }
    store.retain(newest);
    std::thread::sleep(Duration::from_millis(1100));
    store.sync_now().expect("sync");
    assert!(!seg_path(dir.path(), last.segment).exists());
    assert!(seg_path(dir.path(), newest.segment).exists());
}

#[test]
fn segment_ids_are_never_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = {
        let store = Store::open(dir.path(), opts()).expect("open");
        let loc = store.append(b"gone soon").location();
        store.sync_now().expect("sync");
        loc
    };
    {
        let store = Store::open(dir.path(), opts()).expect("open");
        store.collect_garbage();
        assert_eq!(seg_files(dir.path()), 0);
    }
    let store = Store::open(dir.path(), opts()).expect("open");
    let loc = store.append(b"new").location();
    assert!(loc.segment > first.segment);
    // A stale reference to the deleted segment is an error, not someone else's data.
    assert!(matches!(store.read(first), Err(StoreError::Corrupt { .. })));
}

#[test]
fn collect_garbage_keeps_retained_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = StoreOptions {
        segment_size: 4096,
        ..opts()
    };
    let locs: Vec<_> = {
        let store = Store::open(dir.path(), small.clone()).expect("open");
        // The references keep every segment alive until the store is closed.
        let refs: Vec<_> = (0..60).map(|i| store.append(&payload(i, 500))).collect();
        store.sync_now().expect("sync");
        drop(store);
        refs.iter().map(|r| r.location()).collect::<Vec<_>>()
    };
    let store = Store::open(dir.path(), small).expect("reopen");
    let before = seg_files(dir.path());
    assert!(before >= 6);
    let keep = locs[30];
    store.retain(keep);
    store.collect_garbage();
    assert_eq!(seg_files(dir.path()), 1);
    assert_eq!(&store.read(keep).expect("kept")[..], &payload(30, 500)[..]);
}

#[test]
fn queue_log_enqueue_delivered_ack_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let locs: Vec<Location> = {
        let store = Store::open(dir.path(), opts()).expect("open");
        let log = store.queue_log(42).expect("log");
        assert_eq!(log.queue_id(), 42);
        let locs: Vec<_> = (0..10)
            .map(|i| store.append(&payload(i, 10)).location())
            .collect();
        for (i, loc) in locs.iter().enumerate() {
            log.enqueue(i as u64, *loc, 0);
        }
        log.delivered(2);
        log.delivered(3);
        log.ack(3);
        log.ack(0);
        log.delivered(1000); // unknown seq: ignored at recovery
        store.sync_now().expect("sync");
        locs
    };
    let store = Store::open(dir.path(), opts()).expect("reopen");
    assert_eq!(store.queue_log_ids().expect("ids"), vec![42]);
    let log = store.queue_log(42).expect("log");
    let got = log.recover().expect("recover");
    let want: Vec<_> = [1u64, 2, 4, 5, 6, 7, 8, 9]
        .iter()
        .map(|&s| RecoveredEntry {
            seq: s,
            loc: locs[s as usize],
            delivered: s == 2,
            deadline: 0,
        })
        .collect();
    assert_eq!(got, want);
    for e in &got {
        assert_eq!(
            &store.read(e.loc).expect("read")[..],
            &payload(e.seq, 10)[..]
        );
    }
}

#[test]
fn compaction_keeps_exactly_the_live_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), opts()).expect("open");
    let log = store.queue_log(5).expect("log");
    for i in 0..100u64 {
        log.enqueue(i, store.append(&payload(i, 8)).location(), 0);
        if i.is_multiple_of(3) {
            log.delivered(i);
        }
        if !i.is_multiple_of(5) {
            log.ack(i);
        }
    }
    store.sync_now().expect("sync");
    let live = log.recover().expect("recover");
    assert_eq!(live.len(), 20);
    // Buffered, not yet flushed writes are superseded by `live`.
    log.enqueue(1000, Location::default(), 0);
    log.compact(&live).expect("compact");
    let path = dir.path().join("queues/5.idx");
    assert_eq!(fs::metadata(&path).expect("meta").len(), 32 * 21);
    assert_eq!(log.recover().expect("recover"), live);
    assert!(live.iter().any(|e| e.delivered));
    // Appends after compaction land after the compacted records.
    log.ack(0);
    log.enqueue(200, store.append(b"x").location(), 0);
    store.sync_now().expect("sync");
    drop(log);
    drop(store);
    let store = Store::open(dir.path(), opts()).expect("reopen");
    let got = store.queue_log(5).expect("log").recover().expect("recover");
    let mut want: Vec<u64> = live.iter().map(|e| e.seq).filter(|&s| s != 0).collect();
    want.push(200);
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), want);
}

#[test]
fn steady_publish_ack_compacts_automatically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), opts()).expect("open");
    let log = store.queue_log(9).expect("log");
    // Each batch is written before it is acked, so that every enqueue and every ack reaches
    // the file (an ack of a still-buffered enqueue would cancel it instead).
    for batch in 0..200u64 {
        let first = batch * 100;
        for i in first..first + 100 {
            log.enqueue(i, Location::default(), 0);
        }
        store.sync_now().expect("sync");
        for i in (first..first + 100).filter(|&i| i < 19_997) {
            log.ack(i);
        }
    }
    store.sync_now().expect("sync");
    let file = fs::read(dir.path().join("queues/9.idx")).expect("read");
    let records = file
        .chunks_exact(32)
        .filter(|r| r.iter().any(|&b| b != 0))
        .count();
    // 40,000 records were written (1.25 MB); compaction keeps the file far below that.
    assert!(records < 16384, "queue log holds {records} records");
    assert_eq!(file.len(), (records * 32) as u64 as usize);
    let live = log.recover().expect("recover");
    assert_eq!(
        live.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![19_997, 19_998, 19_999]
    );
}

#[test]
fn torn_queue_log_tail_recovers_the_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), opts()).expect("open");
        let log = store.queue_log(3).expect("log");
        for i in 0..10 {
            log.enqueue(i, store.append(&payload(i, 4)).location(), 0);
        }
        store.sync_now().expect("sync");
    }
    let path = dir.path().join("queues/3.idx");
    let len = fs::metadata(&path).expect("meta").len();
    assert_eq!(len, 32 * 11);
    let f = OpenOptions::new().write(true).open(&path).expect("open");
    f.set_len(len - 13).expect("truncate");
    drop(f);
    let store = Store::open(dir.path(), opts()).expect("reopen");
    let log = store.queue_log(3).expect("log");
    let got: Vec<u64> = log
        .recover()
        .expect("recover")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, (0..9).collect::<Vec<_>>());
    // The torn bytes were cut, so new records are aligned and read back.
    log.enqueue(50, store.append(b"after").location(), 0);
    store.sync_now().expect("sync");
    let got: Vec<u64> = log
        .recover()
        .expect("recover")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, (0..9).chain([50]).collect::<Vec<_>>());
}

#[test]
fn flipped_bytes_in_a_queue_log_record_skip_only_that_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), opts()).expect("open");
        let log = store.queue_log(4).expect("log");
        for i in 0..10 {
            log.enqueue(i, store.append(&payload(i, 4)).location(), 0);
        }
        store.sync_now().expect("sync");
    }
    let path = dir.path().join("queues/4.idx");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    // Record of seq 5 is the 7th 32-byte record (after the header); damage its location.
    let mut b = [0u8; 2];
    f.read_exact_at(&mut b, 32 * 6 + 14).expect("read");
    f.write_all_at(&[b[0] ^ 0xff, b[1] ^ 0x01], 32 * 6 + 14)
        .expect("write");
    drop(f);
    let store = Store::open(dir.path(), opts()).expect("reopen");
    let got: Vec<u64> = store
        .queue_log(4)
        .expect("log")
        .recover()
        .expect("recover")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4, 6, 7, 8, 9]);
}

#[test]
fn flipped_byte_in_a_segment_record_fails_only_that_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let locs: Vec<Location> = {
        let store = Store::open(dir.path(), opts()).expect("open");
        let locs = (0..3)
            .map(|i| store.append(&payload(i, 100)).location())
            .collect();
        store.sync_now().expect("sync");
        locs
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(seg_path(dir.path(), locs[1].segment))
        .expect("open");
    let at = u64::from(locs[1].offset) + 8 + 50;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    f.write_all_at(&[b[0] ^ 0x10], at).expect("write");
    drop(f);
    let store = Store::open(dir.path(), opts()).expect("reopen");
    assert!(matches!(
        store.read(locs[1]),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(
        &store.read(locs[0]).expect("read")[..],
        &payload(0, 100)[..]
    );
    assert_eq!(
        &store.read(locs[2]).expect("read")[..],
        &payload(2, 100)[..]
    );
    // A location whose length does not match the record is corrupt too.
    let wrong = Location {
        len: locs[0].len + 1,
        ..locs[0]
    };
    assert!(matches!(store.read(wrong), Err(StoreError::Corrupt { .. })));
}

#[test]
fn truncated_segment_reads_beyond_the_end_are_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let locs: Vec<Location> = {
        let store = Store::open(dir.path(), opts()).expect("open");
        let locs = (0..3)
            .map(|i| store.append(&payload(i, 100)).location())
            .collect();
        store.sync_now().expect("sync");
        locs
    };
    let path = seg_path(dir.path(), locs[2].segment);
    let f = OpenOptions::new().write(true).open(&path).expect("open");
    f.set_len(u64::from(locs[2].offset) + 20).expect("truncate");
    drop(f);
    let store = Store::open(dir.path(), opts()).expect("reopen");
    assert!(matches!(
        store.read(locs[2]),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(
        &store.read(locs[1]).expect("read")[..],
        &payload(1, 100)[..]
    );
    let far = Location {
        segment: locs[0].segment,
        offset: 1 << 30,
        len: 10,
    };
    assert!(matches!(store.read(far), Err(StoreError::Corrupt { .. })));
    let header = Location {
        segment: locs[0].segment,
        offset: 0,
        len: 8,
    };
    assert!(matches!(
        store.read(header),
        Err(StoreError::Corrupt { .. })
    ));
    let nowhere = Location {
        segment: 999,
        offset: 16,
        len: 1,
    };
    assert!(matches!(
        store.read(nowhere),
        Err(StoreError::Corrupt { .. })
    ));
    // Truncated behind the store's back while open: a short read is Corrupt, not a panic.
    let f = OpenOptions::new().write(true).open(&path).expect("open");
    f.set_len(u64::from(locs[1].offset) + 3).expect("truncate");
    drop(f);
    assert!(matches!(
        store.read(locs[1]),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn missing_queue_log_is_created_empty_and_removal_deletes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), opts()).expect("open");
        let log = store.queue_log(11).expect("log");
        log.enqueue(1, store.append(b"m").location(), 0);
        store.sync_now().expect("sync");
    }
    fs::remove_file(dir.path().join("queues/11.idx")).expect("rm");
    let store = Store::open(dir.path(), opts()).expect("reopen");
    assert!(store.queue_log_ids().expect("ids").is_empty());
    let log = store.queue_log(11).expect("log");
    assert!(log.recover().expect("recover").is_empty());
    assert_eq!(store.queue_log_ids().expect("ids"), vec![11]);
    store.queue_log(12).expect("log");
    assert_eq!(store.queue_log_ids().expect("ids"), vec![11, 12]);

    store.remove_queue_log(11).expect("remove");
    assert_eq!(store.queue_log_ids().expect("ids"), vec![12]);
    // The old handle is inert; writes to it go nowhere.
    log.enqueue(2, Location::default(), 0);
    store.sync_now().expect("sync");
    assert!(matches!(
        log.recover(),
        Err(StoreError::QueueLogRemoved { queue_id: 11 })
    ));
    assert_eq!(store.queue_log_ids().expect("ids"), vec![12]);
    // Removing a log that was never opened in this run deletes its file as well.
    drop(store);
    let store = Store::open(dir.path(), opts()).expect("reopen");
    store.remove_queue_log(12).expect("remove");
    assert!(store.queue_log_ids().expect("ids").is_empty());
    store
        .remove_queue_log(13)
        .expect("removing a missing log is fine");
}

#[test]
fn metadata_is_replaced_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), opts()).expect("open");
        assert_eq!(store.load_metadata().expect("load"), None);
        store.save_metadata(b"version one").expect("save");
        store.save_metadata(b"version two").expect("save");
        assert_eq!(
            store.load_metadata().expect("load").as_deref(),
            Some(&b"version two"[..])
        );
    }
    // An interrupted save leaves a temp file behind: ignored, and cleaned up at open.
    fs::write(dir.path().join("metadata.bin.tmp"), b"half written garb").expect("write");
    let store = Store::open(dir.path(), opts()).expect("reopen");
    assert_eq!(
        store.load_metadata().expect("load").as_deref(),
        Some(&b"version two"[..])
    );
    assert!(!dir.path().join("metadata.bin.tmp").exists());
    store.save_metadata(b"").expect("save empty");
    assert_eq!(
        store.load_metadata().expect("load").as_deref(),
        Some(&b""[..])
    );
    // A damaged file is set aside and the previous copy used: the broker can start.
    let path = dir.path().join("metadata.bin");
    store.save_metadata(b"some definitions").expect("save");
    let damage = |path: &std::path::Path| {
        let mut data = fs::read(path).expect("read");
        let last = data.len() - 1;
        data[last] ^= 1;
        fs::write(path, data).expect("write");
    };
    damage(&path);
    assert_eq!(
        store.load_metadata().expect("previous copy").as_deref(),
        Some(&b""[..])
    );
    assert!(dir.path().join("metadata.bin.damaged").exists());
    // Missing (a save interrupted between its two renames): the previous copy too.
    store.save_metadata(b"three").expect("save");
    store.save_metadata(b"four").expect("save");
    fs::remove_file(&path).expect("remove");
    assert_eq!(
        store.load_metadata().expect("previous copy").as_deref(),
        Some(&b"three"[..])
    );
    // With no good copy left, damage is reported, not returned as data.
    store.save_metadata(b"five").expect("save");
    damage(&path);
    damage(&dir.path().join("metadata.prev"));
    assert!(matches!(
        store.load_metadata(),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn a_directory_is_opened_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), opts()).expect("open");
    let clone = store.clone();
    assert!(matches!(
        Store::open(dir.path(), opts()),
        Err(StoreError::Locked { .. })
    ));
    drop(store);
    // A clone keeps the store (and its lock) alive.
    assert!(Store::open(dir.path(), opts()).is_err());
    drop(clone);
    Store::open(dir.path(), opts()).expect("open after the last clone is dropped");
}

#[test]
fn dropping_the_store_flushes_buffered_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (loc, log_id) = {
        let store = Store::open(
            dir.path(),
            StoreOptions {
                flush_interval: Duration::from_secs(3600),
                ..opts()
            },
        )
        .expect("open");
        let log = store.queue_log(1).expect("log");
        let loc = store.append(b"flushed at drop").location();
        log.enqueue(1, loc, 0);
        (loc, 1)
    };
    let store = Store::open(dir.path(), opts()).expect("reopen");
    assert_eq!(&store.read(loc).expect("read")[..], b"flushed at drop");
    let live = store
        .queue_log(log_id)
        .expect("log")
        .recover()
        .expect("recover");
    assert_eq!(live.len(), 1);
}

mod model {
    //! Random operation sequences against a queue log, compared with a plain map.
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Enqueue,
        Delivered(u8),
        Ack(u8),
        Sync,
        Compact,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Enqueue),
            1 => any::<u8>().prop_map(Op::Delivered),
            3 => any::<u8>().prop_map(Op::Ack),
            1 => Just(Op::Sync),
            1 => Just(Op::Compact),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn queue_log_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let fast = StoreOptions { fsync: false, ..StoreOptions::default() };
            let mut model: BTreeMap<u64, (Location, bool)> = BTreeMap::new();
            let mut next = 0u64;
            {
                let store = Store::open(dir.path(), fast.clone()).expect("open");
                let log = store.queue_log(1).expect("log");
                let pick = |model: &BTreeMap<u64, (Location, bool)>, k: u8| {
                    if model.is_empty() { None } else {
                        model.keys().nth(k as usize % model.len()).copied()
                    }
                };
                for op in ops {
                    match op {
                        Op::Enqueue => {
                            let loc = store.append(&payload(next, 5)).location();
                            log.enqueue(next, loc, 0);
                            model.insert(next, (loc, false));
                            next += 1;
                        }
                        Op::Delivered(k) => if let Some(s) = pick(&model, k) {
                            log.delivered(s);
                            if let Some(e) = model.get_mut(&s) { e.1 = true; }
                        },
                        Op::Ack(k) => if let Some(s) = pick(&model, k) {
                            log.ack(s);
                            model.remove(&s);
                        },
                        Op::Sync => store.sync_now().expect("sync"),
                        Op::Compact => {
                            let live: Vec<RecoveredEntry> = model.iter()
                                .map(|(&seq, &(loc, delivered))| RecoveredEntry { seq, loc, delivered, deadline: 0 })
                                .collect();
                            log.compact(&live).expect("compact");
                        }
                    }
                }
            }
            let store = Store::open(dir.path(), fast).expect("reopen");
            let got = store.queue_log(1).expect("log").recover().expect("recover");
            let want: Vec<RecoveredEntry> = model.iter()
                .map(|(&seq, &(loc, delivered))| RecoveredEntry { seq, loc, delivered, deadline: 0 })
                .collect();
            prop_assert_eq!(&got, &want);
            for e in &got {
                prop_assert_eq!(&store.read(e.loc).expect("read")[..], &payload(e.seq, 5)[..]);
            }
        }
    }
}

#[test]
fn many_queue_logs_in_one_round() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queues = 40u64;
    {
        let store = Store::open(dir.path(), opts()).expect("open");
        let logs: Vec<_> = (0..queues)
            .map(|q| store.queue_log(q).expect("log"))
            .collect();
        for i in 0..50u64 {
            // One message routed to every queue: written once, referenced from each log.
            let loc = store.append(&payload(i, 64)).location();
            for log in &logs {
                store.retain(loc);
                log.enqueue(i, loc, 0);
                if i.is_multiple_of(2) {
                    log.ack(i);
                    store.release(loc);
                }
            }
        }
        store.sync_now().expect("sync");
    }
    let store = Store::open(dir.path(), opts()).expect("reopen");
    assert_eq!(store.queue_log_ids().expect("ids").len(), queues as usize);
    for q in 0..queues {
        let live = store.queue_log(q).expect("log").recover().expect("recover");
        assert_eq!(live.len(), 25, "queue {q}");
        for e in &live {
            assert_eq!(
                &store.read(e.loc).expect("read")[..],
                &payload(e.seq, 64)[..]
            );
        }
    }
}

/// One step of the reference-handle property test.
#[derive(Debug, Clone)]
enum RefOp {
    /// Append a record of this many bytes and keep the handle.
    Append(usize),
    /// Clone the handle at this index (mod the number of handles).
    CloneRef(usize),
    /// Drop the handle at this index.
    DropRef(usize),
    /// A queue takes the record of handle `i` (retain of its location).
    Retain(usize),
    /// A queue lets go of its entry at this index (release).
    Release(usize),
    /// A flush round (which unlinks doomed segments).
    Sync,
}

fn ref_op() -> impl proptest::strategy::Strategy<Value = RefOp> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (1usize..900).prop_map(RefOp::Append),
        1 => any::<usize>().prop_map(RefOp::CloneRef),
        3 => any::<usize>().prop_map(RefOp::DropRef),
        2 => any::<usize>().prop_map(RefOp::Retain),
        2 => any::<usize>().prop_map(RefOp::Release),
        1 => Just(RefOp::Sync),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever the order of appends, handle clones and drops, retains, releases, segment
    /// rolls (1 KiB segments) and flush rounds: every record that a live handle or a retained
    /// entry names stays readable, and once nothing names anything, every segment but the
    /// current one is deleted.
    #[test]
    fn a_segment_lives_while_a_handle_or_an_entry_refers_to_it(
        ops in proptest::collection::vec(ref_op(), 1..160)
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            dir.path(),
            StoreOptions { segment_size: 1024, ..opts() },
        ).expect("open");
        let mut handles: Vec<(warren_store::RecordRef, u64, usize)> = Vec::new();
        let mut entries: Vec<(Location, u64, usize)> = Vec::new();
        let mut next = 0u64;
        for op in ops {
            match op {
                RefOp::Append(len) => {
                    let r = store.append(&payload(next, len));
                    handles.push((r, next, len));
                    next += 1;
                }
                RefOp::CloneRef(i) if !handles.is_empty() => {
                    let (r, id, len) = &handles[i % handles.len()];
                    let c = (r.clone(), *id, *len);
                    handles.push(c);
                }
                RefOp::DropRef(i) if !handles.is_empty() => {
                    let n = handles.len();
                    handles.swap_remove(i % n);
                }
                RefOp::Retain(i) if !handles.is_empty() => {
                    let (r, id, len) = &handles[i % handles.len()];
                    store.retain(r.location());
                    entries.push((r.location(), *id, *len));
                }
                RefOp::Release(i) if !entries.is_empty() => {
                    let n = entries.len();
                    let (loc, _, _) = entries.swap_remove(i % n);
                    store.release(loc);
                }
                RefOp::Sync => store.sync_now().expect("sync"),
                _ => {}
            }
            for (loc, id, len) in handles
                .iter()
                .map(|(r, id, len)| (r.location(), *id, *len))
                .chain(entries.iter().copied())
            {
                let got = store.read(loc).map_err(|e| {
                    proptest::test_runner::TestCaseError::fail(format!("{loc:?}: {e}"))
                })?;
                proptest::prop_assert_eq!(&got[..], &payload(id, len)[..]);
            }
        }
        for (loc, _, _) in entries.drain(..) {
            store.release(loc);
        }
        handles.clear();
        store.sync_now().expect("sync");
        proptest::prop_assert!(seg_files(dir.path()) <= 1, "segments left: {}", seg_files(dir.path()));
    }
}

#[test]
fn records_no_queue_log_names_are_written_without_fsync_and_not_kept_in_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), opts()).expect("open");
    // 3 MiB of records nobody indexes: transient messages paged out of memory.
    let refs: Vec<_> = (0..3072u64)
        .map(|i| store.append(&payload(i, 1024)))
        .collect();
    let fsyncs = store.fsync_count();
    store.request_sync();
    wait_synced(&store, store.generation());
    assert_eq!(
        store.fsync_count(),
        fsyncs,
        "records that no index names need no fsync (nor the new segment's directory entry)"
    );
    assert_eq!(store.buffered_bytes(), 0, "written chunks are not kept");
    // Read back from the file.
    for (i, r) in refs.iter().enumerate().step_by(97) {
        assert_eq!(
            &store.read(r.location()).expect("read")[..],
            &payload(i as u64, 1024)[..]
        );
    }
}

#[test]
fn a_record_indexed_after_it_was_written_is_fsynced_before_the_index_entry_is_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), opts()).expect("open");
    let log = store.queue_log(3).expect("log");
    // Written (and dropped from memory) as a transient record first, as a fanout that pages
    // the message for a transient queue before a durable one logs it.
    let r = store.append(&payload(1, 512));
    store.request_sync();
    wait_synced(&store, store.generation());
    assert_eq!(store.buffered_bytes(), 0);
    let fsyncs = store.fsync_count();
    log.enqueue(1, r.location(), 0);
    store.request_sync();
    wait_synced(&store, store.generation());
    // The segment (plus the new segment's directory entry and id file) and the queue log.
    assert!(
        store.fsync_count() >= fsyncs + 2,
        "segment and queue log fsynced: {} -> {}",
        fsyncs,
        store.fsync_count()
    );
    // An indexed record appended and logged together is kept until its fsync as before.
    let r2 = store.append(&payload(2, 512));
    log.enqueue(2, r2.location(), 0);
    let before = store.fsync_count();
    store.sync_now().expect("sync");
    assert!(store.fsync_count() >= before + 2);
    drop(store);
    let store = Store::open(dir.path(), opts()).expect("reopen");
    let log = store.queue_log(3).expect("log");
    let live = log.recover().expect("recover");
    assert_eq!(live.len(), 2);
    for (e, i) in live.iter().zip([1u64, 2]) {
        assert_eq!(&store.read(e.loc).expect("read")[..], &payload(i, 512)[..]);
    }
}

fn log_len(dir: &Path, queue_id: u64) -> u64 {
    fs::metadata(dir.join("queues").join(format!("{queue_id}.idx")))
        .expect("queue log")
        .len()
}

#[test]
fn an_enqueue_acked_before_its_round_is_never_written_nor_fsynced() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No timed round may fall between an enqueue and its ack: only sync_now runs rounds.
    let quiet = StoreOptions {
        flush_interval: Duration::from_secs(3600),
        ..opts()
    };
    let store = Store::open(dir.path(), quiet).expect("open");
    let log = store.queue_log(4).expect("log");
    let header = log_len(dir.path(), 4);
    // Consumed and acked before the flusher took the buffer: the enqueue, its delivered
    // record and its ack cancel out, and the record they named needs no fsync.
    let before = store.fsync_count();
    for i in 0..100u64 {
        let r = store.append(&payload(i, 1024));
        log.enqueue(i, r.location(), 0);
        store.retain(r.location());
        log.delivered(i);
        log.ack(i);
        store.release(r.location());
    }
    store.sync_now().expect("sync");
    assert_eq!(
        log_len(dir.path(), 4),
        header,
        "nothing written to the queue log"
    );
    assert_eq!(
        store.fsync_count(),
        before,
        "no fsync: nothing any index names is left to make durable"
    );

    // A delivered entry whose enqueue is still buffered is one record, flagged.
    let r = store.append(&payload(200, 64));
    log.enqueue(200, r.location(), 0);
    store.retain(r.location());
    log.delivered(200);
    // Acked after its enqueue was written: the ack is written.
    let r2 = store.append(&payload(201, 64));
    log.enqueue(201, r2.location(), 0);
    store.retain(r2.location());
    store.sync_now().expect("sync");
    assert_eq!(log_len(dir.path(), 4), header + 2 * 32);
    log.ack(201);
    store.release(r2.location());
    store.sync_now().expect("sync");
    assert_eq!(log_len(dir.path(), 4), header + 3 * 32);
    drop((r, r2, log, store));

    let store = Store::open(dir.path(), opts()).expect("reopen");
    let live = store.queue_log(4).expect("log").recover().expect("recover");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].seq, 200);
    assert!(live[0].delivered, "the flag folded into the enqueue record");
    assert_eq!(
        &store.read(live[0].loc).expect("read")[..],
        &payload(200, 64)[..]
    );
}

#[test]
fn an_enqueue_still_needs_its_fsync_when_another_queue_holds_the_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), opts()).expect("open");
    let (a, b) = (
        store.queue_log(1).expect("a"),
        store.queue_log(2).expect("b"),
    );
    let r = store.append(&payload(7, 256));
    a.enqueue(1, r.location(), 0);
    b.enqueue(1, r.location(), 0);
    // Only queue a's copy is consumed: b's entry still names the record.
    a.ack(1);
    let before = store.fsync_count();
    store.sync_now().expect("sync");
    // The segment, its directory entry and the id file (its first durable data), and b's
    // log; a's log has nothing to write.
    assert_eq!(
        store.fsync_count(),
        before + 4,
        "segment and b's log fsynced: {before} -> {}",
        store.fsync_count()
    );
    drop((a, b));
    drop(r);
    drop(store);
    let store = Store::open(dir.path(), opts()).expect("reopen");
    assert!(store
        .queue_log(1)
        .expect("a")
        .recover()
        .expect("a")
        .is_empty());
    let live = store.queue_log(2).expect("b").recover().expect("b");
    assert_eq!(live.len(), 1);
    assert_eq!(
        &store.read(live[0].loc).expect("read")[..],
        &payload(7, 256)[..]
    );
}

#[test]
fn retired_segments_are_reused_and_their_old_bytes_never_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = StoreOptions {
        segment_size: 64 * 1024,
        ..opts()
    };
    let spares = |dir: &Path| {
        fs::read_dir(dir.join("segments"))
            .expect("segments")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".spare"))
            })
            .count()
    };
    let store = Store::open(dir.path(), small.clone()).expect("open");
    let log = store.queue_log(9).expect("log");
    // Fill and empty segments one after another: each emptied segment becomes a spare, and
    // new segments take the spares, so the directory stays small.
    let mut seq = 0u64;
    for round in 0..20u64 {
        let mut held = Vec::new();
        for _ in 0..40 {
            let r = store.append(&payload(seq, 3000));
            log.enqueue(seq, r.location(), 0);
            store.retain(r.location());
            held.push((seq, r.location()));
            seq += 1;
        }
        store.sync_now().expect("sync");
        for (s, loc) in held {
            assert_eq!(&store.read(loc).expect("read")[..], &payload(s, 3000)[..]);
            log.ack(s);
            store.release(loc);
        }
        store.sync_now().expect("sync");
        assert!(spares(dir.path()) <= 2, "round {round}: spares bounded");
        assert!(
            seg_files(dir.path()) <= 4,
            "round {round}: {} segments",
            seg_files(dir.path())
        );
    }
    assert!(
        spares(dir.path()) >= 1,
        "emptied segments are kept as spares"
    );
    // Live entries written into recycled files survive a restart and read back exactly.
    let mut kept = Vec::new();
    let mut last = Location::default();
    for _ in 0..30 {
        let r = store.append(&payload(seq, 3000));
        log.enqueue(seq, r.location(), 0);
        store.retain(r.location());
        kept.push(seq);
        last = r.location();
        seq += 1;
    }
    store.sync_now().expect("sync");
    // The last segment is a recycled file, longer than what this life wrote into it: past
    // its last record lie the previous segment's records, same length, same offsets.
    let stale = Location {
        segment: last.segment,
        offset: last.offset + 8 + 3000,
        len: 3000,
    };
    let file_len = fs::metadata(seg_path(dir.path(), last.segment))
        .expect("segment")
        .len();
    assert!(
        file_len >= u64::from(stale.offset) + 8 + 3000,
        "the last segment reuses a fuller file ({file_len} B)"
    );
    drop(log);
    drop(store);
    let store = Store::open(dir.path(), small).expect("reopen");
    assert_eq!(spares(dir.path()), 0, "a restart keeps no spares");
    let live = store.queue_log(9).expect("log").recover().expect("recover");
    assert_eq!(live.iter().map(|e| e.seq).collect::<Vec<_>>(), kept);
    for e in &live {
        assert_eq!(
            &store.read(e.loc).expect("read")[..],
            &payload(e.seq, 3000)[..]
        );
        store.retain(e.loc);
    }
    // After the restart the bound is the file's length, so only the record check stands
    // between a location into old bytes and a wrong message: it must refuse them.
    let got = store.read(stale);
    assert!(
        matches!(got, Err(StoreError::Corrupt { .. })),
        "a record of the file's previous segment read as valid: {:?}",
        got.map(|b| b.len())
    );
    store.collect_garbage();
    assert_eq!(spares(dir.path()), 0);
}

#[test]
fn a_record_appended_in_parts_is_the_joined_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = payload(3, 5000);
    let (parts_loc, whole_loc) = {
        let store = Store::open(dir.path(), opts()).expect("open");
        let parts = store.append_parts_counted(&[b"head", b"", &body]);
        let whole = store.append_counted(&[&b"head"[..], &body].concat());
        assert_eq!(parts.len, whole.len);
        // Served from the write buffer, then from the file, with the same checksum.
        assert_eq!(
            store.read(parts).expect("read"),
            store.read(whole).expect("read")
        );
        store.sync_now().expect("sync");
        (parts, whole)
    };
    let store = Store::open(dir.path(), opts()).expect("reopen");
    let want = [&b"head"[..], &body].concat();
    assert_eq!(&store.read(parts_loc).expect("read")[..], &want[..]);
    assert_eq!(&store.read(whole_loc).expect("read")[..], &want[..]);
}

#[test]
fn io_stats_count_the_writes_syncs_and_reads_of_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loc = {
        let store = Store::open(dir.path(), opts()).expect("open");
        let log = store.queue_log(9).expect("log");
        let before = store.io_stats();
        let r = store.append(&payload(1, 4000));
        log.enqueue(1, r.location(), 0);
        store.request_sync();
        wait_synced(&store, store.generation());
        let after = store.io_stats();
        assert!(after.write_ops > before.write_ops);
        // The record (4000 bytes and its header) and the log's 32-byte entry.
        assert!(
            after.write_bytes - before.write_bytes >= 4000 + 32,
            "{after:?}"
        );
        // The segment and the queue log at least, each timed.
        assert!(after.sync_ops >= before.sync_ops + 2, "{after:?}");
        assert!(after.sync_nanos > before.sync_nanos, "{after:?}");
        // The index entry's reference, as a queue holds it.
        store.retain(r.location());
        r.location()
    };
    // After a restart the record is read from its file: one read of its bytes.
    let store = Store::open(dir.path(), opts()).expect("reopen");
    let log = store.queue_log(9).expect("log");
    assert_eq!(log.recover().expect("recover").len(), 1);
    let before = store.io_stats();
    assert_eq!(&store.read(loc).expect("read")[..], &payload(1, 4000)[..]);
    let after = store.io_stats();
    assert_eq!(after.read_ops, before.read_ops + 1);
    assert!(after.read_bytes - before.read_bytes >= 4000);
}
