//! An HTTP/1.1 request head, parsed by httparse into `http`'s types, with the framing of its body
//! decided by RFC 9112 §6: chunked when Transfer-Encoding ends in chunked, else Content-Length,
//! else none. Anything ambiguous (both headers, two different lengths, another coding) is
//! refused, so that the gateway and its caller can never disagree about where a body ends.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

/// Most header lines in one request head (hyper's default is 100).
pub(super) const MAX_HEADERS: usize = 100;

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (zero: no body).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// A parsed head: the request without its body, how the body is framed, and what the
/// connection should do after it.
#[derive(Debug)]
pub(super) struct Head {
    /// Method, target, version and headers.
    pub request: Request<()>,
    /// The body's framing.
    pub framing: Framing,
    /// False when the caller asked to close after this request (or spoke HTTP/1.0 without
    /// keep-alive).
    pub keep_alive: bool,
    /// The caller waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
}

/// A head the gateway will not serve: answered with this status, then the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refused(pub StatusCode);

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn framing(headers: &HeaderMap) -> Result<Framing, Refused> {
    let bad = Refused(StatusCode::BAD_REQUEST);
    if headers.contains_key(TRANSFER_ENCODING) {
        if headers.contains_key(CONTENT_LENGTH) {
            return Err(bad);
        }
        let codings: Vec<String> = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        return match codings.as_slice() {
            [only] if only == "chunked" => Ok(Framing::Chunked),
            _ => Err(Refused(StatusCode::NOT_IMPLEMENTED)),
        };
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.to_str().map_err(|_| bad)?.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad);
            }
            let n: u64 = part.parse().map_err(|_| bad)?;
            if length.is_some_and(|m| m != n) {
                return Err(bad);
            }
            length = Some(n);
        }
    }
    Ok(Framing::Length(length.unwrap_or(0)))
}

/// Where one header line's name and value sit in the head's bytes.
type Span = [u32; 4];

/// Parses a head from the start of `pending`: Ok(None) while it is incomplete (`pending`
/// untouched), else the head, split off `pending`. The URI and the header values share the
/// head's bytes instead of each being copied: its offsets are noted while httparse's slices
/// borrow `pending`, and the values made once the head is split off.
pub(super) fn parse(pending: &mut BytesMut) -> Result<Option<Head>, Refused> {
    let bad = Refused(StatusCode::BAD_REQUEST);
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut spans: [Span; MAX_HEADERS] = [[0; 4]; MAX_HEADERS];
    let (used, method, version, path, count) = {
        let mut parsed = httparse::Request::new(&mut []);
        let used = match parsed.parse_with_uninit_headers(pending, &mut slots) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
            }
            Err(_) => return Err(bad),
        };
        let base = pending.as_ptr() as usize;
        // Offsets within the head, which is at most MAX_HEAD_BYTES long.
        let offset = |part: &[u8]| (part.as_ptr() as usize - base) as u32;
        let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes()).map_err(|_| bad)?;
        let version = match parsed.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let target = parsed.path.unwrap_or("").as_bytes();
        let path = offset(target) as usize..offset(target) as usize + target.len();
        for (span, h) in spans.iter_mut().zip(parsed.headers.iter()) {
            let (name, value) = (h.name.as_bytes(), h.value);
            *span = [
                offset(name),
                offset(name) + name.len() as u32,
                offset(value),
                offset(value) + value.len() as u32,
            ];
        }
        (used, method, version, path, parsed.headers.len())
    };
    let head = pending.split_to(used).freeze();
    let uri = Uri::from_maybe_shared(head.slice(path)).map_err(|_| bad)?;
    let mut headers = HeaderMap::with_capacity(count);
    for [name_at, name_end, value_at, value_end] in &spans[..count] {
        let name = &head[*name_at as usize..*name_end as usize];
        let name = HeaderName::from_bytes(name).map_err(|_| bad)?;
        let value = head.slice(*value_at as usize..*value_end as usize);
        let value = HeaderValue::from_maybe_shared(value).map_err(|_| bad)?;
        headers.append(name, value);
    }
    let framing = framing(&headers)?;
    let keep_alive = match version {
        Version::HTTP_10 => has_token(&headers, CONNECTION, "keep-alive"),
        _ => !has_token(&headers, CONNECTION, "close"),
    };
    let expect_continue =
        version == Version::HTTP_11 && has_token(&headers, EXPECT, "100-continue");
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some(Head {
        request,
        framing,
        keep_alive,
        expect_continue,
    }))
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
