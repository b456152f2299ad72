//! One probe of a check's endpoint, as a Route53 checker makes it.

use super::config::{CheckConfig, Kind};
use super::verdict::Observation;
use std::time::{Duration, SystemTime};

/// Route53's limits: connect within 4 s and answer within 2 s (HTTP/HTTPS); connect within 10 s (TCP).
pub const HTTP_CONNECT_TIMEOUT_MS: u64 = 4000;
pub const HTTP_ANSWER_TIMEOUT_MS: u64 = 2000;
pub const TCP_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// STR_MATCH looks for the search string within this many bytes of the body.
pub const SEARCH_BODY_BYTES: usize = 5120;

pub const TIMED_OUT: &str = "Failure: Connection timed out. The endpoint or the internet connection is down, or requests are being blocked by your firewall. See https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/dns-failover-router-firewall-rules.html";
pub const REFUSED: &str = "Failure: Connection refused. The endpoint rejected the connection attempt or is not listening on the port.";

/// The checkers' HTTP client: no pooling, no redirects followed, no certificate validation.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .connect_timeout(Duration::from_millis(HTTP_CONNECT_TIMEOUT_MS))
        .build()
        .unwrap_or_default()
}

pub fn observe(ok: bool, status: impl Into<String>) -> Observation {
    Observation { ok, status: status.into(), at: SystemTime::now() }
}

/// What a checker whose network is cut sees.
pub fn blind() -> Observation {
    observe(false, TIMED_OUT)
}

pub async fn probe(client: &reqwest::Client, c: &CheckConfig) -> Observation {
    let Some(host) = c.ip.clone().or_else(|| c.fqdn.clone()) else {
        return observe(false, "Failure: DNS resolution failed: no IP address or domain name to check.");
    };
    match c.kind {
        Kind::Tcp => tcp(&host, c.port).await,
        Kind::Http | Kind::Https => http(client, c, &host).await,
        Kind::Calculated | Kind::Unprobed => observe(true, "Success"),
    }
}

async fn tcp(host: &str, port: u16) -> Observation {
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(Duration::from_millis(TCP_CONNECT_TIMEOUT_MS), connect).await {
        Ok(Ok(_)) => observe(true, "Success: TCP connection established."),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => observe(false, REFUSED),
        Ok(Err(e)) => observe(false, format!("Failure: {e}")),
        Err(_) => observe(false, TIMED_OUT),
    }
}

async fn http(client: &reqwest::Client, c: &CheckConfig, host: &str) -> Observation {
    let scheme = if c.kind == Kind::Https { "https" } else { "http" };
    let host_in_url = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    let url = format!("{scheme}://{host_in_url}:{}{}", c.port, c.path);
    let mut req = client.get(&url).header(http::header::USER_AGENT, "Amazon-Route53-Health-Check-Service (ref labfront)");
    if let (Some(fqdn), Some(_)) = (&c.fqdn, &c.ip) {
        req = req.header(http::header::HOST, fqdn.as_str());
    }
    let deadline = Duration::from_millis(HTTP_CONNECT_TIMEOUT_MS + HTTP_ANSWER_TIMEOUT_MS);
    let result = tokio::time::timeout(deadline, async {
        let resp = req.send().await?;
        let status = resp.status();
        let matched = match &c.search {
            Some(s) => Some(body_contains(resp, s).await?),
            None => None,
        };
        Ok::<_, reqwest::Error>((status, matched))
    })
    .await;
    match result {
        Ok(Ok((status, matched))) => verdict(status, matched),
        Ok(Err(e)) => failure(&e),
        Err(_) => observe(false, TIMED_OUT),
    }
}

async fn body_contains(mut resp: reqwest::Response, search: &str) -> Result<bool, reqwest::Error> {
    let mut body = Vec::with_capacity(SEARCH_BODY_BYTES);
    while body.len() < SEARCH_BODY_BYTES {
        match resp.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk[..chunk.len().min(SEARCH_BODY_BYTES - body.len())]),
            None => break,
        }
    }
    Ok(String::from_utf8_lossy(&body).contains(search))
}

fn verdict(status: http::StatusCode, matched: Option<bool>) -> Observation {
    let text = format!("HTTP Status Code {}, {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    let ok_status = status.is_success() || status.is_redirection();
    match (ok_status, matched) {
        (true, None | Some(true)) => observe(true, format!("Success: {text}")),
        (true, Some(false)) => observe(false, format!("Failure: Search string not found in the response body. {text}")),
        (false, _) => observe(false, format!("Failure: {text}")),
    }
}

fn failure(e: &reqwest::Error) -> Observation {
    if e.is_timeout() {
        return observe(false, TIMED_OUT);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return observe(false, REFUSED);
            }
            if io.kind() == std::io::ErrorKind::TimedOut {
                return observe(false, TIMED_OUT);
            }
        }
        source = s.source();
    }
    observe(false, format!("Failure: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_as_route53_reports_them() {
        assert_eq!(verdict(http::StatusCode::OK, None).status, "Success: HTTP Status Code 200, OK");
        assert!(verdict(http::StatusCode::FOUND, None).ok);
        let down = verdict(http::StatusCode::SERVICE_UNAVAILABLE, None);
        assert_eq!((down.ok, down.status.as_str()), (false, "Failure: HTTP Status Code 503, Service Unavailable"));
        assert!(!verdict(http::StatusCode::OK, Some(false)).ok);
    }
}
