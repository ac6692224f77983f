//! A POST to an endpoint that is not Tencent (the OTLP collector), on the upstream's own HTTP/1.1
//! client: a keep-alive connection reused while it lasts, TLS with the public roots and an
//! optional extra CA, the whole exchange within a timeout.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::client::{Client, Origin};
use crate::error::Error;

/// An answer larger than this is not a collector's.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Where POSTs go: one URL.
#[derive(Debug, Clone)]
pub struct Endpoint {
    client: Client,
    origin: Arc<Origin>,
    timeout: Duration,
}

impl Endpoint {
    /// An endpoint at `url` (`http[s]://host[:port]/path`), trusting `ca_file` besides the
    /// public roots, each POST (its connect included) within `timeout`.
    pub fn new(url: &str, ca_file: Option<&Path>, timeout: Duration) -> Result<Endpoint, Error> {
        let tls = crate::tls::client_config(ca_file)?;
        Ok(Endpoint {
            client: Client::new(tls, timeout),
            origin: Arc::new(Origin::parse(url)?),
            timeout,
        })
    }

    /// POSTs `body` as `content_type`; returns the answer's status and body.
    pub async fn post(
        &self,
        content_type: &str,
        body: &[u8],
    ) -> Result<(StatusCode, Bytes), Error> {
        let exchange = async {
            let origin = &self.origin;
            let path = match origin.prefix() {
                "" => "/",
                path => path,
            };
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                origin.authority(),
                body.len()
            );
            let answer = self
                .client
                .round_trip(origin, head.as_bytes(), body, MAX_ANSWER_BYTES)
                .await?;
            Ok((answer.status, answer.body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Error::UpstreamTimeout(self.timeout))?
    }
}
