//! Posts failover events to the admin webhooks: JSON, a bounded number of tries, a bounded
//! wait each; a webhook that fails is reported, never fatal.

use std::time::Duration;

use serde::Serialize;

const TRIES_MAX: u32 = 3;
const TIMEOUT_MS: u64 = 3_000;
const BACKOFF_MS: u64 = 300;

#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Scheme, host and port only: a path can carry a token.
    pub url: String,
    pub ok: bool,
    pub tries: u32,
    pub detail: String,
}

fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}{}", u.scheme(), u.host_str().unwrap_or("?"), u.port().map(|p| format!(":{p}")).unwrap_or_default()),
        Err(_) => "(invalid url)".into(),
    }
}

pub async fn post_all(urls: &[String], event: &serde_json::Value) -> Vec<Delivery> {
    let client = reqwest::Client::builder().timeout(Duration::from_millis(TIMEOUT_MS)).build().expect("http client");
    let mut out = Vec::new();
    for url in urls {
        let mut d = Delivery { url: redacted(url), ok: false, tries: 0, detail: String::new() };
        while d.tries < TRIES_MAX && !d.ok {
            d.tries += 1;
            match client.post(url).json(event).send().await {
                Ok(r) if r.status().is_success() => d.ok = true,
                Ok(r) => d.detail = format!("HTTP {}", r.status().as_u16()),
                Err(e) => d.detail = if e.is_timeout() { "timed out".into() } else { "could not connect".into() },
            }
            if !d.ok {
                tokio::time::sleep(Duration::from_millis(BACKOFF_MS * d.tries as u64)).await;
            }
        }
        if d.ok {
            d.detail = "delivered".into();
        }
        out.push(d);
    }
    out
}
