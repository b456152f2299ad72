//! What the DNS server answers from: every hosted zone and its record sets, as LocalStack holds
//! them at one moment. Plain data; names are lowercase and end with a dot.

/// Route53's failover role of a record set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    Primary,
    Secondary,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSet {
    pub name: String,
    /// The record type as Route53 spells it (`A`, `AAAA`, `CNAME`, `TXT`, ...).
    pub rtype: String,
    pub ttl: u32,
    pub values: Vec<String>,
    pub set_identifier: Option<String>,
    pub failover: Option<Failover>,
    pub health_check_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub id: String,
    pub name: String,
    pub sets: Vec<RecordSet>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub zones: Vec<Zone>,
}

/// Lowercase with one trailing dot; Route53's `\052` (escaped `*`) back to `*`.
pub fn normalize(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase().replace("\\052", "*");
    if n.ends_with('.') {
        n
    } else {
        format!("{n}.")
    }
}

/// True when `name` is `zone` or below it.
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || zone == "." || name.ends_with(&format!(".{zone}"))
}

impl Snapshot {
    /// The zone holding `name`: the longest zone name that is `name` or a parent of it.
    pub fn zone_of(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().filter(|z| in_zone(name, &z.name)).max_by_key(|z| z.name.len())
    }
}
