//! Command-line options ([`PerfArgs`]) and their validation into a [`Plan`]:
//! queue names, bindings, which producer publishes with which routing keys
//! and which consumer reads which queues.
//!
//! Topology rules:
//! - queues are named by `--queue-pattern` with `%d` replaced by 1..=N;
//! - with the default exchange (`--exchange ""`), producers publish straight
//!   to queues by name;
//! - with a named exchange each queue is bound with, in order of preference,
//!   the `--bindings` patterns (every queue gets every pattern), the lines of
//!   `--bindings-file` (line k binds queue k mod N), the generated
//!   `--topic-bindings` scheme (below), or by default its own name (an empty
//!   key for fanout; for headers exchanges the "key" is matched as an
//!   `x-match=all` header named `key`, which producers set);
//! - producers' routing keys are `--routing-keys` if given, else the generated
//!   topic keys, else the binding patterns, else the queue names; producer p
//!   cycles through its keys starting at offset p. With queue names, queue j
//!   belongs to producer j mod P (or producer p to queue p mod N when there
//!   are more producers than queues), so each queue gets one writer;
//! - consumer c consumes from every queue j with j mod C = c (or from queue
//!   c mod N when there are more consumers than queues).
//!
//! `--topic-bindings N` generates binding k (0 <= k < N, queue k mod queues)
//! by cycling four wildcard shapes: `perf.k.*`, `perf.k.#`, `*.k.x`, `#.k.x`;
//! producers then cycle through the keys `perf.k.x`. Every key matches exactly
//! one binding, but a topic matcher has to try the `*` and `#` branches at the
//! root for every message, so this measures wildcard matching, not a hash
//! lookup.

use std::time::Duration;

use crate::error::PerfError;
use crate::uri::{self, AmqpUri};

/// Exchange types that can be declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    /// Exact routing-key match.
    Direct,
    /// Every bound queue.
    Fanout,
    /// Dotted-word patterns with `*` and `#`.
    Topic,
    /// Header matching (`x-match=all` on header `key`).
    Headers,
}

impl ExchangeType {
    /// The AMQP type name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
        }
    }
}

/// Consumer acknowledgement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// `no-ack`: the broker forgets a message once sent.
    Auto,
    /// `basic.ack`, with `multiple` every `--multiple-ack-every` deliveries.
    Manual,
}

/// Options of `warren perf` (and of the standalone `warren-perf` binary).
#[derive(Debug, Clone, clap::Args)]
#[command(about = "AMQP 0-9-1 load generator: throughput, latency and CPU cost of any broker")]
pub struct PerfArgs {
    /// Broker URI: amqp://user:pass@host:port/vhost (vhost percent-encoded, %2f = /).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,
    /// Number of publishing channels.
    #[arg(long, short = 'x', default_value_t = 1)]
    pub producers: u32,
    /// Number of consuming channels.
    #[arg(long, short = 'y', default_value_t = 1)]
    pub consumers: u32,
    /// Number of queues.
    #[arg(long, default_value_t = 1)]
    pub queues: u32,
    /// Queue name pattern; `%d` is replaced by the queue number (1-based).
    #[arg(long, default_value = "perf-q-%d")]
    pub queue_pattern: String,
    /// One connection for everything (one channel per producer/consumer)
    /// instead of one connection per producer and per consumer.
    #[arg(long)]
    pub shared_connection: bool,
    /// Exchange to publish to ("" = the default exchange, routing by queue name).
    #[arg(long, short = 'e', default_value = "")]
    pub exchange: String,
    /// Type of `--exchange` (declared unless --predeclared).
    #[arg(long, short = 't', value_enum, default_value_t = ExchangeType::Direct)]
    pub exchange_type: ExchangeType,
    /// Routing keys, comma separated; producers cycle through them.
    #[arg(long, value_delimiter = ',')]
    pub routing_keys: Vec<String>,
    /// Binding keys/patterns, comma separated; every queue gets all of them.
    #[arg(long, value_delimiter = ',')]
    pub bindings: Vec<String>,
    /// File with one binding pattern per line; line k binds queue k mod --queues.
    #[arg(long)]
    pub bindings_file: Option<String>,
    /// Generate N wildcard topic bindings (see the module docs for the scheme).
    #[arg(long)]
    pub topic_bindings: Option<u32>,
    /// Message body size in bytes (at least 16: a send timestamp and a sequence number).
    #[arg(long, short = 's', default_value_t = 16)]
    pub size: usize,
    /// Publisher confirms with at most this many unconfirmed messages per producer (0 = off).
    #[arg(long, short = 'c', default_value_t = 0)]
    pub confirm: u32,
    /// Consumer acknowledgement mode.
    #[arg(long, value_enum, default_value_t = AckMode::Auto)]
    pub ack: AckMode,
    /// With --ack manual: one `basic.ack` with multiple=true every K deliveries (1 = ack each).
    #[arg(long, default_value_t = 1)]
    pub multiple_ack_every: u32,
    /// Consumer prefetch (basic.qos prefetch-count; 0 = unlimited, no qos sent).
    #[arg(long, short = 'q', default_value_t = 0)]
    pub prefetch: u16,
    /// Publish with delivery-mode 2.
    #[arg(long)]
    pub persistent: bool,
    /// Declare durable queues (and exchange).
    #[arg(long)]
    pub durable: bool,
    /// Publish rate limit per producer, messages per second (0 = unlimited).
    #[arg(long, short = 'r', default_value_t = 0.0)]
    pub rate: f64,
    /// Run at most this many seconds (default 10, or 600 when --count is given).
    #[arg(long, short = 'z')]
    pub duration: Option<f64>,
    /// Stop after this many messages: published in total (split over the
    /// producers), or consumed with --consume-only.
    #[arg(long, short = 'C')]
    pub count: Option<u64>,
    /// Do not declare or bind anything (queues and exchange must exist).
    #[arg(long)]
    pub predeclared: bool,
    /// Purge the queues at the end.
    #[arg(long)]
    pub purge: bool,
    /// Delete the queues at the end.
    #[arg(long)]
    pub delete_queues: bool,
    /// Only publish (no consumers): builds a backlog.
    #[arg(long, conflicts_with = "consume_only")]
    pub publish_only: bool,
    /// Only consume: drain the queues until empty (idle 2 s), --count or
    /// --duration. No latency: the timestamps come from another process.
    #[arg(long)]
    pub consume_only: bool,
    /// Only open N connections with one channel each, hold them --duration seconds, report open times.
    #[arg(long)]
    pub connections_only: Option<u32>,
    /// MQTT (with an `mqtt://user:pass@host:port` URI): the QoS of publishes and
    /// subscriptions (0, 1 or 2). The in-flight window of a QoS 1/2 producer is --confirm
    /// (default 100).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// MQTT protocol version: 3 (3.1.1) or 5.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=5))]
    pub mqtt_version: u8,
    /// A label copied into the summary (for scripts).
    #[arg(long)]
    pub label: Option<String>,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

/// A binding to create: queue index, routing key / pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Index into [`Plan::queues`].
    pub queue: usize,
    /// Binding key (or header value for headers exchanges).
    pub key: String,
}

/// A validated, fully expanded test description.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The parsed broker address.
    pub uri: AmqpUri,
    /// Queue names.
    pub queues: Vec<String>,
    /// Exchange to publish to ("" = default).
    pub exchange: String,
    /// Its type.
    pub exchange_type: ExchangeType,
    /// Bindings to declare (empty for the default exchange).
    pub bindings: Vec<Binding>,
    /// Routing keys of each producer, in cycling order.
    pub producer_keys: Vec<Vec<String>>,
    /// Messages each producer sends (`None` = until the deadline).
    pub producer_counts: Vec<Option<u64>>,
    /// Queue indexes each consumer consumes from.
    pub consumer_queues: Vec<Vec<usize>>,
    /// Deliveries per publish when known (1 for direct routing, N for fanout).
    pub deliveries_per_publish: Option<u64>,
    /// Upper bound on the run.
    pub duration: Duration,
    /// Body size.
    pub size: usize,
}

/// Substitute `%d` (or append the number if there is none).
pub fn queue_name(pattern: &str, i: usize) -> String {
    if pattern.contains("%d") {
        pattern.replace("%d", &i.to_string())
    } else {
        format!("{pattern}{i}")
    }
}

/// The generated topic binding `k` (see the module docs).
pub fn topic_binding(k: u32) -> String {
    match k % 4 {
        0 => format!("perf.{k}.*"),
        1 => format!("perf.{k}.#"),
        2 => format!("*.{k}.x"),
        _ => format!("#.{k}.x"),
    }
}

/// The routing key matching generated topic binding `k`.
pub fn topic_key(k: u32) -> String {
    format!("perf.{k}.x")
}

fn bad(msg: impl Into<String>) -> PerfError {
    PerfError::Args(msg.into())
}

impl PerfArgs {
    /// Producers and consumers once the mode flags are applied.
    pub fn effective_counts(&self) -> (u32, u32) {
        if self.consume_only {
            (0, self.consumers)
        } else if self.publish_only {
            (self.producers, 0)
        } else {
            (self.producers, self.consumers)
        }
    }

    /// Check the options and expand them into a [`Plan`].
    pub fn plan(&self) -> Result<Plan, PerfError> {
        let uri = uri::parse(&self.uri)?;
        let duration_s = self
            .duration
            .unwrap_or(if self.count.is_some() { 600.0 } else { 10.0 });
        if !(duration_s > 0.0 && duration_s <= 86_400.0) {
            return Err(bad("--duration must be in (0, 86400] seconds"));
        }
        let duration = Duration::from_secs_f64(duration_s);
        if self.size < 16 {
            return Err(bad("--size must be at least 16 bytes"));
        }
        if self.size > 512 * 1024 * 1024 {
            return Err(bad("--size must be at most 512 MiB"));
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err(bad("--rate must be >= 0"));
        }
        if self.count == Some(0) {
            return Err(bad("--count must be at least 1"));
        }
        if self.multiple_ack_every == 0 {
            return Err(bad("--multiple-ack-every must be at least 1"));
        }
        if self.ack == AckMode::Manual
            && self.prefetch != 0
            && self.multiple_ack_every > u32::from(self.prefetch)
        {
            return Err(bad(format!(
                "--multiple-ack-every {} exceeds --prefetch {}: the consumer would stall",
                self.multiple_ack_every, self.prefetch
            )));
        }
        if let Some(n) = self.connections_only {
            if n == 0 || n > 100_000 {
                return Err(bad("--connections-only must be in 1..=100000"));
            }
            return Ok(Plan {
                uri,
                queues: vec![],
                exchange: String::new(),
                exchange_type: self.exchange_type,
                bindings: vec![],
                producer_keys: vec![],
                producer_counts: vec![],
                consumer_queues: vec![],
                deliveries_per_publish: None,
                duration,
                size: self.size,
            });
        }
        let (producers, consumers) = self.effective_counts();
        if producers > 10_000 || consumers > 10_000 {
            return Err(bad("at most 10000 producers and 10000 consumers"));
        }
        if producers == 0 && consumers == 0 {
            return Err(bad("nothing to do: no producers and no consumers"));
        }
        if self.queues == 0 || self.queues > 100_000 {
            return Err(bad("--queues must be in 1..=100000"));
        }
        if self.shared_connection && producers + consumers > 2047 {
            return Err(bad(
                "--shared-connection supports at most 2047 channels (producers + consumers)",
            ));
        }
        let nq = self.queues as usize;
        let queues: Vec<String> = (1..=nq)
            .map(|i| queue_name(&self.queue_pattern, i))
            .collect();
        for q in &queues {
            if q.len() > 255 {
                return Err(bad(format!("queue name too long: {q:?}")));
            }
        }
        let named = !self.exchange.is_empty();
        let custom_sources = usize::from(!self.bindings.is_empty())
            + usize::from(self.bindings_file.is_some())
            + usize::from(self.topic_bindings.is_some());
        if custom_sources > 1 {
            return Err(bad(
                "use only one of --bindings, --bindings-file and --topic-bindings",
            ));
        }
        if custom_sources > 0 && !named {
            return Err(bad("bindings need a named --exchange"));
        }
        let mut generated_keys = None;
        let mut custom_keys: Vec<String> = vec![];
        let bindings: Vec<Binding> = if !named {
            vec![]
        } else if !self.bindings.is_empty() {
            custom_keys = self.bindings.clone();
            (0..nq)
                .flat_map(|q| {
                    self.bindings.iter().map(move |k| Binding {
                        queue: q,
                        key: k.clone(),
                    })
                })
                .collect()
        } else if let Some(path) = &self.bindings_file {
            let text = std::fs::read_to_string(path).map_err(|source| PerfError::File {
                path: path.clone(),
                source,
            })?;
            custom_keys = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            if custom_keys.is_empty() {
                return Err(bad(format!("{path}: no bindings")));
            }
            custom_keys
                .iter()
                .enumerate()
                .map(|(k, key)| Binding {
                    queue: k % nq,
                    key: key.clone(),
                })
                .collect()
        } else if let Some(n) = self.topic_bindings {
            if n == 0 || n > 1_000_000 {
                return Err(bad("--topic-bindings must be in 1..=1000000"));
            }
            if self.exchange_type != ExchangeType::Topic {
                return Err(bad("--topic-bindings needs --exchange-type topic"));
            }
            generated_keys = Some((0..n).map(topic_key).collect::<Vec<_>>());
            (0..n)
                .map(|k| Binding {
                    queue: k as usize % nq,
                    key: topic_binding(k),
                })
                .collect()
        } else {
            queues
                .iter()
                .enumerate()
                .map(|(q, name)| Binding {
                    queue: q,
                    key: if self.exchange_type == ExchangeType::Fanout {
                        String::new()
                    } else {
                        name.clone()
                    },
                })
                .collect()
        };
        for k in self.routing_keys.iter().chain(custom_keys.iter()) {
            if k.len() > 255 {
                return Err(bad(format!("routing key too long: {k:?}")));
            }
        }
        let p = producers as usize;
        let by_queue_name =
            self.routing_keys.is_empty() && generated_keys.is_none() && custom_keys.is_empty();
        let producer_keys: Vec<Vec<String>> = (0..p)
            .map(|i| {
                if by_queue_name {
                    if p >= nq {
                        vec![queues[i % nq].clone()]
                    } else {
                        (0..nq)
                            .filter(|j| j % p == i)
                            .map(|j| queues[j].clone())
                            .collect()
                    }
                } else {
                    let keys: &[String] = if !self.routing_keys.is_empty() {
                        &self.routing_keys
                    } else if let Some(g) = &generated_keys {
                        g
                    } else {
                        &custom_keys
                    };
                    let off = i % keys.len();
                    keys[off..]
                        .iter()
                        .chain(keys[..off].iter())
                        .cloned()
                        .collect()
                }
            })
            .collect();
        let deliveries_per_publish = if !named {
            by_queue_name.then_some(1)
        } else if self.exchange_type == ExchangeType::Fanout {
            Some(nq as u64)
        } else if (by_queue_name && self.bindings.is_empty() && self.bindings_file.is_none())
            || (generated_keys.is_some() && self.routing_keys.is_empty())
        {
            Some(1)
        } else {
            None
        };
        let producer_counts = (0..p)
            .map(|i| {
                if self.consume_only {
                    return None;
                }
                self.count
                    .map(|n| n / p as u64 + u64::from((i as u64) < n % p as u64))
            })
            .collect();
        let c = consumers as usize;
        let consumer_queues = (0..c)
            .map(|i| {
                if c >= nq {
                    vec![i % nq]
                } else {
                    (0..nq).filter(|j| j % c == i).collect()
                }
            })
            .collect();
        Ok(Plan {
            uri,
            queues,
            exchange: self.exchange.clone(),
            exchange_type: self.exchange_type,
            bindings,
            producer_keys,
            producer_counts,
            consumer_queues,
            deliveries_per_publish,
            duration,
            size: self.size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand)]
    enum Cmd {
        Perf(PerfArgs),
    }

    fn parse(args: &[&str]) -> PerfArgs {
        let mut v = vec!["warren", "perf"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().cmd {
            Cmd::Perf(a) => a,
        }
    }

    #[test]
    fn defaults() {
        let a = parse(&[]);
        assert_eq!(a.uri, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!((a.producers, a.consumers, a.queues, a.size), (1, 1, 1, 16));
        assert_eq!(a.ack, AckMode::Auto);
        let p = a.plan().unwrap();
        assert_eq!(p.duration, Duration::from_secs(10));
        assert_eq!(p.queues, vec!["perf-q-1"]);
        assert_eq!(p.producer_keys, vec![vec!["perf-q-1".to_string()]]);
        assert_eq!(p.consumer_queues, vec![vec![0]]);
        assert_eq!(p.deliveries_per_publish, Some(1));
        assert!(p.bindings.is_empty());
        assert_eq!(p.producer_counts, vec![None]);
    }

    #[test]
    fn safe_scenario_flags() {
        let a = parse(&[
            "--confirm",
            "1000",
            "--ack",
            "manual",
            "--multiple-ack-every",
            "100",
            "--prefetch",
            "1000",
            "-C",
            "1001",
            "-x",
            "2",
            "--persistent",
            "--durable",
            "--json",
        ]);
        assert_eq!(
            (a.confirm, a.multiple_ack_every, a.prefetch),
            (1000, 100, 1000)
        );
        assert!(a.persistent && a.durable && a.json);
        let p = a.plan().unwrap();
        assert_eq!(p.producer_counts, vec![Some(501), Some(500)]);
        assert_eq!(p.duration, Duration::from_secs(600));
    }

    #[test]
    fn fanout_and_many() {
        let p = parse(&[
            "-e",
            "perf-fanout",
            "-t",
            "fanout",
            "--queues",
            "10",
            "-y",
            "10",
        ])
        .plan()
        .unwrap();
        assert_eq!(p.bindings.len(), 10);
        assert!(p.bindings.iter().all(|b| b.key.is_empty()));
        assert_eq!(p.deliveries_per_publish, Some(10));
        assert_eq!(p.consumer_queues[9], vec![9]);

        let p = parse(&["-x", "50", "-y", "50", "--queues", "50"])
            .plan()
            .unwrap();
        assert_eq!(p.producer_keys[49], vec!["perf-q-50".to_string()]);
        assert_eq!(p.consumer_queues[7], vec![7]);

        // fewer producers than queues: round robin
        let p = parse(&[
            "-x",
            "2",
            "-y",
            "1",
            "--queues",
            "5",
            "--queue-pattern",
            "q%d",
        ])
        .plan()
        .unwrap();
        assert_eq!(p.producer_keys[0], vec!["q1", "q3", "q5"]);
        assert_eq!(p.producer_keys[1], vec!["q2", "q4"]);
        assert_eq!(p.consumer_queues[0], vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn topic_bindings_scheme() {
        let p = parse(&[
            "-e",
            "t",
            "-t",
            "topic",
            "--topic-bindings",
            "1000",
            "--queues",
            "4",
            "-x",
            "2",
        ])
        .plan()
        .unwrap();
        assert_eq!(p.bindings.len(), 1000);
        assert_eq!(p.bindings[0].key, "perf.0.*");
        assert_eq!(p.bindings[1].key, "perf.1.#");
        assert_eq!(p.bindings[2].key, "*.2.x");
        assert_eq!(p.bindings[3].key, "#.3.x");
        assert_eq!(p.bindings[5].queue, 1);
        assert_eq!(p.producer_keys[0].len(), 1000);
        assert_eq!(p.producer_keys[1][0], "perf.1.x");
        assert_eq!(p.deliveries_per_publish, Some(1));
    }

    #[test]
    fn custom_bindings_and_keys() {
        let p = parse(&[
            "-e",
            "t",
            "-t",
            "topic",
            "--bindings",
            "a.*,b.#",
            "--queues",
            "2",
        ])
        .plan()
        .unwrap();
        assert_eq!(p.bindings.len(), 4);
        assert_eq!(p.producer_keys[0], vec!["a.*", "b.#"]);
        assert_eq!(p.deliveries_per_publish, None);
        let p = parse(&["--routing-keys", "k1,k2,k3", "-x", "2"])
            .plan()
            .unwrap();
        assert_eq!(p.producer_keys[1], vec!["k2", "k3", "k1"]);
    }

    #[test]
    fn rejects_nonsense() {
        assert!(parse(&["--size", "8"]).plan().is_err());
        assert!(parse(&[
            "--ack",
            "manual",
            "--prefetch",
            "10",
            "--multiple-ack-every",
            "11"
        ])
        .plan()
        .is_err());
        assert!(parse(&["--bindings", "a"]).plan().is_err());
        assert!(parse(&["-e", "x", "--topic-bindings", "10"])
            .plan()
            .is_err());
        assert!(parse(&["--queues", "0"]).plan().is_err());
        assert!(parse(&["--duration", "0"]).plan().is_err());
        assert!(parse(&["--uri", "http://x"]).plan().is_err());
        assert!(parse(&["--connections-only", "0"]).plan().is_err());
        assert!(parse(&["-x", "0", "-y", "0"]).plan().is_err());
        let mut v = vec!["warren", "perf", "--publish-only", "--consume-only"];
        v.truncate(4);
        assert!(Cli::try_parse_from(v).is_err());
    }

    #[test]
    fn modes() {
        let a = parse(&["--publish-only", "-C", "1000000"]);
        assert_eq!(a.effective_counts(), (1, 0));
        let p = a.plan().unwrap();
        assert_eq!(p.consumer_queues.len(), 0);
        let a = parse(&["--consume-only", "-C", "10"]);
        assert_eq!(a.effective_counts(), (0, 1));
        let a = parse(&["--connections-only", "1000", "--duration", "5"]);
        assert_eq!(a.plan().unwrap().duration, Duration::from_secs(5));
        assert_eq!(queue_name("x-%d-y", 3), "x-3-y");
        assert_eq!(queue_name("q", 3), "q3");
    }
}
