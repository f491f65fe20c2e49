//! This process's CPU time (user + system), from `/proc/self/stat`, so the
//! summary can show how much the load generator itself costs per message.

use std::time::Duration;

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on every Linux
/// configuration in practice).
const USER_HZ: u64 = 100;

/// User and system time of `stat_line` (the text of `/proc/<pid>/stat`).
pub fn parse_stat(stat_line: &str) -> Option<(Duration, Duration)> {
    // The command name is in parentheses and may contain spaces: fields are
    // counted after the last ')'. utime and stime are fields 14 and 15 of the
    // whole line, i.e. the 12th and 13th after the name.
    let rest = &stat_line[stat_line.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let tick = |t: u64| Duration::from_micros(t * (1_000_000 / USER_HZ));
    Some((tick(utime), tick(stime)))
}

/// User + system CPU time consumed by this process so far, or `None` where
/// `/proc` is unavailable.
pub fn process_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (u, s) = parse_stat(&text)?;
    Some(u + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat() {
        let line = "1234 (warren perf) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 31 0 0 20 0 4 0 100 1000 100";
        let (u, s) = parse_stat(line).unwrap();
        assert_eq!(u, Duration::from_millis(2500));
        assert_eq!(s, Duration::from_millis(310));
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1 2").is_none());
    }

    #[test]
    fn reads_own_cpu() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(process_cpu().is_some());
        }
    }
}
