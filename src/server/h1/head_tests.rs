//! Request heads: framing by RFC 9112 §6, keep-alive by version, and the ambiguous heads refused.

use super::*;

/// The head of `text` and the bytes it took; a partial head must leave the buffer as it was.
fn head(text: &str) -> Result<Option<(Head, usize)>, Refused> {
    let mut buf = BytesMut::from(text.as_bytes());
    let parsed = parse(&mut buf)?;
    if parsed.is_none() {
        assert_eq!(&buf[..], text.as_bytes());
    }
    Ok(parsed.map(|head| (head, text.len() - buf.len())))
}

fn ok(text: &str) -> Head {
    head(text).expect("valid").expect("complete").0
}

#[test]
fn a_partial_head_waits_for_more() {
    assert!(
        head("POST /v4/a/b HTTP/1.1\r\nHost: x\r\n")
            .expect("valid")
            .is_none()
    );
}

#[test]
fn content_length_frames_the_body_and_the_head_length_is_returned() {
    let text = "POST /v4/a/b?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"GroupId\":1";
    let (head, used) = head(text).expect("valid").expect("complete");
    assert_eq!(used, text.len() - 12);
    assert_eq!(head.framing, Framing::Length(12));
    assert_eq!(head.request.uri().path(), "/v4/a/b");
    assert_eq!(head.request.method(), Method::POST);
    assert!(head.keep_alive);
    assert!(!head.expect_continue);
}

#[test]
fn no_length_is_an_empty_body_and_chunked_is_chunked() {
    assert_eq!(ok("GET / HTTP/1.1\r\n\r\n").framing, Framing::Length(0));
    let chunked = ok("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
    assert_eq!(chunked.framing, Framing::Chunked);
}

#[test]
fn ambiguous_framing_is_refused() {
    let both = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(head(both).err(), Some(Refused(StatusCode::BAD_REQUEST)));
    let two = "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
    assert_eq!(head(two).err(), Some(Refused(StatusCode::BAD_REQUEST)));
    let same = "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n";
    assert_eq!(ok(same).framing, Framing::Length(3));
    let signed = "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n";
    assert_eq!(head(signed).err(), Some(Refused(StatusCode::BAD_REQUEST)));
    let gzip = "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    assert_eq!(head(gzip).err(), Some(Refused(StatusCode::NOT_IMPLEMENTED)));
}

#[test]
fn keep_alive_follows_the_version_and_connection_header() {
    assert!(!ok("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(
        ok("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").expect_continue
    );
}

#[test]
fn garbage_and_too_many_headers_are_refused() {
    assert_eq!(
        head("\x16\x03\x01 hello\r\n\r\n").err(),
        Some(Refused(StatusCode::BAD_REQUEST))
    );
    let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
    let text = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert_eq!(
        head(&text).err(),
        Some(Refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE))
    );
}
