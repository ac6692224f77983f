//! A chunked answer's body (RFC 9112 §7.1): chunks joined, extensions and trailers skipped.

use bytes::{Buf, Bytes, BytesMut};

use super::exchange::Conn;

/// Reads a chunked body of at most `max` bytes from `conn`, leaving what follows it buffered.
pub(super) async fn read(conn: &mut Conn, max: usize) -> Result<Bytes, String> {
    let mut body = BytesMut::new();
    loop {
        let size = loop {
            match httparse::parse_chunk_size(conn.buffered()) {
                Ok(httparse::Status::Complete((at, size))) => {
                    conn.buffered().advance(at);
                    break size;
                }
                Ok(httparse::Status::Partial) if conn.buffered().len() < 4096 => {
                    conn.more().await?
                }
                _ => return Err("bad chunk size".into()),
            }
        };
        if size == 0 {
            return trailers(conn).await.map(|()| body.freeze());
        }
        if body.len() as u64 + size > max as u64 {
            return Err("answer too large".into());
        }
        let size = size as usize;
        while conn.buffered().len() < size + 2 {
            conn.more().await?;
        }
        body.extend_from_slice(&conn.buffered()[..size]);
        if &conn.buffered()[size..size + 2] != b"\r\n" {
            return Err("chunk without its CRLF".into());
        }
        conn.buffered().advance(size + 2);
    }
}

/// Skips the trailer section up to and including its empty line.
async fn trailers(conn: &mut Conn) -> Result<(), String> {
    loop {
        if let Some(at) = conn.buffered().windows(2).position(|w| w == b"\r\n") {
            conn.buffered().advance(at + 2);
            if at == 0 {
                return Ok(());
            }
            continue;
        }
        if conn.buffered().len() > 8192 {
            return Err("trailers too large".into());
        }
        conn.more().await?;
    }
}
