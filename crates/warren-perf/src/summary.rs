//! The final report of a run, as JSON (`--json`) or as text.

use std::fmt::Write as _;

use crate::args::{AckMode, ExchangeType};
use crate::stats::LatencySummary;

/// The test that was run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    /// Publishing channels.
    pub producers: u32,
    /// Consuming channels.
    pub consumers: u32,
    /// Queues.
    pub queues: u32,
    /// Body size.
    pub size: usize,
    /// Confirm window (0 = off).
    pub confirm: u32,
    /// Ack mode.
    pub ack: AckMode,
    /// Ack every K deliveries.
    pub multiple_ack_every: u32,
    /// Prefetch (0 = none).
    pub prefetch: u16,
    /// delivery-mode 2.
    pub persistent: bool,
    /// Durable queues.
    pub durable: bool,
    /// Rate limit per producer (0 = none).
    pub rate: f64,
    /// One connection for all.
    pub shared_connection: bool,
    /// Exchange ("" = default).
    pub exchange: String,
    /// Exchange type.
    pub exchange_type: ExchangeType,
    /// Bindings declared.
    pub bindings: usize,
    /// MQTT runs: the QoS (absent for AMQP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_qos: Option<u8>,
}

/// Connection-open timings (`--connections-only`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionsSummary {
    /// Connections opened (each with one channel).
    pub opened: u32,
    /// Time to open them all, one after the other.
    pub open_total_s: f64,
    /// Per connection (TCP connect + handshake + channel.open): mean, ms.
    pub open_mean_ms: f64,
    /// Median, ms.
    pub open_p50_ms: f64,
    /// 99th percentile, ms.
    pub open_p99_ms: f64,
    /// Slowest, ms.
    pub open_max_ms: f64,
    /// How long they were held open, s.
    pub held_s: f64,
    /// Connections that did not close cleanly (closed by the broker meanwhile?).
    pub close_failures: u32,
}

/// Everything a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// `--label`.
    pub label: Option<String>,
    /// publish-consume, publish-only, consume-only or connections-only.
    pub mode: &'static str,
    /// Broker URI, password masked.
    pub broker: String,
    /// The test.
    pub config: Config,
    /// Why the run stopped: count, duration, drained, idle.
    pub stop_reason: &'static str,
    /// Seconds from the start of traffic to the stop.
    pub elapsed_s: f64,
    /// Messages published.
    pub published: u64,
    /// Publisher confirms received.
    pub confirmed: u64,
    /// Negative confirms received.
    pub nacked: u64,
    /// Messages returned unroutable.
    pub returned: u64,
    /// Messages consumed.
    pub consumed: u64,
    /// Published / publishing time.
    pub publish_rate: f64,
    /// Confirmed / time to the last confirm.
    pub confirm_rate: f64,
    /// Consumed / time to the last delivery.
    pub consume_rate: f64,
    /// Consumed body bytes per second, MiB.
    pub consume_mib_per_s: f64,
    /// Messages in the queues when the run started (consume-only).
    pub backlog_at_start: Option<u64>,
    /// End-to-end latency, ms.
    pub latency_ms: Option<LatencySummary>,
    /// This process's CPU time (user + sys) over the run, s.
    pub client_cpu_s: Option<f64>,
    /// That, as % of one core.
    pub client_cpu_percent: Option<f64>,
    /// Client CPU µs per message (per max(published, consumed)).
    pub client_cpu_us_per_msg: Option<f64>,
    /// Connection-open timings (`--connections-only`).
    pub connections: Option<ConnectionsSummary>,
}

impl ConnectionsSummary {
    /// From the open time of each connection (ms).
    pub fn from_open_times(
        times_ms: &[f64],
        open_total_s: f64,
        held_s: f64,
        close_failures: u32,
    ) -> ConnectionsSummary {
        let (mean, p50, p99, max) = crate::stats::summarize_ms(times_ms).unwrap_or_default();
        ConnectionsSummary {
            opened: times_ms.len() as u32,
            open_total_s,
            open_mean_ms: mean,
            open_p50_ms: p50,
            open_p99_ms: p99,
            open_max_ms: max,
            held_s,
            close_failures,
        }
    }
}

impl Summary {
    /// A `--connections-only` run: no messages, the connections' timings, and the client's
    /// CPU over `elapsed_s` if measured.
    pub fn connections_only(
        label: Option<String>,
        broker: String,
        config: Config,
        elapsed_s: f64,
        client_cpu_s: Option<f64>,
        connections: ConnectionsSummary,
    ) -> Summary {
        Summary {
            label,
            mode: "connections-only",
            broker,
            config,
            stop_reason: "duration",
            elapsed_s,
            published: 0,
            confirmed: 0,
            nacked: 0,
            returned: 0,
            consumed: 0,
            publish_rate: 0.0,
            confirm_rate: 0.0,
            consume_rate: 0.0,
            consume_mib_per_s: 0.0,
            backlog_at_start: None,
            latency_ms: None,
            client_cpu_s,
            client_cpu_percent: client_cpu_s.map(|c| 100.0 * c / elapsed_s.max(1e-9)),
            client_cpu_us_per_msg: None,
            connections: Some(connections),
        }
    }

    /// One JSON object, one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Human-readable, several lines.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let c = &self.config;
        let _ = writeln!(
            s,
            "warren-perf summary{}: {} against {}",
            self.label
                .as_deref()
                .map(|l| format!(" [{l}]"))
                .unwrap_or_default(),
            self.mode,
            self.broker
        );
        if let Some(k) = &self.connections {
            let _ = writeln!(
                s,
                "  connections   {} opened in {:.2} s; per connection mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; held {:.1} s; {} failed to close",
                k.opened, k.open_total_s, k.open_mean_ms, k.open_p50_ms, k.open_p99_ms, k.open_max_ms, k.held_s, k.close_failures
            );
        } else {
            let _ = writeln!(
                s,
                "  test          {} producer(s), {} consumer(s), {} queue(s), {} B, confirm {}, ack {:?}{}, prefetch {}, {}{}, exchange {:?} ({}), {} binding(s), rate {}, stopped by {} after {:.2} s",
                c.producers,
                c.consumers,
                c.queues,
                c.size,
                c.confirm,
                c.ack,
                if c.ack == AckMode::Manual { format!(" every {}", c.multiple_ack_every) } else { String::new() },
                c.prefetch,
                if c.persistent { "persistent" } else { "transient" },
                if c.durable { ", durable" } else { "" },
                c.exchange,
                c.exchange_type.as_str(),
                c.bindings,
                if c.rate > 0.0 { format!("{}/s per producer", c.rate) } else { "unlimited".into() },
                self.stop_reason,
                self.elapsed_s
            );
            let _ = writeln!(
                s,
                "  published     {:>12}  {:>12.0} msg/s",
                self.published, self.publish_rate
            );
            if c.confirm > 0 {
                let _ = writeln!(
                    s,
                    "  confirmed     {:>12}  {:>12.0} msg/s  ({} nacked)",
                    self.confirmed, self.confirm_rate, self.nacked
                );
            }
            let _ = writeln!(
                s,
                "  consumed      {:>12}  {:>12.0} msg/s  {:.1} MiB/s",
                self.consumed, self.consume_rate, self.consume_mib_per_s
            );
            if self.returned > 0 {
                let _ = writeln!(s, "  returned      {:>12}", self.returned);
            }
            if let Some(b) = self.backlog_at_start {
                let _ = writeln!(s, "  backlog       {b:>12}  at start");
            }
            if let Some(l) = &self.latency_ms {
                let _ = writeln!(
                    s,
                    "  latency (ms)  p50 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (mean {:.3}, {} samples)",
                    l.p50, l.p95, l.p99, l.p999, l.max, l.mean, l.count
                );
            }
        }
        if let (Some(cpu), Some(pct)) = (self.client_cpu_s, self.client_cpu_percent) {
            let per = self
                .client_cpu_us_per_msg
                .map(|u| format!(", {u:.3} µs per message"))
                .unwrap_or_default();
            let _ = writeln!(s, "  client CPU    {cpu:.2} s ({pct:.0}% of one core){per}");
        }
        s
    }
}
