//! The upstream: a pooled keep-alive HTTPS client and one attempt at a signed request, timed out
//! as a whole, with the answer's `ErrorCode` read once for everyone downstream; the backup
//! domain while the main one cannot be reached (`failover`).

mod failover;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::tencent::codes;

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
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    domains: failover::Domains,
    request_timeout: Duration,
}

impl Upstream {
    /// Builds the client from `[tencent]` and `[upstream]`, showing in `metrics` which domain
    /// it uses.
    pub fn new(config: &Config, metrics: &Metrics) -> Result<Upstream, Error> {
        let tls = crate::tls::client_config(config.tencent.ca_file.as_deref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.upstream.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(50))
            .pool_max_idle_per_host(512)
            .build(https);
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
        let uri = format!("{base}/v4/{api}?{query}");
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| Error::Internal(format!("building the upstream request: {e}")))?;
        {
            let response = self.client.request(request).await.map_err(|e| {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    message = format!("{message}: {cause}");
                    source = cause.source();
                }
                // A failed connect sent nothing; anything later may have reached Tencent.
                if e.is_connect() {
                    Error::UpstreamConnect(message)
                } else {
                    Error::UpstreamUnreachable(message)
                }
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_REPLY_BYTES)
                .collect()
                .await
                .map_err(|e| Error::UpstreamUnreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            let code = codes::error_code(&body);
            Ok(Reply { status, body, code })
        }
    }
}
