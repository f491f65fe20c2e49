//! RabbitMQ's node I/O families (`node_persister_metrics`): the message store's reads,
//! writes and syncs, counted and timed by the store itself.

use super::exposition::{Exposition, Kind};
use crate::state::ApiState;

/// The `rabbitmq_io_*` counters, on `/metrics` and as the `node_persister_metrics` family of
/// `/metrics/detailed`. A broker without a disk store reports zeros, as a RabbitMQ node that
/// has not touched its disk does.
pub fn persister(e: &mut Exposition, state: &ApiState) {
    let io = crate::sampler::io_stats(&state.broker);
    let seconds = |nanos: u64| nanos as f64 / 1e9;
    // Warren reads and writes at an offset and keeps its files open: it never seeks nor
    // reopens a file, so those counts (and the seek time) are always zero.
    let counters = [
        (
            "io_read_ops_total",
            "Total number of I/O read operations",
            io.read_ops,
        ),
        (
            "io_read_bytes_total",
            "Total number of I/O bytes read",
            io.read_bytes,
        ),
        (
            "io_write_ops_total",
            "Total number of I/O write operations",
            io.write_ops,
        ),
        (
            "io_write_bytes_total",
            "Total number of I/O bytes written",
            io.write_bytes,
        ),
        (
            "io_sync_ops_total",
            "Total number of I/O sync operations",
            io.sync_ops,
        ),
        (
            "io_seek_ops_total",
            "Total number of I/O seek operations",
            0,
        ),
        (
            "io_reopen_ops_total",
            "Total number of times files have been reopened",
            0,
        ),
    ];
    for (name, help, value) in counters {
        e.single(name, Kind::Counter, help, value);
    }
    let times = [
        (
            "io_read_time_seconds_total",
            "Total I/O read time",
            io.read_nanos,
        ),
        (
            "io_write_time_seconds_total",
            "Total I/O write time",
            io.write_nanos,
        ),
        (
            "io_sync_time_seconds_total",
            "Total I/O sync time",
            io.sync_nanos,
        ),
        ("io_seek_time_seconds_total", "Total I/O seek time", 0),
    ];
    for (name, help, nanos) in times {
        e.single(name, Kind::Counter, help, seconds(nanos));
    }
}
