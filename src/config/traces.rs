//! Checks `[tracing]`: OpenTelemetry traces exported over OTLP/HTTP, off by default.

use std::path::PathBuf;
use std::time::Duration;

use super::check::Problems;
use super::raw::RawTracing;

/// Spans kept waiting for export at most: a bound on the exporter's memory (about 250 bytes
/// each, `cargo test --lib trace::span`: 16 MiB) whatever the collector does.
const MAX_QUEUED_SPANS: u64 = 1 << 16;

/// `[tracing]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// Export traces at all.
    pub enabled: bool,
    /// The collector's OTLP/HTTP traces URL, used as written.
    pub otlp_endpoint: String,
    /// The share of requests traced when the caller sent no `traceparent`.
    pub sample_ratio: f64,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Spans waiting for export at most; more are dropped and counted.
    pub max_queued_spans: usize,
    /// How often waiting spans are sent.
    pub export_interval: Duration,
    /// How long one export may take.
    pub export_timeout: Duration,
    /// An extra CA trusted for an `https://` endpoint.
    pub ca_file: Option<PathBuf>,
}

/// Checks `[tracing]`. The endpoint is checked even while tracing is off, so that turning it on
/// is not the moment a typo is found.
pub(super) fn check(t: &RawTracing, p: &mut Problems) -> TracingConfig {
    if let Err(why) = check_endpoint(&t.otlp_endpoint) {
        p.add("tracing.otlp_endpoint", why);
    }
    let sample_ratio = p.share("tracing.sample_ratio", t.sample_ratio, true);
    if t.service_name.trim().is_empty() {
        p.add("tracing.service_name", "must not be empty");
    }
    let queued = p.positive("tracing.max_queued_spans", t.max_queued_spans);
    if queued > MAX_QUEUED_SPANS {
        p.add(
            "tracing.max_queued_spans",
            format!("{queued} is over {MAX_QUEUED_SPANS}"),
        );
    }
    TracingConfig {
        enabled: t.enabled,
        otlp_endpoint: t.otlp_endpoint.clone(),
        sample_ratio,
        service_name: t.service_name.clone(),
        max_queued_spans: queued.min(MAX_QUEUED_SPANS) as usize,
        export_interval: Duration::from_millis(
            p.positive("tracing.export_interval_ms", t.export_interval_ms),
        ),
        export_timeout: Duration::from_millis(
            p.positive("tracing.export_timeout_ms", t.export_timeout_ms),
        ),
        ca_file: (!t.ca_file.is_empty()).then(|| PathBuf::from(&t.ca_file)),
    }
}

/// Checks the endpoint as `http::Uri` reads it, as `check_url` does for Tencent's: an
/// `http://` or `https://` URL with a host, a port up to 65535 if any, and no credentials.
fn check_endpoint(url: &str) -> Result<(), String> {
    let shown = super::redact::credentials(url);
    let uri = url.parse::<http::Uri>().ok();
    let authority = uri.as_ref().and_then(|u| u.authority());
    let scheme_ok = uri
        .as_ref()
        .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")));
    match authority {
        _ if !scheme_ok => Err(format!(
            "{shown:?} is not an http:// or https:// URL (an OpenTelemetry Collector takes \
             OTLP/HTTP traces at http://HOST:4318/v1/traces)"
        )),
        Some(a) if a.as_str().contains('@') => Err(
            "credentials in the URL are not supported: put the collector behind a local agent"
                .into(),
        ),
        Some(a) if a.host().trim_matches(['[', ']']).is_empty() => {
            Err(format!("{shown:?} names no host"))
        }
        // Anything after the host that is not a port `http::Uri` reads as a u16.
        Some(a) if a.as_str() != a.host() && a.port_u16().is_none() => {
            Err(format!("{shown:?}: the port is not a number up to 65535"))
        }
        Some(_) => Ok(()),
        None => Err(format!("{shown:?} names no host")),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(section: &str) -> Vec<String> {
        let text = format!("[tencent]\nsdkappid = 1\nsecret_key = \"k\"\n[tracing]\n{section}");
        match Config::from_toml(&text) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems,
        }
    }

    #[test]
    fn tracing_is_off_by_default_and_points_at_a_local_collector() {
        let config = Config::from_toml("[tencent]\nsdkappid = 1\nsecret_key = \"k\"\n")
            .expect("a minimal config");
        let t = &config.tracing;
        assert!(!t.enabled);
        assert_eq!(t.otlp_endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!((t.sample_ratio, t.service_name.as_str()), (1.0, "timgate"));
    }

    #[test]
    fn every_bad_tracing_value_is_named() {
        let found = problems(
            "enabled = true\notlp_endpoint = \"grpc://collector:4317\"\nsample_ratio = 1.5\n\
             service_name = \" \"\nmax_queued_spans = 0\nexport_interval_ms = 0\n",
        );
        for key in [
            "tracing.otlp_endpoint",
            "tracing.sample_ratio",
            "tracing.service_name",
            "tracing.max_queued_spans",
            "tracing.export_interval_ms",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(key)),
                "{key} not in {found:?}"
            );
        }
    }

    #[test]
    fn an_endpoint_without_a_host_or_with_a_bad_port_is_refused() {
        for bad in ["http://:4318/v1/traces", "http://collector:43x8/v1/traces"] {
            let found = problems(&format!("otlp_endpoint = \"{bad}\"\n"));
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
        }
        assert!(problems("otlp_endpoint = \"https://[::1]:4318/v1/traces\"\n").is_empty());
    }

    #[test]
    fn an_endpoint_with_credentials_is_refused_without_quoting_them() {
        let found = problems("otlp_endpoint = \"https://user:s3cret@collector/v1/traces\"\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found[0].contains("s3cret"), "{found:?}");
    }
}
