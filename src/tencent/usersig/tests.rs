use super::*;

const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const T0: i64 = 1_700_000_000;
const PYTHON_USERSIG: &str = "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpYJkTE1NjRDiJZm5YFFzNPXFmekgG3zKHM1T9D3LzdODi-OKs8vCqpxcAvydnV2SSv2cy03cPcpDnA2SMgu0nUxslWoBHdYzUg__";

/// (key, sdkappid, identifier, expire, userbuf, TLS.sig) at time T0, from §3.3.
type Vector = (
    &'static str,
    u64,
    &'static str,
    i64,
    Option<&'static [u8]>,
    &'static str,
);
const VECTORS: [Vector; 4] = [
    (
        KEY,
        1_400_000_000,
        "xiaojun",
        15_552_000,
        None,
        "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4=",
    ),
    (
        KEY,
        1_400_000_000,
        "administrator",
        86_400,
        None,
        "yLAe+w7WUeUuqbV9h/TX78u21oTGi+i9Zp1u3PpnY60=",
    ),
    (
        "2",
        1,
        "3",
        4,
        None,
        "f5gSvBYdWRemW5KQRjxvTzWiOlJwFEuyR7UEE4EjP6o=",
    ),
    (
        "2",
        1,
        "3",
        4,
        Some(&[0x05]),
        "oPo+m5W+tRnZhvOZElDf11AiNuEFHozfLaQszngapso=",
    ),
];

/// Packs an arbitrary JSON text the way the official generators do.
fn pack(json: &str) -> String {
    escape(&STANDARD.encode(deflate(json.as_bytes())))
}

fn malformed_err(usersig: &str) -> bool {
    matches!(decode(usersig), Err(UsersigError::Malformed(_)))
}

#[test]
fn hmac_sig_matches_all_computed_vectors() {
    for (key, app, id, expire, buf, sig) in VECTORS {
        assert_eq!(hmac_sig(app, id, key, T0, expire, buf), sig, "{id}");
        assert_eq!(sig.len(), 44);
    }
}

#[test]
fn generated_usersigs_decode_to_every_field_of_the_vectors() {
    for (key, app, id, expire, buf, sig) in VECTORS {
        let usersig = match buf {
            Some(b) => generate_with_userbuf(app, id, key, T0, expire, b),
            None => generate(app, id, key, T0, expire),
        };
        assert!(!usersig.contains(['+', '/', '=']), "{usersig}");
        let want = Decoded {
            version: "2.0".into(),
            identifier: id.into(),
            sdkappid: app,
            time: T0,
            expire,
            sig: sig.into(),
            userbuf: buf.map(<[u8]>::to_vec),
        };
        assert_eq!(decode(&usersig), Ok(want.clone()));
        assert_eq!(verify(&usersig, app, id, key, T0), Ok(want));
    }
}

#[test]
fn official_python_usersig_decodes_verifies_and_expires() {
    let d = decode(PYTHON_USERSIG).unwrap();
    assert_eq!(d.version, "2.0");
    assert_eq!(d.identifier, "xiaojun");
    assert_eq!(
        (d.sdkappid, d.time, d.expire),
        (1_400_000_000, T0, 15_552_000)
    );
    assert_eq!(d.sig, VECTORS[0].5);
    assert_eq!(d.userbuf, None);
    let check = |now| verify(PYTHON_USERSIG, 1_400_000_000, "xiaojun", KEY, now);
    assert_eq!(check(T0), Ok(d.clone()));
    assert_eq!(
        check(T0 + 15_552_000),
        Ok(d),
        "expiry is `now > time + expire`"
    );
    let expired = check(T0 + 15_552_000 + 1).unwrap_err();
    assert_eq!(
        expired,
        UsersigError::Expired {
            expired_at: T0 + 15_552_000
        }
    );
}

#[test]
fn round_trip_generate_then_verify() {
    let s = generate(1_400_000_000, "administrator", KEY, T0, 86_400);
    let d = verify(&s, 1_400_000_000, "administrator", KEY, T0 + 10).unwrap();
    assert_eq!((d.time, d.expire, d.userbuf), (T0, 86_400, None));
    let s = generate_with_userbuf(7, "ü user", "κλειδί", T0, 60, b"\x00\xffbuf");
    let d = verify(&s, 7, "ü user", "κλειδί", T0).unwrap();
    assert_eq!(d.userbuf.as_deref(), Some(&b"\x00\xffbuf"[..]));
}

#[test]
fn each_error_variant_with_its_tencent_code() {
    let s = generate(1_400_000_000, "admin", KEY, T0, 100);
    let cases = [
        (
            verify("", 1_400_000_000, "admin", KEY, T0),
            UsersigError::Malformed(String::new()),
            70003,
        ),
        (
            verify(&s, 1_400_000_001, "admin", KEY, T0),
            UsersigError::SdkAppIdMismatch,
            70014,
        ),
        (
            verify(&s, 1_400_000_000, "root", KEY, T0),
            UsersigError::IdentifierMismatch,
            70013,
        ),
        (
            verify(&s, 1_400_000_000, "admin", KEY, T0 + 101),
            UsersigError::Expired {
                expired_at: T0 + 100,
            },
            70001,
        ),
        (
            verify(&s, 1_400_000_000, "admin", "other-key", T0),
            UsersigError::BadSignature,
            70009,
        ),
    ];
    for (got, want, code) in cases {
        let err = got.unwrap_err();
        assert_eq!(std::mem::discriminant(&err), std::mem::discriminant(&want));
        assert_eq!(err.tencent_code(), code);
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(
                !shown.contains(KEY) && !shown.contains("other-key"),
                "{shown}"
            );
        }
    }
}

#[test]
fn tampered_documents_fail_the_signature_check() {
    let sig = hmac_sig(1, "3", "2", T0, 4, None);
    let doc = |time: i64, sig: &str| {
        format!(
            r#"{{"TLS.ver":"2.0","TLS.identifier":"3","TLS.sdkappid":1,"TLS.time":{time},"TLS.expire":4,"TLS.sig":"{sig}"}}"#
        )
    };
    assert!(verify(&pack(&doc(T0, &sig)), 1, "3", "2", T0).is_ok());
    let longer_life = pack(&doc(T0 + 1, &sig));
    assert_eq!(
        verify(&longer_life, 1, "3", "2", T0),
        Err(UsersigError::BadSignature)
    );
    for bad_sig in ["", "not base64!", "AAAA", &sig[..40]] {
        let r = verify(&pack(&doc(T0, bad_sig)), 1, "3", "2", T0);
        assert_eq!(r, Err(UsersigError::BadSignature), "{bad_sig}");
    }
    let added_userbuf = generate_with_userbuf(1, "3", "2", T0, 4, b"x");
    assert!(verify(&added_userbuf, 1, "3", "2", T0).is_ok());
    let stripped = added_userbuf.replace("_", "");
    assert!(
        verify(&stripped, 1, "3", "2", T0).is_ok(),
        "padding is optional"
    );
}

#[test]
fn liberal_about_key_order_whitespace_and_numeric_strings() {
    let sig = hmac_sig(1, "3", "2", T0, 4, Some(&[5]));
    let json = format!(
        "{{ \"TLS.sig\" : \"{sig}\",\n \"TLS.userbuf\": \"BQ==\", \"TLS.expire\": \"4\",\
         \"TLS.time\": {T0}, \"TLS.identifier\": \"3\", \"TLS.sdkappid\": 1, \"TLS.ver\": \"2.0\" }}"
    );
    let d = verify(&pack(&json), 1, "3", "2", T0).unwrap();
    assert_eq!((d.expire, d.userbuf), (4, Some(vec![5])));
}

#[test]
fn garbage_input_is_an_error_never_a_panic() {
    let full = r#""TLS.ver":"2.0","TLS.identifier":"a","TLS.sdkappid":1,"TLS.time":1,"TLS.expire":1,"TLS.sig":"x""#;
    let mut cases = vec![
        String::new(),
        "!!!not base64***".into(),
        "A".into(),
        escape(&STANDARD.encode(b"definitely not zlib")),
        pack("not json"),
        pack("[1,2,3]"),
        pack("{}"),
        pack(r#"{"TLS.ver":"2.0","TLS.identifier":"a","TLS.sdkappid":1}"#),
        pack(&format!(
            "{{{}}}",
            full.replace(r#""TLS.time":1"#, r#""TLS.time":1e30"#)
        )),
        pack(&format!(
            "{{{}}}",
            full.replace(r#""TLS.time":1"#, r#""TLS.time":99999999999999999999"#)
        )),
        pack(&format!(
            "{{{}}}",
            full.replace(r#""TLS.sdkappid":1"#, r#""TLS.sdkappid":-1"#)
        )),
        pack(&format!(
            "{{{}}}",
            full.replace(r#""TLS.identifier":"a""#, r#""TLS.identifier":7"#)
        )),
        pack(&format!("{{{full},\"TLS.userbuf\":\"%%%\"}}")),
        pack(&" ".repeat(64 * 1024 + 1)),
        "A".repeat(MAX_USERSIG_LEN + 1),
    ];
    let zlib = pack(&format!("{{{full}}}"));
    assert!(decode(&zlib).is_ok());
    cases.push(zlib[..zlib.len() / 2].to_string());
    for case in &cases {
        assert!(malformed_err(case), "accepted {case:.60}");
        let r = verify(case, 1, "a", KEY, 0);
        assert!(matches!(r, Err(UsersigError::Malformed(_))));
    }
}

#[test]
fn extreme_times_saturate_instead_of_overflowing() {
    let forever = generate(1, "a", KEY, i64::MAX, i64::MAX);
    assert!(verify(&forever, 1, "a", KEY, i64::MAX).is_ok());
    let past = generate(1, "a", KEY, i64::MIN, -1);
    let want = UsersigError::Expired {
        expired_at: i64::MIN,
    };
    assert_eq!(verify(&past, 1, "a", KEY, i64::MIN + 1), Err(want));
}

#[test]
fn long_keys_are_hashed_like_hmac_new_from_slice() {
    for key in ["", "k", &"x".repeat(64), &"y".repeat(65), &"z".repeat(200)] {
        let mut m = <HmacSha256 as Mac>::new_from_slice(key.as_bytes()).unwrap();
        m.update(b"TLS.identifier:a\nTLS.sdkappid:1\nTLS.time:2\nTLS.expire:3\n");
        let want = STANDARD.encode(m.finalize().into_bytes());
        assert_eq!(
            hmac_sig(1, "a", key, 2, 3, None),
            want,
            "key length {}",
            key.len()
        );
    }
}

#[test]
fn stored_zlib_fallback_is_valid_zlib() {
    for data in [Vec::new(), b"{\"a\":1}".to_vec(), vec![7u8; 70_000]] {
        let mut out = Vec::new();
        ZlibDecoder::new(stored_zlib(&data).as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }
}

#[test]
fn constant_time_compare() {
    assert!(ct_eq(b"abc", b"abc") && ct_eq(b"", b""));
    assert!(!ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
}
