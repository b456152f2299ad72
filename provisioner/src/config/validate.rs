//! The rules a parsed `regions.toml` must meet. Every error names the field and the fix.

use std::collections::BTreeSet;
use std::path::Path;

use ipnet::Ipv4Net;

use super::rules::*;
use super::*;
use crate::locate::locate;

pub(super) struct Validator<'a> {
    pub file: &'a str,
    pub src: &'a str,
}

impl Validator<'_> {
    fn err(&self, path: &[&str], problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            loc: locate(self.src, path),
            field: path.join("."),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub(super) fn validate(&self, raw: RawConfig, dir: &Path) -> Result<Config, ConfigError> {
        if !is_name(&raw.project) || raw.project.len() > 24 {
            return Err(self.err(
                &["project"],
                format!("{:?} is not a valid project name", raw.project),
                "use 1-24 lowercase letters, digits and '-', starting with a letter",
            ));
        }
        if !is_name(&raw.template) {
            return Err(self.err(&["template"], "not a template name", "use e.g. \"compact\" or \"standard\""));
        }
        self.validate_dns(&raw.dns)?;
        let operator_cidr = self.cidr(&["access", "operator_cidr"], &raw.access.operator_cidr)?;
        let ssh_public_key = raw.access.ssh_public_key.as_deref().map(expand_home);
        if let Some(p) = &ssh_public_key {
            if !p.exists() {
                return Err(self.err(
                    &["access", "ssh_public_key"],
                    format!("{} does not exist", p.display()),
                    "point it at an existing OpenSSH public key, or remove it to let provision generate one",
                ));
            }
        }
        let (endpoint_url, health_target) = match &raw.endpoint {
            Some(e) => {
                if let Some(u) = &e.url {
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        return Err(self.err(
                            &["endpoint", "url"],
                            format!("{u:?} is not an http(s) URL"),
                            "use e.g. \"http://127.0.0.1:4566\"",
                        ));
                    }
                }
                (e.url.clone(), e.health_target)
            }
            None => (None, HealthTarget::PublicIp),
        };
        let regions = self.validate_regions(&raw.region)?;
        if !(1..=65_536).contains(&raw.engine.batch_max) {
            return Err(self.err(&["engine", "batch_max"], "must be 1..=65536", "use e.g. 1024"));
        }
        if !(50..=10_000).contains(&raw.engine.gateway_probe_interval_ms) {
            return Err(self.err(&["engine", "gateway_probe_interval_ms"], "must be 50..=10000 ms", "use e.g. 200"));
        }
        if let Some(u) = raw.engine.webhook_urls.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(self.err(
                &["engine", "webhook_urls"],
                format!("{u:?} is not an http(s) URL"),
                "use e.g. \"https://ops.example/hook\"",
            ));
        }
        Ok(Config {
            file: self.file.to_string(),
            src: self.src.to_string(),
            dir: dir.to_path_buf(),
            project: raw.project,
            template: raw.template,
            dns: raw.dns,
            operator_cidr,
            ssh_public_key,
            endpoint_url,
            health_target,
            engine: raw.engine,
            regions,
            active: None,
        })
    }

    fn validate_dns(&self, dns: &Dns) -> Result<(), ConfigError> {
        let zone = dns.zone.trim_end_matches('.');
        if !is_dns_name(zone) {
            return Err(self.err(&["dns", "zone"], format!("{:?} is not a DNS name", dns.zone), "use e.g. \"example.com\""));
        }
        let rec = dns.api_record.trim_end_matches('.');
        if !is_dns_name(rec) || !(rec.ends_with(&format!(".{zone}"))) {
            return Err(self.err(
                &["dns", "api_record"],
                format!("{:?} is not a name inside the zone {zone:?}", dns.api_record),
                format!("use a name ending in .{zone}, e.g. \"api.{zone}\""),
            ));
        }
        if !(1..=86_400).contains(&dns.record_ttl_s) {
            return Err(self.err(&["dns", "record_ttl_s"], "must be 1..=86400 seconds", "failover wants a short TTL: 10-60"));
        }
        Ok(())
    }

    fn validate_regions(&self, raw: &[Region]) -> Result<Vec<RegionConfig>, ConfigError> {
        if raw.len() != 2 {
            return Err(self.err(
                &["region"],
                format!("{} [[region]] tables; exactly two are needed", raw.len()),
                "declare one region with role = \"primary\" and one with role = \"dr\"",
            ));
        }
        let primaries = raw.iter().filter(|r| r.role == RegionRole::Primary).count();
        if primaries != 1 {
            return Err(self.err(
                &["region", "1", "role"],
                format!("{primaries} regions have role = \"primary\"; exactly one must"),
                "set role = \"primary\" on one region and role = \"dr\" on the other",
            ));
        }
        if raw[0].name == raw[1].name {
            return Err(self.err(&["region", "1", "name"], "both regions have the same name", "use two different AWS regions"));
        }
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            out.push(self.validate_region(i, r)?);
        }
        if out[0].vpc_cidr.contains(&out[1].vpc_cidr.network()) || out[1].vpc_cidr.contains(&out[0].vpc_cidr.network()) {
            return Err(self.err(
                &["region", "1", "vpc_cidr"],
                format!("{} overlaps the other region's {}", out[1].vpc_cidr, out[0].vpc_cidr),
                "peered VPCs need disjoint CIDRs, e.g. 10.10.0.0/16 and 10.20.0.0/16",
            ));
        }
        out.sort_by_key(|r| r.role);
        Ok(out)
    }

    fn validate_region(&self, i: usize, r: &Region) -> Result<RegionConfig, ConfigError> {
        let idx = i.to_string();
        let at = |f: &'static str| -> Vec<&str> { vec!["region", &idx, f] };
        if !is_region_name(&r.name) {
            return Err(self.err(&at("name"), format!("{:?} is not an AWS region name", r.name), "use e.g. \"us-east-1\""));
        }
        let vpc_cidr = self.cidr(&at("vpc_cidr"), &r.vpc_cidr)?;
        if !(16..=24).contains(&vpc_cidr.prefix_len()) {
            return Err(self.err(
                &at("vpc_cidr"),
                format!("/{} does not fit one subnet per availability zone", vpc_cidr.prefix_len()),
                "use a VPC between /16 and /24 (subnets are the VPC split in 4)",
            ));
        }
        if r.azs.len() < 2 {
            return Err(self.err(
                &at("azs"),
                format!("{} availability zone(s); at least 2 are needed", r.azs.len()),
                "list 2-4 zones, e.g. [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]",
            ));
        }
        if r.azs.len() > 4 {
            return Err(self.err(&at("azs"), "more than 4 availability zones: subnets would not fit the VPC", "list at most 4 zones"));
        }
        let mut seen = BTreeSet::new();
        for az in &r.azs {
            let suffix = az.strip_prefix(r.name.as_str());
            let ok = matches!(suffix, Some(s) if s.len() == 1 && s.chars().all(|c| c.is_ascii_lowercase()));
            if !ok {
                return Err(self.err(
                    &at("azs"),
                    format!("{az:?} is not an availability zone of {}", r.name),
                    format!("use zones of that region, e.g. \"{}a\"", r.name),
                ));
            }
            if !seen.insert(az) {
                return Err(self.err(&at("azs"), format!("{az:?} is listed twice"), "list each zone once"));
            }
        }
        if r.ssh_user.is_empty() || !r.ssh_user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(self.err(&at("ssh_user"), "not a user name", "use e.g. \"ubuntu\" or \"root\""));
        }
        let bastion = self.bastion(&idx, r)?;
        match &r.ami {
            Ami::Id { id } if !id.starts_with("ami-") => {
                return Err(self.err(
                    &at("ami"),
                    format!("{id:?} is not an AMI id"),
                    "use ami = { id = \"ami-...\" } or ami = { name = \"...*\", owner = \"...\" }",
                ));
            }
            Ami::Filter { name, owner } if name.is_empty() || owner.is_empty() => {
                return Err(self.err(
                    &at("ami"),
                    "empty name filter or owner",
                    "give both, e.g. ami = { name = \"ubuntu/images/*\", owner = \"099720109477\" }",
                ));
            }
            _ => {}
        }
        Ok(RegionConfig {
            role: r.role,
            name: r.name.clone(),
            vpc_cidr,
            azs: r.azs.clone(),
            ssh_user: r.ssh_user.clone(),
            bastion,
            ami: r.ami.clone(),
            instance_types: r.instance_types.clone(),
        })
    }

    /// `bastion = "host"` or `"host:port"` (port 22 by default), with `bastion_user`.
    fn bastion(&self, idx: &str, r: &Region) -> Result<Option<crate::ssh::Jump>, ConfigError> {
        let at = |f: &'static str| -> Vec<&str> { vec!["region", idx, f] };
        let user = r.bastion_user.clone().unwrap_or_else(|| r.ssh_user.clone());
        let Some(b) = &r.bastion else {
            if r.bastion_user.is_some() {
                return Err(self.err(&at("bastion_user"), "set without a bastion", "add bastion = \"host[:port]\" or remove bastion_user"));
            }
            return Ok(None);
        };
        let (host, port) = match b.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p > 0)),
            None => (b.as_str(), Some(22)),
        };
        let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        let Some(port) = port.filter(|_| host_ok) else {
            return Err(self.err(
                &at("bastion"),
                format!("{b:?} is not host or host:port"),
                "write e.g. bastion = \"bastion.example.com\" or \"203.0.113.10:2222\"",
            ));
        };
        if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(self.err(&at("bastion_user"), "not a user name", "use e.g. \"ec2-user\""));
        }
        Ok(Some(crate::ssh::Jump { host: host.to_string(), port, user }))
    }

    fn cidr(&self, path: &[&str], s: &str) -> Result<Ipv4Net, ConfigError> {
        let net: Ipv4Net =
            s.parse().map_err(|_| self.err(path, format!("{s:?} is not an IPv4 CIDR"), "write it as a.b.c.d/n, e.g. \"10.10.0.0/16\""))?;
        if net.trunc() != net {
            return Err(self.err(path, format!("{s:?} has host bits set"), format!("use the network address: \"{}\"", net.trunc())));
        }
        Ok(net)
    }
}

