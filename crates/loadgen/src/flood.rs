//! Many requests outstanding at once, for the memory reading: HTTP/2 connections each carrying
//! as many concurrent streams as the server allows, so that 100,000 queued requests need 500
//! connections rather than 100,000.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::client::{MakeCall, error_code};
use super::stats::Recorder;

/// hyper's server allows 200 concurrent streams per HTTP/2 connection by default.
pub const STREAMS_PER_CONNECTION: usize = 200;

/// Sends `total` calls at once to timgate at `addr` and waits for every answer, then closes the
/// connections (callers going away, so that what remains in timgate is its own). `answered`
/// counts answers as they come, so that the caller can watch the queue fill and drain.
pub async fn h2_flood(
    addr: SocketAddr,
    total: usize,
    make: MakeCall,
    answered: Arc<AtomicU64>,
) -> Result<Recorder, String> {
    let start = Instant::now();
    let mut connections = Vec::new();
    let mut drivers = Vec::new();
    for first in (0..total).step_by(STREAMS_PER_CONNECTION) {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
        drivers.push(tokio::spawn(conn));
        let last = (first + STREAMS_PER_CONNECTION).min(total);
        let streams: Vec<_> = (first..last)
            .map(|n| {
                let mut send = send.clone();
                let call = make(n as u64);
                let answered = answered.clone();
                tokio::spawn(async move {
                    let request = Request::post(format!("http://{addr}/v4/{}", call.api))
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Full::new(call.body));
                    let outcome = match request {
                        Ok(request) => match send.send_request(request).await {
                            Ok(answer) => {
                                let status = answer.status().as_u16();
                                let body = answer.into_body().collect().await;
                                body.ok().map(|b| (status, error_code(&b.to_bytes())))
                            }
                            Err(_) => None,
                        },
                        Err(_) => None,
                    };
                    answered.fetch_add(1, Ordering::Relaxed);
                    outcome
                })
            })
            .collect();
        connections.push(streams);
    }
    let mut record = Recorder::default();
    for stream in connections.into_iter().flatten() {
        match stream.await.ok().flatten() {
            Some((status, code)) => record.answer(start.elapsed(), status, code),
            None => record.error(start.elapsed()),
        }
    }
    for driver in drivers {
        driver.abort();
    }
    Ok(record)
}
