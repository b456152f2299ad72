//! The machine's IPv4 addresses on the lab-host emulator's VPC bridges (`<prefix>br<digits>`).

use std::net::Ipv4Addr;

/// True for a lab-host bridge name: 2 to 4 lowercase letters, `br`, digits (e.g. `lhbr0`, `ltbr12`).
pub fn is_lab_bridge(ifname: &str) -> bool {
    let letters = ifname.chars().take_while(|c| c.is_ascii_lowercase()).count();
    let rest = &ifname[letters..];
    (4..=6).contains(&letters) && ifname[..letters].ends_with("br") && !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
}

/// Addresses of lab bridges in `ip -j -4 addr` output.
pub fn parse(ip_json: &str) -> Vec<Ipv4Addr> {
    let v: serde_json::Value = serde_json::from_str(ip_json).unwrap_or_default();
    let links = v.as_array().map(Vec::as_slice).unwrap_or_default();
    links
        .iter()
        .filter(|l| l["ifname"].as_str().is_some_and(is_lab_bridge))
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str()?.parse().ok())
        .collect()
}

/// The lab bridges' addresses now (empty when `ip` fails).
pub async fn addresses() -> Vec<Ipv4Addr> {
    match tokio::process::Command::new("ip").args(["-j", "-4", "addr", "show"]).output().await {
        Ok(out) if out.status.success() => parse(&String::from_utf8_lossy(&out.stdout)),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_addresses_only() {
        let j = r#"[{"ifname":"lo","addr_info":[{"local":"127.0.0.1"}]},{"ifname":"lhbr0","addr_info":[{"local":"10.1.0.1"}]},{"ifname":"docker0","addr_info":[{"local":"172.17.0.1"}]},{"ifname":"ltbr12","addr_info":[{"local":"10.2.0.1"}]}]"#;
        assert_eq!(parse(j), vec![Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1)]);
        assert!(!is_lab_bridge("br0") && !is_lab_bridge("lhbr") && is_lab_bridge("lhbr3"));
        assert!(parse("not json").is_empty());
    }
}
