//! End-to-end tests of warren-lossyfs: mount a real FUSE file system, do file operations
//! through it with Rust std, cut the power (SIGTERM), and check the image directory (and
//! a remount of it) holds exactly the durable state.
//!
//! Needs root and /dev/fuse; without /dev/fuse every test fails, saying so. Each test runs
//! under a watchdog (`bounded`) that kills its daemons if it overruns.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use warren_lossyfs::{cleanup_mount, is_mounted, Mounted};

const BIN: &str = env!("CARGO_BIN_EXE_warren-lossyfs");
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// One test's directories and the daemons it started.
struct Env {
    _tmp: tempfile::TempDir,
    image: PathBuf,
    mnt: PathBuf,
    pids: Arc<Mutex<Vec<u32>>>,
}

impl Env {
    fn mount(&self) -> Mounted {
        let m = Mounted::start(BIN, &self.image, &self.mnt).unwrap_or_else(|e| panic!("{e}"));
        self.pids.lock().unwrap().extend(m.pid());
        m
    }

    fn cut(&self, m: Mounted) {
        self.pids.lock().unwrap().retain(|&p| Some(p) != m.pid());
        m.power_cut()
            .unwrap_or_else(|e| panic!("power cut failed: {e}"));
        assert!(!is_mounted(&self.mnt), "still mounted after the power cut");
    }

    /// A path inside the mount.
    fn m(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// A path inside the image directory.
    fn i(&self, rel: &str) -> PathBuf {
        self.image.join(rel)
    }
}

/// Runs `f` with fresh directories under /tmp, failing (and killing its daemons) after
/// `TEST_TIMEOUT`.
fn bounded(f: impl FnOnce(&Env) + Send + 'static) {
    let tmp = tempfile::Builder::new()
        .prefix("lossyfs-test-")
        .tempdir_in("/tmp")
        .unwrap();
    let env = Env {
        image: tmp.path().join("image"),
        mnt: tmp.path().join("mnt"),
        _tmp: tmp,
        pids: Arc::default(),
    };
    fs::create_dir(&env.image).unwrap();
    let (pids, mnt) = (env.pids.clone(), env.mnt.clone());
    let (tx, rx) = mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        f(&env);
        drop(env); // Mounted values are dropped inside f; the temp dir goes here.
        let _ = tx.send(());
    });
    match rx.recv_timeout(TEST_TIMEOUT) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            for &pid in pids.lock().unwrap().iter() {
                // SAFETY: plain kill(2) of a daemon this test started.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            cleanup_mount(&mnt);
            panic!("test timed out after {TEST_TIMEOUT:?}");
        }
    }
}

fn fsync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

/// Creates or replaces `path` with `data`, fsyncing the file if `sync`.
fn put(path: &Path, data: &[u8], sync: bool) {
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
    if sync {
        f.sync_all().unwrap();
    }
}

/// A durable file: contents fsynced, then its directory fsynced.
fn put_durable(path: &Path, data: &[u8]) {
    put(path, data, true);
    fsync_dir(path.parent().unwrap());
}

/// Every file and directory under `root`: relative path -> contents (`None` for dirs).
fn snapshot(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn fsynced_data_survives() {
    bounded(|env| {
        let m = env.mount();
        put_durable(&env.m("a"), b"durable bytes");
        env.cut(m);
        assert_eq!(fs::read(env.i("a")).unwrap(), b"durable bytes");
    });
}

#[test]
fn data_written_after_last_fsync_is_lost() {
    bounded(|env| {
        let m = env.mount();
        put_durable(&env.m("a"), b"v1");
        let mut f = OpenOptions::new().append(true).open(env.m("a")).unwrap();
        f.write_all(b" and more, never fsynced").unwrap();
        // (pwrite on an O_APPEND descriptor appends on Linux, so use another one.)
        let g = OpenOptions::new().write(true).open(env.m("a")).unwrap();
        g.write_all_at(b"V", 0).unwrap();
        drop((f, g));
        assert_eq!(fs::read(env.m("a")).unwrap(), b"V1 and more, never fsynced");
        env.cut(m);
        assert_eq!(
            fs::read(env.i("a")).unwrap(),
            b"v1",
            "old durable length and bytes"
        );
    });
}

#[test]
fn truncation_is_durable_only_after_fsync() {
    bounded(|env| {
        let m = env.mount();
        put_durable(&env.m("kept"), b"0123456789");
        put_durable(&env.m("cut"), b"0123456789");
        File::create(env.m("kept")).unwrap(); // O_TRUNC, no fsync
        let f = OpenOptions::new().write(true).open(env.m("cut")).unwrap();
        f.set_len(4).unwrap();
        f.sync_data().unwrap();
        assert_eq!(fs::metadata(env.m("kept")).unwrap().len(), 0);
        env.cut(m);
        assert_eq!(fs::read(env.i("kept")).unwrap(), b"0123456789");
        assert_eq!(fs::read(env.i("cut")).unwrap(), b"0123");
    });
}

#[test]
fn created_file_without_dir_fsync_is_gone() {
    bounded(|env| {
        let m = env.mount();
        put(&env.m("new"), b"contents fsynced, entry not", true);
        assert!(env.m("new").exists());
        env.cut(m);
        assert!(!env.i("new").exists());
    });
}

#[test]
fn file_with_dir_fsync_but_no_file_fsync_is_empty() {
    bounded(|env| {
        let m = env.mount();
        put(&env.m("new"), b"never fsynced", false);
        fsync_dir(&env.mnt);
        env.cut(m);
        assert_eq!(fs::read(env.i("new")).unwrap(), b"");
    });
}

#[test]
fn rename_is_durable_only_after_dir_fsync() {
    bounded(|env| {
        let m = env.mount();
        put_durable(&env.m("old"), b"payload");
        put_durable(&env.m("target"), b"replaced");
        fs::rename(env.m("old"), env.m("target")).unwrap(); // over an existing file
        fsync_dir(&env.mnt);
        fs::rename(env.m("target"), env.m("undone")).unwrap(); // never fsynced
        assert!(!env.m("target").exists());
        env.cut(m);
        assert!(!env.i("old").exists());
        assert_eq!(fs::read(env.i("target")).unwrap(), b"payload");
        assert!(!env.i("undone").exists(), "unfsynced rename must be undone");

        // Between directories, each side becomes durable on its own fsync.
        let m = env.mount();
        fs::create_dir(env.m("d1")).unwrap();
        fs::create_dir(env.m("d2")).unwrap();
        fsync_dir(&env.mnt);
        put_durable(&env.m("d1/f"), b"moved");
        fs::rename(env.m("d1/f"), env.m("d2/f")).unwrap();
        fsync_dir(&env.m("d2"));
        env.cut(m);
        assert_eq!(
            fs::read(env.i("d1/f")).unwrap(),
            b"moved",
            "d1 was not fsynced"
        );
        assert_eq!(fs::read(env.i("d2/f")).unwrap(), b"moved");
    });
}

#[test]
fn unlink_without_dir_fsync_is_undone() {
    bounded(|env| {
        let m = env.mount();
        put_durable(&env.m("back"), b"comes back");
        put_durable(&env.m("gone"), b"stays deleted");
        fs::remove_file(env.m("gone")).unwrap();
        fsync_dir(&env.mnt);
        fs::remove_file(env.m("back")).unwrap();
        assert!(!env.m("back").exists());
        env.cut(m);
        assert_eq!(fs::read(env.i("back")).unwrap(), b"comes back");
        assert!(!env.i("gone").exists());
    });
}

#[test]
fn mkdir_without_parent_fsync_is_gone() {
    bounded(|env| {
        let m = env.mount();
        fs::create_dir(env.m("gone")).unwrap();
        fsync_dir(&env.mnt);
        fs::remove_dir(env.m("gone")).unwrap();
        fs::create_dir(env.m("kept")).unwrap();
        fsync_dir(&env.mnt);
        fs::create_dir(env.m("kept/inner")).unwrap(); // kept not fsynced after this
        assert_eq!(
            fs::remove_dir(env.m("kept")).unwrap_err().raw_os_error(),
            Some(libc::ENOTEMPTY)
        );
        fs::create_dir(env.m("lost")).unwrap(); // the root is not fsynced after this
        put_durable(&env.m("lost/f"), b"inside a lost dir");
        env.cut(m);
        assert!(!env.i("lost").exists());
        assert!(env.i("kept").is_dir());
        assert!(!env.i("kept/inner").exists());
        assert!(!env.i("gone").exists());
    });
}

#[test]
fn remount_sees_exactly_the_durable_state() {
    bounded(|env| {
        fs::create_dir(env.i("pre")).unwrap();
        fs::write(env.i("pre/loaded"), b"from the image").unwrap();
        let m = env.mount();
        assert_eq!(fs::read(env.m("pre/loaded")).unwrap(), b"from the image");
        fs::create_dir(env.m("dir")).unwrap();
        fsync_dir(&env.mnt);
        put_durable(&env.m("dir/durable"), b"1");
        put(&env.m("dir/empty"), b"not synced", false);
        fsync_dir(&env.m("dir"));
        put(&env.m("dir/lost"), b"x", true);
        fs::remove_file(env.m("pre/loaded")).unwrap();
        put_durable(&env.m("top"), b"top");
        fs::write(env.m("top"), b"overwritten, lost").unwrap();
        env.cut(m);

        let expected: BTreeMap<String, Option<Vec<u8>>> = [
            ("dir", None),
            ("dir/durable", Some(&b"1"[..])),
            ("dir/empty", Some(&b""[..])),
            ("pre", None),
            ("pre/loaded", Some(&b"from the image"[..])),
            ("top", Some(&b"top"[..])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
        .collect();
        assert_eq!(snapshot(&env.image), expected);
        let m = env.mount();
        assert_eq!(snapshot(&env.mnt), expected);
        put_durable(&env.m("second"), b"round");
        env.cut(m);
        assert_eq!(fs::read(env.i("second")).unwrap(), b"round");
        assert_eq!(snapshot(&env.image).len(), expected.len() + 1);
    });
}

#[test]
fn flock_works() {
    bounded(|env| {
        let m = env.mount();
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(env.m("LOCK"))
                .unwrap()
        };
        let flock = |f: &File, op| {
            // SAFETY: flock(2) on a valid open descriptor.
            match unsafe { libc::flock(f.as_raw_fd(), op) } {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        };
        let (a, b) = (open(), open());
        flock(&a, libc::LOCK_EX | libc::LOCK_NB).expect("first lock");
        let err = flock(&b, libc::LOCK_EX | libc::LOCK_NB).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EWOULDBLOCK));
        drop(a);
        flock(&b, libc::LOCK_EX | libc::LOCK_NB).expect("lock after the holder closed");
        drop(b);
        env.cut(m);
    });
}

#[test]
fn power_cut_with_files_still_open() {
    bounded(|env| {
        let m = env.mount();
        put_durable(&env.m("f"), b"ok");
        let mut open = OpenOptions::new().append(true).open(env.m("f")).unwrap();
        let cwd_holder = File::open(&env.mnt).unwrap();
        env.cut(m);
        assert!(open.write_all(b"after the cut").is_err());
        drop((open, cwd_holder));
        assert_eq!(fs::read(env.i("f")).unwrap(), b"ok");
    });
}

#[test]
fn dropping_without_power_cut_kills_and_unmounts() {
    bounded(|env| {
        fs::write(env.i("before"), b"image").unwrap();
        let m = env.mount();
        put_durable(&env.m("durable"), b"but never cut");
        drop(m); // SIGKILL: no image is written
        assert!(!is_mounted(&env.mnt), "drop must clear the mount");
        assert_eq!(fs::read(env.i("before")).unwrap(), b"image");
        assert!(!env.i("durable").exists());
        let m = env.mount();
        assert_eq!(fs::read(env.m("before")).unwrap(), b"image");
        env.cut(m);
    });
}

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn large_file_random_writes_round_trip() {
    bounded(|env| {
        const SIZE: usize = 20 << 20;
        let m = env.mount();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut expected = vec![0u8; SIZE];
        let f = File::create(env.m("segment")).unwrap();
        f.set_len(SIZE as u64).unwrap();
        for _ in 0..400 {
            let len = 1 + rng.below(64 << 10) as usize;
            let off = rng.below((SIZE - len) as u64) as usize;
            let fill: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            f.write_all_at(&fill, off as u64).unwrap();
            expected[off..off + len].copy_from_slice(&fill);
        }
        f.sync_all().unwrap();
        fsync_dir(&env.mnt);
        f.write_all_at(b"lost after the last fsync", 12345).unwrap();
        f.write_all_at(b"and past the end", SIZE as u64).unwrap();
        drop(f);
        env.cut(m);
        let on_disk = fs::read(env.i("segment")).unwrap();
        assert_eq!(on_disk.len(), SIZE);
        assert!(
            on_disk == expected,
            "image differs from the fsynced contents"
        );
        let m = env.mount();
        let through_mount = fs::read(env.m("segment")).unwrap();
        assert!(
            through_mount == expected,
            "remount differs from the fsynced contents"
        );
        env.cut(m);
    });
}

/// The daemon's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn deleted_files_are_freed() {
    bounded(|env| {
        let m = env.mount();
        let pid = m.pid().unwrap();
        let block = vec![0xabu8; 1 << 20];
        for round in 0..30 {
            let path = env.m(&format!("seg-{round}"));
            let mut f = File::create(&path).unwrap();
            for _ in 0..8 {
                f.write_all(&block).unwrap();
            }
            f.sync_all().unwrap();
            drop(f);
            fsync_dir(&env.mnt);
            fs::remove_file(&path).unwrap();
            fsync_dir(&env.mnt);
        }
        // 30 x 8 MiB were written; freed inodes keep the daemon far below that.
        let rss = rss_kib(pid);
        assert!(
            rss < 100 << 10,
            "daemon RSS {rss} KiB: deleted files not freed?"
        );
        env.cut(m);
        assert!(snapshot(&env.image).is_empty());
    });
}
