//! Owns TLSSigAPIv2 UserSigs: generating, decoding and verifying Tencent Cloud IM tickets.
//!
//! Format (shared/tencent-im-api.md §3): HMAC-SHA256 keyed with the SecretKey's UTF-8 bytes over
//! `TLS.identifier:…\nTLS.sdkappid:…\nTLS.time:…\nTLS.expire:…\n[TLS.userbuf:…\n]`, put with the
//! other fields into a JSON document, zlib-compressed, standard base64 with `+/=` replaced by `*-_`.
//! The whole string depends on JSON layout and zlib level: compare decoded fields, never strings.

use std::io::{Read, Write};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use hmac::digest::{Key, KeyInit};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Largest inflated JSON document accepted by [`decode`] (refuses zip bombs).
const MAX_INFLATED: u64 = 64 * 1024;
/// Largest UserSig string accepted by [`decode`]; real ones are a few hundred characters.
const MAX_USERSIG_LEN: usize = 64 * 1024;
/// Standard alphabet that does not insist on `=` padding when decoding.
const LIBERAL_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a UserSig was refused. Messages never contain the secret key.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UsersigError {
    /// Not a decodable TLSSigAPIv2 document (bad base64, zlib, JSON or fields).
    #[error("malformed usersig: {0}")]
    Malformed(String),
    /// The document names another SDKAppID.
    #[error("usersig was issued for a different SDKAppID")]
    SdkAppIdMismatch,
    /// The document names another identifier (user ID).
    #[error("usersig was issued for a different identifier")]
    IdentifierMismatch,
    /// `now > TLS.time + TLS.expire`.
    #[error("usersig expired at unix time {expired_at}")]
    Expired {
        /// `TLS.time + TLS.expire` (saturating), in Unix seconds.
        expired_at: i64,
    },
    /// `TLS.sig` is not the HMAC of the document under the given secret key.
    #[error("usersig signature does not match (wrong secret key or tampered document)")]
    BadSignature,
}

impl UsersigError {
    /// Tencent's error code for the same failure (70003, 70014, 70013, 70001, 70009).
    pub fn tencent_code(&self) -> u32 {
        match self {
            Self::Malformed(_) => 70003,
            Self::SdkAppIdMismatch => 70014,
            Self::IdentifierMismatch => 70013,
            Self::Expired { .. } => 70001,
            Self::BadSignature => 70009,
        }
    }
}

/// The fields of a decoded UserSig document (not yet verified unless returned by [`verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// `TLS.ver`, "2.0" for every official generator.
    pub version: String,
    /// `TLS.identifier`, the user ID the ticket is for.
    pub identifier: String,
    /// `TLS.sdkappid`.
    pub sdkappid: u64,
    /// `TLS.time`, issue time in Unix seconds.
    pub time: i64,
    /// `TLS.expire`, lifetime in seconds relative to `time`.
    pub expire: i64,
    /// `TLS.sig`, standard base64 of the HMAC-SHA256.
    pub sig: String,
    /// `TLS.userbuf` decoded from base64, present only in the userbuf variant.
    pub userbuf: Option<Vec<u8>>,
}

/// Generates a TLSSigAPIv2 UserSig (no userbuf) issued at `now_unix`, valid `expire_secs` seconds.
pub fn generate(
    sdkappid: u64,
    identifier: &str,
    secret_key: &str,
    now_unix: i64,
    expire_secs: i64,
) -> String {
    build(
        sdkappid,
        identifier,
        secret_key,
        now_unix,
        expire_secs,
        None,
    )
}

/// Generates the userbuf variant (TRTC PrivateMapKey): `TLS.userbuf` is signed and embedded.
pub fn generate_with_userbuf(
    sdkappid: u64,
    identifier: &str,
    secret_key: &str,
    now_unix: i64,
    expire_secs: i64,
    userbuf: &[u8],
) -> String {
    build(
        sdkappid,
        identifier,
        secret_key,
        now_unix,
        expire_secs,
        Some(userbuf),
    )
}

/// The `TLS.sig` value alone: standard base64 (44 chars) of the HMAC-SHA256 of the fixed string.
pub fn hmac_sig(
    sdkappid: u64,
    identifier: &str,
    secret_key: &str,
    time: i64,
    expire: i64,
    userbuf: Option<&[u8]>,
) -> String {
    STANDARD.encode(mac(sdkappid, identifier, secret_key, time, expire, userbuf))
}

/// Decodes a UserSig without checking it: unescape, base64, zlib (capped at 64 KiB), JSON.
pub fn decode(usersig: &str) -> Result<Decoded, UsersigError> {
    if usersig.len() > MAX_USERSIG_LEN {
        return Err(malformed("longer than 64 KiB"));
    }
    let b64 = swap(usersig, ['*', '-', '_'], ['+', '/', '=']);
    let packed = LIBERAL_B64
        .decode(b64.trim_end_matches('='))
        .map_err(|e| malformed(format!("base64: {e}")))?;
    let mut json = Vec::new();
    ZlibDecoder::new(packed.as_slice())
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut json)
        .map_err(|e| malformed(format!("zlib: {e}")))?;
    if json.len() as u64 > MAX_INFLATED {
        return Err(malformed("inflated document larger than 64 KiB"));
    }
    let doc: Map<String, Value> =
        serde_json::from_slice(&json).map_err(|e| malformed(format!("json: {e}")))?;
    let userbuf = match doc.get("TLS.userbuf") {
        None | Some(Value::Null) => None,
        Some(_) => Some(
            LIBERAL_B64
                .decode(text(&doc, "TLS.userbuf")?)
                .map_err(|e| malformed(format!("TLS.userbuf base64: {e}")))?,
        ),
    };
    Ok(Decoded {
        version: text(&doc, "TLS.ver")?,
        identifier: text(&doc, "TLS.identifier")?,
        sdkappid: int(&doc, "TLS.sdkappid")?,
        time: int(&doc, "TLS.time")?,
        expire: int(&doc, "TLS.expire")?,
        sig: text(&doc, "TLS.sig")?,
        userbuf,
    })
}

/// Decodes and checks a UserSig: SDKAppID, identifier, expiry (`now > time + expire`), then the
/// HMAC recomputed from the document's own time/expire/userbuf, compared in constant time.
pub fn verify(
    usersig: &str,
    sdkappid: u64,
    identifier: &str,
    secret_key: &str,
    now_unix: i64,
) -> Result<Decoded, UsersigError> {
    let d = decode(usersig)?;
    if d.sdkappid != sdkappid {
        return Err(UsersigError::SdkAppIdMismatch);
    }
    if d.identifier != identifier {
        return Err(UsersigError::IdentifierMismatch);
    }
    let expired_at = d.time.saturating_add(d.expire);
    if now_unix > expired_at {
        return Err(UsersigError::Expired { expired_at });
    }
    let want = mac(
        sdkappid,
        identifier,
        secret_key,
        d.time,
        d.expire,
        d.userbuf.as_deref(),
    );
    let got = LIBERAL_B64
        .decode(d.sig.trim_end_matches('='))
        .unwrap_or_default();
    if !ct_eq(&got, &want) {
        return Err(UsersigError::BadSignature);
    }
    Ok(d)
}

fn build(
    sdkappid: u64,
    identifier: &str,
    key: &str,
    time: i64,
    expire: i64,
    userbuf: Option<&[u8]>,
) -> String {
    let mut doc = json!({
        "TLS.ver": "2.0",
        "TLS.identifier": identifier,
        "TLS.sdkappid": sdkappid,
        "TLS.expire": expire,
        "TLS.time": time,
        "TLS.sig": hmac_sig(sdkappid, identifier, key, time, expire, userbuf),
    });
    if let (Some(buf), Some(map)) = (userbuf, doc.as_object_mut()) {
        map.insert("TLS.userbuf".into(), Value::String(STANDARD.encode(buf)));
    }
    escape(&STANDARD.encode(deflate(doc.to_string().as_bytes())))
}

fn mac(
    sdkappid: u64,
    identifier: &str,
    key: &str,
    time: i64,
    expire: i64,
    userbuf: Option<&[u8]>,
) -> [u8; 32] {
    let mut text = format!(
        "TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    );
    if let Some(buf) = userbuf {
        text.push_str(&format!("TLS.userbuf:{}\n", STANDARD.encode(buf)));
    }
    // HMAC key handling done here (hash if longer than a block, zero-pad) so the constructor
    // is the infallible fixed-size one: identical to `new_from_slice`, without its Result.
    let mut block = Key::<HmacSha256>::default();
    let key = key.as_bytes();
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut m = <HmacSha256 as KeyInit>::new(&block);
    m.update(text.as_bytes());
    m.finalize().into_bytes().into()
}

/// zlib-compresses `data`. Writing into a `Vec` cannot fail; should flate2 ever report an error
/// anyway, a hand-built stored-block zlib stream (equally valid RFC 1950) is returned instead.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
    match enc.write_all(data).and_then(|()| enc.finish()) {
        Ok(out) => out,
        Err(_) => stored_zlib(data),
    }
}

fn stored_zlib(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![data]
    } else {
        data.chunks(65535).collect()
    };
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.iter().enumerate() {
        let len = chunk.len() as u16; // chunks(65535) keeps this lossless
        out.push(u8::from(i == last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn escape(b64: &str) -> String {
    swap(b64, ['+', '/', '='], ['*', '-', '_'])
}

/// Replaces each char found in `from` by the char at the same position in `to`.
fn swap(s: &str, from: [char; 3], to: [char; 3]) -> String {
    let map = |c| from.iter().position(|&f| f == c).map_or(c, |i| to[i]);
    s.chars().map(map).collect()
}

/// Constant-time equality (for equal lengths; the length itself is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn malformed(why: impl Into<String>) -> UsersigError {
    UsersigError::Malformed(why.into())
}

fn text(doc: &Map<String, Value>, key: &str) -> Result<String, UsersigError> {
    match doc.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(malformed(format!("{key} is not a string"))),
        None => Err(malformed(format!("{key} missing"))),
    }
}

/// An integer field, given as a JSON integer or (liberally) as a decimal string.
fn int<T: TryFrom<i128> + std::str::FromStr>(
    doc: &Map<String, Value>,
    key: &str,
) -> Result<T, UsersigError> {
    let bad = || malformed(format!("{key} is missing or not an integer in range"));
    match doc.get(key) {
        Some(Value::Number(n)) => n
            .as_i64()
            .map(i128::from)
            .or(n.as_u64().map(i128::from))
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests;
