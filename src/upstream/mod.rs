//! The upstream: a pooled keep-alive HTTPS client of its own (`client`, `exchange`) and one attempt at a signed request, timed out
//! as a whole, with the answer's `ErrorCode` read once for everyone downstream; the backup
//! domain while the main one cannot be reached (`failover`).

mod chunked;
mod client;
mod endpoint;
mod exchange;
mod failover;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::config::Config;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::tencent::codes;

use client::{Client, Origin};
pub use endpoint::Endpoint;

/// Tencent refuses to produce answers over 1 MB (10018); anything far larger is not Tencent.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// Tencent's answer to one attempt.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status (200 unless something between us and Tencent failed).
    pub status: StatusCode,
    /// The body, passed to the caller unchanged.
    pub body: Bytes,
    /// `ErrorCode` from the body, when it is Tencent's shape.
    pub code: Option<i64>,
}

/// Where signed requests go, and the client that takes them there.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client,
    /// The main and backup domains, parsed once.
    origins: Arc<Vec<(Arc<str>, Arc<Origin>)>>,
    domains: failover::Domains,
    request_timeout: Duration,
}

impl Upstream {
    /// Builds the client from `[tencent]` and `[upstream]`, showing in `metrics` which domain
    /// it uses.
    pub fn new(config: &Config, metrics: &Metrics) -> Result<Upstream, Error> {
        let tls = crate::tls::client_config(config.tencent.ca_file.as_deref())?;
        let client = Client::new(tls, config.upstream.connect_timeout);
        let mut origins = Vec::new();
        for base in std::iter::once(&config.tencent.base_url).chain(&config.tencent.backup_url) {
            origins.push((Arc::from(base.as_str()), Arc::new(Origin::parse(base)?)));
        }
        if config.tencent.base_url.starts_with("http://") {
            let shown = crate::config::redact::credentials(&config.tencent.base_url);
            tracing::warn!(base_url = %shown, "Upstream is plain HTTP: for local testing only.");
        }
        let domains = failover::Domains::new(
            &config.tencent.base_url,
            config.tencent.backup_url.as_deref(),
            config.upstream.connect_timeout,
            metrics.upstream_backup.clone(),
        );
        Ok(Upstream {
            client,
            origins: Arc::new(origins),
            domains,
            request_timeout: config.upstream.request_timeout,
        })
    }

    /// Sends one attempt: `POST {base}/v4/{api}?{query}` with `body`, and reads the whole answer.
    /// When the main domain cannot be reached (nothing was sent), the attempt goes to the backup
    /// domain within the same timeout.
    pub async fn send(&self, api: &str, query: &str, body: Bytes) -> Result<Reply, Error> {
        let attempt = async {
            let base = self.domains.current();
            match self.attempt(base, api, query, body.clone()).await {
                Err(Error::UpstreamConnect(why)) => match self.domains.failed(base, &why) {
                    Some(backup) => self.attempt(&backup, api, query, body).await,
                    None => Err(Error::UpstreamConnect(why)),
                },
                other => other,
            }
        };
        tokio::time::timeout(self.request_timeout, attempt)
            .await
            .map_err(|_| Error::UpstreamTimeout(self.request_timeout))?
    }

    /// One attempt at `base`.
    async fn attempt(
        &self,
        base: &str,
        api: &str,
        query: &str,
        body: Bytes,
    ) -> Result<Reply, Error> {
        let origin = self
            .origins
            .iter()
            .find(|(b, _)| &**b == base)
            .map(|(_, o)| o.clone())
            .ok_or_else(|| Error::Internal(format!("no origin for {base}")))?;
        let length = body.len().to_string();
        let mut head = String::with_capacity(160 + api.len() + query.len());
        for part in [
            "POST ",
            origin.prefix(),
            "/v4/",
            api,
            "?",
            query,
            " HTTP/1.1\r\nhost: ",
            origin.authority(),
            "\r\ncontent-type: application/json\r\ncontent-length: ",
            &length,
            "\r\n\r\n",
        ] {
            head.push_str(part);
        }
        let answer = self
            .client
            .round_trip(&origin, head.as_bytes(), &body, MAX_REPLY_BYTES)
            .await?;
        let code = codes::error_code(&answer.body);
        Ok(Reply {
            status: answer.status,
            body: answer.body,
            code,
        })
    }
}
