//! The `warren-lossyfs` binary: parses the command line and runs the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use warren_lossyfs::daemon::{self, Options};

/// A FUSE file system that simulates power loss: only fsynced state survives SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "warren-lossyfs", version)]
struct Args {
    /// Image directory: loaded (as durable) at start, replaced by the durable state at the
    /// power cut. Created if missing.
    #[arg(long, value_name = "DIR")]
    image: PathBuf,
    /// Mount point (created if missing). Prints `lossyfs: mounted MNT` when ready.
    #[arg(long, value_name = "MNT")]
    mount: PathBuf,
}

fn main() -> ExitCode {
    // Before any thread exists, so that every thread inherits the mask.
    if let Err(e) = daemon::block_signals() {
        eprintln!("lossyfs: {e}");
        return ExitCode::FAILURE;
    }
    let args = Args::parse();
    let opts = Options {
        image: args.image,
        mount: args.mount,
    };
    match daemon::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lossyfs: {e}");
            ExitCode::FAILURE
        }
    }
}
