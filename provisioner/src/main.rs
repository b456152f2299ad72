//! `provision`: parse and validate, call the library, print text or JSON, set the exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use provisioner::config::Config;
use provisioner::ops::{self, Opts, CONCURRENCY_DEFAULT};
use provisioner::render;
use provisioner::template::Template;

#[derive(Parser)]
#[command(name = "provision", version, about = "Builds a two-region, failover-ready exchange on AWS or LocalStack")]
struct Cli {
    /// The deployment description [default: ./regions.toml, else the embedded one].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// More logs (-v info, -vv debug), on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show what `up` would change (exit 0: nothing, 2: changes pending, 1: error).
    Plan,
    /// Create or converge everything the config describes. Safe to re-run and to interrupt.
    Up {
        /// Independent API calls in flight at once.
        #[arg(long, default_value_t = CONCURRENCY_DEFAULT, value_parser = clap::value_parser!(u16).range(1..=64))]
        concurrency: u16,
        /// Build the cloud resources only; skip the deploy over SSH.
        #[arg(long)]
        infra_only: bool,
    },
    /// Show what exists in each region.
    Status,
    /// Put the engine and database software on the running hosts; only what changed is touched.
    Deploy,
    /// Move the primary role to another region: fence the old one (EC2 stop), promote the
    /// DR database, activate its engines, flip the Route53 failover records.
    Failover {
        /// The region that takes the primary role.
        #[arg(long)]
        to: String,
        /// Both regions are healthy: stop writes, wait for the DR region to catch up, zero loss.
        #[arg(long)]
        planned: bool,
        /// Go on even if the old region's EC2 API does not answer (it cannot be fenced then).
        #[arg(long)]
        force: bool,
        /// Finish an unplanned failover an earlier run decided (the old region is fenced and
        /// the target holds the primary role) but did not complete.
        #[arg(long)]
        resume: bool,
    },
    /// Return the primary role to the configured primary region (rebuilding it first if a
    /// failover fenced it).
    Failback {
        /// Go on even if a fresh listing of the fenced region does not show every host (the
        /// ones it does not show are not terminated).
        #[arg(long)]
        force: bool,
    },
    /// Prove DR works: order load, failover (planned unless --unplanned), every acknowledged
    /// order checked in the surviving region, failback, and a report (RTO, RPO, errors).
    Drill {
        /// Black out the primary region through the lab instead of a planned switchover.
        #[arg(long)]
        unplanned: bool,
        /// In-region instead: power off the primary region's DB leader host through the lab.
        #[arg(long, conflicts_with = "unplanned")]
        db_leader: bool,
        /// The lab control command, e.g. `localstack/labhost.sh` (needed with --unplanned).
        #[arg(long)]
        lab: Option<String>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=5000))]
        orders_per_s: u32,
        /// Seconds of load before and after the failover.
        #[arg(long, default_value_t = 3)]
        load_s: u64,
        /// Also write the JSON report to this file.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Probe both regions every second (gateway /health, DB role and lag), print and post
    /// transitions; with --auto-failover, fail over (fencing first) once the primary failed
    /// --failures consecutive probes from here and from a second vantage point. Runs until
    /// Ctrl-C, --duration-s, or a failover.
    Watch {
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(800..=60_000))]
        interval_ms: u64,
        /// Consecutive failed probes (from each vantage point) before the primary counts as
        /// dead; at least 2, so a single missed probe never fails over.
        #[arg(long, default_value_t = provisioner::watch::FAILURES_MIN_DEFAULT, value_parser = clap::value_parser!(u32).range(2..=1000))]
        failures: u32,
        #[arg(long)]
        auto_failover: bool,
        /// Stop after this many seconds.
        #[arg(long)]
        duration_s: Option<u64>,
    },
    /// Remove every resource of the project. Safe to re-run.
    Down {
        #[arg(long, default_value_t = CONCURRENCY_DEFAULT, value_parser = clap::value_parser!(u16).range(1..=64))]
        concurrency: u16,
    },
    /// Print the minimal IAM policy `provision` needs (exactly the AWS calls it makes).
    IamPolicy,
    /// Print this binary's version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.verbose);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(run(&cli)) {
        Ok(code) => code,
        Err(e) => {
            if cli.output == Output::Json {
                println!("{}", serde_json::json!({ "ok": false, "error": format!("{e:#}") }));
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let json = cli.output == Output::Json;
    if let Cmd::Version = &cli.cmd {
        version(json);
        return Ok(ExitCode::SUCCESS);
    }
    if let Cmd::IamPolicy = &cli.cmd {
        // The policy is JSON already: the same text for both outputs.
        print!("{}", provisioner::cloud::IAM_POLICY_JSON);
        return Ok(ExitCode::SUCCESS);
    }
    let (cfg, tpl) = ops::load(cli.config.as_deref())?;
    match &cli.cmd {
        Cmd::Version | Cmd::IamPolicy => unreachable!("handled above"),
        Cmd::Plan => {
            let r = ops::plan(&cfg, &tpl).await?;
            print(json, &r, || render::plan(&r));
            Ok(if r.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Cmd::Up { concurrency, infra_only: true } => {
            let r = ops::up(&cfg, &tpl, &Opts { concurrency: *concurrency as usize, quiet: false, defer_records: false }).await?;
            print(json, &r, || render::apply(&r));
            Ok(exit(r.ok()))
        }
        Cmd::Up { concurrency, infra_only: false } => {
            let r = ops::up_all(&cfg, &tpl, *concurrency as usize, false).await?;
            print(json, &r, || render::up_all(&r));
            Ok(exit(r.ok()))
        }
        Cmd::Deploy => {
            let d = ops::deploy(&cfg, &tpl, false).await?;
            print(json, &d, || render::deploy(&d));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Down { concurrency } => {
            let r = ops::down(&cfg, &Opts { concurrency: *concurrency as usize, quiet: false, defer_records: false }).await?;
            print(json, &r, || render::apply(&r));
            Ok(exit(r.ok()))
        }
        Cmd::Status => {
            let o = ops::status(&cfg, &tpl).await?;
            print(json, &o, || render::status(&o));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Failover { to, planned, force, resume } => {
            let opts = provisioner::failover::Opts { to: to.clone(), planned: *planned, force: *force, resume: *resume, quiet: false };
            let r = ops::failover(&cfg, &tpl, &opts).await?;
            print(json, &r, || render::failover(&r));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Failback { force } => {
            let r = ops::failback(&cfg, &tpl, false, *force).await?;
            print(json, &r, || render::failback(&r));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Drill { .. } => drill(&cli.cmd, &cfg, &tpl, json).await,
        Cmd::Watch { interval_ms, failures, auto_failover, duration_s } => {
            let opts = provisioner::watch::WatchOpts {
                interval_ms: *interval_ms,
                failures_min: *failures,
                auto_failover: *auto_failover,
                duration_s: *duration_s,
                quiet: false,
            };
            let r = ops::watch(&cfg, &tpl, &opts, &render::WatchPrinter { json, quiet: false }).await?;
            if json {
                // JSON Lines: the summary is the last line.
                let mut v = serde_json::to_value(&r)?;
                v["event"] = serde_json::json!("summary");
                println!("{v}");
            } else {
                print!("{}", render::watch(&r));
            }
            Ok(exit(r.failover_error.is_none()))
        }
    }
}

fn version(json: bool) {
    let bins = provisioner::deploy::embedded::list();
    if json {
        println!("{}", serde_json::json!({ "provision": env!("CARGO_PKG_VERSION"), "embedded": bins }));
        return;
    }
    println!("provision {}", env!("CARGO_PKG_VERSION"));
    for b in bins {
        println!("  embedded {} {} ({} bytes) sha256 {}", b.name, b.version, b.bytes, b.sha256);
    }
}

async fn drill(cmd: &Cmd, cfg: &Config, tpl: &Template, json: bool) -> anyhow::Result<ExitCode> {
    let Cmd::Drill { unplanned, db_leader, lab, orders_per_s, load_s, report } = cmd else { unreachable!("a drill command") };
    let write = |text: String| -> anyhow::Result<()> {
        if let Some(path) = report {
            std::fs::write(path, text)?;
        }
        Ok(())
    };
    if *db_leader {
        let lab = lab
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--db-leader powers a host off through the lab: pass --lab localstack/labhost.sh"))?;
        let r = ops::drill_db_leader(cfg, tpl, lab, *orders_per_s).await?;
        write(serde_json::to_string_pretty(&r)?)?;
        print(json, &r, || render::drill_db_leader(&r));
        return Ok(exit(r.ok));
    }
    let opts = provisioner::drill::DrillOpts {
        unplanned: *unplanned,
        lab: lab.clone(),
        orders_per_s: *orders_per_s,
        load_before_s: *load_s,
        load_after_s: *load_s,
        quiet: false,
    };
    let r = ops::drill(cfg, tpl, &opts).await?;
    write(serde_json::to_string_pretty(&r)?)?;
    print(json, &r, || render::drill(&r));
    Ok(exit(r.ok))
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print<T: serde::Serialize>(json: bool, v: &T, text: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).expect("reports serialize"));
    } else {
        print!("{}", text());
    }
}

fn init_logs(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info,aws_config=warn,aws_smithy_runtime=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
