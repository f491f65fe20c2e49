//! Crash safety: a child process (this test binary, re-executed) appends, enqueues, acks and
//! waits for group commits, printing what it was told is durable; the parent kills it with
//! SIGKILL at a random moment, reopens the store and checks that everything reported durable
//! reads back intact. Rounds accumulate in one directory, so later rounds also check that
//! recovery and garbage collection of earlier rounds lost nothing.
//!
//! A second child runs with a file-size limit (RLIMIT_FSIZE) to make writes fail as on a
//! full disk, and checks that nothing is lost or confirmed while they fail.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use warren_store::{Store, StoreOptions};

const CHILD_DIR: &str = "WARREN_STORE_TEST_CHILD_DIR";
const CHILD_ROUND: &str = "WARREN_STORE_TEST_CHILD_ROUND";
const BATCH: u64 = 37;

fn payload(round: u64, i: u64) -> Vec<u8> {
    let len = 50 + ((i * 7919 + round * 31) % 3000) as usize;
    let mut p = Vec::with_capacity(len);
    p.extend_from_slice(&round.to_le_bytes());
    p.extend_from_slice(&i.to_le_bytes());
    while p.len() < len {
        p.push((p.len() as u64 ^ i ^ (round << 3)) as u8);
    }
    p
}

fn crash_opts() -> StoreOptions {
    StoreOptions {
        segment_size: 256 * 1024,
        flush_interval: Duration::from_millis(5),
        fsync: true,
    }
}

/// Runs only as the re-executed child; a no-op in a normal test run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let round: u64 = std::env::var(CHILD_ROUND)
        .expect("round")
        .parse()
        .expect("number");
    let store = Store::open(Path::new(&dir), crash_opts()).expect("child open");
    let log = store.queue_log(round).expect("child log");
    let rx = store.synced();
    let mut out = std::io::stdout().lock();
    let mut i = 0u64;
    loop {
        for _ in 0..BATCH {
            let loc = store.append(&payload(round, i)).location();
            store.retain(loc);
            log.enqueue(i, loc, 0);
            if i.is_multiple_of(3) {
                log.delivered(i);
            }
            if i.is_multiple_of(5) {
                log.ack(i);
                store.release(loc);
            }
            i += 1;
        }
        let g = store.generation();
        store.request_sync();
        while *rx.borrow() < g {
            std::thread::sleep(Duration::from_micros(50));
        }
        writeln!(out, "SYNCED {i}").expect("stdout");
        out.flush().expect("stdout");
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Opens the store as the broker would at start: recover every queue, check it against what
/// each round reported durable, retain what is live, collect garbage.
fn verify(dir: &Path, synced: &HashMap<u64, u64>) -> usize {
    let store = Store::open(dir, crash_opts()).expect("reopen");
    let mut live_total = 0;
    for id in store.queue_log_ids().expect("ids") {
        let log = store.queue_log(id).expect("log");
        let live = log.recover().expect("recover");
        let by_seq: HashMap<u64, _> = live.iter().map(|e| (e.seq, e)).collect();
        let reported = synced.get(&id).copied().unwrap_or(0);
        for i in 0..reported {
            if i.is_multiple_of(5) {
                assert!(
                    !by_seq.contains_key(&i),
                    "round {id}: acked seq {i} came back"
                );
                continue;
            }
            let e = by_seq
                .get(&i)
                .unwrap_or_else(|| panic!("round {id}: synced seq {i} of {reported} lost"));
            assert_eq!(
                e.delivered,
                i.is_multiple_of(3),
                "round {id}: delivered flag of {i}"
            );
        }
        // Entries past the last report may or may not be there (a SIGKILL keeps what was
        // written); those that are must read back intact, as must all the others.
        for e in &live {
            let data = store
                .read(e.loc)
                .unwrap_or_else(|err| panic!("round {id}: seq {} at {:?}: {err}", e.seq, e.loc));
            assert_eq!(
                &data[..],
                &payload(id, e.seq)[..],
                "round {id}: seq {}",
                e.seq
            );
            store.retain(e.loc);
        }
        live_total += live.len();
    }
    store.collect_garbage();
    live_total
}

#[test]
fn sigkill_at_random_moments_loses_nothing_reported_synced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut rng = Rng(seed);
    let mut synced: HashMap<u64, u64> = HashMap::new();
    for round in 1..=10u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut last = 0u64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("SYNCED ") {
                    last = n.trim().parse().unwrap_or(last);
                }
            }
            last
        });
        let delay = Duration::from_millis(80 + rng.next() % 400);
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL the child");
        let _ = child.wait();
        let reported = reader.join().expect("reader");
        synced.insert(round, reported);
        let live = verify(dir.path(), &synced);
        eprintln!(
            "round {round}: killed after {delay:?}, {reported} reported synced, {live} live in total (seed {seed})"
        );
    }
    assert!(
        synced.values().any(|&n| n > 0),
        "no child ever reported a sync: the test tested nothing"
    );
}

/// The disk-full scenario, run in a child because a file-size limit and the SIGXFSZ
/// disposition are process-wide.
#[test]
fn disk_full_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    if std::env::var(CHILD_ROUND).as_deref() != Ok("disk-full") {
        return;
    }
    let dir = Path::new(&dir);
    // SAFETY: plain libc calls with valid arguments; SIG_IGN makes an over-limit write fail
    // with EFBIG instead of killing the process.
    let set_limit = |bytes: u64| unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit {
            rlim_cur: bytes as libc::rlim_t,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    };
    let opts = StoreOptions {
        flush_interval: Duration::from_millis(5),
        ..StoreOptions::default()
    };
    let store = Store::open(dir, opts.clone()).expect("open");
    let log = store.queue_log(1).expect("log");
    store.save_metadata(b"definitions v1").expect("metadata");
    let mut locs = Vec::new();
    for i in 0..10 {
        let loc = store.append(&payload(0, i)).location();
        log.enqueue(i, loc, 0);
        locs.push(loc);
    }
    store.sync_now().expect("sync before the disk fills");
    let rx = store.synced();
    let before = *rx.borrow();

    set_limit(64 * 1024);
    for i in 10..200 {
        let loc = store.append(&payload(0, i)).location();
        log.enqueue(i, loc, 0);
        locs.push(loc);
    }
    let g = store.generation();
    assert!(store.sync_now().is_err(), "writes past the limit must fail");
    assert!(store.is_failed());
    assert!(store.last_error().is_some());
    assert!(*rx.borrow() < g, "nothing unsynced may be reported synced");
    assert!(*rx.borrow() >= before);
    assert!(store.buffered_bytes() > 0);
    for (i, loc) in locs.iter().enumerate() {
        assert_eq!(
            &store.read(*loc).expect("read while failing")[..],
            &payload(0, i as u64)[..]
        );
    }
    // A metadata save that does not fit fails and leaves the old blob in place.
    assert!(store.save_metadata(&vec![7u8; 128 * 1024]).is_err());
    assert_eq!(
        store.load_metadata().expect("load").as_deref(),
        Some(&b"definitions v1"[..])
    );

    // Space comes back: the retry writes everything and the synced generation catches up.
    set_limit(u64::MAX);
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.sync_now().is_err() {
        assert!(Instant::now() < deadline, "store never recovered");
    }
    assert!(!store.is_failed());
    assert!(*rx.borrow() >= g);
    assert_eq!(store.buffered_bytes(), 0);
    drop(log);
    drop(store);

    let store = Store::open(dir, opts).expect("reopen");
    let live = store.queue_log(1).expect("log").recover().expect("recover");
    assert_eq!(live.len(), 200);
    for e in &live {
        assert_eq!(e.loc, locs[e.seq as usize]);
        assert_eq!(
            &store.read(e.loc).expect("read after reopen")[..],
            &payload(0, e.seq)[..]
        );
    }
    println!("DISK-FULL-OK");
}

#[test]
fn disk_full_keeps_data_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .args([
            "--exact",
            "disk_full_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_ROUND, "disk-full")
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("DISK-FULL-OK"),
        "child failed: {}\n{}\n{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
}
