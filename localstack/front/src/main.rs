//! `labfront` CLI: `labfront run`. Faults are set through `labhost fault api ...` (one CLI for
//! the lab). See localstack/README.md.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "labfront", about = "An AWS-faithful front before LocalStack, with Route53 health checkers and DNS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve in the foreground until SIGTERM/SIGINT.
    Run {
        #[arg(long, default_value = "127.0.0.1:4567")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "http://127.0.0.1:4566")]
        backend: String,
        #[arg(long, default_value = "127.0.0.1:1053")]
        dns_listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=16))]
        checkers: u64,
        /// Throttle this fraction of every service's calls (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        throttle_all: f64,
        /// Eventual consistency window after an EC2 create, in ms (0 = off).
        #[arg(long, default_value_t = 0)]
        consistency_ms: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::Run { listen, backend, dns_listen, checkers, throttle_all, consistency_ms } => {
            if !(0.0..=1.0).contains(&throttle_all) {
                anyhow::bail!("--throttle-all {throttle_all}: a fraction from 0 to 1, e.g. 0.2");
            }
            let opts =
                labfront::Opts { listen, backend_url: backend, dns_listen, checkers: checkers as usize, throttle_all, consistency_ms };
            labfront::run(opts).await
        }
    }
}
