//! Text renderings of the reports (JSON comes straight from serde).

use std::fmt::Write;

use crate::action::Change;
use crate::model::CheckAttrs;
use crate::ops::{ApplyReport, PlanReport};
use crate::watch::decide::{Aspect, Decision};

pub fn plan(r: &PlanReport) -> String {
    let mut s = String::new();
    if r.is_empty() {
        s.push_str("No changes: the cloud matches the config.\n");
    } else {
        let mut scopes: Vec<&str> = r.steps.iter().map(|x| x.scope.as_str()).collect();
        scopes.sort();
        scopes.dedup();
        for scope in scopes {
            let _ = writeln!(s, "{scope}:");
            for st in r.steps.iter().filter(|x| x.scope == scope) {
                let _ = writeln!(s, "  {} {}", sign(st.change), st.what);
            }
        }
        let _ = writeln!(s, "Plan: {} to create, {} to update, {} to delete.", r.create, r.update, r.delete);
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

fn sign(c: Change) -> &'static str {
    match c {
        Change::Create => "+",
        Change::Update => "~",
        Change::Delete => "-",
    }
}

pub fn apply(r: &ApplyReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} step(s) done in {:.1} s over {} round(s), {} skipped, {} failed.",
        r.command,
        r.steps_done,
        r.duration_ms as f64 / 1000.0,
        r.rounds,
        r.steps_skipped,
        r.failures.len()
    );
    for f in &r.failures {
        let _ = writeln!(s, "FAILED {}: {}", f.step, f.error);
    }
    if !r.remaining.is_empty() {
        let _ = writeln!(s, "Still to do ({}):", r.remaining.len());
        for st in &r.remaining {
            let _ = writeln!(s, "  {} {} [{}]", sign(st.change), st.what, st.scope);
        }
        let _ = writeln!(s, "Re-run `provision {}` to retry.", r.command);
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

pub fn status(r: &crate::ops::StatusReport) -> String {
    let o = &r.cloud;
    let mut s = String::new();
    for u in &r.unreachable {
        let _ = writeln!(s, "region {}: UNREACHABLE: {}", u.region, u.error);
    }
    for r in &o.regions {
        let _ = writeln!(s, "region {}:", r.name);
        let _ = writeln!(
            s,
            "  {} VPC, {} subnet(s), {} internet gateway(s), {} route table(s), {} security group(s), {} key pair(s)",
            r.vpcs.len(),
            r.subnets.len(),
            r.igws.len(),
            r.route_tables.len(),
            r.sgs.len(),
            r.key_pairs.len()
        );
        let mut inst = r.instances.clone();
        inst.sort_by(|a, b| a.key.cmp(&b.key));
        for i in &inst {
            let _ = writeln!(
                s,
                "  {:<40} {:<20} {:<8} {:<11} {:<15} {}",
                i.key,
                i.id,
                i.attrs.state,
                i.attrs.az,
                i.attrs.private_ip.as_deref().unwrap_or("-"),
                i.attrs.instance_type
            );
        }
    }
    for p in &o.peerings {
        let _ = writeln!(s, "peering {} ({}): {}", p.key, p.id, p.attrs.status);
    }
    match &o.zone {
        Some(z) => {
            let _ = writeln!(s, "zone {} ({}){}", z.name, z.id, if z.ours { "" } else { " (pre-existing: never deleted)" });
        }
        None => s.push_str("zone: none\n"),
    }
    for c in &o.checks {
        let what = match &c.attrs {
            CheckAttrs::Http { ip, port, path } => format!("HTTPS {ip}:{port}{path}"),
            CheckAttrs::Calculated { children, healthy_children_min } => {
                format!("healthy while {healthy_children_min} of {} children are", children.len())
            }
        };
        let _ = writeln!(s, "health check {} ({}): {what}", c.key, c.id);
    }
    for line in &r.dns {
        let _ = writeln!(s, "dns: {line}");
    }
    for l in &r.live {
        let _ = writeln!(s, "live {}:", l.region);
        if let Some(members) = l.patroni.as_ref().and_then(|p| p.get("members")).and_then(|m| m.as_array()) {
            for m in members {
                let f = |k: &str| m.get(k).map(|v| v.to_string().trim_matches('"').to_string()).unwrap_or_else(|| "-".into());
                let lag = match (f("lag").as_str(), l.replay_lag_s.get(&f("name"))) {
                    ("-", Some(v)) => format!("{v:.3} s (from the other region)"),
                    ("-", None) => "-".to_string(),
                    (b, Some(v)) => format!("{b} B, {v:.3} s"),
                    (b, None) => format!("{b} B"),
                };
                let _ = writeln!(s, "  db {:<16} {:<15} {:<15} {:<10} lag {lag}", f("name"), f("host"), f("role"), f("state"));
            }
        }
        for a in &l.db_alerts {
            let _ = writeln!(s, "  DB ALERT: {a}");
        }
        for g in &l.gateways {
            let _ = writeln!(s, "  gateway {:<6} /health {} {}", g.host, g.http_status, g.body.trim());
        }
        let _ = writeln!(s, "  {} partition(s) led", l.partition_leaders.len());
        if !l.unreachable.is_empty() {
            let _ = writeln!(s, "  unreachable: {}", l.unreachable.join(", "));
        }
    }
    s
}

pub fn deploy(r: &crate::deploy::DeployReport) -> String {
    let mut s = String::new();
    for p in &r.phases {
        let _ = writeln!(s, "  {:<32} {:>3} host(s) {:>7.1} s", p.name, p.hosts, p.duration_ms as f64 / 1000.0);
    }
    let _ = writeln!(
        s,
        "deploy: {} file(s) written, {} unchanged, {} service(s) with changed files, in {:.1} s.",
        r.files_written,
        r.files_unchanged,
        r.services_changed.len(),
        r.duration_ms as f64 / 1000.0
    );
    s
}

pub fn failover(r: &crate::failover::FailoverReport) -> String {
    let mut s = format!(
        "{} {} -> {}: RTO {:.1} s\n",
        if r.planned { "planned switchover" } else { "failover" },
        r.from,
        r.to,
        r.rto_ms as f64 / 1000.0
    );
    for st in &r.steps {
        s.push_str(&format!(
            "  {:>7} ms  {}{}\n",
            st.duration_ms,
            st.step,
            if st.detail.is_empty() { String::new() } else { format!(": {}", st.detail) }
        ));
    }
    s.push_str(&format!("  RPO: {}\n", r.rpo.summary));
    if !r.fenced_instances.is_empty() {
        s.push_str(&format!("  fenced: {}\n", r.fenced_instances.join(", ")));
    }
    for n in &r.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    for w in &r.webhooks {
        s.push_str(&format!("  webhook {}: {} after {} tries\n", w.url, w.detail, w.tries));
    }
    s
}

pub fn failback(r: &crate::failover::FailbackReport) -> String {
    let mut s = format!("failback: rebuild: {}", r.rebuild);
    if r.rebuild_ms > 0 {
        s.push_str(&format!(" ({:.1} s)", r.rebuild_ms as f64 / 1000.0));
    }
    s.push('\n');
    if let Some(sw) = &r.switchover {
        s.push_str(&failover(sw));
    }
    for n in &r.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    s
}

pub fn drill(r: &crate::drill::DrillReport) -> String {
    let mut s = format!("drill ({}) {} -> {} -> {}: {}\n", r.kind, r.from, r.to, r.from, if r.ok { "PASSED" } else { "FAILED" });
    s.push_str(&format!(
        "  RTO (ladder): {:.1} s; client-visible (longest time without an ack): {:.1} s\n",
        r.rto_ms as f64 / 1000.0,
        r.client_rto_ms as f64 / 1000.0
    ));
    s.push_str(&format!("  RPO: {} acknowledged order(s) missing of {}; {}\n", r.orders_missing, r.orders_acked, r.rpo.summary));
    s.push_str(&format!("  client errors: {}\n", crate::drill::errors_line(&r.load.errors)));
    for st in &r.steps {
        s.push_str(&format!("  {:>7} ms  {}: {}\n", st.duration_ms, st.step, st.detail));
    }
    for p in &r.problems {
        s.push_str(&format!("  PROBLEM: {p}\n"));
    }
    s
}

pub fn watch(r: &crate::watch::WatchReport) -> String {
    let mut s = format!(
        "watch: {} tick(s) over {:.1} s (every {} ms), stopped by {}; primary {} {}, DR {} {}\n",
        r.ticks,
        r.duration_ms as f64 / 1000.0,
        r.interval_ms,
        r.stopped_by,
        r.primary,
        r.last_state.get(&r.primary).map(String::as_str).unwrap_or("unknown"),
        r.dr,
        r.last_state.get(&r.dr).map(String::as_str).unwrap_or("unknown"),
    );
    s.push_str(&format!(
        "  auto-failover: {} after {} consecutive failed probes; second vantage point: {}\n",
        if r.auto_failover { "on" } else { "off" },
        r.failures_min,
        r.second_vantage
    ));
    s.push_str(&format!("  transitions: {}\n", r.transitions_total));
    if let Some(ms) = r.detected_after_ms {
        s.push_str(&format!("  primary confirmed down {ms} ms after its first failed probe\n"));
    }
    if let Some(f) = &r.failed_over {
        s.push_str(&format!("  failed over {} -> {}: RTO {:.1} s; RPO: {}\n", f.from, f.to, f.rto_ms as f64 / 1000.0, f.rpo.summary));
    }
    if let Some(e) = &r.failover_error {
        s.push_str(&format!("  FAILOVER FAILED: {e}\n"));
    }
    if r.webhooks_dropped > 0 {
        s.push_str(&format!("  {} webhook post(s) dropped (too many in flight)\n", r.webhooks_dropped));
    }
    for n in &r.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    s
}

pub fn drill_db_leader(r: &crate::drill::db_leader::DbLeaderReport) -> String {
    format!(
        "drill (DB leader power-off) in {}: {} -> {}: {}\n  client-visible outage (longest time without an ack): {:.1} s; power-off -> next ack: {}\n  {} acknowledged order(s), {} missing\n",
        r.region,
        r.old_leader,
        r.new_leader,
        if r.ok { "PASSED" } else { "FAILED" },
        r.client_rto_ms as f64 / 1000.0,
        r.power_off_to_next_ack_ms.map(|m| format!("{:.1} s", m as f64 / 1000.0)).unwrap_or_else(|| "no ack after the fault".into()),
        r.orders_acked,
        r.orders_missing
    )
}

pub fn up_all(r: &crate::ops::FullUpReport) -> String {
    let mut s = apply(&r.infra);
    if let Some(d) = &r.deploy {
        s.push_str(&deploy(d));
    }
    if let Some(rec) = &r.records {
        s.push_str(&format!("records: {} step(s) after /health was green ({} ms)\n", rec.steps_done, rec.duration_ms));
        for f in &rec.failures {
            s.push_str(&format!("  FAILED: {f:?}\n"));
        }
    }
    s
}

/// `watch`'s lines as they happen: JSON Lines on stdout, or text on stderr.
pub struct WatchPrinter {
    pub json: bool,
    pub quiet: bool,
}

impl crate::watch::Sink for WatchPrinter {
    fn note(&self, at: u64, text: &str) {
        if self.json {
            println!("{}", serde_json::json!({ "event": "note", "at_unix_ms": at, "note": text }));
        } else if !self.quiet {
            eprintln!("watch: {} {text}", clock(at));
        }
    }

    fn decision(&self, at: u64, d: &Decision) {
        if self.json {
            let mut v = serde_json::to_value(d).unwrap_or(serde_json::Value::Null);
            v["at_unix_ms"] = serde_json::json!(at);
            println!("{v}");
            return;
        }
        if self.quiet {
            return;
        }
        match d {
            Decision::Transition { region, aspect, from, to, reason } => {
                let what = if *aspect == Aspect::Db { format!("{region} db") } else { region.clone() };
                eprintln!("watch: {} {what}: {from} -> {to} ({reason})", clock(at));
            }
            Decision::FailOver { from, to, reason } => eprintln!("watch: {} FAILOVER {from} -> {to} ({reason})", clock(at)),
            Decision::Hold { reason } => eprintln!("watch: {} hold: {reason}", clock(at)),
        }
    }

    fn failover(&self, at: u64, r: &crate::failover::FailoverReport) {
        if self.json {
            println!("{}", serde_json::json!({ "event": "failover_report", "at_unix_ms": at, "report": r }));
        } else if !self.quiet {
            eprint!("{}", failover(r));
        }
    }
}

/// `HH:MM:SS.mmm` UTC.
fn clock(unix_ms: u64) -> String {
    let s = (unix_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}Z", s / 3600, (s / 60) % 60, s % 60, unix_ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(86_400_000 + 3_723_045), "01:02:03.045Z");
    }
}
