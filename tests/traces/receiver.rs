//! A small OTLP/HTTP receiver on 127.0.0.1: takes `POST /v1/traces` in protobuf, decodes each
//! export with the OpenTelemetry project's own generated types, and keeps the spans; it answers
//! with the status the test sets.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

#[derive(Default)]
struct Seen {
    spans: Vec<Span>,
    resources: Vec<Resource>,
    content_types: Vec<String>,
    paths: Vec<String>,
}

/// The receiver, serving until dropped.
pub(crate) struct Receiver {
    /// Its traces URL.
    pub url: String,
    seen: Arc<Mutex<Seen>>,
    status: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts one on a free port.
    pub(crate) async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/v1/traces", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let status = Arc::new(AtomicU16::new(200));
        let (s, st) = (seen.clone(), status.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, status) = (s.clone(), st.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (seen, status) = (seen.clone(), status.clone());
                        async move { Ok::<_, hyper::Error>(take(req, &seen, &status).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            url,
            seen,
            status,
            task,
        }
    }

    /// Answers later exports with `status`.
    pub(crate) fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// The spans received so far.
    pub(crate) fn spans(&self) -> Vec<Span> {
        self.seen.lock().expect("lock").spans.clone()
    }

    /// The resources of the exports received so far.
    pub(crate) fn resources(&self) -> Vec<Resource> {
        self.seen.lock().expect("lock").resources.clone()
    }

    /// The content types and paths the exports came with.
    pub(crate) fn requests(&self) -> (Vec<String>, Vec<String>) {
        let seen = self.seen.lock().expect("lock");
        (seen.content_types.clone(), seen.paths.clone())
    }

    /// Waits up to 20 s until at least `n` spans came.
    pub(crate) async fn wait_spans(&self, n: usize) -> Vec<Span> {
        for _ in 0..400 {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} spans, not {n}", self.spans().len());
    }
}

async fn take(
    req: Request<Incoming>,
    seen: &Mutex<Seen>,
    status: &AtomicU16,
) -> Response<Full<Bytes>> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.expect("body").to_bytes();
    let status = StatusCode::from_u16(status.load(Ordering::SeqCst)).expect("status");
    if status.is_success() {
        let export = ExportTraceServiceRequest::decode(body).expect("an OTLP export request");
        let mut seen = seen.lock().expect("lock");
        seen.content_types.push(content_type);
        seen.paths.push(path);
        for resource_spans in export.resource_spans {
            seen.resources.extend(resource_spans.resource);
            for scope in resource_spans.scope_spans {
                seen.spans.extend(scope.spans);
            }
        }
    }
    Response::builder()
        .status(status)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::new()))
        .expect("response")
}
