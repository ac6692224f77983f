//! The upstream's own HTTP/1.1 client: keep-alive connections (plain or TLS) pooled per origin,
//! each request written and its answer read on the caller's task. No connection task, no
//! channel, no URI parsing per request: profiles of the general client showed those cost more
//! than everything else timgate does to a request (issue 20).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::exchange::{Answer, Conn, Failed, Stream};
use crate::error::Error;

/// Idle connections kept per origin.
const MAX_IDLE: usize = 512;
/// An idle connection older than this is closed rather than reused (Tencent's side closes idle
/// keep-alive connections; reusing one it is closing would fail the attempt).
const IDLE_FOR: Duration = Duration::from_secs(50);
/// TCP keep-alive probes on upstream connections start after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Where a base URL points: scheme, host, port, and the path before `/v4/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Origin {
    tls: bool,
    host: String,
    port: u16,
    /// `host` or `host:port` as written: the `Host` header.
    authority: String,
    /// The base URL's path, without a trailing `/` (usually empty).
    prefix: String,
}

impl Origin {
    /// Parses `http[s]://host[:port][/path]`.
    pub(super) fn parse(base: &str) -> Result<Origin, Error> {
        let bad = || Error::Internal(format!("upstream base URL {base:?} is not http(s)://host"));
        let (tls, rest) = match base.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            _ => return Err(bad()),
        };
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        Ok(Origin {
            tls,
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            prefix: prefix.trim_end_matches('/').to_string(),
        })
    }

    /// The `Host` header's value.
    pub(super) fn authority(&self) -> &str {
        &self.authority
    }

    /// The path before `/v4/`.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// An idle connection: where it goes, and since when it has waited.
type Idle = (Arc<Origin>, Conn, Instant);

/// Connections to origins, made on demand and kept while idle.
#[derive(Debug, Clone)]
pub(super) struct Client {
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    idle: Arc<Mutex<Vec<Idle>>>,
}

impl Client {
    /// A client trusting `tls`'s roots, giving up on a connect after `connect_timeout`.
    pub(super) fn new(mut tls: rustls::ClientConfig, connect_timeout: Duration) -> Client {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Client {
            tls: Arc::new(tls),
            connect_timeout,
            idle: Arc::default(),
        }
    }

    /// An open connection to `origin`: the newest idle one that is still open, else a new one.
    /// A failed connect is [`Error::UpstreamConnect`]: nothing was sent.
    pub(super) async fn checkout(&self, origin: &Arc<Origin>) -> Result<Conn, Error> {
        loop {
            let found = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                idle.retain(|(_, _, since)| now.duration_since(*since) < IDLE_FOR);
                let at = idle.iter().rposition(|(o, _, _)| o == origin);
                at.map(|at| idle.swap_remove(at).1)
            };
            match found {
                Some(mut conn) => {
                    if conn.is_open() {
                        return Ok(conn);
                    }
                }
                None => break,
            }
        }
        self.connect_new(origin).await
    }

    /// A new connection to `origin`, within the connect timeout.
    pub(super) async fn connect_new(&self, origin: &Origin) -> Result<Conn, Error> {
        let timeout = self.connect_timeout;
        tokio::time::timeout(timeout, self.connect(origin))
            .await
            .map_err(|_| Error::UpstreamConnect(format!("connect timed out after {timeout:?}")))?
    }

    /// Writes `head` and `body` to `origin` on a pooled connection and reads the answer (at most
    /// `max` body bytes); the connection goes back to the pool when it may carry another. A
    /// pooled connection the server had closed read nothing of the request (its body never
    /// arrived whole), so the request goes once more on a new connection.
    pub(super) async fn round_trip(
        &self,
        origin: &Arc<Origin>,
        head: &[u8],
        body: &[u8],
        max: usize,
    ) -> Result<Answer, Error> {
        let mut conn = self.checkout(origin).await?;
        let mut answer = conn.exchange(head, body, max).await;
        if let Err(Failed::Write(_)) = &answer {
            conn = self.connect_new(origin).await?;
            answer = conn.exchange(head, body, max).await;
        }
        match answer {
            Ok(answer) => {
                if answer.reusable {
                    self.checkin(origin, conn);
                }
                Ok(answer)
            }
            Err(Failed::Write(e)) => Err(Error::UpstreamUnreachable(format!("sending: {e}"))),
            Err(Failed::Read(e)) => Err(Error::UpstreamUnreachable(format!(
                "reading the answer: {e}"
            ))),
        }
    }

    /// Puts a connection whose last answer was read whole back for the next attempt.
    pub(super) fn checkin(&self, origin: &Arc<Origin>, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((origin.clone(), conn, Instant::now()));
        }
    }

    async fn connect(&self, origin: &Origin) -> Result<Conn, Error> {
        let failed = |e: std::io::Error| {
            Error::UpstreamConnect(format!("{}:{}: {e}", origin.host, origin.port))
        };
        let mut last = None;
        let mut tcp = None;
        for addr in tokio::net::lookup_host((origin.host.as_str(), origin.port))
            .await
            .map_err(failed)?
        {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp =
            tcp.ok_or_else(|| failed(last.unwrap_or_else(|| std::io::Error::other("no address"))))?;
        tcp.set_nodelay(true).map_err(failed)?;
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        socket2::SockRef::from(&tcp)
            .set_tcp_keepalive(&keepalive)
            .map_err(failed)?;
        if !origin.tls {
            return Ok(Conn::new(Stream::Plain(tcp)));
        }
        let name = ServerName::try_from(origin.host.clone())
            .map_err(|e| Error::UpstreamConnect(format!("{}: {e}", origin.host)))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| Error::UpstreamConnect(format!("TLS with {}: {e}", origin.host)))?;
        Ok(Conn::new(Stream::Tls(Box::new(tls))))
    }
}

#[cfg(test)]
mod tests {
    use super::Origin;

    #[test]
    fn origins_parse() {
        let o = Origin::parse("https://console.tim.qq.com").expect("parses");
        assert_eq!(
            (o.tls, o.host.as_str(), o.port, o.prefix()),
            (true, "console.tim.qq.com", 443, "")
        );
        let o = Origin::parse("http://127.0.0.1:8080/base/").expect("parses");
        assert_eq!(
            (o.tls, o.host.as_str(), o.port, o.authority(), o.prefix()),
            (false, "127.0.0.1", 8080, "127.0.0.1:8080", "/base")
        );
        let o = Origin::parse("http://[::1]:9/").expect("parses");
        assert_eq!((o.host.as_str(), o.port), ("::1", 9));
        let o = Origin::parse("https://[::1]").expect("parses");
        assert_eq!((o.host.as_str(), o.port), ("::1", 443));
        for bad in ["ftp://x", "x", "http://", "http://h:port", "http://u:p@h"] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}
