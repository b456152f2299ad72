//! `labhost` CLI. See localstack/README.md.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use labhost::config::Config;
use labhost::control;
use labhost::daemon::{self, RunOptions};
use labhost::faults::Fault;
use labhost::front::{ApiFault, Front, DEFAULT_FRONT_URL};
use labhost::names::{Names, DEFAULT_PREFIX};
use labhost::status::StateDir;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Parser)]
#[command(name = "labhost", about = "Lab-host emulator: LocalStack EC2 instances as real SSH hosts")]
struct Cli {
    /// State dir shared by `run` and the control commands (pid file, status.json, faults, host files).
    #[arg(long, global = true, env = "LABHOST_STATE_DIR", default_value = "localstack/state/labhost")]
    state_dir: PathBuf,
    #[arg(long, global = true, value_enum, default_value = "text")]
    output: Output,
    /// The API front (labfront), for `fault api` / `heal api` / `heal all`.
    #[arg(long, global = true, env = "LABFRONT_URL", default_value = DEFAULT_FRONT_URL)]
    front_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the emulator in the foreground until SIGTERM/SIGINT (then full cleanup).
    Run {
        #[arg(long, default_value = "regions.toml")]
        config: PathBuf,
        /// Overrides `[endpoint] url` of the config.
        #[arg(long)]
        endpoint: Option<String>,
        /// Owned name prefix (2-4 lowercase letters) of every namespace, link and chain.
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
        /// Poll interval when nothing changes (200 ms for 10 s after any change).
        #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(20..=500))]
        poll_interval_ms: u64,
        /// Boot hosts from this fresh root filesystem (`localstack/image.sh` prints it) on an
        /// overlay of their own, running their UserData with its cloud-init, instead of
        /// sharing this machine's root. Needs the apt cache (`localstack/aptcache.sh start`).
        #[arg(long)]
        image: Option<PathBuf>,
        /// With --image: only the hosts of these regions (comma-separated; default every region).
        #[arg(long, value_delimiter = ',', requires = "image")]
        image_regions: Vec<String>,
    },
    /// SIGTERM the emulator of --state-dir and wait for its cleanup.
    Stop,
    /// Print the running emulator's status.json.
    Status,
    /// Inject a fault (reversible with `heal`).
    Fault {
        #[command(subcommand)]
        kind: FaultCmd,
    },
    /// Heal one fault, or `all`.
    Heal {
        #[command(subcommand)]
        kind: HealCmd,
    },
    /// Remove leftovers (namespaces, processes, links, chains) of a crashed run of --prefix.
    Clean {
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
}

#[derive(Subcommand)]
enum FaultCmd {
    /// Power a host off without telling EC2 (all its processes killed, eth0 down).
    PowerOff { host: String },
    /// Power off every host of a region (processes killed, not frozen).
    Blackout { region: String },
    /// Drop all traffic between two regions (both stay up).
    Partition { region_a: String, region_b: String },
    /// Cut one host off the network (processes keep running).
    Isolate { host: String },
    /// Add one-way delay between regions (needs sch_netem; refused if the kernel lacks it).
    Latency { delay_ms: u32 },
    /// Fail the AWS API of one (region, service) at the front (route53/iam: us-east-1 only).
    Api {
        region: String,
        /// ec2, route53, sts or iam.
        service: String,
        #[command(subcommand)]
        fault: ApiFaultCmd,
    },
}

#[derive(Subcommand)]
enum ApiFaultCmd {
    /// Reset every call's connection without an answer (the SDK sees a connection error).
    Down,
    /// Read every call and never answer (closed after 10 minutes at the latest).
    Hang,
    /// Delay every call by <ms>.
    Slow { ms: u64 },
    /// Throttle this fraction (0 to 1) of the calls (RequestLimitExceeded / Throttling).
    Throttle { fraction: f64 },
    /// Answer every call with this AWS error code (e.g. InternalError, ServiceUnavailable).
    Error { code: String },
}

#[derive(Subcommand)]
enum HealCmd {
    PowerOff {
        host: String,
    },
    Blackout {
        region: String,
    },
    Partition {
        region_a: String,
        region_b: String,
    },
    Isolate {
        host: String,
    },
    Latency,
    /// Heal the API fault of one (region, service).
    Api {
        region: String,
        service: String,
    },
    /// Every host fault and every API fault.
    All,
}

fn fault_of(k: FaultCmd) -> Fault {
    match k {
        FaultCmd::PowerOff { host } => Fault::PowerOff { host },
        FaultCmd::Blackout { region } => Fault::Blackout { region },
        FaultCmd::Partition { region_a, region_b } => Fault::Partition { a: region_a, b: region_b },
        FaultCmd::Isolate { host } => Fault::Isolate { host },
        FaultCmd::Latency { delay_ms } => Fault::Latency { delay_ms },
        FaultCmd::Api { .. } => unreachable!("API faults go to the front"),
    }
}

fn api_fault_of(k: ApiFaultCmd) -> ApiFault {
    match k {
        ApiFaultCmd::Down => ApiFault::Down,
        ApiFaultCmd::Hang => ApiFault::Hang,
        ApiFaultCmd::Slow { ms } => ApiFault::Slow { ms },
        ApiFaultCmd::Throttle { fraction } => ApiFault::Throttle { fraction },
        ApiFaultCmd::Error { code } => ApiFault::Error { code },
    }
}

fn heal_of(k: HealCmd) -> Option<Fault> {
    Some(match k {
        HealCmd::PowerOff { host } => Fault::PowerOff { host },
        HealCmd::Blackout { region } => Fault::Blackout { region },
        HealCmd::Partition { region_a, region_b } => Fault::Partition { a: region_a, b: region_b },
        HealCmd::Isolate { host } => Fault::Isolate { host },
        HealCmd::Latency => Fault::Latency { delay_ms: 0 },
        HealCmd::All | HealCmd::Api { .. } => return None,
    })
}

fn print(output: Output, value: &serde_json::Value, text: impl FnOnce() -> String) {
    match output {
        Output::Json => println!("{value}"),
        Output::Text => println!("{}", text()),
    }
}

fn init_logging(output: Output) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match output {
        Output::Json => builder.json().init(),
        Output::Text => builder.init(),
    }
}

/// Heals every API fault (if the front answers) and every host fault (if the emulator runs).
fn heal_all(state: &StateDir, front_url: &str, output: Output) -> Result<()> {
    let api = Front::new(front_url).and_then(|f| f.heal_all());
    let api_text = match &api {
        Ok(v) => format!("api: healed {} fault(s)", v.get("healed").and_then(serde_json::Value::as_u64).unwrap_or(0)),
        Err(e) => format!("api: not healed: {e}"),
    };
    let api_json = match &api {
        Ok(v) => v.clone(),
        Err(e) => serde_json::json!({"error": e.to_string()}),
    };
    let (host_text, host_json) = if state.live_pid().is_some() {
        let out = control::change_fault(state, None, false)?;
        (format!("hosts: {out:?}"), serde_json::to_value(&out)?)
    } else {
        ("hosts: the lab-host emulator is not running (no host faults)".to_string(), serde_json::Value::Null)
    };
    print(output, &serde_json::json!({"ok": true, "api": api_json, "hosts": host_json}), || format!("{api_text}\n{host_text}"));
    Ok(())
}

fn absolute(p: PathBuf) -> Result<PathBuf> {
    Ok(if p.is_absolute() { p } else { std::env::current_dir()?.join(p) })
}

fn main() {
    let cli = Cli::parse();
    let output = cli.output;
    init_logging(output);
    if let Err(e) = real_main(cli) {
        let msg = format!("{e:#}");
        print(output, &serde_json::json!({"ok": false, "error": msg}), || format!("labhost: error: {msg}"));
        std::process::exit(1);
    }
}

/// `--image` checked before anything starts: a built image, and regions the config has.
fn image_mode(cfg: &Config, rootfs: PathBuf, regions: Vec<String>) -> Result<labhost::image::Image> {
    let rootfs = absolute(rootfs)?;
    if !rootfs.join(".labhost-image").is_file() {
        anyhow::bail!("--image {}: not a built lab image (no .labhost-image); build it with localstack/image.sh", rootfs.display());
    }
    for r in &regions {
        if !cfg.regions.iter().any(|c| &c.name == r) {
            anyhow::bail!("--image-regions: {r} is not a region of the config");
        }
    }
    Ok(labhost::image::Image { rootfs, regions })
}

fn real_main(cli: Cli) -> Result<()> {
    let output = cli.output;
    let state = StateDir::new(&absolute(cli.state_dir)?);
    match cli.command {
        Command::Run { config, endpoint, prefix, poll_interval_ms, image, image_regions } => {
            let mut cfg = Config::load(&config)?;
            let image = image.map(|rootfs| image_mode(&cfg, rootfs, image_regions)).transpose()?;
            if let Some(url) = endpoint {
                cfg.endpoint_url = url;
            }
            let names = Names::new(&prefix)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(daemon::run(RunOptions { config: cfg, state_dir: state.root.clone(), names, poll_interval_ms, image }))?;
            print(output, &serde_json::json!({"ok": true, "stopped": true}), || "labhost: stopped, cleaned up".into());
        }
        Command::Stop => {
            let was = control::stop(&state)?;
            print(output, &serde_json::json!({"ok": true, "was_running": was}), || {
                if was {
                    "labhost: stopped".into()
                } else {
                    "labhost: not running".into()
                }
            });
        }
        Command::Status => {
            let status = state.running_status()?;
            let v = serde_json::to_value(&status)?;
            print(output, &v, || {
                let mut s = format!("labhost pid {} prefix {} ({})\n", status.pid, status.prefix, status.state);
                for h in &status.hosts {
                    s += &format!(
                        "{} {} {} {}{}\n",
                        h.id,
                        h.region,
                        h.ip,
                        if h.powered { "on" } else { "off" },
                        if h.isolated { " isolated" } else { "" }
                    );
                }
                s.trim_end().to_string()
            });
        }
        Command::Fault { kind: FaultCmd::Api { region, service, fault } } => {
            let fault = api_fault_of(fault);
            let v = Front::new(&cli.front_url)?.fault(&region, &service, &fault)?;
            print(output, &serde_json::json!({"ok": true, "result": v}), || format!("api fault {region} {service}: {fault:?}"));
        }
        Command::Heal { kind: HealCmd::Api { region, service } } => {
            let v = Front::new(&cli.front_url)?.heal(&region, &service)?;
            let changed = v.get("changed").and_then(serde_json::Value::as_bool).unwrap_or(false);
            print(output, &serde_json::json!({"ok": true, "result": v}), || {
                format!("api {region} {service}: {}", if changed { "healed" } else { "had no fault" })
            });
        }
        Command::Heal { kind: HealCmd::All } => heal_all(&state, &cli.front_url, output)?,
        Command::Fault { kind } => {
            let out = control::change_fault(&state, Some(fault_of(kind)), true)?;
            print(output, &serde_json::json!({"ok": true, "result": out}), || format!("{out:?}"));
        }
        Command::Heal { kind } => {
            let out = control::change_fault(&state, heal_of(kind), false)?;
            print(output, &serde_json::json!({"ok": true, "result": out}), || format!("{out:?}"));
        }
        Command::Clean { prefix } => {
            let names = Names::new(&prefix)?;
            if let Some(pid) = state.live_pid() {
                anyhow::bail!("emulator pid {pid} is running with {}; use `labhost stop`", state.root.display());
            }
            let _lock = labhost::owner::acquire(&names)?;
            let rt = tokio::runtime::Runtime::new()?;
            let report = rt.block_on(labhost::clean::clean(&names)).context("clean")?;
            let _ = std::fs::remove_file(state.pid_file());
            print(output, &serde_json::to_value(&report)?, || {
                format!("labhost clean: removed {} objects, killed {} processes", report.removed.len(), report.processes_killed)
            });
        }
    }
    Ok(())
}
