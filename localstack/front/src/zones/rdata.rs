//! Route53's record values (text, as the API takes them) to hickory-proto's record data.

use hickory_proto::rr::rdata::{A, AAAA, CAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, RecordType};

/// The DNS type of a Route53 type name; None for types the server does not serve.
pub fn record_type(rtype: &str) -> Option<RecordType> {
    let t = match rtype {
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        "CNAME" => RecordType::CNAME,
        "NS" => RecordType::NS,
        "SOA" => RecordType::SOA,
        "TXT" => RecordType::TXT,
        "SPF" => RecordType::TXT,
        "MX" => RecordType::MX,
        "SRV" => RecordType::SRV,
        "PTR" => RecordType::PTR,
        "CAA" => RecordType::CAA,
        _ => return None,
    };
    Some(t)
}

fn name(s: &str) -> Option<Name> {
    Name::from_ascii(super::snapshot::normalize(s)).ok()
}

/// One value of a record set as record data; None when the value does not parse.
pub fn parse(rtype: &str, value: &str) -> Option<RData> {
    let f: Vec<&str> = value.split_whitespace().collect();
    let rdata = match rtype {
        "A" => RData::A(A(value.trim().parse().ok()?)),
        "AAAA" => RData::AAAA(AAAA(value.trim().parse().ok()?)),
        "CNAME" => RData::CNAME(CNAME(name(value)?)),
        "NS" => RData::NS(NS(name(value)?)),
        "PTR" => RData::PTR(PTR(name(value)?)),
        "MX" => RData::MX(MX::new(f.first()?.parse().ok()?, name(f.get(1)?)?)),
        "SRV" => RData::SRV(SRV::new(f.first()?.parse().ok()?, f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?, name(f.get(3)?)?)),
        "TXT" | "SPF" => RData::TXT(TXT::new(txt_strings(value))),
        "SOA" => RData::SOA(soa(&f)?),
        "CAA" => caa(&f)?,
        _ => return None,
    };
    Some(rdata)
}

fn soa(f: &[&str]) -> Option<SOA> {
    let num = |i: usize| -> Option<u32> { f.get(i)?.parse().ok() };
    let signed = |i: usize| -> Option<i32> { i32::try_from(num(i)?).ok() };
    Some(SOA::new(name(f.first()?)?, name(f.get(1)?)?, num(2)?, signed(3)?, signed(4)?, signed(5)?, num(6)?))
}

fn caa(f: &[&str]) -> Option<RData> {
    let critical = f.first()?.parse::<u8>().ok()? & 0x80 != 0;
    let value = f.get(2)?.trim_matches('"');
    let issuer = if value.is_empty() { None } else { Name::from_ascii(value).ok() };
    match *f.get(1)? {
        "issue" => Some(RData::CAA(CAA::new_issue(critical, issuer, vec![]))),
        "issuewild" => Some(RData::CAA(CAA::new_issuewild(critical, issuer, vec![]))),
        _ => None,
    }
}

/// `"a" "b c"` -> [a, b c]; an unquoted value is one string.
fn txt_strings(value: &str) -> Vec<String> {
    let v = value.trim();
    if !v.starts_with('"') {
        return vec![v.to_string()];
    }
    let mut out = Vec::new();
    let (mut cur, mut quoted, mut escaped) = (String::new(), false, false);
    for c in v.chars() {
        match (escaped, quoted, c) {
            (true, _, _) => {
                cur.push(c);
                escaped = false;
            }
            (false, true, '\\') => escaped = true,
            (false, true, '"') => {
                out.push(std::mem::take(&mut cur));
                quoted = false;
            }
            (false, true, _) => cur.push(c),
            (false, false, '"') => quoted = true,
            (false, false, _) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_route53_writes_them() {
        assert_eq!(parse("A", "10.0.0.1"), Some(RData::A(A::new(10, 0, 0, 1))));
        assert_eq!(parse("A", "not-an-ip"), None);
        assert_eq!(txt_strings("\"a b\" \"c\\\"d\""), vec!["a b".to_string(), "c\"d".to_string()]);
        assert!(matches!(parse("MX", "10 mail.example.com"), Some(RData::MX(_))));
        assert!(matches!(parse("SOA", "ns-1.awsdns.com. hostmaster.example.com. 1 7200 900 1209600 86400"), Some(RData::SOA(_))));
    }
}
