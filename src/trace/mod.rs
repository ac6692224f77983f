//! OpenTelemetry traces (`[tracing]`): each sampled request's spans, queued in a bounded buffer
//! on the request path and exported in batches over OTLP/HTTP by a task of their own, so that a
//! slow or absent collector never slows a request or grows memory without bound. A caller's
//! W3C `traceparent` is continued; nothing of it goes to Tencent (the upstream request is made
//! from the body and the signature alone).

mod context;
mod otlp;
mod span;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::TracingConfig;
use crate::error::Error;
use crate::metrics::{Metrics, TraceMetrics};
use crate::upstream::Endpoint;

pub use context::{Context, hex};
pub use span::{Kind, SpanData, Status, Steps, Value, spans};

/// Spans in one export at most: a collector's default receive limit is a few MiB, and a batch of
/// this many is about 150 KiB.
const MAX_BATCH: usize = 512;

/// The instrumentation scope the spans are made by.
const SCOPE: &str = "timgate";

/// The exporter: the sampling ratio, the spans waiting, and where they go.
#[derive(Debug)]
pub struct Tracer {
    ratio: f64,
    max_queued: usize,
    waiting: Mutex<Vec<SpanData>>,
    /// Woken when a batch's worth is waiting, or to flush.
    wake: Notify,
    /// Woken after each export: a flush waits for the buffer to empty.
    exported: Notify,
    metrics: TraceMetrics,
    /// The last export failed: said once when it starts and once when it ends, not per batch.
    failing: AtomicBool,
    endpoint: Endpoint,
    resource: Vec<(&'static str, Value)>,
}

impl Tracer {
    /// The exporter for `config`, with its task started; `None` when tracing is off. Must be
    /// called within a tokio runtime.
    pub fn start(config: &TracingConfig, metrics: &Metrics) -> Result<Option<Arc<Tracer>>, Error> {
        if !config.enabled {
            return Ok(None);
        }
        metrics.register_tracing();
        let endpoint = Endpoint::new(
            &config.otlp_endpoint,
            config.ca_file.as_deref(),
            config.export_timeout,
        )?;
        let instance = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| std::process::id().to_string());
        let tracer = Arc::new(Tracer {
            ratio: config.sample_ratio,
            max_queued: config.max_queued_spans,
            waiting: Mutex::new(Vec::new()),
            wake: Notify::new(),
            exported: Notify::new(),
            metrics: metrics.trace.clone(),
            failing: AtomicBool::new(false),
            endpoint,
            resource: vec![
                (
                    "service.name",
                    Value::Str(config.service_name.clone().into()),
                ),
                (
                    "service.version",
                    Value::Str(env!("CARGO_PKG_VERSION").into()),
                ),
                ("service.instance.id", Value::Str(instance.into())),
            ],
        });
        // Weak: the task ends when the gateway drops the tracer.
        let weak = Arc::downgrade(&tracer);
        let interval = config.export_interval;
        tokio::spawn(async move {
            loop {
                let Some(tracer) = weak.upgrade() else { return };
                let woken = tracer.wake.notified();
                tokio::select! {
                    () = woken => {}
                    () = tokio::time::sleep(interval) => {}
                }
                tracer.export_waiting().await;
                tracer.exported.notify_waiters();
            }
        });
        tracing::info!(
            endpoint = %crate::config::redact::credentials(&config.otlp_endpoint),
            sample_ratio = config.sample_ratio,
            "Exporting traces over OTLP/HTTP."
        );
        Ok(Some(tracer))
    }

    /// The trace context of a request that began at `started` with `headers`.
    pub fn context(&self, headers: &HeaderMap, started: Instant) -> Option<Box<Context>> {
        Context::of(headers, self.ratio, started)
    }

    /// Queues a finished request's spans for export: all of them, or none when the buffer is
    /// full (a trace with holes would mislead more than a missing one).
    pub fn record(&self, spans: Vec<SpanData>) {
        let n = spans.len();
        let full = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if waiting.len() + n > self.max_queued {
                true
            } else {
                waiting.extend(spans);
                if waiting.len() >= MAX_BATCH {
                    self.wake.notify_one();
                }
                false
            }
        };
        if full {
            self.metrics
                .dropped
                .with_label_values(&["queue_full"])
                .inc_by(n as u64);
        }
    }

    /// Exports what is waiting now, within `within` (on shutdown, after the last answers).
    pub async fn flush(&self, within: Duration) {
        let flushed = async {
            while !self.is_empty() {
                let exported = self.exported.notified();
                self.wake.notify_one();
                exported.await;
            }
        };
        let _ = tokio::time::timeout(within, flushed).await;
    }

    fn is_empty(&self) -> bool {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Sends every waiting span, a batch at a time; a batch that fails is dropped and counted.
    async fn export_waiting(&self) {
        loop {
            let batch: Vec<SpanData> = {
                let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
                let n = waiting.len().min(MAX_BATCH);
                waiting.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            let body =
                otlp::export_request(&self.resource, (SCOPE, env!("CARGO_PKG_VERSION")), &batch);
            let n = batch.len() as u64;
            match self.endpoint.post("application/x-protobuf", &body).await {
                Ok((status, _)) if status.is_success() => {
                    self.metrics.exported.inc_by(n);
                    if self.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("Exporting spans again.");
                    }
                }
                outcome => {
                    let why = match outcome {
                        Ok((status, _)) => format!("the collector answered {status}"),
                        Err(e) => e.to_string(),
                    };
                    if !self.failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            spans = n,
                            error = %why,
                            "Could not export spans; dropping them until the collector answers \
                             (timgate_trace_spans_dropped_total)."
                        );
                    }
                    self.metrics
                        .dropped
                        .with_label_values(&["export_failed"])
                        .inc_by(n);
                }
            }
        }
    }
}
