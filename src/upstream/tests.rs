//! The upstream client against real sockets: bodies by length, by chunks and to the end,
//! keep-alive reuse, a server that closes, answers that are too large.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::client::{Client, Origin};
use super::exchange::Failed;

/// A server answering every request with `answer` (written `step` bytes at a time), closing the
/// connection after each answer when `close`; counts connections accepted.
async fn serve(answer: &'static [u8], step: usize, close: bool) -> (Arc<Origin>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    // A request is whole once its head and its 2-byte body ("{}") are in.
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") || !seen.ends_with(b"{}") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.clear();
                    for part in answer.chunks(step) {
                        if socket.write_all(part).await.is_err() {
                            return;
                        }
                        socket.flush().await.ok();
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    let origin = Origin::parse(&format!("http://{addr}")).expect("origin");
    (Arc::new(origin), accepted)
}

const HEAD: &[u8] = b"POST /v4/x HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\n";

async fn once(client: &Client, origin: &Arc<Origin>) -> Result<(u16, Vec<u8>), String> {
    let mut conn = client.checkout(origin).await.map_err(|e| e.to_string())?;
    match conn.exchange(HEAD, b"{}", 1024).await {
        Ok(answer) => {
            let out = (answer.status.as_u16(), answer.body.to_vec());
            if answer.reusable {
                client.checkin(origin, conn);
            }
            Ok(out)
        }
        Err(Failed::Write(e)) => Err(format!("write: {e}")),
        Err(Failed::Read(e)) => Err(format!("read: {e}")),
    }
}

fn client() -> Client {
    let tls = crate::tls::client_config(None).expect("tls");
    Client::new(tls, Duration::from_secs(5))
}

#[tokio::test]
async fn a_chunked_answer_is_joined_and_its_connection_reused() {
    let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\n{\"Err\r\n9\r\norCode\":0\r\n1\r\n}\r\n0\r\nx-trailer: 1\r\n\r\n";
    for step in [answer.len(), 1] {
        let (origin, accepted) = serve(answer, step, false).await;
        let client = client();
        for _ in 0..3 {
            let (status, body) = once(&client, &origin).await.expect("answered");
            assert_eq!((status, body.as_slice()), (200, &b"{\"ErrorCode\":0}"[..]));
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection, step {step}"
        );
    }
}

#[tokio::test]
async fn a_length_answer_split_byte_by_byte_is_read_whole() {
    let answer = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 15\r\n\r\n{\"ErrorCode\":1}";
    let (origin, accepted) = serve(answer, 1, false).await;
    let client = client();
    for _ in 0..2 {
        let (status, body) = once(&client, &origin).await.expect("answered");
        assert_eq!((status, body.as_slice()), (429, &b"{\"ErrorCode\":1}"[..]));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_that_closes_gets_a_new_connection_each_time() {
    // Connection: close, and an answer without a length, read to the end.
    for answer in [
        &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"[..],
        &b"HTTP/1.1 200 OK\r\n\r\n{}"[..],
    ] {
        let (origin, accepted) = serve(answer, answer.len(), true).await;
        let client = client();
        for _ in 0..3 {
            let (_, body) = once(&client, &origin).await.expect("answered");
            assert_eq!(body, b"{}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }
}

#[tokio::test]
async fn an_idle_connection_the_server_closed_is_not_reused() {
    // The server closes after answering but says keep-alive: the connection is seen closed
    // while idle, and the next checkout makes a new one instead of failing a request on it.
    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
    let (origin, accepted) = serve(answer, answer.len(), true).await;
    let client = client();
    for n in 1..=3 {
        let mut conn = client.checkout(&origin).await.expect("conn");
        let answer = conn
            .exchange(HEAD, b"{}", 1024)
            .await
            .map_err(|_| ())
            .expect("answered");
        assert!(answer.reusable, "the server said nothing of closing");
        let mut waited = 0;
        while conn.is_open() {
            assert!(waited < 500, "the server's close never arrived");
            waited += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        client.checkin(&origin, conn);
        assert_eq!(accepted.load(Ordering::SeqCst), n);
    }
    once(&client, &origin)
        .await
        .expect("a new connection answers");
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn answers_too_large_or_malformed_are_errors() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1000\r\n"[..],
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"[..],
        &b"NOT HTTP\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"[..],
    ] {
        let (origin, _) = serve(answer, answer.len(), true).await;
        let err = once(&client(), &origin).await.expect_err("refused");
        assert!(err.starts_with("read: "), "{err}");
    }
}

#[tokio::test]
async fn a_refused_connect_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let origin = Arc::new(Origin::parse(&format!("http://{addr}")).expect("origin"));
    let err = client().checkout(&origin).await.expect_err("refused");
    assert!(matches!(err, crate::Error::UpstreamConnect(_)), "{err}");
}
