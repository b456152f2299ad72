//! `engine-gateway`: the public REST API of a region, in front of the engine nodes.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use engine::gateway::Gateway;
use engine_config::GatewayConfig;

#[derive(Parser)]
#[command(name = "engine-gateway", version = engine::VERSION, about = "Exchange gateway: public REST API and /health on `listen` (HTTPS when `tls` is set), /admin/* and /metrics on `admin_listen`; routes writes to partition leaders.")]
struct Args {
    /// Path of the gateway's TOML config file.
    #[arg(long)]
    config: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = GatewayConfig::from_file(&args.config)?;
    engine::init_logging(&cfg.log);
    let tokens = engine_config::read_tokens(&cfg.admin_token_file, &cfg.internal_token_file)?;
    let slots = cfg.db.connections_max.map(|n| n as usize).unwrap_or(engine::gateway::DEFAULT_DB_SESSIONS);
    let (pg_rw, pg_any) = engine::db::targets(&cfg.db, &cfg.gateway_id, slots)?;
    tracing::info!(version = engine::VERSION, gateway = %cfg.gateway_id, region = %cfg.region, "starting");
    let bind_error = || format!("cannot listen on {}", cfg.listen);
    let listener = match cfg.tls.as_ref().map(engine::gateway::tls::server_config).transpose()? {
        Some(tls) => Public::Tls(std::net::TcpListener::bind(&cfg.listen).with_context(bind_error)?, tls),
        None => Public::Plain(engine::listen(&cfg.listen).await.with_context(bind_error)?),
    };
    let admin = engine::listen(&cfg.admin_listen).await.with_context(|| format!("cannot listen on {}", cfg.admin_listen))?;
    let g = Gateway::new(cfg, tokens.into(), pg_rw, pg_any);
    g.spawn_probes();
    let private = async { axum::serve(admin, g.admin_router()).with_graceful_shutdown(engine::shutdown_signal()).await };
    match listener {
        // Deployed gateways: HTTPS only on the public address.
        Public::Tls(l, tls) => {
            tokio::try_join!(engine::gateway::tls::serve(l, tls, g.router()), private)?;
        }
        Public::Plain(l) => {
            // The peer address limits unauthenticated reads per client (`gateway::limit`).
            let app = g.router().into_make_service_with_connect_info::<std::net::SocketAddr>();
            let public = async { axum::serve(l, app).with_graceful_shutdown(engine::shutdown_signal()).await };
            tokio::try_join!(public, private)?;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// The public listener: HTTPS (every deployed gateway) or plain HTTP (the engine's tests).
enum Public {
    Tls(std::net::TcpListener, std::sync::Arc<rustls::ServerConfig>),
    Plain(engine::Listener),
}
