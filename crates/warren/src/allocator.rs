//! glibc malloc settings for a broker: fixed mmap and trim thresholds, and handing freed
//! heap memory back to the system after a burst.
//!
//! The threshold: by default glibc raises it to the size of every large block freed, so
//! that after the first store chunk (1 MiB) or index block is freed, blocks of that size come
//! from the per-thread heaps, which keep their high-water mark resident: scenario 9 (a
//! backlog of 1M transient messages) ended at 109-179 MB resident with the default and at
//! 80-86 MB with a fixed threshold, with the same live heap (docs/benchmarks.md). 512 KiB
//! keeps read buffers (64 and 256 KiB) in the heaps, where they are reused: at 128 KiB every
//! 256 KiB read buffer was a fresh `mmap`, and 64 KiB bodies cost twice the CPU in page faults.
//!
//! The trim threshold: by default glibc gives the top of a heap back (`madvise(DONTNEED)` in a
//! thread's arena) as soon as more than 128 KiB of it is free, on the `free` that makes it so.
//! With 64 KiB bodies (scenario 6) every 256 KiB read buffer freed after its messages were
//! delivered did that, and the next buffer faulted its pages in again, zeroed: 20-40
//! `madvise` calls a second of 0.2-26 MB each, and page faults, page zeroing and page-table
//! work took ~13% of the broker's samples (51-52 µs per message before, 37-38 after,
//! docs/benchmarks.md). With the threshold at [`HEAP_TRIM_THRESHOLD`] a thread's heap (64 MiB
//! at most) never gives its top back on a `free`; glibc still unmaps a thread heap that is
//! entirely free and trims the main heap past the threshold. The trimmer below gives back
//! the rest.
//!
//! The trimmer: what a burst freed inside the heaps (50 queues' worth of message bodies in
//! scenario 7, 1.3 GB) stays resident unless `malloc_trim` releases the free pages. A thread
//! looks every few seconds at how much of the resident memory the heaps do not use and trims
//! when that is [`TRIM_ABOVE`] more than what its last trim left, at most once per
//! [`TRIM_AT_MOST_EVERY`]: releasing 0.5-1.3 GB took 80-160 ms here, during which threads
//! allocating from the arena being trimmed wait; tens of MB take a few ms. Idle, or steady below that, it does nothing.
//!
//! The thread cache: glibc keeps at most 7 freed chunks per size class in each thread's
//! cache; past that a free takes the arena's lock. A message is allocated on its publisher's
//! thread and freed on its consumer's, so at s1 rates nearly every free went to the arena:
//! 1.6-2.3 µs of broker CPU per message against 1.0-1.3 with 512 chunks cached (docs/benchmarks.md).
//! The cache size is a glibc tunable, read only when the process starts: the binary
//! executes itself again once with it set. glibc before 2.30 caps the count at 127 and
//! ignores 512; the broker then runs with glibc's default.

use std::time::Duration;

/// The glibc tunable for the per-thread cache's chunks per size class.
const TCACHE_TUNABLE: &str = "glibc.malloc.tcache_count";
/// Chunks per size class (glibc's default is 7). At most 512 chunks of each of the 64 cached
/// sizes (16 B to 1 KiB) per thread: 17 MB per thread in the worst case; scenario 9 and 10
/// measured the same resident memory as with the default.
const TCACHE_COUNT: u32 = 512;

/// Free bytes at the top of a heap above which glibc itself gives them back on a `free`
/// (its default is 128 KiB). Above [`TRIM_ABOVE`], so that between two looks of the trimmer
/// the heaps keep what a busy broker frees and takes again.
const HEAP_TRIM_THRESHOLD: i32 = 64 * 1024 * 1024;

/// Resident bytes the heaps hold unused, beyond what the last trim left, above which the
/// trimmer releases pages.
const TRIM_ABOVE: usize = 16 * 1024 * 1024;
/// How often the trimmer looks.
const TRIM_EVERY: Duration = Duration::from_secs(5);
/// Fewest seconds between two trims.
const TRIM_AT_MOST_EVERY: Duration = Duration::from_secs(10);

/// Fixes the mmap and trim thresholds. Call first in `main`, before any other thread exists.
pub fn set_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD);
    }
}

/// Set in the environment of the second execution (and removed there at once), so that the
/// binary executes itself at most once whatever glibc does with `GLIBC_TUNABLES`: in secure
/// mode (a setuid binary, or one given file capabilities to bind a low port) glibc strips the
/// tunable, and checking for the tunable alone would execute again and again.
const REEXECUTED: &str = "WARREN_MALLOC_REEXECUTED";

/// Executes the binary again with a larger per-thread cache unless `GLIBC_TUNABLES` already
/// names one (an operator's own setting wins). At most once (see [`REEXECUTED`]); not in
/// secure mode, where glibc ignores the tunable; not when started through the dynamic loader
/// (`ld-linux-x86-64.so.2 warren ...`), where the executable is the loader and the
/// arguments would not reach the broker. Call first in `main`, before any other thread
/// exists. If the exec fails, the process goes on as it is.
pub fn enlarge_thread_cache() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        use std::os::unix::process::CommandExt;
        if std::env::var_os(REEXECUTED).is_some() {
            // No other thread exists yet (the caller's contract), so nothing reads the
            // environment while it changes.
            std::env::remove_var(REEXECUTED);
            return;
        }
        // SAFETY: getauxval only reads the auxiliary vector the kernel passed.
        if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
            return;
        }
        let tunables = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
        let named = TCACHE_TUNABLE.as_bytes();
        if tunables.as_bytes().windows(named.len()).any(|w| w == named) {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let is_loader = exe
            .file_name()
            .map(OsStrExt::as_bytes)
            .is_some_and(|name| name.starts_with(b"ld-") || name.starts_with(b"ld.so"));
        if is_loader {
            return;
        }
        let mut value = tunables.into_vec();
        if !value.is_empty() {
            value.push(b':');
        }
        value.extend_from_slice(format!("{TCACHE_TUNABLE}={TCACHE_COUNT}").as_bytes());
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        // Only returns on failure (a deleted or replaced binary, say).
        let error = command
            .args(args)
            .env("GLIBC_TUNABLES", std::ffi::OsString::from_vec(value))
            .env(REEXECUTED, "1")
            .exec();
        eprintln!("warren: could not re-execute with a larger malloc cache: {error}");
    }
}

/// Starts the trimmer thread (the broker only: `ctl` and `perf` are short-lived).
pub fn start_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("warren-trim".into())
            .spawn(|| {
                let mut last_trim: Option<std::time::Instant> = None;
                let mut floor = 0;
                loop {
                    std::thread::sleep(TRIM_EVERY);
                    if last_trim.is_some_and(|t| t.elapsed() < TRIM_AT_MOST_EVERY) {
                        continue;
                    }
                    if trim_if_worth_it(&mut floor) {
                        last_trim = Some(std::time::Instant::now());
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the allocator trimmer");
        }
    }
}

/// Whether to trim: when the resident bytes the heaps do not use are more than
/// [`TRIM_ABOVE`] over `floor`, what stayed after the last trim (free pages between live
/// blocks, which `malloc_trim` cannot give back). Lowers `floor` when the heaps reused some.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn worth_trimming(idle: usize, floor: &mut usize) -> bool {
    *floor = (*floor).min(idle);
    idle > floor.saturating_add(TRIM_ABOVE)
}

/// Trims when [`worth_trimming`] says so; true if it trimmed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_if_worth_it(floor: &mut usize) -> bool {
    let Some(idle) = idle_bytes() else {
        return false;
    };
    if !worth_trimming(idle, floor) {
        return false;
    }
    let started = std::time::Instant::now();
    // SAFETY: a plain glibc call without arguments.
    unsafe {
        libc::malloc_trim(0);
    }
    let after = idle_bytes().unwrap_or(0);
    *floor = after;
    tracing::debug!(
        idle_mib = idle >> 20,
        after_mib = after >> 20,
        took_ms = started.elapsed().as_millis() as u64,
        "returned free heap pages to the system"
    );
    true
}

/// Resident bytes that are not heap blocks in use: the binary, stacks and the heaps' free
/// pages (only the last can be given back).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn idle_bytes() -> Option<usize> {
    let resident = resident_bytes()?;
    // SAFETY: a plain glibc call without arguments.
    let info = unsafe { libc::mallinfo2() };
    // In use: heap blocks handed out plus mmap'd ones.
    let in_use = info.uordblks + info.hblkhd;
    tracing::trace!(resident, in_use, free = info.fordblks, "heap check");
    Some(resident.saturating_sub(in_use))
}

/// The process's resident set, from `/proc/self/statm` (pages).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * usize::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn trims_past_the_floor_only() {
        let mut floor = 0;
        assert!(!worth_trimming(10 * MIB, &mut floor));
        assert!(worth_trimming(40 * MIB, &mut floor));
        // After a trim that left 38 MiB the trimmer waits for 16 MiB more.
        floor = 38 * MIB;
        assert!(!worth_trimming(40 * MIB, &mut floor));
        assert!(!worth_trimming(54 * MIB, &mut floor));
        assert!(worth_trimming(55 * MIB, &mut floor));
        // The heaps reused some of it: the floor follows down.
        assert!(!worth_trimming(20 * MIB, &mut floor));
        assert_eq!(floor, 20 * MIB);
        assert!(worth_trimming(37 * MIB, &mut floor));
    }
}
