//! The query-string checks Tencent makes before it reads a call's body: SDKAppID, admin
//! identifier, UserSig (against every key during a rotation), contenttype and random.

use std::collections::HashMap;

use super::EmulatorConfig;
use crate::clock::unix_now;
use crate::tencent::usersig;

/// The query-string checks Tencent makes before it reads the body.
pub(super) fn check_signature(
    config: &EmulatorConfig,
    query: &HashMap<String, String>,
    keys: Option<&[String]>,
) -> Result<(), (i64, String)> {
    let sdkappid = query
        .get("sdkappid")
        .ok_or((60012, "sdkappid missing".to_string()))?;
    if sdkappid.parse::<u64>() != Ok(config.sdkappid) {
        return Err((70020, "SDKAppID not found".into()));
    }
    let param = |name: &str| {
        query
            .get(name)
            .filter(|v| !v.is_empty())
            .ok_or((60025, format!("{name} missing from the URL")))
    };
    let identifier = param("identifier")?;
    let sig = param("usersig")?;
    if param("contenttype")? != "json" {
        return Err((60025, "contenttype must be json".into()));
    }
    if param("random")?.parse::<u32>().is_err() {
        return Err((60025, "random must be a 32-bit unsigned integer".into()));
    }
    // During a key rotation the app may accept more than one key.
    let keys = keys.unwrap_or(std::slice::from_ref(&config.secret_key));
    let verify = |key: &String| usersig::verify(sig, config.sdkappid, identifier, key, unix_now());
    if !keys.iter().any(|key| verify(key).is_ok()) {
        let first = keys
            .first()
            .map_or(Err(usersig::UsersigError::BadSignature), verify);
        first.map_err(|e| (e.tencent_code() as i64, e.to_string()))?;
    }
    if *identifier != config.identifier {
        return Err((60010, "the request needs App admin permission".into()));
    }
    Ok(())
}

/// Parses a query string, percent-decoding the values.
pub(super) fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = || {
            std::str::from_utf8(bytes.get(i + 1..i + 3)?)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        };
        match (bytes[i], hex()) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
