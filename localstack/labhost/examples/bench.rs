//! Benchmark: running -> SSH-ready (p50, max) for N instances launched at once, and memory
//! per idle host. Needs root and LocalStack. Usage (from the repo root):
//!   cargo build -p labhost && cargo run -p labhost --example bench -- 1 40

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// (Rss, Pss) in KiB summed over a process set, from /proc/<pid>/smaps_rollup.
fn memory_kib(pids: &[i32]) -> (u64, u64) {
    let (mut rss, mut pss) = (0, 0);
    for pid in pids {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else { continue };
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (key, val) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok()));
            match (key, val) {
                (Some("Rss:"), Some(v)) => rss += v,
                (Some("Pss:"), Some(v)) => pss += v,
                _ => {}
            }
        }
    }
    (rss, pss)
}

fn run(cloud: &Cloud, n: &Net, count: i32) {
    let t_launch = Instant::now();
    let insts = cloud.launch(EAST, &n.east_subnet, &n.key_name, count);
    // Probers start right away: each waits for its namespace, then TCP 22, then a full SSH login.
    let handles: Vec<_> = insts
        .iter()
        .cloned()
        .map(|i| {
            let key = n.key.clone();
            std::thread::spawn(move || {
                let ns_path = format!("/run/netns/{}", netns(&i));
                let deadline = Instant::now() + Duration::from_secs(120);
                while !Path::new(&ns_path).exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                // Checked once (an `ip route get`), so that probing does not load the machine.
                assert_routed_locally(i.ip);
                let addr = std::net::SocketAddr::from((i.ip, 22));
                let mut tcp_at = None;
                while Instant::now() < deadline {
                    if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                        let t = *tcp_at.get_or_insert_with(Instant::now);
                        if ssh(&key, i.ip, "true").status.success() {
                            return Some((t, Instant::now()));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                None
            })
        })
        .collect();
    // First time DescribeInstances (one call for all) shows each instance running.
    let ids: Vec<String> = insts.iter().map(|i| i.id.clone()).collect();
    let mut running_at: HashMap<String, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while running_at.len() < insts.len() && Instant::now() < deadline {
        let now = Instant::now();
        for (id, state) in cloud.states(EAST, &ids) {
            if state == "running" {
                running_at.entry(id).or_insert(now);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut lat: Vec<Duration> = Vec::new();
    let mut tcp_lat: Vec<Duration> = Vec::new();
    for (i, h) in insts.iter().zip(handles) {
        let (tcp_at, ready) = h.join().unwrap().unwrap_or_else(|| panic!("{} never SSH-ready", i.id));
        lat.push(ready.saturating_duration_since(running_at[&i.id]));
        tcp_lat.push(tcp_at.saturating_duration_since(running_at[&i.id]));
    }
    lat.sort();
    tcp_lat.sort();
    println!(
        "instances={count} running->port 22 accepting p50={:.2}s max={:.2}s",
        percentile(&tcp_lat, 0.5).as_secs_f64(),
        tcp_lat.last().unwrap().as_secs_f64()
    );
    println!(
        "instances={count} running->ssh-ready p50={:.2}s max={:.2}s (launch->all ready {:.2}s)",
        percentile(&lat, 0.5).as_secs_f64(),
        lat.last().unwrap().as_secs_f64(),
        t_launch.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let mut per_host = Vec::new();
    for i in &insts {
        per_host.push(memory_kib(&netns_pids(&netns(i))));
    }
    let n_hosts = per_host.len() as u64;
    let rss: u64 = per_host.iter().map(|m| m.0).sum::<u64>() / n_hosts;
    let pss: u64 = per_host.iter().map(|m| m.1).sum::<u64>() / n_hosts;
    println!(
        "instances={count} idle host memory: avg RSS {:.1} MB, avg PSS {:.1} MB (each host: sshd only)",
        rss as f64 / 1024.0,
        pss as f64 / 1024.0
    );
    for i in &insts {
        cloud.terminate(i);
    }
    for i in &insts {
        eventually(Duration::from_secs(60), || !netns_exists(i));
    }
}

fn main() {
    let counts: Vec<i32> = std::env::args().skip(1).map(|a| a.parse().expect("instance count")).collect();
    let counts = if counts.is_empty() { vec![1, 40] } else { counts };
    let cloud = Cloud::new();
    let n = net(&cloud, "bench", 5);
    let emu = Emulator::start(&config_text(EAST_CIDR, WEST_CIDR));
    for c in counts {
        run(&cloud, &n, c);
    }
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        for l in emu.log().lines().filter(|l| l.contains("host updated") || l.contains("new instance")) {
            eprintln!("{l}");
        }
    }
    // The emulator's own share: from starting a host's steps to its sshd accepting.
    let mut own: Vec<Duration> = emu
        .log()
        .lines()
        .filter(|l| l.contains("host updated") && l.contains("power-on"))
        .filter_map(|l| l.rsplit("ms=").next()?.trim().trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .map(Duration::from_millis)
        .collect();
    own.sort();
    if !own.is_empty() {
        println!(
            "emulator work per host (create + power-on until sshd accepts), all runs: p50={:.3}s max={:.3}s n={}",
            percentile(&own, 0.5).as_secs_f64(),
            own.last().unwrap().as_secs_f64(),
            own.len()
        );
    }
}
