//! A stand-in for Tencent that keeps every request's raw bytes, head included, so that a test
//! can show what reached it (and what did not): plain HTTP/1.1 keep-alive on 127.0.0.1, each
//! answer the next of a list (the last repeated).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The stand-in, serving until dropped.
pub(crate) struct RawUpstream {
    /// Its address (plain HTTP).
    pub addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    /// Answers the n-th request with `answers[n]` (a Tencent JSON body), the last one after.
    pub(crate) async fn start(answers: &[&str]) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answers: Vec<String> = answers.iter().map(|a| a.to_string()).collect();
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (seen, answers) = (seen.clone(), answers.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(request) = read_request(&mut stream, &mut buf).await else {
                            return;
                        };
                        let n = {
                            let mut seen = seen.lock().expect("lock");
                            seen.push(request);
                            seen.len() - 1
                        };
                        let body = &answers[n.min(answers.len() - 1)];
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        RawUpstream {
            addr,
            requests,
            task,
        }
    }

    /// Every request received, head and body, as text.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

/// One request's bytes (head by its blank line, body by its content-length), or `None` at the
/// connection's end.
async fn read_request(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let request: Vec<u8> = buf.drain(..end + 4 + length).collect();
                return Some(String::from_utf8_lossy(&request).into_owned());
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
