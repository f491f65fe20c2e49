//! Prometheus's text exposition format (version 0.0.4), written straight from the
//! broker's counters: a `# HELP` and `# TYPE` line per family, then its samples, label
//! values escaped as the format requires.

use std::fmt::{Display, Write as _};

/// A metric family's type, as the `# TYPE` line names it.
#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Untyped,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Untyped => "untyped",
        }
    }
}

/// One scrape's text, built family by family.
pub struct Exposition {
    out: String,
    prefix: &'static str,
}

impl Exposition {
    /// Metric names get `prefix` (`rabbitmq_`, or `rabbitmq_detailed_` on `/metrics/detailed`).
    pub fn new(prefix: &'static str) -> Exposition {
        Exposition {
            out: String::with_capacity(16 * 1024),
            prefix,
        }
    }

    /// Starts a family: `name` is without the prefix (`queue_messages_ready`).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {}{name} {help}", self.prefix);
        let _ = writeln!(self.out, "# TYPE {}{name} {}", self.prefix, kind.as_str());
    }

    /// A sample of the current family (`name` may add `_bucket`, `_sum`, `_count`).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(self.prefix);
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                escape_into(&mut self.out, val);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A family with one unlabelled sample, without the prefix (`process_*`, the standard
    /// process metrics).
    pub fn raw_single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        let _ = writeln!(self.out, "{name} {value}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaped_labels() {
        let mut e = Exposition::new("rabbitmq_");
        e.family("queue_messages", Kind::Gauge, "Messages in a queue");
        e.sample(
            "queue_messages",
            &[("vhost", "/"), ("queue", "a\"b\\c\nd")],
            3,
        );
        e.single("connections", Kind::Gauge, "Open connections", 0);
        assert_eq!(
            e.finish(),
            "# HELP rabbitmq_queue_messages Messages in a queue\n\
             # TYPE rabbitmq_queue_messages gauge\n\
             rabbitmq_queue_messages{vhost=\"/\",queue=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP rabbitmq_connections Open connections\n\
             # TYPE rabbitmq_connections gauge\n\
             rabbitmq_connections 0\n"
        );
    }
}
