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
    pub(super) fn err(&self, path: &[&str], problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
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
                format!("{} is not a valid project name", shown(&raw.project)),
                "use 1-24 lowercase letters, digits and '-', starting with a letter",
            ));
        }
        if !is_name(&raw.template) {
            return Err(self.err(&["template"], "not a template name", "use e.g. \"compact\" or \"standard\""));
        }
        self.validate_dns(&raw.dns)?;
        let operator_cidr = self.cidr(&["access", "operator_cidr"], &raw.access.operator_cidr)?;
        if raw.access.client_cidrs.is_empty() {
            return Err(self.err(
                &["access", "client_cidrs"],
                "is empty: no client could reach the API, and no Route53 health check either",
                "list the networks clients come from, or remove the field for anywhere (\"0.0.0.0/0\")",
            ));
        }
        let mut client_cidrs = Vec::new();
        for (i, c) in raw.access.client_cidrs.iter().enumerate() {
            client_cidrs.push(self.cidr(&["access", "client_cidrs", &i.to_string()], c)?);
        }
        let ssh_public_key = match raw.access.ssh_public_key.as_deref() {
            Some(p) => Some(self.public_key(p, dir)?),
            None => None,
        };
        let (endpoint_url, health_target) = match &raw.endpoint {
            Some(e) => {
                if let Some(problem) = e.url.as_deref().and_then(|u| url_problem(u, true)) {
                    return Err(self.err(
                        &["endpoint", "url"],
                        format!("{} {problem}", shown(e.url.as_deref().unwrap_or_default())),
                        "use scheme://host[:port], e.g. \"http://127.0.0.1:4567\" (the lab's API front), or delete [endpoint] for AWS",
                    ));
                }
                if e.url.is_none() && e.health_target == HealthTarget::PrivateIp {
                    return Err(self.err(
                        &["endpoint", "health_target"],
                        "is private_ip, but without `url` this is AWS, whose Route53 health checkers are on the internet and never see a private address",
                        "use health_target = \"public_ip\" on AWS (private_ip is for a local cloud, with [endpoint] url set)",
                    ));
                }
                (e.url.clone(), e.health_target)
            }
            None => (None, HealthTarget::PublicIp),
        };
        let regions = self.validate_regions(&raw.region)?;
        let tls = self.tls(raw.tls.as_ref(), raw.dns.api_record.trim_end_matches('.'), endpoint_url.is_some(), dir)?;
        if !(1..=65_536).contains(&raw.engine.batch_max) {
            return Err(self.err(&["engine", "batch_max"], "must be 1..=65536", "use e.g. 1024"));
        }
        // A leader that no gateway probed for `leader_silence_ms` steps down (it is the one
        // cut off): a probe must come several times within that span.
        let probe_ms_max = engine_config::DEFAULT_LEADER_SILENCE_MS / 3;
        if !(50..=probe_ms_max).contains(&raw.engine.gateway_probe_interval_ms) {
            return Err(self.err(
                &["engine", "gateway_probe_interval_ms"],
                format!(
                    "must be 50..={probe_ms_max} ms: a leader no gateway probed for {} ms gives up its partitions",
                    engine_config::DEFAULT_LEADER_SILENCE_MS
                ),
                "use e.g. 200",
            ));
        }
        for (i, u) in raw.engine.webhook_urls.iter().enumerate() {
            if let Some(problem) = url_problem(u, false) {
                return Err(self.err(
                    &["engine", "webhook_urls", &i.to_string()],
                    format!("{} {problem}", shown(u)),
                    "use an http(s) URL with a host, e.g. \"https://ops.example/hook\"",
                ));
            }
        }
        Ok(Config {
            file: self.file.to_string(),
            src: self.src.to_string(),
            dir: dir.to_path_buf(),
            project: raw.project,
            template: raw.template,
            dns: raw.dns,
            operator_cidr,
            client_cidrs,
            ssh_address: raw.access.ssh_address,
            egress: raw.access.egress,
            ssh_public_key,
            endpoint_url,
            health_target,
            tls,
            engine: raw.engine,
            regions,
            active: None,
        })
    }

    fn validate_dns(&self, dns: &Dns) -> Result<(), ConfigError> {
        let zone = dns.zone.trim_end_matches('.');
        if !is_dns_name(zone) {
            return Err(self.err(
                &["dns", "zone"],
                format!("{} is not a DNS name", shown(&dns.zone)),
                "use labels of letters, digits and '-' (not first or last), at most 63 characters each and 253 in all, e.g. \"example.com\"",
            ));
        }
        let rec = dns.api_record.trim_end_matches('.');
        if !is_dns_name(rec) || !(rec.ends_with(&format!(".{zone}"))) {
            return Err(self.err(
                &["dns", "api_record"],
                format!("{} is not a DNS name inside the zone {}", shown(&dns.api_record), shown(zone)),
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
            return Err(self.err(&at("name"), format!("{} is not an AWS region name", shown(&r.name)), "use e.g. \"us-east-1\""));
        }
        let vpc_cidr = self.vpc_cidr(&idx, r)?;
        self.azs(&idx, r)?;
        if !is_user_name(&r.ssh_user) {
            return Err(self.err(
                &at("ssh_user"),
                format!("{} is not a Linux user name", shown(&r.ssh_user)),
                format!("use 1-{USER_NAME_CHARS_MAX} lowercase letters, digits, '_' and '-', starting with a letter, e.g. \"ubuntu\" or \"root\""),
            ));
        }
        self.instance_types(&idx, r)?;
        let bastion = self.bastion(&idx, r)?;
        self.ami(&idx, &r.ami)?;
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

    /// A usable private range, between /16 and /24 (subnets are the VPC split in 4).
    fn vpc_cidr(&self, idx: &str, r: &Region) -> Result<Ipv4Net, ConfigError> {
        let at = ["region", idx, "vpc_cidr"];
        let vpc_cidr = self.cidr(&at, &r.vpc_cidr)?;
        if let Some(range) = unusable_vpc_range(&vpc_cidr) {
            return Err(self.err(
                &at,
                format!("{vpc_cidr} is in the {range} range, which a VPC cannot route"),
                "use a private range, e.g. \"10.10.0.0/16\" (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)",
            ));
        }
        if !(16..=24).contains(&vpc_cidr.prefix_len()) {
            return Err(self.err(
                &at,
                format!("/{} does not fit a public and a private subnet per availability zone", vpc_cidr.prefix_len()),
                "use a VPC between /16 and /24 (subnets are the VPC split in 8)",
            ));
        }
        Ok(vpc_cidr)
    }

    /// 2 to 4 distinct zones of the region.
    fn azs(&self, idx: &str, r: &Region) -> Result<(), ConfigError> {
        let at = ["region", idx, "azs"];
        if r.azs.len() < 2 {
            return Err(self.err(
                &at,
                format!("{} availability zone(s); at least 2 are needed", r.azs.len()),
                "list 2-4 zones, e.g. [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]",
            ));
        }
        if r.azs.len() > 4 {
            return Err(self.err(&at, "more than 4 availability zones: subnets would not fit the VPC", "list at most 4 zones"));
        }
        let mut seen = BTreeSet::new();
        for az in &r.azs {
            let suffix = az.strip_prefix(r.name.as_str());
            let ok = matches!(suffix, Some(s) if s.len() == 1 && s.chars().all(|c| c.is_ascii_lowercase()));
            if !ok {
                return Err(self.err(
                    &at,
                    format!("{} is not an availability zone of {}", shown(az), r.name),
                    format!("use zones of that region, e.g. \"{}a\"", r.name),
                ));
            }
            if !seen.insert(az) {
                return Err(self.err(&at, format!("{} is listed twice", shown(az)), "list each zone once"));
            }
        }
        Ok(())
    }

    fn instance_types(&self, idx: &str, r: &Region) -> Result<(), ConfigError> {
        for (key, t) in &r.instance_types {
            if !is_name(key) {
                return Err(self.err(
                    &["region", idx, "instance_types"],
                    format!("key {} is not a host role name", shown(key)),
                    "use the template's instance_type names, e.g. app, db",
                ));
            }
            if !is_instance_type(t) {
                return Err(self.err(
                    &["region", idx, "instance_types", key],
                    format!("{} is not an EC2 instance type", shown(t)),
                    "write family.size as AWS does, e.g. \"t3.medium\" or \"r6i.large\"",
                ));
            }
        }
        Ok(())
    }

    fn ami(&self, idx: &str, ami: &Ami) -> Result<(), ConfigError> {
        let at = ["region", idx, "ami"];
        match ami {
            Ami::Id { id } if !is_ami_id(id) => Err(self.err(
                &at,
                format!("{} is not an AMI id (ami- and 8 or 17 hex digits)", shown(id)),
                "use ami = { id = \"ami-...\" } or ami = { name = \"...*\", owner = \"...\" }",
            )),
            Ami::Filter { name, owner } if name.is_empty() || owner.is_empty() => Err(self.err(
                &at,
                "empty name filter or owner",
                "give both, e.g. ami = { name = \"ubuntu/images/*\", owner = \"099720109477\" }",
            )),
            _ => Ok(()),
        }
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
        let Some((host, port)) = host_port(b) else {
            return Err(self.err(
                &at("bastion"),
                format!("{} is not host or host:port", shown(b)),
                "write a DNS name or IPv4 address and an optional port 1-65535, e.g. bastion = \"bastion.example.com\" or \"203.0.113.10:2222\"",
            ));
        };
        if !is_user_name(&user) {
            return Err(self.err(&at("bastion_user"), format!("{} is not a Linux user name", shown(&user)), "use e.g. \"ec2-user\""));
        }
        Ok(Some(crate::ssh::Jump { host, port, user }))
    }

    fn cidr(&self, path: &[&str], s: &str) -> Result<Ipv4Net, ConfigError> {
        if has_leading_zero(s) {
            return Err(self.err(
                path,
                format!("{} has a leading zero (some tools read it as octal)", shown(s)),
                "write each number without leading zeros, e.g. \"10.10.0.0/16\"",
            ));
        }
        let net: Ipv4Net = s
            .parse()
            .map_err(|_| self.err(path, format!("{} is not an IPv4 CIDR", shown(s)), "write it as a.b.c.d/n, e.g. \"10.10.0.0/16\""))?;
        if net.trunc() != net {
            return Err(self.err(path, format!("{} has host bits set", shown(s)), format!("use the network address: \"{}\"", net.trunc())));
        }
        Ok(net)
    }

    /// The operator's public key file (relative to the config's directory): it must parse as
    /// one OpenSSH public key. A private key is refused without echoing any of it.
    fn public_key(&self, p: &str, dir: &Path) -> Result<std::path::PathBuf, ConfigError> {
        let at = ["access", "ssh_public_key"];
        let path = expand_home(p);
        let path = if path.is_relative() { dir.join(path) } else { path };
        let fix = "point it at an OpenSSH public key file (one line: ssh-ed25519 AAAA… comment, usually ~/.ssh/id_ed25519.pub), or remove it to let provision generate one";
        let shown_path = shown(&path.display().to_string());
        if path.is_dir() {
            return Err(self.err(&at, format!("{shown_path} is a directory"), fix));
        }
        let bytes = std::fs::read(&path).map_err(|e| self.err(&at, format!("cannot read {shown_path}: {e}"), fix))?;
        let text = String::from_utf8_lossy(&bytes);
        if text.contains("PRIVATE KEY") {
            return Err(self.err(
                &at,
                format!("{shown_path} is a PRIVATE key; it would be uploaded to AWS as key material (its content is not shown)"),
                "point it at the public half (the .pub file next to it); keep the private key off every config",
            ));
        }
        if text.trim().is_empty() {
            return Err(self.err(&at, format!("{shown_path} is empty"), fix));
        }
        if ssh_key::PublicKey::from_openssh(text.trim()).is_err() {
            return Err(self.err(&at, format!("{shown_path} is not an OpenSSH public key"), fix));
        }
        Ok(path)
    }
}
