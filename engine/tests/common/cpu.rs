//! Where the benchmark's CPU goes: utime + stime of its processes (all threads) from
//! /proc, grouped (gateway, nodes, each PostgreSQL server with its children, this test
//! process as the load generator), and the machine's busy share from /proc/stat.

use std::collections::BTreeMap;
use std::process::Command;

/// A process group: its name and root pids; with children, each child counts under
/// `<group>/<role>` (PostgreSQL's backends by their process title).
pub struct Group {
    pub name: String,
    pub pids: Vec<u32>,
    pub with_children: bool,
}

/// CPU ticks per group, and the machine's (busy, total) ticks.
pub struct Sample {
    ticks: BTreeMap<String, u64>,
    machine: (u64, u64),
}

/// (ppid, utime + stime) of a process, from /proc/<pid>/stat.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: state(0) ppid(1) ... utime(11) stime(12).
    Some((f.get(1)?.parse().ok()?, f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?))
}

fn machine() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// A PostgreSQL child's role from its process title ("postgres: walsender ..."); client
/// sessions ("postgres: <user> <db> ...") are "sessions".
fn role(pid: u32) -> String {
    let title = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let word = title.split_whitespace().nth(1).unwrap_or("?").to_string();
    const ROLES: &[&str] = &["walsender", "walreceiver", "walwriter", "startup", "checkpointer", "background", "autovacuum", "logical"];
    if ROLES.contains(&word.as_str()) {
        word
    } else {
        "sessions".into()
    }
}

pub fn sample(groups: &[Group]) -> Sample {
    let all: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pid| stat(pid).map(|(ppid, t)| (pid, ppid, t)))
        .collect();
    let mut ticks = BTreeMap::new();
    for g in groups {
        for (pid, ppid, t) in &all {
            if g.pids.contains(pid) {
                *ticks.entry(g.name.clone()).or_insert(0) += t;
            } else if g.with_children && g.pids.contains(ppid) {
                *ticks.entry(format!("{}/{}", g.name, role(*pid))).or_insert(0) += t;
            }
        }
    }
    Sample { ticks, machine: machine() }
}

/// CPU microseconds per acknowledged order by group between two samples, plus the rest
/// of the machine and its busy share.
pub fn per_order(a: &Sample, b: &Sample, orders: u64) -> String {
    let hz: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0);
    let us = |ticks: u64| ticks as f64 * 1e6 / hz / orders.max(1) as f64;
    let mut out = Vec::new();
    let mut grouped = 0;
    for (name, t) in &b.ticks {
        let d = t.saturating_sub(a.ticks.get(name).copied().unwrap_or(0));
        grouped += d;
        if d > 0 {
            out.push(format!("{name} {:.1}", us(d)));
        }
    }
    let (busy, total) = (b.machine.0 - a.machine.0, b.machine.1 - a.machine.1);
    out.push(format!("rest of machine {:.1}", us(busy.saturating_sub(grouped))));
    format!("{} (machine {:.0} % busy)", out.join(", "), busy as f64 * 100.0 / total.max(1) as f64)
}
