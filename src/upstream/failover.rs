//! The backup domain: where attempts go while the main domain cannot be resolved or reached
//! (tencent-im-api.md §8.1), and the probe that brings them back once it can be.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::IntGauge;

/// How often the main domain is tried while attempts go to the backup.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The main and backup base URLs and which one is in use.
#[derive(Debug, Clone)]
pub(super) struct Domains {
    main: Arc<str>,
    backup: Option<Arc<str>>,
    on_backup: Arc<AtomicBool>,
    connect_timeout: Duration,
    /// `timgate_upstream_backup`.
    gauge: IntGauge,
}

impl Domains {
    /// `main`, and `backup` for when it fails.
    pub(super) fn new(
        main: &str,
        backup: Option<&str>,
        connect_timeout: Duration,
        gauge: IntGauge,
    ) -> Domains {
        gauge.set(0);
        Domains {
            main: main.into(),
            backup: backup.map(Arc::from),
            on_backup: Arc::new(AtomicBool::new(false)),
            connect_timeout,
            gauge,
        }
    }

    /// The base URL attempts go to now.
    pub(super) fn current(&self) -> &str {
        match (&self.backup, self.on_backup.load(Ordering::Relaxed)) {
            (Some(backup), true) => backup,
            _ => &self.main,
        }
    }

    /// An attempt to `base` could not connect (nothing was sent): if that was the main domain
    /// and there is a backup, attempts go there from now on until the main one answers a probe.
    /// Returns the backup to try this attempt on.
    pub(super) fn failed(&self, base: &str, why: &str) -> Option<Arc<str>> {
        let backup = self.backup.clone().filter(|_| base == &*self.main)?;
        if !self.on_backup.swap(true, Ordering::SeqCst) {
            self.gauge.set(1);
            tracing::warn!(
                main = %self.main,
                backup = %backup,
                error = %why,
                "Tencent's main domain cannot be reached: using its backup until it can."
            );
            tokio::spawn(self.clone().probe());
        }
        Some(backup)
    }

    /// Tries the main domain's host every [`PROBE_EVERY`] until it resolves and connects, then
    /// moves attempts back to it.
    async fn probe(self) {
        let Some(address) = authority(&self.main) else {
            return;
        };
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            let connect = tokio::net::TcpStream::connect(address.as_str());
            if let Ok(Ok(_)) = tokio::time::timeout(self.connect_timeout, connect).await {
                self.on_backup.store(false, Ordering::SeqCst);
                self.gauge.set(0);
                tracing::info!(main = %self.main, "Tencent's main domain is reachable again: back on it.");
                return;
            }
        }
    }
}

/// `host:port` of a base URL, the port from the scheme when it names none.
fn authority(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    Some(format!("{}:{port}", uri.host()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_urls_authority_has_its_schemes_port_by_default() {
        let of = |url| authority(url);
        assert_eq!(
            of("https://adminapisgp.im.qcloud.com").as_deref(),
            Some("adminapisgp.im.qcloud.com:443")
        );
        assert_eq!(of("http://127.0.0.1:9").as_deref(), Some("127.0.0.1:9"));
        assert_eq!(of("http://h").as_deref(), Some("h:80"));
    }

    #[tokio::test]
    async fn only_a_main_domain_that_fails_moves_to_the_backup() {
        let gauge = IntGauge::new("t", "t").expect("gauge");
        let none = Domains::new(
            "http://127.0.0.1:9",
            None,
            Duration::from_secs(1),
            gauge.clone(),
        );
        assert_eq!(none.failed("http://127.0.0.1:9", "refused"), None);
        let both = Domains::new(
            "http://127.0.0.1:9",
            Some("http://b:1"),
            Duration::from_secs(1),
            gauge.clone(),
        );
        // The backup failing is no reason to move anywhere.
        assert_eq!(both.failed("http://b:1", "refused"), None);
        assert_eq!(both.current(), "http://127.0.0.1:9");
        assert_eq!(
            both.failed("http://127.0.0.1:9", "refused").as_deref(),
            Some("http://b:1")
        );
        assert_eq!((both.current(), gauge.get()), ("http://b:1", 1));
    }
}
