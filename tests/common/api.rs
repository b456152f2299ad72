//! The public API as its clients reach it: HTTPS for the API name at a chosen gateway's
//! address, the certificate verified against the project's CA (made by `provision` for a
//! local cloud, kept in `.provision/<project>/secrets/tls_ca.pem` and the vault).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::lab::{assert_local, curl};
use super::Project;

/// The public port of the built-in templates.
pub const API_PORT: u16 = 8080;

#[derive(Clone)]
pub struct Api {
    pub name: String,
    pub ca_file: PathBuf,
}

impl Api {
    pub fn of(p: &Project) -> Api {
        let ca_file = p.dir.path().join(".provision").join(&p.name).join("secrets").join("tls_ca.pem");
        Api { name: format!("api.{}.test.internal", p.name), ca_file }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}:{API_PORT}{path}", self.name)
    }

    /// `method path` at gateway `ip` with curl: (HTTP status, body); status 0 when no HTTPS
    /// answer came (refused, timed out, or a certificate curl would not accept).
    pub fn call(&self, method: &str, ip: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
        assert_local(ip);
        let (ca, resolve, url) = (self.ca_file.display().to_string(), format!("{}:{API_PORT}:{ip}", self.name), self.url(path));
        curl(method, &["--cacert", &ca, "--resolve", &resolve, &url], headers, body)
    }

    /// A client whose API name resolves to `ip` only, trusting the project's CA only.
    pub fn client(&self, ip: &str, timeout: Duration) -> reqwest::Client {
        assert_local(ip);
        let ca = std::fs::read(&self.ca_file).unwrap_or_else(|e| panic!("{}: {e}", self.ca_file.display()));
        reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .resolve(&self.name, std::net::SocketAddr::new(ip.parse().unwrap(), API_PORT))
            .build()
            .unwrap()
    }
}

/// One client per gateway address, made when first asked for.
pub struct Clients {
    api: Api,
    timeout: Duration,
    by_ip: BTreeMap<String, reqwest::Client>,
}

impl Clients {
    pub fn new(api: Api, timeout: Duration) -> Clients {
        Clients { api, timeout, by_ip: BTreeMap::new() }
    }

    /// A POST of `body` to `path` at gateway `ip`.
    pub fn post(&mut self, ip: &str, path: &str, body: String) -> reqwest::RequestBuilder {
        let (api, timeout) = (&self.api, self.timeout);
        let c = self.by_ip.entry(ip.to_string()).or_insert_with(|| api.client(ip, timeout));
        c.post(api.url(path)).header("Content-Type", "application/json").body(body)
    }
}
