//! Which host runs what, and where to reach it: the desired hosts joined with the instances
//! the cloud has. Pure.

use serde::Serialize;

use crate::config::{Config, HealthTarget, RegionRole};
use crate::model::{pick, Desired, Observed};

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub key: String,
    /// Short name, unique in its region: `app-0`, `db-2`.
    pub name: String,
    pub instance_id: String,
    pub region: String,
    pub region_role: RegionRole,
    /// Address inside the VPCs: what services listen on and peers use.
    pub private_ip: String,
    /// Address `provision` connects to over SSH.
    pub ssh_ip: String,
    pub ssh_user: String,
    /// The jump host SSH goes through: the region's bastion when configured, else (SSH by
    /// public address) one of the region's gateways for a host that has no public address.
    pub bastion: Option<crate::ssh::Jump>,
    pub modules: Vec<String>,
    pub gateway: bool,
    pub database: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub hosts: Vec<Host>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{key} has no running instance with a private IP; run `provision up` first (or wait for it to start)")]
pub struct MissingHost {
    pub key: String,
}

/// The hosts that run now, and the desired ones that do not (a fenced or dead region's).
pub fn inventory_partial(cfg: &Config, d: &Desired, o: &Observed) -> (Inventory, Vec<MissingHost>) {
    let mut hosts = Vec::new();
    let mut missing = Vec::new();
    for dr in &d.regions {
        let rc = cfg.region(&dr.name).expect("desired regions come from the config");
        let or = o.region(&dr.name);
        let running = |key: &str| or.and_then(|r| pick(&r.instances, key)).filter(|f| f.attrs.state == "running");
        // Engine and DB hosts sit in private subnets: by public address, SSH reaches them
        // through a gateway (which has one) unless the region names its own bastion.
        let gateway_jump = dr
            .hosts
            .iter()
            .filter(|h| h.gateway)
            .find_map(|h| running(&h.key)?.attrs.public_ip.clone())
            .map(|ip| crate::ssh::Jump { host: ip, port: 22, user: rc.ssh_user.clone() });
        for h in &dr.hosts {
            let f = running(&h.key);
            let Some((f, private_ip)) = f.and_then(|f| Some((f, f.attrs.private_ip.clone()?))) else {
                missing.push(MissingHost { key: h.key.clone() });
                continue;
            };
            let public_ip = f.attrs.public_ip.clone().filter(|_| cfg.ssh_address == HealthTarget::PublicIp);
            let bastion = rc.bastion.clone().or_else(|| {
                if public_ip.is_none() && cfg.ssh_address == HealthTarget::PublicIp {
                    gateway_jump.clone()
                } else {
                    None
                }
            });
            let ssh_ip = public_ip.unwrap_or_else(|| private_ip.clone());
            hosts.push(Host {
                key: h.key.clone(),
                name: format!("{}-{}", h.role, h.index),
                instance_id: f.id.clone(),
                region: dr.name.clone(),
                region_role: cfg.role_now(&dr.name),
                private_ip,
                ssh_ip,
                ssh_user: rc.ssh_user.clone(),
                bastion,
                modules: h.modules.clone(),
                gateway: h.gateway,
                database: h.database,
            });
        }
    }
    (Inventory { hosts }, missing)
}

impl Host {
    /// The host's Patroni member name, unique across both regions: PostgreSQL reports a
    /// streaming standby by this name (`application_name`), so the DR standby leader, which
    /// streams from the primary region, must never share a name with a primary-region member
    /// (Patroni would take it for that member and make it the synchronous standby).
    pub fn patroni_member(&self) -> String {
        format!("{}-{}", self.region, self.name)
    }

    /// Where `provision` connects over SSH: `ssh_ip` as its region's `ssh_user`, through the
    /// region's bastion if any.
    pub fn ssh_target(&self) -> crate::ssh::Target {
        crate::ssh::Target::new(self.ssh_ip.clone(), 22).via(self.bastion.clone()).as_user(self.ssh_user.clone())
    }
}

impl Inventory {
    pub fn in_region<'a>(&'a self, region: &'a str) -> impl Iterator<Item = &'a Host> + 'a {
        self.hosts.iter().filter(move |h| h.region == region)
    }
    pub fn db(&self, region: &str) -> Vec<&Host> {
        self.hosts.iter().filter(|h| h.region == region && h.database).collect()
    }
    pub fn gateways(&self, region: &str) -> Vec<&Host> {
        self.hosts.iter().filter(|h| h.region == region && h.gateway).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Found, InstanceAttrs, ObservedRegion};

    /// The shipped config with `ssh_address` as given, every desired host running: gateways
    /// with a public address (10.x.y.z -> 203.x.y.z), the rest with none.
    fn hosts(ssh_address: &str) -> Vec<Host> {
        let src =
            crate::config::EMBEDDED_REGIONS_TOML.replacen("ssh_address = \"private_ip\"", &format!("ssh_address = \"{ssh_address}\""), 1);
        let cfg = Config::parse("regions.toml", std::path::Path::new("."), &src).unwrap();
        let tpl = crate::template::Template::load(&cfg).unwrap();
        let d = crate::desired::desired(&cfg, &tpl, "ssh-ed25519 AAAA test");
        let mut o = Observed::default();
        for (r, dr) in d.regions.iter().enumerate() {
            let mut or = ObservedRegion { name: dr.name.clone(), ..Default::default() };
            for (i, h) in dr.hosts.iter().enumerate() {
                let attrs = InstanceAttrs {
                    state: "running".into(),
                    private_ip: Some(format!("10.{r}.0.{i}")),
                    public_ip: h.public_ip.then(|| format!("203.{r}.0.{i}")),
                    ..Default::default()
                };
                or.instances.push(Found { key: h.key.clone(), id: format!("i-{r}{i}"), attrs });
            }
            o.regions.push(or);
        }
        let (inv, missing) = inventory_partial(&cfg, &d, &o);
        assert!(missing.is_empty());
        inv.hosts
    }

    #[test]
    fn ssh_dials_public_addresses_and_reaches_private_hosts_through_a_gateway() {
        for h in hosts("public_ip") {
            if h.gateway {
                assert!(h.ssh_ip.starts_with("203.") && h.bastion.is_none(), "{h:?}");
            } else {
                let jump = h.bastion.as_ref().expect("a private host is reached through a gateway");
                assert!(h.ssh_ip == h.private_ip && jump.host.starts_with("203.") && jump.user == h.ssh_user, "{h:?}");
                let region_digit = &h.private_ip[3..4];
                assert_eq!(&jump.host[4..5], region_digit, "through a gateway of its own region: {h:?}");
            }
        }
        for h in hosts("private_ip") {
            assert!(h.ssh_ip == h.private_ip && h.bastion.is_none(), "the lab dials private addresses directly: {h:?}");
        }
    }
}
