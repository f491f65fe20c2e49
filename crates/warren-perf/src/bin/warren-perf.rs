//! Standalone `warren-perf` binary: the same options as `warren perf`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "warren-perf", version)]
struct Cli {
    #[command(flatten)]
    args: warren_perf::PerfArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    warren_perf::main(cli.args)
}
