//! Every kernel object the emulator creates carries one owned prefix; `clean` relies on it.
//!
//! With prefix `lh`: netns `lh-<instance-id>`, bridges `lhbr<n>`, host-side veths
//! `lhv<hex>` (15-char interface limit), iptables chains `LABHOST-LH` (FORWARD) and
//! `LABHOST-LH-IN` (INPUT), each reached by one jump rule.

#[derive(Debug, thiserror::Error)]
#[error("prefix {0:?} must be 2-4 lowercase ASCII letters")]
pub struct BadPrefix(pub String);

pub const DEFAULT_PREFIX: &str = "lh";
const IFNAME_MAX: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Result<Self, BadPrefix> {
        let ok = (2..=4).contains(&prefix.len()) && prefix.chars().all(|c| c.is_ascii_lowercase());
        if !ok {
            return Err(BadPrefix(prefix.to_string()));
        }
        Ok(Names { prefix: prefix.to_string() })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn netns(&self, instance_id: &str) -> String {
        format!("{}-{}", self.prefix, instance_id)
    }

    /// The instance id of an owned netns name, if it is one.
    pub fn instance_of_netns(&self, netns: &str) -> Option<String> {
        let id = netns.strip_prefix(&format!("{}-", self.prefix))?;
        is_instance_id(id).then(|| id.to_string())
    }

    pub fn bridge(&self, region_index: usize) -> String {
        format!("{}br{}", self.prefix, region_index)
    }

    pub fn veth(&self, instance_id: &str) -> String {
        let head = format!("{}v", self.prefix);
        let hex: String = instance_id.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        let take = IFNAME_MAX - head.len();
        let tail = &hex[hex.len().saturating_sub(take)..];
        format!("{head}{tail}")
    }

    /// True for links this prefix owns: `<p>br<digits>` or `<p>v<hex>`.
    pub fn owns_link(&self, ifname: &str) -> bool {
        if let Some(rest) = ifname.strip_prefix(&format!("{}br", self.prefix)) {
            return !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit());
        }
        if let Some(rest) = ifname.strip_prefix(&format!("{}v", self.prefix)) {
            return !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit());
        }
        false
    }

    pub fn forward_chain(&self) -> String {
        format!("LABHOST-{}", self.prefix.to_ascii_uppercase())
    }

    pub fn input_chain(&self) -> String {
        format!("LABHOST-{}-IN", self.prefix.to_ascii_uppercase())
    }

    /// Wildcard matching this prefix's bridges in iptables `-i`/`-o`.
    pub fn bridge_wildcard(&self) -> String {
        format!("{}br+", self.prefix)
    }
}

/// `i-` followed by hex digits, as EC2 and LocalStack issue them.
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").map(|h| (8..=17).contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit())).unwrap_or(false)
}

/// True for any labhost-shaped bridge (`<2-4 letters>br<digits>`), whatever its prefix.
pub fn is_any_labhost_bridge(ifname: &str) -> bool {
    let letters = ifname.chars().take_while(|c| c.is_ascii_lowercase()).count();
    let rest = &ifname[letters..];
    (4..=6).contains(&letters) && ifname[..letters].ends_with("br") && !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_are_owned() {
        let n = Names::new("lh").unwrap();
        let v = n.veth("i-0123456789abcdef0");
        assert_eq!(v.len(), 15);
        assert!(n.owns_link(&v));
        assert!(n.owns_link("lhbr0"));
        assert!(!n.owns_link("lhbrx"));
        assert!(!n.owns_link("eth0"));
        assert!(!Names::new("lt").unwrap().owns_link(&v));
        assert_eq!(n.instance_of_netns("lh-i-0123456789abcdef0").as_deref(), Some("i-0123456789abcdef0"));
        assert_eq!(n.instance_of_netns("lh-other"), None);
        assert_eq!(n.instance_of_netns("lt-i-0123456789abcdef0"), None);
        assert_eq!(n.forward_chain(), "LABHOST-LH");
        assert!(Names::new("l").is_err());
        assert!(Names::new("LH").is_err());
        assert!(is_any_labhost_bridge("lhbr0"));
        assert!(is_any_labhost_bridge("ltbr12"));
        assert!(!is_any_labhost_bridge("docker0"));
        assert!(!is_any_labhost_bridge("br0"));
    }
}
