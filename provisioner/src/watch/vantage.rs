//! The second vantage point: on AWS, Route53's own checkers (the primary region's calculated
//! check); on a local cloud, whose checks always say healthy, one DR lab host that curls the
//! primary's gateways over SSH.

use std::time::Duration;

use super::PROBE_TIMEOUT_MS;
use crate::config::Config;
use crate::deploy::inventory::Host;
use crate::model::{pick, CheckAttrs, Found};
use crate::situation::Situation;
use crate::ssh::{Fleet, SshConfig};
use crate::template::Template;

/// Bound on the second vantage point's SSH connect (each step) and its command.
const VANTAGE_CONNECT_TIMEOUT_MS: u64 = 800;
const VANTAGE_COMMAND_TIMEOUT_MS: u64 = 1_500;
/// The curl on the DR host: below the interval, so the tick stays within it.
const VANTAGE_CURL_MAX_S: &str = "0.5";

pub(super) enum Vantage {
    /// A DR lab host curls the primary's gateways; the next host is tried after a failure.
    LabHost {
        fleet: Fleet,
        hosts: Vec<Host>,
        next: usize,
        primary_ips: Vec<String>,
        port: u16,
    },
    Route53 {
        check: Found<CheckAttrs>,
    },
    Nowhere,
}

impl Vantage {
    pub(super) fn describe(&self) -> String {
        match self {
            Vantage::LabHost { hosts, .. } => {
                format!(
                    "SSH to a DR lab host ({}) curling the primary's gateways' /health",
                    hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
                )
            }
            Vantage::Route53 { check, .. } => format!("Route53 checkers of the primary region's health check {}", check.id),
            Vantage::Nowhere => "none".into(),
        }
    }
}

pub(super) fn vantage(cfg: &Config, tpl: &Template, w: &Situation, hosts: &[Host], primary: &str, dr: &str, local: bool) -> Vantage {
    if !local {
        return match pick(&w.observed.checks, &format!("{primary}/check/region")) {
            Some(c) => Vantage::Route53 { check: c.clone() },
            None => Vantage::Nowhere,
        };
    }
    // The hosts passed the local route check in `look` (nothing leaves the machine).
    let mut candidates: Vec<Host> = hosts.iter().filter(|h| h.region == dr && (h.gateway || !h.modules.is_empty())).cloned().collect();
    candidates.extend(hosts.iter().filter(|h| h.region == dr && h.database && !h.gateway && h.modules.is_empty()).cloned());
    let primary_ips: Vec<String> = hosts.iter().filter(|h| h.region == primary && h.gateway).map(|h| h.private_ip.clone()).collect();
    if candidates.is_empty() || primary_ips.is_empty() {
        return Vantage::Nowhere;
    }
    let user = w.cfg.region(dr).map(|r| r.ssh_user.clone()).unwrap_or_else(|| "root".into());
    let ssh = SshConfig {
        attempts_max: 1,
        connect_timeout_ms: VANTAGE_CONNECT_TIMEOUT_MS,
        command_timeout_ms: VANTAGE_COMMAND_TIMEOUT_MS,
        output_bytes_max: 4096,
        ..SshConfig::new(user, crate::keys::private_key_path(cfg), crate::keys::key_dir(cfg).join("known_hosts"))
    };
    Vantage::LabHost { fleet: Fleet::new(ssh, 1), hosts: candidates, next: 0, primary_ips, port: tpl.ports.gateway_http }
}

/// The primary seen from the second vantage point: Some(healthy), or None (no answer / not asked).
pub(super) async fn second_vantage(v: &mut Vantage, cloud: &crate::cloud::Cloud, ask: bool, interval_ms: u64) -> Option<bool> {
    if !ask {
        return None;
    }
    let budget_ms = interval_ms.saturating_sub(100).max(PROBE_TIMEOUT_MS);
    match v {
        Vantage::Nowhere => None,
        Vantage::Route53 { check } => cloud.check_healthy(check, budget_ms).await.ok().flatten(),
        Vantage::LabHost { fleet, hosts, next, primary_ips, port } => {
            let host = hosts[*next % hosts.len()].clone();
            let cmd = vantage_command(primary_ips, *port);
            let target = [host.ssh_target()];
            let run = fleet.run(&target, move |s| s.exec(&cmd, false).map(|o| o.stdout));
            let answer = match tokio::time::timeout(Duration::from_millis(budget_ms), run).await {
                Ok(mut r) => r.pop().and_then(|r| r.result.ok()).and_then(|out| vantage_verdict(&out)),
                Err(_) => None,
            };
            if answer.is_none() {
                *next = (*next + 1) % hosts.len();
            }
            answer
        }
    }
}

/// One line `<http code> <ip>` per primary gateway, all curled in parallel.
fn vantage_command(ips: &[String], port: u16) -> String {
    format!(
        "for ip in {}; do (c=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time {VANTAGE_CURL_MAX_S} http://$ip:{port}/health); echo \"$c $ip\") & done; wait",
        ips.join(" ")
    )
}

/// Healthy when any gateway answered 200; None when the output is not the command's.
fn vantage_verdict(out: &str) -> Option<bool> {
    let codes: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).collect();
    if codes.is_empty() {
        return None;
    }
    Some(codes.contains(&"200"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_vantage_is_healthy_when_any_gateway_answers_200() {
        assert_eq!(vantage_verdict("000 10.1.0.5\n200 10.1.0.6\n"), Some(true));
        assert_eq!(vantage_verdict("000 10.1.0.5\n503 10.1.0.6\n"), Some(false));
        assert_eq!(vantage_verdict(""), None);
        let cmd = vantage_command(&["10.1.0.5".into(), "10.1.0.6".into()], 8080);
        assert!(cmd.contains("for ip in 10.1.0.5 10.1.0.6;") && cmd.contains("'%{http_code}'") && cmd.contains("--max-time 0.5"), "{cmd}");
    }
}
