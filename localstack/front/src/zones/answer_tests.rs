use super::*;
use hickory_proto::rr::RData;

fn set(name: &str, rtype: &str, ttl: u32, values: &[&str]) -> RecordSet {
    RecordSet {
        name: normalize(name),
        rtype: rtype.into(),
        ttl,
        values: values.iter().map(|v| v.to_string()).collect(),
        set_identifier: None,
        failover: None,
        health_check_id: None,
    }
}

fn failover(name: &str, role: Failover, ip: &str, check: &str) -> RecordSet {
    RecordSet {
        failover: Some(role),
        health_check_id: Some(check.into()),
        set_identifier: Some(format!("{role:?}")),
        ..set(name, "A", 60, &[ip])
    }
}

fn snap(sets: Vec<RecordSet>) -> Snapshot {
    Snapshot { zones: vec![Zone { id: "Z1".into(), name: "example.com.".into(), sets }] }
}

fn ips(a: &Answer) -> Vec<String> {
    a.answers.iter().map(|r| r.data().to_string()).collect()
}

fn none(_: &str) -> Option<bool> {
    None
}

#[test]
fn simple_record_with_its_ttl() {
    let s = snap(vec![set("www.example.com", "A", 42, &["10.0.0.1", "10.0.0.2"])]);
    let a = answer(&s, "WWW.example.com.", RecordType::A, none);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert!(a.authoritative);
    assert_eq!(ips(&a), vec!["10.0.0.1", "10.0.0.2"]);
    assert_eq!(a.answers[0].ttl(), 42);
}

#[test]
fn nxdomain_nodata_and_refused() {
    let s = snap(vec![set("www.example.com", "A", 60, &["10.0.0.1"]), set("a.b.example.com", "A", 60, &["10.0.0.3"])]);
    let nx = answer(&s, "nope.example.com", RecordType::A, none);
    assert_eq!(nx.rcode, ResponseCode::NXDomain);
    assert!(matches!(nx.authority[0].data(), RData::SOA(_)));
    let nodata = answer(&s, "www.example.com", RecordType::AAAA, none);
    assert_eq!((nodata.rcode, nodata.answers.len(), nodata.authority.len()), (ResponseCode::NoError, 0, 1));
    let empty_non_terminal = answer(&s, "b.example.com", RecordType::A, none);
    assert_eq!(empty_non_terminal.rcode, ResponseCode::NoError);
    assert_eq!(answer(&s, "www.example.org", RecordType::A, none).rcode, ResponseCode::Refused);
}

#[test]
fn apex_soa_and_ns_held_or_synthesized() {
    let s = snap(vec![]);
    assert!(matches!(answer(&s, "example.com", RecordType::SOA, none).answers[0].data(), RData::SOA(_)));
    assert_eq!(answer(&s, "example.com", RecordType::NS, none).answers.len(), 4);
    let held = snap(vec![set("example.com", "NS", 300, &["ns-1.awsdns-1.com."])]);
    let ns = answer(&held, "example.com", RecordType::NS, none);
    assert_eq!((ns.answers.len(), ns.answers[0].ttl()), (1, 300));
}

#[test]
fn failover_follows_health() {
    let s = snap(vec![
        failover("app.example.com", Failover::Primary, "10.0.0.1", "p"),
        failover("app.example.com", Failover::Secondary, "10.0.0.2", "s"),
    ]);
    let with = |p: bool, sec: bool| move |id: &str| Some(if id == "p" { p } else { sec });
    assert_eq!(ips(&answer(&s, "app.example.com", RecordType::A, with(true, true))), vec!["10.0.0.1"]);
    assert_eq!(ips(&answer(&s, "app.example.com", RecordType::A, with(false, true))), vec!["10.0.0.2"]);
    assert_eq!(ips(&answer(&s, "app.example.com", RecordType::A, with(false, false))), vec!["10.0.0.1"]);
    assert_eq!(ips(&answer(&s, "app.example.com", RecordType::A, none)), vec!["10.0.0.1"]);
}

#[test]
fn cname_answers_any_type_and_wildcards_match() {
    let s = snap(vec![set("alias.example.com", "CNAME", 60, &["www.example.com"]), set("*.w.example.com", "A", 60, &["10.0.0.9"])]);
    assert!(matches!(answer(&s, "alias.example.com", RecordType::AAAA, none).answers[0].data(), RData::CNAME(_)));
    assert_eq!(ips(&answer(&s, "x.y.w.example.com", RecordType::A, none)), vec!["10.0.0.9"]);
}

#[test]
fn weighted_sets_answer_all_values_of_healthy_sets() {
    let mut a = set("w.example.com", "A", 60, &["10.0.0.1"]);
    let mut b = set("w.example.com", "A", 60, &["10.0.0.2"]);
    a.set_identifier = Some("a".into());
    b.set_identifier = Some("b".into());
    b.health_check_id = Some("hb".into());
    let s = snap(vec![a, b]);
    assert_eq!(ips(&answer(&s, "w.example.com", RecordType::A, none)).len(), 2);
    assert_eq!(ips(&answer(&s, "w.example.com", RecordType::A, |_: &str| Some(false))), vec!["10.0.0.1"]);
}
