//! `warren perf`: an AMQP 0-9-1 load generator in the spirit of RabbitMQ's
//! PerfTest and LavinMQ's lavinmqperf, usable against any 0-9-1 broker, and (with an
//! `mqtt://` URI, `mqtt.rs`) against any MQTT 3.1.1 or 5.0 broker.
//!
//! It is a lean client written directly on Warren's codec (`warren-amqp`)
//! and tokio, so that it is not the bottleneck: producers encode many
//! publishes into one buffer per write (within the confirm window and the
//! rate limit), each connection's reader parses large reads in place and
//! does the consumer's work inline (latency samples, batched acks), and the
//! shared counters are touched once per batch. The summary reports the
//! client's own CPU time per message so this can be checked on every run.
//!
//! Embed it as a clap subcommand:
//!
//! ```no_run
//! #[derive(clap::Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     cmd: Cmd,
//! }
//! #[derive(clap::Subcommand)]
//! enum Cmd {
//!     /// Load-test an AMQP broker.
//!     Perf(warren_perf::PerfArgs),
//! }
//! # fn main() -> std::process::ExitCode {
//! let cli: Cli = clap::Parser::parse();
//! match cli.cmd {
//!     Cmd::Perf(args) => warren_perf::main(args),
//! }
//! # }
//! ```

pub mod args;
pub mod conn;
pub mod cpu;
pub mod error;
pub mod mqtt;
pub mod producer;
pub mod proto;
pub mod rate;
pub mod runner;
pub mod stats;
pub mod summary;
pub mod uri;

pub use args::{AckMode, ExchangeType, PerfArgs};
pub use error::PerfError;
pub use runner::run;
pub use summary::Summary;

/// Run `args` on a fresh multi-threaded runtime and print the summary
/// (JSON on stdout with `--json`, text otherwise); errors go to stderr.
/// Exit code 0 on success, 1 when the run failed (broker error, connection
/// lost) and 2 for bad arguments.
pub fn main(args: PerfArgs) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren perf: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let json = args.json;
    match rt.block_on(run(args)) {
        Ok(summary) => {
            if json {
                println!("{}", summary.to_json());
            } else {
                print!("{}", summary.render());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warren perf: error: {e}");
            if matches!(
                e,
                PerfError::Args(_) | PerfError::Uri(_) | PerfError::File { .. }
            ) {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
