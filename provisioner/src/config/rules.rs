//! Pure predicates on configuration values, and how a value is shown in an error.

use std::path::PathBuf;

/// Lowercase letters, digits and '-', starting with a letter.
pub fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_lowercase()) && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// RFC 1035 (with RFC 1123's leading digits): labels of letters, digits and '-', neither
/// starting nor ending with '-', at most 63 characters; at most 253 in all; two labels or more.
pub fn is_dns_name(s: &str) -> bool {
    s.len() <= DNS_NAME_CHARS_MAX && s.contains('.') && s.split('.').all(is_dns_label)
}

pub const DNS_NAME_CHARS_MAX: usize = 253;
const DNS_LABEL_CHARS_MAX: usize = 63;

fn is_dns_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= DNS_LABEL_CHARS_MAX
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// Linux's limit on a user name (`LOGIN_NAME_MAX` - 1 on glibc; `useradd` refuses longer).
pub const USER_NAME_CHARS_MAX: usize = 32;

/// A user name `useradd` accepts: a lowercase letter or '_' first, then lowercase letters,
/// digits, '_' and '-'.
pub fn is_user_name(s: &str) -> bool {
    let mut c = s.chars();
    s.len() <= USER_NAME_CHARS_MAX
        && matches!(c.next(), Some(f) if f.is_ascii_lowercase() || f == '_')
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// An EC2 instance type as AWS spells them: `family.size`, e.g. `t3.medium`, `u-6tb1.metal`.
pub fn is_instance_type(s: &str) -> bool {
    let Some((family, size)) = s.split_once('.') else { return false };
    let mut f = family.chars();
    matches!(f.next(), Some(c) if c.is_ascii_lowercase())
        && f.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !size.is_empty()
        && size.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `ami-` and 8 or 17 lowercase hex digits.
pub fn is_ami_id(s: &str) -> bool {
    s.strip_prefix("ami-").is_some_and(|h| matches!(h.len(), 8 | 17) && h.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
}

/// Why a VPC cannot use `net`, if it cannot: ranges that are not unicast addresses a VPC
/// can route (this host, loopback, link-local, multicast, reserved).
pub fn unusable_vpc_range(net: &ipnet::Ipv4Net) -> Option<&'static str> {
    const UNUSABLE: [(&str, &str); 5] = [
        ("0.0.0.0/8", "\"this network\" (0.0.0.0/8)"),
        ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
        ("169.254.0.0/16", "link-local (169.254.0.0/16)"),
        ("224.0.0.0/4", "multicast (224.0.0.0/4)"),
        ("240.0.0.0/4", "reserved (240.0.0.0/4)"),
    ];
    UNUSABLE.iter().find_map(|(range, what)| {
        let r: ipnet::Ipv4Net = range.parse().expect("a CIDR");
        (r.contains(&net.network()) || net.contains(&r.network())).then_some(*what)
    })
}

/// A CIDR written with a leading zero in an octet or the prefix (`010.0.0.0/16`, `/016`):
/// some tools read those as octal.
pub fn has_leading_zero(cidr: &str) -> bool {
    cidr.split(['.', '/']).any(|part| part.len() > 1 && part.starts_with('0'))
}

/// What is wrong with an HTTP(S) URL, if anything. `bare`: it must name only a scheme, host
/// and port (an API endpoint), no path, query or fragment.
pub fn url_problem(u: &str, bare: bool) -> Option<String> {
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("contains spaces or control characters".into());
    }
    let url = match reqwest::Url::parse(u) {
        Ok(url) => url,
        Err(e) => return Some(format!("is not a URL ({e})")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!("has scheme {:?}; only http and https work", url.scheme()));
    }
    // The parser fills in a host for `https:///x` (it takes `x`): read the authority as written.
    let authority = u.split_once("://").map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or("")).unwrap_or("");
    let host_written = authority.rsplit('@').next().unwrap_or("");
    if url.host_str().is_none_or(str::is_empty) || host_written.is_empty() || host_written.starts_with(':') {
        return Some("has no host".into());
    }
    if url.port() == Some(0) {
        return Some("has port 0".into());
    }
    if bare && (url.path() != "/" || url.query().is_some() || url.fragment().is_some()) {
        return Some("has a path, query or fragment; an endpoint is only scheme://host[:port]".into());
    }
    None
}

/// `host` or `host:port` of a bastion: a DNS name or an IPv4 address, and a port in 1..=65535.
pub fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && !p.starts_with('0') => (h, p.parse::<u16>().ok()?),
        Some(_) => return None,
        None => (s, 22),
    };
    let ok = host.parse::<std::net::Ipv4Addr>().is_ok() || is_dns_name(host) || is_dns_label(host);
    (ok && !host.starts_with('-')).then(|| (host.to_string(), port))
}

/// How a value from the file is echoed in an error: URL credentials redacted, control
/// characters escaped, and at most [`ECHO_CHARS_MAX`] characters.
pub fn shown(s: &str) -> String {
    let s = redact_userinfo(s);
    let cut: String = s.chars().take(ECHO_CHARS_MAX).collect();
    let more = s.chars().count() > ECHO_CHARS_MAX;
    format!("{cut:?}{}", if more { format!(" (first {ECHO_CHARS_MAX} of {} characters)", s.chars().count()) } else { String::new() })
}

pub const ECHO_CHARS_MAX: usize = 80;

/// `scheme://user:password@host` → `scheme://***@host`, anywhere in `s`.
pub fn redact_userinfo(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail.find(['/', '?', '#', ' ', '"', '\'']).unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

pub fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_echoed_short_escaped_and_without_credentials() {
        assert_eq!(shown("http://admin:hunter2@127.0.0.1:4566"), "\"http://***@127.0.0.1:4566\"");
        assert_eq!(shown("a\u{1b}[2Jb"), "\"a\\u{1b}[2Jb\"");
        let long = "x".repeat(10_000);
        assert!(shown(&long).len() < 200, "{}", shown(&long));
        assert_eq!(redact_userinfo("no url here"), "no url here");
    }

    #[test]
    fn names_and_addresses() {
        assert!(is_dns_name("api.exa.example.internal"));
        assert!(!is_dns_name("api-.example.com"));
        assert!(!is_dns_name(&format!("{}.com", vec!["a".repeat(63); 4].join("."))));
        assert!(is_user_name("ec2-user") && !is_user_name(&"u".repeat(33)) && !is_user_name("9user"));
        assert!(is_instance_type("t3.medium") && is_instance_type("u-6tb1.metal") && !is_instance_type("") && !is_instance_type("t3"));
        assert!(is_ami_id("ami-0123456789abcdef0") && is_ami_id("ami-1234abcd") && !is_ami_id("ami-xyz") && !is_ami_id("ami-"));
        assert!(has_leading_zero("010.0.0.0/16") && has_leading_zero("10.0.0.0/016") && !has_leading_zero("10.0.0.0/16"));
        assert_eq!(unusable_vpc_range(&"127.1.0.0/16".parse().unwrap()), Some("loopback (127.0.0.0/8)"));
        assert_eq!(unusable_vpc_range(&"10.0.0.0/16".parse().unwrap()), None);
        assert_eq!(host_port("jump.example.com:2222"), Some(("jump.example.com".into(), 2222)));
        assert_eq!(host_port("-oProxyCommand=x"), None);
        assert_eq!(host_port("jump:99999"), None);
        assert_eq!(url_problem("http://127.0.0.1:4566", true), None);
        assert!(url_problem("http://127.0.0.1:4566/path", true).is_some());
        assert!(url_problem("http://:4566", true).is_some());
        assert!(url_problem("http://127.0.0.1:70000", true).is_some());
        assert!(url_problem("http://127.0.0.1 :4566", true).is_some());
        assert!(url_problem("https:///hook", false).is_some());
    }
}
