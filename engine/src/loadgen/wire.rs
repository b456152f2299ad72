//! The load generator's HTTP/1.1 client: one keep-alive connection per worker, one write
//! and (usually) one read per request. The generator shares the machine with what it
//! measures, so it must be cheap (as wrk or h2load are): reqwest cost it about 40 us of CPU
//! per request, a fifth of the whole machine at 10k orders/s. Plain `http://host:port`
//! only; every response must carry `content-length` (the gateway's do).

use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Conn {
    authority: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// `base` is `http://host:port` (a trailing slash is ignored).
    pub fn new(base: &str) -> io::Result<Conn> {
        let authority = base
            .strip_prefix("http://")
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{base}: only http:// URLs are supported")))?
            .trim_end_matches('/')
            .to_string();
        Ok(Conn { authority, stream: None, buf: Vec::with_capacity(4096) })
    }

    /// POSTs a JSON body; returns the status and the response body. On any error the
    /// connection is dropped and the next call opens a new one.
    pub async fn post_json(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> io::Result<(u16, Vec<u8>)> {
        let r = self.exchange(path, headers, body).await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    /// Opens the connection now (a request opens it when needed).
    pub async fn connect(&mut self) -> io::Result<()> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.authority).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.buf.clear();
        }
        Ok(())
    }

    async fn exchange(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> io::Result<(u16, Vec<u8>)> {
        self.connect().await?;
        let stream = self.stream.as_mut().expect("connected");
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.authority,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        stream.write_all(req.as_bytes()).await?;
        loop {
            if let Some((status, head_len, body_len)) = parse_head(&self.buf)? {
                while self.buf.len() < head_len + body_len {
                    read_more(stream, &mut self.buf).await?;
                }
                let body = self.buf[head_len..head_len + body_len].to_vec();
                self.buf.drain(..head_len + body_len);
                return Ok((status, body));
            }
            read_more(stream, &mut self.buf).await?;
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by the server"));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Status, head length and body length once the whole head is in `buf`.
fn parse_head(buf: &[u8]) -> io::Result<Option<(u16, usize, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status =
        lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse::<u16>().ok()).ok_or_else(|| bad("bad status line"))?;
    let mut len = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse::<usize>().ok();
            }
        }
    }
    let len = len.ok_or_else(|| bad("response without content-length"))?;
    Ok(Some((status, end + 4, len)))
}

fn bad(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_head;

    #[test]
    fn heads_parse_only_when_complete() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n").unwrap(), None);
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_head(r).unwrap(), Some((200, r.len() - 2, 2)));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
