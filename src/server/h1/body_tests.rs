//! A body read from a real socket: what it hands back to its connection holds none of the
//! buffers the body was read into, so a caller waiting for its answer keeps no read buffer.

use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A body of `length` bytes framed by Content-Length, starting with `buffered` (what the head's
/// read took past the head), read from a connection on which the caller sends `parts` one
/// after another; the body's frames and what it handed back.
async fn read(length: u64, buffered: &[u8], parts: Vec<Vec<u8>>) -> (Vec<Bytes>, Returned) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let caller = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        for part in parts {
            stream.write_all(&part).await.expect("send");
            // Apart, so that the body is read in as many reads as there are parts.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stream
    });
    let (stream, _) = listener.accept().await.expect("accept");
    let (read, _write) = stream.into_split();
    let (back, returned) = oneshot::channel();
    let mut body = H1Body::new(
        read,
        BytesMut::from(buffered),
        Framing::Length(length),
        back,
    );
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("a frame").into_data() {
            frames.push(data);
        }
    }
    drop(body);
    let returned = returned.await.expect("the body hands the connection back");
    drop(caller.await.expect("the caller"));
    (frames, returned)
}

#[tokio::test]
async fn a_body_read_in_parts_hands_back_nothing_that_keeps_its_buffers() {
    let parts = vec![vec![b'a'; 1_000], vec![b'b'; 15_000]];
    let (mut frames, returned) = read(16_000, b"", parts).await;
    assert_eq!(frames.iter().map(Bytes::len).sum::<usize>(), 16_000);
    assert!(frames.len() >= 2, "read in parts: {} frames", frames.len());
    assert!(returned.complete);
    assert!(returned.leftover.is_empty());
    // The parts were read into one buffer; with the other frames gone, the last one holds it
    // alone, unless the empty leftover is a view into it (which would keep all of it).
    let last = frames.pop().expect("a frame");
    drop(frames);
    assert!(last.is_unique(), "the read buffer is kept past the body");
}

#[tokio::test]
async fn bytes_past_the_body_come_back_as_their_own_copy() {
    let mut buffered = vec![b'x'; 3_000];
    buffered.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let (frames, returned) = read(3_000, &buffered, Vec::new()).await;
    assert_eq!(frames.iter().map(Bytes::len).sum::<usize>(), 3_000);
    assert_eq!(&returned.leftover[..], b"GET / HTTP/1.1\r\n");
    assert_eq!(returned.leftover.capacity(), returned.leftover.len());
    for frame in frames {
        assert!(frame.is_unique(), "the body's buffer is kept past the body");
    }
}
