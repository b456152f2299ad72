//! Removes every kernel object and process of one prefix, and nothing else.

use crate::cmd;
use crate::host::kill_netns_processes;
use crate::names::Names;
use crate::net;

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error(transparent)]
    Cmd(#[from] cmd::CmdError),
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error("cannot parse `ip -j link` output: {0}")]
    Parse(String),
}

/// What was removed, one line per object.
#[derive(Debug, Default, serde::Serialize)]
pub struct CleanReport {
    pub removed: Vec<String>,
    pub processes_killed: usize,
}

/// Network namespaces owned by `names` (`<prefix>-i-<hex>`).
pub async fn owned_netns(names: &Names) -> Result<Vec<String>, CleanError> {
    let out = cmd::run("ip", &["netns", "list"]).await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| names.instance_of_netns(n).is_some())
        .map(str::to_string)
        .collect())
}

/// Links owned by `names` in the machine's namespace (bridges and host-side veths).
pub async fn owned_links(names: &Names) -> Result<Vec<String>, CleanError> {
    let out = cmd::run("ip", &["-j", "link", "show"]).await?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| CleanError::Parse(e.to_string()))?;
    Ok(v.as_array().into_iter().flatten().filter_map(|l| l["ifname"].as_str()).filter(|n| names.owns_link(n)).map(str::to_string).collect())
}

pub async fn clean(names: &Names) -> Result<CleanReport, CleanError> {
    let mut report = CleanReport::default();
    for ns in owned_netns(names).await? {
        report.processes_killed += kill_netns_processes(&ns).await?;
        cmd::run("ip", &["netns", "del", &ns]).await?;
        report.removed.push(format!("netns {ns}"));
    }
    // veths first (they may vanish with their namespace), then bridges.
    let mut links = owned_links(names).await?;
    let bridge_head = format!("{}br", names.prefix());
    links.sort_by_key(|l| l.starts_with(&bridge_head));
    for link in links {
        if cmd::run("ip", &["link", "del", &link]).await.is_ok() {
            report.removed.push(format!("link {link}"));
        }
    }
    report.removed.extend(net::remove_chains(names).await);
    if let Some(done) = net::restore_ip_forward(names).await? {
        report.removed.push(done);
    }
    Ok(report)
}
