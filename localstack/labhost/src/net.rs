//! Machine-side network: one bridge per VPC, ip_forward, and the owned iptables chains.

use crate::cmd::{self, CmdError};
use crate::config::RegionConfig;
use crate::names::Names;
use crate::plan::gateway;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error("VPC CIDR {cidr} ({region}) overlaps {ifname} address {addr}")]
    Overlap { cidr: Ipv4Net, region: String, ifname: String, addr: Ipv4Net },
    #[error("cannot parse `ip -j` output: {0}")]
    Parse(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Every IPv4 address of every interface of the machine, as (ifname, address/prefix).
pub async fn machine_addresses() -> Result<Vec<(String, Ipv4Net)>, NetError> {
    let out = cmd::run("ip", &["-j", "-4", "addr", "show"]).await?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| NetError::Parse(e.to_string()))?;
    let mut addrs = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        let ifname = link["ifname"].as_str().unwrap_or("").to_string();
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) else { continue };
            if let (Ok(ip), Ok(len)) = (local.parse::<Ipv4Addr>(), u8::try_from(len)) {
                if let Ok(net) = Ipv4Net::new(ip, len) {
                    addrs.push((ifname.clone(), net));
                }
            }
        }
    }
    Ok(addrs)
}

/// Refuses VPC CIDRs that overlap any address (or its network) of the machine's interfaces.
pub fn check_no_overlap(regions: &[RegionConfig], addrs: &[(String, Ipv4Net)]) -> Result<(), NetError> {
    for r in regions {
        for (ifname, addr) in addrs {
            let net = addr.trunc();
            if r.vpc_cidr.contains(&net.network()) || net.contains(&r.vpc_cidr.network()) {
                return Err(NetError::Overlap { cidr: r.vpc_cidr, region: r.name.clone(), ifname: ifname.clone(), addr: *addr });
            }
        }
    }
    Ok(())
}

pub async fn create_bridges(names: &Names, regions: &[RegionConfig]) -> Result<(), NetError> {
    for (i, r) in regions.iter().enumerate() {
        let br = names.bridge(i);
        let addr = format!("{}/{}", gateway(&r.vpc_cidr), r.vpc_cidr.prefix_len());
        cmd::run("ip", &["link", "add", &br, "type", "bridge"]).await?;
        cmd::run("ip", &["addr", "add", &addr, "dev", &br]).await?;
        cmd::run("ip", &["link", "set", &br, "up"]).await?;
    }
    Ok(())
}

/// Where the machine's ip_forward value from before the first emulator of a prefix is kept,
/// outside any state dir so that `clean` after a crash can restore it.
fn ip_forward_saved(names: &Names) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/run/labhost/{}-ip_forward.orig", names.prefix()))
}

/// Records the current ip_forward (unless already recorded by a crashed run), then turns it on.
pub fn enable_ip_forward(names: &Names) -> Result<(), NetError> {
    let saved = ip_forward_saved(names);
    if !saved.exists() {
        std::fs::create_dir_all(saved.parent().expect("has parent"))?;
        std::fs::write(&saved, if read_ip_forward()? { "1\n" } else { "0\n" })?;
    }
    write_ip_forward(true)
}

/// Restores ip_forward as recorded, unless another labhost prefix still has bridges.
pub async fn restore_ip_forward(names: &Names) -> Result<Option<String>, NetError> {
    let saved = ip_forward_saved(names);
    let Ok(before) = std::fs::read_to_string(&saved) else { return Ok(None) };
    let mut done = None;
    if before.trim() == "0" && !other_emulators_present().await {
        write_ip_forward(false)?;
        done = Some("sysctl net.ipv4.ip_forward=0 (restored)".to_string());
    }
    std::fs::remove_file(&saved)?;
    Ok(done)
}

/// True if bridges of any labhost prefix exist.
async fn other_emulators_present() -> bool {
    let Ok(out) = cmd::run("ip", &["-j", "link", "show", "type", "bridge"]).await else { return true };
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v.as_array().into_iter().flatten().filter_map(|l| l["ifname"].as_str()).any(crate::names::is_any_labhost_bridge)
}

pub fn read_ip_forward() -> Result<bool, NetError> {
    Ok(std::fs::read_to_string(IP_FORWARD)?.trim() == "1")
}

pub fn write_ip_forward(on: bool) -> Result<(), NetError> {
    Ok(std::fs::write(IP_FORWARD, if on { "1\n" } else { "0\n" })?)
}

/// The `iptables-restore --noflush` payload for both owned chains (declaring them flushes them).
/// FORWARD: partitions first, then VPC-to-VPC traffic between the configured CIDRs, then
/// everything else into or out of the bridges is dropped. INPUT: hosts may reach the
/// machine's bridge addresses only.
pub fn render_chains(names: &Names, regions: &[RegionConfig], partitions: &BTreeSet<(String, String)>) -> String {
    let fwd = names.forward_chain();
    let inp = names.input_chain();
    let any_br = names.bridge_wildcard();
    let mut s = format!("*filter\n:{fwd} - [0:0]\n:{inp} - [0:0]\n");
    let cidr_of = |name: &str| regions.iter().find(|r| r.name == name).map(|r| r.vpc_cidr);
    for (a, b) in partitions {
        if let (Some(ca), Some(cb)) = (cidr_of(a), cidr_of(b)) {
            s += &format!("-A {fwd} -s {ca} -d {cb} -j DROP\n-A {fwd} -s {cb} -d {ca} -j DROP\n");
        }
    }
    for (i, ri) in regions.iter().enumerate() {
        for (j, rj) in regions.iter().enumerate() {
            s += &format!("-A {fwd} -i {} -o {} -s {} -d {} -j ACCEPT\n", names.bridge(i), names.bridge(j), ri.vpc_cidr, rj.vpc_cidr);
        }
    }
    s += &format!("-A {fwd} -i {any_br} -j DROP\n-A {fwd} -o {any_br} -j DROP\n");
    for (i, r) in regions.iter().enumerate() {
        s += &format!("-A {inp} -i {} -d {} -j ACCEPT\n", names.bridge(i), gateway(&r.vpc_cidr));
    }
    s += &format!("-A {inp} -i {any_br} -j DROP\nCOMMIT\n");
    s
}

pub async fn apply_chains(names: &Names, regions: &[RegionConfig], partitions: &BTreeSet<(String, String)>) -> Result<(), NetError> {
    let payload = render_chains(names, regions, partitions);
    cmd::run_with_stdin("iptables-restore", &["--noflush"], Some(&payload)).await?;
    for (parent, chain) in [("FORWARD", names.forward_chain()), ("INPUT", names.input_chain())] {
        if !cmd::succeeds("iptables", &["-w", "-C", parent, "-j", &chain]).await {
            cmd::run("iptables", &["-w", "-I", parent, "1", "-j", &chain]).await?;
        }
    }
    Ok(())
}

/// Removes the jump rules and both chains of this prefix; absent ones are fine.
pub async fn remove_chains(names: &Names) -> Vec<String> {
    let mut removed = Vec::new();
    for (parent, chain) in [("FORWARD", names.forward_chain()), ("INPUT", names.input_chain())] {
        for _ in 0..32 {
            if !cmd::succeeds("iptables", &["-w", "-D", parent, "-j", &chain]).await {
                break;
            }
            removed.push(format!("iptables {parent} -j {chain}"));
        }
        if cmd::succeeds("iptables", &["-w", "-F", &chain]).await && cmd::succeeds("iptables", &["-w", "-X", &chain]).await {
            removed.push(format!("iptables chain {chain}"));
        }
    }
    removed
}

/// True if this kernel has the netem qdisc (probed on an owned bridge, then removed).
pub async fn netem_supported(bridge: &str) -> bool {
    let ok = cmd::succeeds("tc", &["qdisc", "add", "dev", bridge, "root", "netem", "delay", "1ms"]).await;
    if ok {
        let _ = cmd::succeeds("tc", &["qdisc", "del", "dev", bridge, "root"]).await;
    }
    ok
}

/// Sets (delay_ms > 0) or removes the netem delay on every bridge's egress: traffic routed
/// between regions crosses one bridge egress per direction.
pub async fn apply_latency(names: &Names, regions: &[RegionConfig], delay_ms: u32) -> Result<(), NetError> {
    for i in 0..regions.len() {
        let br = names.bridge(i);
        if delay_ms == 0 {
            let _ = cmd::succeeds("tc", &["qdisc", "del", "dev", &br, "root"]).await;
        } else {
            let d = format!("{delay_ms}ms");
            cmd::run("tc", &["qdisc", "replace", "dev", &br, "root", "netem", "delay", &d]).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<RegionConfig> {
        vec![
            RegionConfig { name: "a".into(), vpc_cidr: "10.110.0.0/16".parse().unwrap() },
            RegionConfig { name: "b".into(), vpc_cidr: "10.120.0.0/16".parse().unwrap() },
        ]
    }

    #[test]
    fn chains_render_partitions_first_and_drop_the_rest() {
        let names = Names::new("lt").unwrap();
        let parts: BTreeSet<_> = [("a".to_string(), "b".to_string())].into();
        let s = render_chains(&names, &regions(), &parts);
        let drop_pos = s.find("-A LABHOST-LT -s 10.110.0.0/16 -d 10.120.0.0/16 -j DROP").unwrap();
        let acc_pos = s.find("-A LABHOST-LT -i ltbr0 -o ltbr1 -s 10.110.0.0/16 -d 10.120.0.0/16 -j ACCEPT").unwrap();
        assert!(drop_pos < acc_pos);
        assert!(s.contains("-A LABHOST-LT -i ltbr+ -j DROP"));
        assert!(s.contains("-A LABHOST-LT-IN -i ltbr1 -d 10.120.0.1 -j ACCEPT"));
        assert!(s.ends_with("COMMIT\n"));
    }

    #[test]
    fn overlap_refused() {
        let addrs = vec![("eth0".to_string(), "10.120.5.2/24".parse().unwrap())];
        assert!(check_no_overlap(&regions(), &addrs).is_err());
        let addrs = vec![("eth0".to_string(), "192.0.2.2/24".parse().unwrap())];
        assert!(check_no_overlap(&regions(), &addrs).is_ok());
        let addrs = vec![("eth0".to_string(), "10.0.0.2/8".parse().unwrap())];
        assert!(check_no_overlap(&regions(), &addrs).is_err());
    }
}
