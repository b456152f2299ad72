//! `engine-node`: one node of one module (matching, wallet, otc, contract).

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use engine::node::Node;
use engine_config::{NodeConfig, RegionMode};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "engine-node", version = engine::VERSION, about = "Exchange engine node: runs one module's partitions (leader or hot standby) and its internal HTTP API.")]
struct Args {
    /// Path of the node's TOML config file.
    #[arg(long)]
    config: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = NodeConfig::from_file(&args.config)?;
    engine::init_logging(&cfg.log);
    // An invariant assertion failing anywhere means this node's in-memory state cannot be
    // trusted: exit at once so its sessions (and advisory locks) close, another node takes
    // over from the DB, and the supervisor restarts this one. Except while a market leader
    // decides or matches a batch (`matching::quarantine`): it catches the panic, rebuilds
    // its market from the DB and quarantines the order in hand.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if engine::matching::panic_contained() {
            tracing::error!(panic = %info, "an order failed an invariant while matched: quarantining it");
            return;
        }
        tracing::error!(panic = %info, "invariant violated or bug: exiting");
        default_hook(info);
        std::process::exit(70);
    }));
    let tokens = engine_config::read_tokens(&cfg.admin_token_file, &cfg.internal_token_file)?;
    let slots = cfg.db.connections_max.map(|n| n as usize).unwrap_or_else(|| engine::node::default_db_sessions(&cfg));
    let (pg, pg_any) = engine::db::targets(&cfg.db, &cfg.node_id, slots)?;
    tracing::info!(db_connections_max = slots, "DB session limit");
    tracing::info!(version = engine::VERSION, node = %cfg.node_id, module = cfg.module.as_str(), region = %cfg.region, "starting");
    if cfg.mode == RegionMode::Active {
        migrate_with_retry(&pg).await?;
    }
    let listener = engine::listen(&cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let node = Node::start(cfg, pg, pg_any, tokens.into());
    engine::monitor::spawn(node.clone());
    engine::reconcile::spawn(node.clone());
    let app = node.router();
    let n2 = node.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            engine::shutdown_signal().await;
            tracing::info!("shutting down: giving up leaderships");
            n2.state.shutting_down.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(700)).await;
        })
        .await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate_with_retry(pg: &engine::db::Target) -> anyhow::Result<()> {
    let mut last = None;
    let mut backoff = engine::db::Backoff::new(&pg.limits);
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        match engine::db::connect(pg).await {
            Ok(mut c) => match tokio::time::timeout(pg.limits.commit, engine::db::migrate(&mut c)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = Some(e.to_string()),
                Err(_) => last = Some("migrations timed out".into()),
            },
            Err(e) => last = Some(e.to_string()),
        }
        backoff.wait().await;
    }
    anyhow::bail!("migrations failed: {}", last.unwrap_or_default())
}
