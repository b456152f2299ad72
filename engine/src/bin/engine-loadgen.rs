//! `engine-loadgen`: end-to-end load through a gateway (see docs/benchmarks.md).

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "engine-loadgen", version = engine::VERSION, about = "Places crossing limit orders through an engine gateway and reports acknowledged orders/s and ack latency.")]
struct Args {
    /// Gateway base URL, e.g. http://127.0.0.1:8080
    #[arg(long)]
    gateway: String,
    /// The gateway's admin listener URL, e.g. http://10.0.1.5:8081
    #[arg(long)]
    admin_url: String,
    /// File holding the admin token (to create and fund the load users).
    #[arg(long)]
    admin_token_file: std::path::PathBuf,
    /// Spot markets as SYMBOL:BASE, comma separated.
    #[arg(long, default_value = "BTC-USD:BTC,ETH-USD:ETH,SOL-USD:SOL")]
    markets: String,
    #[arg(long, default_value_t = 32)]
    users: usize,
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    /// First user id to create; must not exist yet.
    #[arg(long, default_value_t = 100_000)]
    first_user_id: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let markets = a.markets.split(',').filter_map(|m| m.split_once(':').map(|(s, b)| (s.to_string(), b.to_string()))).collect::<Vec<_>>();
    anyhow::ensure!(!markets.is_empty(), "no markets");
    let cfg = engine::loadgen::LoadConfig {
        gateway: a.gateway.trim_end_matches('/').to_string(),
        admin: a.admin_url.trim_end_matches('/').to_string(),
        admin_token: engine_config::read_secret(&a.admin_token_file)?,
        markets,
        users: a.users.max(1),
        concurrency: a.concurrency.max(1),
        duration: Duration::from_secs(a.duration_s),
        first_user_id: a.first_user_id,
    };
    let keys = engine::loadgen::setup(&cfg).await?;
    let r = engine::loadgen::run(&cfg, &keys).await;
    println!("{r}");
    Ok(())
}
