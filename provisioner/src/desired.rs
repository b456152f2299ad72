//! From a validated config and template to the [`Desired`] state. Pure.

use ipnet::Ipv4Net;

use crate::config::{Config, HealthTarget, RegionConfig};
use crate::model::*;
use crate::template::Template;

/// Subnets are the VPC split in 8 (prefix + 3): AZ `i` gets public subnet `i` and private
/// subnet `PRIVATE_SUBNET_FIRST + i` (at most 4 AZs).
const SUBNET_PREFIX_EXTRA: u8 = 3;
const PRIVATE_SUBNET_FIRST: usize = 4;

pub fn desired(cfg: &Config, tpl: &Template, key_pair_material: &str) -> Desired {
    let regions: Vec<DesiredRegion> = cfg
        .regions
        .iter()
        .map(|r| {
            let peer = cfg.regions.iter().find(|o| o.name != r.name).expect("two regions");
            region(cfg, tpl, r, peer)
        })
        .collect();

    let mut http_checks = Vec::new();
    let mut region_checks = Vec::new();
    for r in &regions {
        let mut children = Vec::new();
        for h in r.hosts.iter().filter(|h| h.gateway) {
            let key = format!("{}/check/{}-{}", r.name, h.role, h.index);
            children.push(key.clone());
            http_checks.push(HttpCheckSpec {
                key,
                region: r.name.clone(),
                host_key: h.key.clone(),
                port: tpl.ports.gateway_http,
                path: "/health".into(),
                request_interval_s: 10,
                failure_threshold: 3,
            });
        }
        region_checks.push(RegionCheckSpec { key: region_check_key(&r.name), region: r.name.clone(), children, healthy_children_min: 1 });
    }

    Desired {
        project: cfg.project.clone(),
        key_pair_material: key_pair_material.trim().to_string(),
        regions,
        peering_key: format!("{}/peering/{}", cfg.primary().name, cfg.dr().name),
        zone_name: cfg.dns.zone.trim_end_matches('.').to_string(),
        record_name: cfg.dns.api_record.trim_end_matches('.').to_string(),
        record_ttl_s: cfg.dns.record_ttl_s,
        address: match cfg.health_target {
            HealthTarget::PublicIp => Address::Public,
            HealthTarget::PrivateIp => Address::Private,
        },
        http_checks,
        region_checks,
        records: records(cfg),
    }
}

/// What the config and template ask for together that AWS would refuse later: more hosts in
/// an AZ than its subnet holds. (CallerReferences fit for every valid config: the key is hashed.)
/// Checked before the first API call.
pub fn check_fits(cfg: &Config, tpl: &Template) -> Result<(), crate::config::ConfigError> {
    let d = desired(cfg, tpl, "");
    for r in &d.regions {
        for sn in &r.subnets {
            let hosts = r.hosts.iter().filter(|h| h.subnet_key == sn.key).count();
            let net: Ipv4Net = sn.cidr.parse().expect("desired subnets are CIDRs");
            let room = (1usize << (32 - net.prefix_len())).saturating_sub(SUBNET_ADDRESSES_RESERVED);
            if hosts > room {
                return Err(cfg.error_at(
                    &["region", &cfg.file_region_index(&r.name), "vpc_cidr"],
                    format!(
                        "{hosts} hosts land in {} but its subnet {} has {room} usable addresses (AWS keeps {SUBNET_ADDRESSES_RESERVED})",
                        sn.az, sn.cidr
                    ),
                    "use a larger vpc_cidr (e.g. a /16), more azs, or fewer hosts in the template",
                ));
            }
        }
    }
    Ok(())
}

/// Addresses AWS keeps in every subnet (network, router, DNS, future, broadcast).
const SUBNET_ADDRESSES_RESERVED: usize = 5;

fn region_check_key(region: &str) -> String {
    format!("{region}/check/region")
}

/// The failover records: the PRIMARY follows the primary role, wherever a failover put it
/// (`cfg.with_active(..)` gives the records after a move).
pub fn records(cfg: &Config) -> Vec<RecordSpec> {
    cfg.regions
        .iter()
        .map(|r| {
            let (failover, ident) = match cfg.role_now(&r.name) {
                crate::config::RegionRole::Primary => (Failover::Primary, "primary"),
                crate::config::RegionRole::Dr => (Failover::Secondary, "secondary"),
            };
            RecordSpec {
                set_identifier: format!("{}-{}", cfg.project, ident),
                failover,
                region: r.name.clone(),
                check_key: region_check_key(&r.name),
            }
        })
        .collect()
}

fn region(cfg: &Config, tpl: &Template, r: &RegionConfig, peer: &RegionConfig) -> DesiredRegion {
    let n = &r.name;
    let nets: Vec<Ipv4Net> = r.vpc_cidr.subnets(r.vpc_cidr.prefix_len() + SUBNET_PREFIX_EXTRA).expect("validated prefix").collect();
    assert!(r.azs.len() <= PRIVATE_SUBNET_FIRST, "config validation keeps azs <= 4");
    let subnet = |az: &str, public: bool| {
        let i = r.azs.iter().position(|a| a == az).expect("an AZ of the region");
        let (side, net) = if public { ("public", nets[i]) } else { ("private", nets[PRIVATE_SUBNET_FIRST + i]) };
        SubnetSpec { key: format!("{n}/subnet/{side}-{az}"), az: az.to_string(), cidr: net.to_string(), public }
    };
    let subnets: Vec<SubnetSpec> = [true, false].into_iter().flat_map(|public| r.azs.iter().map(move |az| subnet(az, public))).collect();
    let nat = match cfg.egress {
        crate::config::Egress::Nat => {
            Some(NatSpec { key: format!("{n}/nat"), eip_key: format!("{n}/eip/nat"), subnet_key: subnet(&r.azs[0], true).key })
        }
        crate::config::Egress::None => None,
    };

    let vpcs = [r.vpc_cidr.to_string(), peer.vpc_cidr.to_string()];
    let mut sgs = Vec::new();
    let mut hosts = Vec::new();
    for g in &tpl.hosts {
        let sg_key = format!("{n}/sg/{}", g.role);
        let mut rules = vec![Rule::tcp(tpl.ports.ssh, cfg.operator_cidr.to_string())];
        for m in &g.modules {
            for c in &vpcs {
                rules.push(Rule::tcp(tpl.ports.modules[m], c.clone()));
            }
        }
        if g.gateway {
            for c in &cfg.client_cidrs {
                rules.push(Rule::tcp(tpl.ports.gateway_http, c.to_string()));
            }
            for c in &vpcs {
                rules.push(Rule::tcp(tpl.ports.gateway_admin, c.clone()));
            }
        }
        if g.database {
            for p in [tpl.ports.postgres, tpl.ports.patroni_rest, tpl.ports.etcd_client, tpl.ports.etcd_peer] {
                for c in &vpcs {
                    rules.push(Rule::tcp(p, c.clone()));
                }
            }
        }
        rules.push(Rule { proto: Proto::IcmpFragNeeded, cidr: peer.vpc_cidr.to_string() });
        rules.sort();
        rules.dedup();
        sgs.push(SgSpec { key: sg_key.clone(), name: format!("{}-{}", cfg.project, g.role), rules });
        for i in 0..g.count {
            let az = &r.azs[i as usize % r.azs.len()];
            hosts.push(HostSpec {
                key: format!("{n}/instance/{}-{i}", g.role),
                name: format!("{}-{}-{}-{i}", cfg.project, r.role.as_str(), g.role),
                role: g.role.clone(),
                index: i,
                az: az.clone(),
                subnet_key: subnet(az, g.gateway).key,
                sg_key: sg_key.clone(),
                instance_type: r.instance_types[&g.instance_type].clone(),
                modules: g.modules.clone(),
                gateway: g.gateway,
                database: g.database,
                public_ip: g.gateway,
                data_volume_gib: g.data_volume_gib,
            });
        }
    }

    DesiredRegion {
        name: n.clone(),
        role: r.role,
        vpc_key: format!("{n}/vpc"),
        vpc_cidr: r.vpc_cidr.to_string(),
        peer_cidr: peer.vpc_cidr.to_string(),
        igw_key: format!("{n}/igw"),
        route_table_key: format!("{n}/route-table"),
        private_route_table_key: format!("{n}/route-table/private"),
        nat,
        subnets,
        sgs,
        key_pair_key: format!("{n}/key-pair"),
        key_pair_name: cfg.project.clone(),
        hosts,
    }
}
