//! The API front: a hyper HTTP/1.1 server (keep-alive) before LocalStack. Unsigned requests
//! pass through untouched (`/_front/*` goes to `control`); each signed AWS call goes through
//! fault -> health checkers -> validations -> eventual consistency -> LocalStack -> record
//! creates / filter listings.

use crate::aws::{Call, Reply};
use crate::faults::{Action, HANG_MS_MAX};
use crate::run::Front;
use bytes::Bytes;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

type Body = Full<Bytes>;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("reading the request: {0}")]
    Read(#[from] hyper::Error),
    #[error("connection reset on purpose (fault down or hang)")]
    Reset,
}

#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("bad backend uri: {0}")]
    Uri(#[from] http::Error),
    #[error("LocalStack unreachable: {0}")]
    Send(#[from] hyper_util::client::legacy::Error),
    #[error("reading LocalStack's answer: {0}")]
    Read(#[from] hyper::Error),
}

struct Proxy {
    front: Arc<Front>,
    client: Client<HttpConnector, Body>,
    backend: String,
}

pub async fn serve(front: Arc<Front>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(front.opts.listen).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
    let backend = front.opts.backend_url.trim_end_matches('/').to_string();
    let proxy = Arc::new(Proxy { front, client, backend });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let p = proxy.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| p.clone().handle(req, fd));
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
}

/// Makes the connection's close a reset (RST, no answer): the SDK sees a connection error.
fn reset(fd: RawFd) -> ProxyError {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: `fd` is the socket of the connection this request arrived on; hyper holds it open
    // while the request is served. SO_LINGER only changes how its close ends.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    ProxyError::Reset
}

fn reply(r: Reply) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(r.body)));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(r.content_type));
    resp
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    resp
}

/// Hop-by-hop headers and the length: the body is buffered and re-sent whole.
fn strip(headers: &mut HeaderMap) {
    for h in [header::CONNECTION, header::TRANSFER_ENCODING, header::CONTENT_LENGTH, header::EXPECT, header::UPGRADE] {
        headers.remove(h);
    }
    headers.remove("keep-alive");
}

impl Proxy {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, fd: RawFd) -> Result<Response<Body>, ProxyError> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        let call = Call::parse(&parts.method, &parts.uri, &parts.headers, &body);
        tracing::debug!(method = %parts.method, uri = %parts.uri, call = ?call.as_ref().map(|c| (&c.region, &c.service, &c.action)), "request");
        let Some(call) = call else {
            if parts.uri.path().starts_with("/_front/") {
                let (status, v) = crate::control::handle(&self.front, &parts.method, parts.uri.path(), &body);
                return Ok(json(status, v));
            }
            return Ok(self.pass(parts, body).await);
        };
        let agent =
            ["x-amz-user-agent", "user-agent"].iter().filter_map(|h| parts.headers.get(*h)?.to_str().ok()).collect::<Vec<_>>().join(" ");
        self.front.calls.record(&call, &agent);
        self.aws(parts, body, call, fd).await
    }

    async fn pass(&self, parts: http::request::Parts, body: Bytes) -> Response<Body> {
        match self.forward(parts, body).await {
            Ok((rparts, rbody)) => Response::from_parts(rparts, Full::new(rbody)),
            Err(e) => json(StatusCode::BAD_GATEWAY, serde_json::json!({"error": e.to_string()})),
        }
    }

    async fn aws(&self, parts: http::request::Parts, body: Bytes, call: Call, fd: RawFd) -> Result<Response<Body>, ProxyError> {
        if let Some(early) = self.before(&call, fd).await? {
            return Ok(early);
        }
        let (rparts, rbody) = match self.forward(parts, body).await {
            Ok(r) => r,
            Err(e) => return Ok(reply(crate::aws::error(&call.service, 503, "ServiceUnavailable", &e.to_string()))),
        };
        let consistency = &self.front.consistency;
        consistency.record(&call, rparts.status.as_u16(), &rbody);
        let rbody = consistency.filter(&call, rparts.status.as_u16(), &rbody).map(Bytes::from).unwrap_or(rbody);
        Ok(Response::from_parts(rparts, Full::new(rbody)))
    }

    /// Fault, checkers, validations, consistency: an answer of the front's own, or None to forward.
    async fn before(&self, call: &Call, fd: RawFd) -> Result<Option<Response<Body>>, ProxyError> {
        match self.front.faults.decide(&call.region, &call.service) {
            Action::Pass => {}
            Action::Down => return Err(reset(fd)),
            Action::Hang => {
                tokio::time::sleep(Duration::from_millis(HANG_MS_MAX)).await;
                return Err(reset(fd));
            }
            Action::Slow { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            Action::Reply(r) => return Ok(Some(reply(r))),
        }
        if let Some(r) = self.front.checkers.intercept(call).await {
            return Ok(Some(reply(r)));
        }
        if let Some(r) = self.front.quotas.intercept(call) {
            return Ok(Some(reply(r)));
        }
        if let Some(r) = crate::validate::check(&self.front, call).await {
            return Ok(Some(reply(r)));
        }
        Ok(self.front.consistency.refuse(call).map(reply))
    }

    async fn forward(&self, parts: http::request::Parts, body: Bytes) -> Result<(http::response::Parts, Bytes), ForwardError> {
        let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut req = Request::builder().method(parts.method).uri(format!("{}{pq}", self.backend)).body(Full::new(body))?;
        *req.headers_mut() = parts.headers;
        strip(req.headers_mut());
        let resp = self.client.request(req).await?;
        let (mut rparts, rbody) = resp.into_parts();
        let rbody = rbody.collect().await?.to_bytes();
        strip(&mut rparts.headers);
        Ok((rparts, rbody))
    }
}
