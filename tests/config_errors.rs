//! Every invalid configuration is refused before the first API call, with file:line, the
//! field and a fix. The endpoint is a listener that counts connections: a case passes only
//! if nothing connected to it.

mod common;

use common::*;

/// Replaced by the port of a listener that counts connections: any count above 0 means
/// `provision` called out before refusing.
const ENDPOINT: &str = "http://127.0.0.1:ENDPOINT_PORT";

struct Case {
    name: &'static str,
    /// (from, to) replacements applied to a valid regions.toml.
    edits: &'static [(&'static str, &'static str)],
    /// A template to place in templates/, if any: its name, and (from, to) edits applied to
    /// the built-in compact template.
    template: Option<(&'static str, &'static [(&'static str, &'static str)])>,
    /// Files placed next to regions.toml (a name ending in '/' is a directory).
    files: &'static [(&'static str, &'static str)],
    /// Text on the line the error must point at (in regions.toml or the template).
    line_of: &'static str,
    file: &'static str,
    /// The field path the message must name.
    field: &'static str,
    says: &'static [&'static str],
    /// Text that must not appear (secrets, key material).
    hides: &'static [&'static str],
}

const NO_FILES: &[(&str, &str)] = &[];

const COMPACT: &str = include_str!("../templates/compact.toml");

/// 64 more hosts in each of two more groups: 64 app hosts per AZ, more than a /27 private subnet holds (27).
const CROWDED_GROUPS: &str = "[[hosts]]\nrole = \"app2\"\ncount = 64\ninstance_type = \"app\"\nmodules = [\"matching\"]\n\n\
[[hosts]]\nrole = \"app3\"\ncount = 64\ninstance_type = \"app\"\nmodules = [\"otc\"]\n\n[[hosts]]\nrole = \"db\"";

const PRIVATE_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";

/// A zone of 4 labels of 63 characters: 255 characters in all.
const LONG_ZONE_EDIT: &str = "zone = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"";

const CASES: &[Case] = &[
    Case {
        name: "malformed toml",
        edits: &[("template = \"compact\"", "template = \"compact")],
        template: None,
        files: NO_FILES,
        line_of: "template = \"compact",
        file: "regions.toml",
        field: "template",
        says: &["regions.toml:"],
        hides: &[],
    },
    Case {
        name: "unknown key",
        edits: &[("[dns]", "colour = \"blue\"\n[dns]")],
        template: None,
        files: NO_FILES,
        line_of: "colour",
        file: "regions.toml",
        field: "colour",
        says: &["unknown field `colour`"],
        hides: &[],
    },
    Case {
        name: "unknown key in a region",
        edits: &[("ssh_user = \"root\"\nami", "ssh_usr = \"root\"\nami")],
        template: None,
        files: NO_FILES,
        line_of: "ssh_usr",
        file: "regions.toml",
        field: "region.0.ssh_usr",
        says: &["unknown field `ssh_usr`"],
        hides: &[],
    },
    Case {
        name: "bad bastion",
        edits: &[("ssh_user = \"root\"\nami", "ssh_user = \"root\"\nbastion = \"jump.example.com:99999\"\nami")],
        template: None,
        files: NO_FILES,
        line_of: "bastion = ",
        file: "regions.toml",
        field: "region.0.bastion",
        says: &["region.0.bastion", "not host or host:port", "fix:"],
        hides: &[],
    },
    Case {
        name: "bastion user without a bastion",
        edits: &[("ssh_user = \"root\"\nami", "ssh_user = \"root\"\nbastion_user = \"ec2-user\"\nami")],
        template: None,
        files: NO_FILES,
        line_of: "bastion_user",
        file: "regions.toml",
        field: "region.0.bastion_user",
        says: &["region.0.bastion_user", "without a bastion", "fix:"],
        hides: &[],
    },
    Case {
        name: "overlapping cidrs",
        edits: &[("10.60.0.0/16", "10.50.128.0/17")],
        template: None,
        files: NO_FILES,
        line_of: "10.50.128.0/17",
        file: "regions.toml",
        field: "region.1.vpc_cidr",
        says: &["region.1.vpc_cidr", "overlaps", "fix:"],
        hides: &[],
    },
    Case {
        name: "az outside its region",
        edits: &[("\"us-east-1a\", \"us-east-1b\"", "\"us-east-1a\", \"us-west-2b\"")],
        template: None,
        files: NO_FILES,
        line_of: "\"us-east-1a\", \"us-west-2b\"",
        file: "regions.toml",
        field: "region.0.azs",
        says: &["region.0.azs", "not an availability zone of us-east-1", "fix:"],
        hides: &[],
    },
    Case {
        name: "two primaries",
        edits: &[("role = \"dr\"", "role = \"primary\"")],
        template: None,
        files: NO_FILES,
        line_of: "role = \"primary\"",
        file: "regions.toml",
        field: "region.1.role",
        says: &["region.1.role", "exactly one must", "fix:"],
        hides: &[],
    },
    Case {
        name: "no primary",
        edits: &[("role = \"primary\"", "role = \"dr\"")],
        template: None,
        files: NO_FILES,
        line_of: "role = \"dr\"",
        file: "regions.toml",
        field: "region.1.role",
        says: &["0 regions have role = \"primary\"", "fix:"],
        hides: &[],
    },
    Case {
        name: "unknown template",
        edits: &[("template = \"compact\"", "template = \"huge\"")],
        template: None,
        files: NO_FILES,
        line_of: "template = \"huge\"",
        file: "regions.toml",
        field: "template",
        says: &["`template`", "unknown template \"huge\"", "compact, standard"],
        hides: &[],
    },
    Case {
        name: "bad cidr",
        edits: &[("10.50.0.0/16", "10.50.0.0/33")],
        template: None,
        files: NO_FILES,
        line_of: "10.50.0.0/33",
        file: "regions.toml",
        field: "region.0.vpc_cidr",
        says: &["region.0.vpc_cidr", "not an IPv4 CIDR", "fix:"],
        hides: &[],
    },
    Case {
        name: "host bits set",
        edits: &[("10.50.0.0/16", "10.50.0.1/16")],
        template: None,
        files: NO_FILES,
        line_of: "10.50.0.1/16",
        file: "regions.toml",
        field: "region.0.vpc_cidr",
        says: &["host bits", "10.50.0.0/16"],
        hides: &[],
    },
    Case {
        name: "subnets do not fit the vpc",
        edits: &[("10.50.0.0/16", "10.50.0.0/26")],
        template: None,
        files: NO_FILES,
        line_of: "10.50.0.0/26",
        file: "regions.toml",
        field: "region.0.vpc_cidr",
        says: &["region.0.vpc_cidr", "does not fit", "fix:"],
        hides: &[],
    },
    Case {
        name: "one availability zone",
        edits: &[("[\"us-west-2a\", \"us-west-2b\", \"us-west-2c\"]", "[\"us-west-2a\"]")],
        template: None,
        files: NO_FILES,
        line_of: "[\"us-west-2a\"]",
        file: "regions.toml",
        field: "region.1.azs",
        says: &["region.1.azs", "at least 2", "fix:"],
        hides: &[],
    },
    Case {
        name: "bad operator cidr",
        edits: &[("127.0.0.0/8", "everyone")],
        template: None,
        files: NO_FILES,
        line_of: "everyone",
        file: "regions.toml",
        field: "access.operator_cidr",
        says: &["access.operator_cidr", "not an IPv4 CIDR"],
        hides: &[],
    },
    Case {
        name: "bad client cidr",
        edits: &[("operator_cidr = \"127.0.0.0/8\"", "operator_cidr = \"127.0.0.0/8\"\nclient_cidrs = [\"0.0.0.0/0\", \"10.1.2.3/8\"]")],
        template: None,
        files: NO_FILES,
        line_of: "client_cidrs",
        file: "regions.toml",
        field: "access.client_cidrs.1",
        says: &["has host bits set", "\"10.0.0.0/8\""],
        hides: &[],
    },
    Case {
        name: "database group without its data volume",
        edits: &[("template = \"compact\"", "template = \"novol\"")],
        template: Some(("novol", &[("data_volume_gib = 100", "")])),
        files: NO_FILES,
        line_of: "database = true",
        file: "novol.toml",
        field: "hosts.1.database",
        says: &["without data_volume_gib", "fix:"],
        hides: &[],
    },
    Case {
        name: "api record outside the zone",
        edits: &[("api_record = \"api.", "api_record = \"api.elsewhere.example\" # ")],
        template: None,
        files: NO_FILES,
        line_of: "api_record",
        file: "regions.toml",
        field: "dns.api_record",
        says: &["dns.api_record", "not a DNS name inside the zone"],
        hides: &[],
    },
    Case {
        name: "fewer than 3 nodes per module",
        edits: &[("template = \"compact\"", "template = \"tiny\"")],
        files: NO_FILES,
        template: Some(("tiny", &[("count = 3\ninstance_type = \"app\"", "count = 2\ninstance_type = \"app\"")])),
        line_of: "count = 2",
        file: "tiny.toml",
        field: "hosts.0.count",
        says: &["module \"matching\" has 2 node(s)", "at least 3", "fix:"],
        hides: &[],
    },
    // --- issue 15: accepted although invalid ------------------------------------------------
    Case {
        name: "ssh_public_key is a private key",
        edits: &[("operator_cidr = \"127.0.0.0/8\"", "operator_cidr = \"127.0.0.0/8\"\nssh_public_key = \"id_ed25519\"")],
        template: None,
        files: &[("id_ed25519", PRIVATE_KEY)],
        line_of: "ssh_public_key",
        file: "regions.toml",
        field: "access.ssh_public_key",
        says: &["PRIVATE key", "not shown", ".pub"],
        hides: &["b3BlbnNzaC1rZXktdjE", "BEGIN OPENSSH"],
    },
    Case {
        name: "ssh_public_key is garbage",
        edits: &[("operator_cidr = \"127.0.0.0/8\"", "operator_cidr = \"127.0.0.0/8\"\nssh_public_key = \"key.pub\"")],
        template: None,
        files: &[("key.pub", "hello, this is not a key\n")],
        line_of: "ssh_public_key",
        file: "regions.toml",
        field: "access.ssh_public_key",
        says: &["not an OpenSSH public key", "fix:"],
        hides: &[],
    },
    Case {
        name: "ssh_public_key is empty",
        edits: &[("operator_cidr = \"127.0.0.0/8\"", "operator_cidr = \"127.0.0.0/8\"\nssh_public_key = \"key.pub\"")],
        template: None,
        files: &[("key.pub", "")],
        line_of: "ssh_public_key",
        file: "regions.toml",
        field: "access.ssh_public_key",
        says: &["is empty"],
        hides: &[],
    },
    Case {
        name: "ssh_public_key is a directory",
        edits: &[("operator_cidr = \"127.0.0.0/8\"", "operator_cidr = \"127.0.0.0/8\"\nssh_public_key = \"keys\"")],
        template: None,
        files: &[("keys/", "")],
        line_of: "ssh_public_key",
        file: "regions.toml",
        field: "access.ssh_public_key",
        says: &["is a directory"],
        hides: &[],
    },
    Case {
        name: "empty instance type",
        edits: &[("app = \"t3.medium\"", "app = \"\"")],
        template: None,
        files: NO_FILES,
        line_of: "app = \"\"",
        file: "regions.toml",
        field: "region.0.instance_types.app",
        says: &["not an EC2 instance type", "t3.medium"],
        hides: &[],
    },
    Case {
        name: "ami id not hex",
        edits: &[("ami = { name = \"debian-12-amd64-*\", owner = \"136693071363\" }", "ami = { id = \"ami-nothex!\" }")],
        template: None,
        files: NO_FILES,
        line_of: "ami-nothex",
        file: "regions.toml",
        field: "region.0.ami",
        says: &["not an AMI id", "hex"],
        hides: &[],
    },
    Case {
        name: "ami in neither form",
        edits: &[(
            "ami = { name = \"debian-12-amd64-*\", owner = \"136693071363\" }",
            "ami = { id = \"ami-12345678\", owner = \"099720109477\" }",
        )],
        template: None,
        files: NO_FILES,
        line_of: "ami-12345678",
        file: "regions.toml",
        field: "region.0.ami",
        says: &["{ id = \"ami-…\" }", "{ name = \"…\", owner = \"…\" }"],
        hides: &["untagged"],
    },
    Case {
        name: "dns label with a trailing hyphen",
        edits: &[("zone = \"cfgtest.test.internal\"", "zone = \"cfgtest-.test.internal\"")],
        template: None,
        files: NO_FILES,
        line_of: "zone = ",
        file: "regions.toml",
        field: "dns.zone",
        says: &["not a DNS name", "fix:"],
        hides: &[],
    },
    Case {
        name: "dns name over 253 characters",
        edits: &[("zone = \"cfgtest.test.internal\"", LONG_ZONE_EDIT)],
        template: None,
        files: NO_FILES,
        line_of: "zone = ",
        file: "regions.toml",
        field: "dns.zone",
        says: &["not a DNS name", "253"],
        hides: &[],
    },
    Case {
        name: "ssh user longer than linux allows",
        edits: &[("ssh_user = \"root\"", "ssh_user = \"uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu\"")],
        template: None,
        files: NO_FILES,
        line_of: "ssh_user = \"uuu",
        file: "regions.toml",
        field: "region.0.ssh_user",
        says: &["not a Linux user name", "32"],
        hides: &[],
    },
    Case {
        name: "vpc in loopback",
        edits: &[("10.50.0.0/16", "127.50.0.0/16")],
        template: None,
        files: NO_FILES,
        line_of: "127.50.0.0/16",
        file: "regions.toml",
        field: "region.0.vpc_cidr",
        says: &["loopback", "fix:"],
        hides: &[],
    },
    Case {
        name: "vpc in multicast",
        edits: &[("10.60.0.0/16", "224.60.0.0/16")],
        template: None,
        files: NO_FILES,
        line_of: "224.60.0.0/16",
        file: "regions.toml",
        field: "region.1.vpc_cidr",
        says: &["multicast"],
        hides: &[],
    },
    Case {
        name: "cidr with leading zeros",
        edits: &[("10.50.0.0/16", "10.050.0.0/16")],
        template: None,
        files: NO_FILES,
        line_of: "10.050.0.0/16",
        file: "regions.toml",
        field: "region.0.vpc_cidr",
        says: &["leading zero"],
        hides: &[],
    },
    Case {
        name: "template port the service user cannot bind",
        edits: &[("template = \"compact\"", "template = \"lowport\"")],
        template: Some(("lowport", &[("gateway_http = 8080", "gateway_http = 80")])),
        files: NO_FILES,
        line_of: "gateway_http = 80",
        file: "lowport.toml",
        field: "ports.gateway_http",
        says: &["below 1024", "fix:"],
        hides: &[],
    },
    Case {
        name: "more hosts per az than the subnet holds",
        edits: &[("template = \"compact\"", "template = \"crowded\""), ("10.50.0.0/16", "10.50.0.0/24")],
        template: Some((
            "crowded",
            &[("count = 3\ninstance_type = \"app\"", "count = 64\ninstance_type = \"app\""), ("[[hosts]]\nrole = \"db\"", CROWDED_GROUPS)],
        )),
        files: NO_FILES,
        line_of: "10.50.0.0/24",
        file: "regions.toml",
        field: "region.0.vpc_cidr",
        says: &["usable addresses", "fix:"],
        hides: &[],
    },
    Case {
        name: "tls: a certificate file that does not exist",
        edits: &[("[endpoint]", "[tls]\ncert_file = \"missing.pem\"\nkey_file = \"key.pem\"\n\n[endpoint]")],
        template: None,
        files: NO_FILES,
        line_of: "cert_file = ",
        file: "regions.toml",
        field: "tls.cert_file",
        says: &["cannot read", "missing.pem", "fix:"],
        hides: &[],
    },
    Case {
        name: "tls: a certificate path that is a directory",
        edits: &[("[endpoint]", "[tls]\ncert_file = \"certs\"\nkey_file = \"key.pem\"\n\n[endpoint]")],
        template: None,
        files: &[("certs/", "")],
        line_of: "cert_file = ",
        file: "regions.toml",
        field: "tls.cert_file",
        says: &["is a directory", "PEM"],
        hides: &[],
    },
    Case {
        name: "tls: a certificate that does not cover the API name",
        edits: &[("[endpoint]", "[tls]\ncert_file = \"other.crt\"\nkey_file = \"other.crt.key\"\n\n[endpoint]")],
        template: None,
        files: &[("other.crt", "SELF_SIGNED api.other.example")],
        line_of: "cert_file = ",
        file: "regions.toml",
        field: "tls.cert_file",
        says: &["does not cover api.cfgtest.test.internal", "api.other.example", "subjectAltName"],
        hides: &["PRIVATE KEY"],
    },
    Case {
        name: "tls: a key that is not the certificate's",
        edits: &[("[endpoint]", "[tls]\ncert_file = \"a.crt\"\nkey_file = \"b.crt.key\"\n\n[endpoint]")],
        template: None,
        files: &[("a.crt", "SELF_SIGNED api.cfgtest.test.internal"), ("b.crt", "SELF_SIGNED api.cfgtest.test.internal")],
        line_of: "key_file = ",
        file: "regions.toml",
        field: "tls.key_file",
        says: &["not the certificate's"],
        hides: &["PRIVATE KEY"],
    },
    Case {
        name: "tls: none on AWS",
        edits: &[("url = \"http://127.0.0.1:ENDPOINT_PORT\"\n", ""), ("health_target = \"private_ip\"", "health_target = \"public_ip\"")],
        template: None,
        files: NO_FILES,
        line_of: "api_record = ",
        file: "regions.toml",
        field: "tls",
        says: &["HTTPS only", "cert_file"],
        hides: &[],
    },
    Case {
        name: "a private health target against AWS's own endpoints",
        edits: &[("url = \"http://127.0.0.1:ENDPOINT_PORT\"\n", "")],
        template: None,
        files: NO_FILES,
        line_of: "health_target = ",
        file: "regions.toml",
        field: "endpoint.health_target",
        says: &["never see a private address", "public_ip"],
        hides: &[],
    },
    Case {
        name: "endpoint with a path",
        edits: &[("ENDPOINT_PORT\"", "ENDPOINT_PORT/api\"")],
        template: None,
        files: NO_FILES,
        line_of: "url = ",
        file: "regions.toml",
        field: "endpoint.url",
        says: &["path", "scheme://host[:port]"],
        hides: &[],
    },
    Case {
        name: "endpoint without a host",
        edits: &[("http://127.0.0.1:ENDPOINT_PORT", "http://:ENDPOINT_PORT")],
        template: None,
        files: NO_FILES,
        line_of: "url = ",
        file: "regions.toml",
        field: "endpoint.url",
        says: &["host"],
        hides: &[],
    },
    Case {
        name: "endpoint port out of range",
        edits: &[("http://127.0.0.1:ENDPOINT_PORT", "http://127.0.0.1:70000")],
        template: None,
        files: NO_FILES,
        line_of: "url = ",
        file: "regions.toml",
        field: "endpoint.url",
        says: &["port"],
        hides: &[],
    },
    Case {
        name: "endpoint with spaces",
        edits: &[("http://127.0.0.1:ENDPOINT_PORT", "http://127.0.0.1 :ENDPOINT_PORT")],
        template: None,
        files: NO_FILES,
        line_of: "url = ",
        file: "regions.toml",
        field: "endpoint.url",
        says: &["spaces"],
        hides: &[],
    },
    Case {
        name: "endpoint credentials are never printed",
        edits: &[("http://127.0.0.1:ENDPOINT_PORT", "http://admin:hunter2@127.0.0.1:ENDPOINT_PORT/x")],
        template: None,
        files: NO_FILES,
        line_of: "url = ",
        file: "regions.toml",
        field: "endpoint.url",
        says: &["***@127.0.0.1"],
        hides: &["hunter2"],
    },
    Case {
        name: "webhook without a host",
        edits: &[("[[region]]", "[engine]\nwebhook_urls = [\"https:///hook\"]\n\n[[region]]")],
        template: None,
        files: NO_FILES,
        line_of: "webhook_urls",
        file: "regions.toml",
        field: "engine.webhook_urls.0",
        says: &["no host"],
        hides: &[],
    },
    Case {
        name: "gateway probes too rare for the leader step-down",
        edits: &[("[[region]]", "[engine]\ngateway_probe_interval_ms = 2000\n\n[[region]]")],
        template: None,
        files: NO_FILES,
        line_of: "gateway_probe_interval_ms",
        file: "regions.toml",
        field: "engine.gateway_probe_interval_ms",
        says: &["50..=500 ms", "gives up its partitions", "use e.g. 200"],
        hides: &[],
    },
    Case {
        name: "bastion that starts with a dash",
        edits: &[("ssh_user = \"root\"\nami", "ssh_user = \"root\"\nbastion = \"-oProxyCommand=touch /tmp/x\"\nami")],
        template: None,
        files: NO_FILES,
        line_of: "bastion = ",
        file: "regions.toml",
        field: "region.0.bastion",
        says: &["not host or host:port"],
        hides: &[],
    },
    Case {
        name: "misspelt module in the ports table",
        edits: &[("template = \"compact\"", "template = \"typo\"")],
        template: Some(("typo", &[("otc = 7102", "matchng = 7105\notc = 7102")])),
        files: NO_FILES,
        line_of: "matchng",
        file: "typo.toml",
        field: "ports.modules.matchng",
        says: &["not a module", "matching, otc, contract and wallet"],
        hides: &[],
    },
    // --- issue 15: refused, now with the field and a fix of its own ---------------------------
    Case {
        name: "a type error names the field and what it takes",
        edits: &[("record_ttl_s = 10", "record_ttl_s = \"10\"")],
        template: None,
        files: NO_FILES,
        line_of: "record_ttl_s",
        file: "regions.toml",
        field: "dns.record_ttl_s",
        says: &["whole number", "record_ttl_s = 10"],
        hides: &["expected i64"],
    },
    Case {
        name: "a misspelt instance_types key is blamed on the user's file",
        edits: &[("app = \"t3.medium\"", "ap = \"t3.medium\"")],
        template: None,
        files: NO_FILES,
        line_of: "ap = \"t3.medium\"",
        file: "regions.toml",
        field: "region.0.instance_types",
        says: &["no instance type for the host group \"app\"", "fix:"],
        hides: &["built-in"],
    },
];

/// The last line containing `needle` (edits land on the later of two similar lines).
fn line_of(src: &str, needle: &str) -> usize {
    src.lines().collect::<Vec<_>>().iter().rposition(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not in source")) + 1
}

/// A listener that counts the connections made to it (and closes each): the "AWS API".
struct CountingEndpoint {
    port: u16,
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingEndpoint {
    fn start() -> CountingEndpoint {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(c);
            }
        });
        CountingEndpoint { port, seen }
    }
    fn url(&self) -> String {
        ENDPOINT.replace("ENDPOINT_PORT", &self.port.to_string())
    }
    fn calls(&self) -> usize {
        self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A file body `SELF_SIGNED <dns name>` makes (with openssl) a self-signed certificate for
/// that name at the file's path, and its key at `<path>.key`: no key material in the repository.
fn write_files(dir: &std::path::Path, files: &[(&str, &str)]) {
    for (name, body) in files {
        match (name.strip_suffix('/'), body.strip_prefix("SELF_SIGNED ")) {
            (Some(d), _) => std::fs::create_dir_all(dir.join(d)).unwrap(),
            (None, Some(dns)) => self_signed(&dir.join(name), dns),
            (None, None) => std::fs::write(dir.join(name), body).unwrap(),
        }
    }
}

fn self_signed(cert: &std::path::Path, dns: &str) {
    let key = format!("{}.key", cert.display());
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
        .args(["-subj", &format!("/CN={dns}"), "-addext", &format!("subjectAltName=DNS:{dns}"), "-keyout", &key, "-out"])
        .arg(cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_invalid_config_is_refused_with_location_and_fix_before_any_api_call() {
    let endpoint = CountingEndpoint::start();
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        let mut src = regions_toml("cfgtest", "compact", ENDPOINT);
        for (from, to) in case.edits {
            assert!(src.contains(from), "{}: edit {from:?} does not apply", case.name);
            src = src.replacen(from, to, 1);
        }
        let src = src.replace("ENDPOINT_PORT", &endpoint.port.to_string());
        let cfg = dir.path().join("regions.toml");
        std::fs::write(&cfg, &src).unwrap();
        write_files(dir.path(), case.files);
        let mut located_src = src.clone();
        if let Some((name, edits)) = case.template {
            let mut body = COMPACT.to_string();
            for (from, to) in edits {
                assert!(body.contains(from), "{}: template edit {from:?} does not apply", case.name);
                body = body.replacen(from, to, 1);
            }
            std::fs::create_dir_all(dir.path().join("templates")).unwrap();
            std::fs::write(dir.path().join("templates").join(format!("{name}.toml")), &body).unwrap();
            if case.file != "regions.toml" {
                located_src = body;
            }
        }
        let before = endpoint.calls();
        let out = provision_cmd(&cfg, &["plan"]).output().unwrap();
        let err = stderr(&out);
        let want_loc = format!("{}:{}:", case.file, line_of(&located_src, case.line_of));
        let mut problems = Vec::new();
        if out.status.code() != Some(1) {
            problems.push(format!("exit code {:?}, want 1", out.status.code()));
        }
        if endpoint.calls() != before || err.contains("cannot reach") {
            problems.push("an API call was made".to_string());
        }
        if !err.contains(&want_loc) {
            problems.push(format!("no location {want_loc}"));
        }
        if !err.contains(&format!(": `{}`:", case.field)) {
            problems.push(format!("does not name the field `{}`", case.field));
        }
        for s in case.says {
            if !err.contains(s) {
                problems.push(format!("does not say {s:?}"));
            }
        }
        for s in case.hides {
            if err.contains(s) {
                problems.push(format!("shows {s:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n---\n{err}", case.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), CASES.len(), failures.join("\n\n"));
}

#[test]
fn valid_config_reaches_the_endpoint_and_names_it_when_down() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("regions.toml");
    std::fs::write(&cfg, regions_toml("cfgtest", "compact", "http://127.0.0.1:9")).unwrap();
    let out = provision_cmd(&cfg, &["plan"]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot reach the AWS endpoint http://127.0.0.1:9"), "{err}");
    // Not LocalStack's port: the fix is the endpoint setting, not "start LocalStack".
    assert!(err.contains("correct `endpoint.url`"), "{err}");
    assert!(!err.contains("DispatchFailure") && !err.contains("ConnectorError"), "the SDK's debug text: {err}");
}

#[test]
fn failover_commands_refuse_bad_arguments_before_any_api_call() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("regions.toml");
    std::fs::write(&cfg, regions_toml("cfgtest", "compact", "http://127.0.0.1:9")).unwrap();
    let cases: [(&[&str], &[&str]); 4] = [
        (&["failover", "--to", "eu-nowhere-1"], &["\"eu-nowhere-1\" is not a region", "us-east-1, us-west-2"]),
        (&["drill", "--unplanned"], &["needs a way to do it", "--lab"]),
        (&["drill", "--db-leader"], &["--lab"]),
        (&["watch", "--failures", "1"], &["--failures"]),
    ];
    for (args, says) in cases {
        let out = provision_cmd(&cfg, args).output().unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!err.contains("cannot reach the AWS endpoint"), "{args:?} called the API before refusing: {err}");
        for s in says {
            assert!(err.contains(s), "{args:?} does not say {s:?}: {err}");
        }
    }
}

/// Valid edge cases are accepted: the command gets past validation and calls the API.
#[test]
fn crlf_bom_and_a_key_next_to_the_config_are_accepted() {
    let endpoint = CountingEndpoint::start();
    let key = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let public = key.public_key().to_openssh().unwrap();
    let base = regions_toml("cfgtest", "compact", &endpoint.url());
    let with_key = base.replacen("operator_cidr = \"127.0.0.0/8\"", "operator_cidr = \"127.0.0.0/8\"\nssh_public_key = \"id.pub\"", 1);
    let cases = [
        ("crlf line endings", base.replace('\n', "\r\n")),
        ("a byte order mark", format!("\u{feff}{base}")),
        ("a relative key path next to the config", with_key),
    ];
    for (name, src) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("id.pub"), format!("{public}\n")).unwrap();
        let cfg = dir.path().join("regions.toml");
        std::fs::write(&cfg, src).unwrap();
        let before = endpoint.calls();
        // Run from elsewhere: a relative key path is the config directory's, not the cwd's.
        let out = provision_cmd(&cfg, &["plan"]).current_dir("/").output().unwrap();
        let err = stderr(&out);
        assert!(endpoint.calls() > before, "{name}: refused before any API call: {err}");
        assert!(err.contains("cannot reach the AWS endpoint"), "{name}: {err}");
    }
}

/// What the file says is echoed short, escaped, and without credentials.
#[test]
fn errors_echo_values_short_escaped_and_without_credentials() {
    let endpoint = CountingEndpoint::start();
    let base = regions_toml("cfgtest", "compact", &endpoint.url());
    let huge = "x".repeat(10 << 20);
    let cases: [(&str, String, &[&str]); 3] = [
        ("a 10 MB value", base.replacen("project = \"cfgtest\"", &format!("project = \"{huge}\""), 1), &[]),
        ("an escape sequence", base.replacen("project = \"cfgtest\"", "project = \"\\u001b[2Jx\"", 1), &["\u{1b}"]),
        (
            "credentials in a valid endpoint",
            base.replace(&endpoint.url(), &format!("http://admin:hunter2@127.0.0.1:{}", endpoint.port)),
            &["hunter2"],
        ),
    ];
    for (name, src, hidden) in cases {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("regions.toml");
        std::fs::write(&cfg, src).unwrap();
        let out = provision_cmd(&cfg, &["plan"]).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(err.len() < 4096, "{name}: a {} byte error", err.len());
        for h in hidden {
            assert!(!err.contains(h), "{name}: shows {h:?}: {err}");
        }
    }
}

/// The config file itself: an explicit path is never replaced by the default, and a file
/// that is not text says so.
#[test]
fn the_config_file_is_the_one_named_or_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let out = provision_cmd(&missing, &["plan"]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nope.toml") && err.contains("cannot read"), "{err}");
    assert!(!err.contains("using the embedded"), "fell back to the embedded config: {err}");

    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(&latin1, b"project = \"caf\xe9\"\n").unwrap();
    let err = stderr(&provision_cmd(&latin1, &["plan"]).output().unwrap());
    assert!(err.contains("not UTF-8") && err.contains("save the file as UTF-8"), "{err}");

    let out = provision_cmd(dir.path(), &["plan"]).output().unwrap();
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));

    // No --config and no ./regions.toml: the embedded file, and stderr says so.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_provision"))
        .args(["plan"])
        .current_dir(dir.path())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(stderr(&out).contains("using the embedded regions.toml"), "{}", stderr(&out));
}
