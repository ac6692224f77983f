//! The signer: owns the SecretKey and a cached UserSig, renews the sig well before it expires (and
//! at once after a 70001 answer), and builds the signed query string of each attempt.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng;

use crate::clock::unix_now;
use crate::config::{SecretSource, TencentConfig};
use crate::error::Error;
use crate::tencent::usersig;

/// The sig is renewed once this share of its lifetime has passed, so that a renewal delayed by a
/// failing key file still leaves a quarter of the lifetime to recover in.
const RENEW_AT: f64 = 0.75;

/// A generated UserSig and what it was made from.
struct Current {
    usersig: Arc<str>,
    /// `sdkappid=..&identifier=..&usersig=..`, percent-encoded once per UserSig rather than once
    /// per attempt.
    signed: String,
    created: i64,
    expires: i64,
    key: String,
    /// How many times the key has changed since start: a call signed before a change can tell
    /// that one was made, whoever noticed it.
    key_changes: u64,
}

/// Signs requests as the configured App admin.
pub struct Signer {
    sdkappid: u64,
    identifier: String,
    source: SecretSource,
    ttl: Duration,
    clock: fn() -> i64,
    current: RwLock<Arc<Current>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("sdkappid", &self.sdkappid)
            .field("identifier", &self.identifier)
            .finish_non_exhaustive()
    }
}

fn read_key(source: &SecretSource) -> Result<String, Error> {
    match source {
        SecretSource::Inline(key) => Ok(key.clone()),
        SecretSource::File(path) => {
            let key = std::fs::read_to_string(path).map_err(|e| {
                Error::Internal(format!(
                    "cannot read secret_key_file {}: {e}",
                    path.display()
                ))
            })?;
            let key = key.trim();
            if key.is_empty() {
                return Err(Error::Internal(format!(
                    "secret_key_file {} is empty",
                    path.display()
                )));
            }
            Ok(key.to_string())
        }
    }
}

impl Signer {
    /// Reads the key and generates the first UserSig.
    pub fn new(config: &TencentConfig) -> Result<Signer, Error> {
        Self::with_clock(config, unix_now)
    }

    /// Like [`Signer::new`] with a chosen clock (tests move time without waiting for it).
    pub fn with_clock(config: &TencentConfig, clock: fn() -> i64) -> Result<Signer, Error> {
        let key = read_key(&config.secret)?;
        let mut signer = Signer {
            sdkappid: config.sdkappid,
            identifier: config.identifier.clone(),
            source: config.secret.clone(),
            ttl: config.usersig_ttl,
            clock,
            current: RwLock::new(Arc::new(Current {
                usersig: Arc::from(""),
                signed: String::new(),
                created: 0,
                expires: 0,
                key: String::new(),
                key_changes: 0,
            })),
        };
        let first = signer.generate(key, 0);
        signer.current = RwLock::new(Arc::new(first));
        Ok(signer)
    }

    fn generate(&self, key: String, key_changes: u64) -> Current {
        let created = (self.clock)();
        let ttl = self.ttl.as_secs() as i64;
        let sig = usersig::generate(self.sdkappid, &self.identifier, &key, created, ttl);
        let signed = format!(
            "sdkappid={}&identifier={}&usersig={}",
            self.sdkappid,
            encode(&self.identifier),
            encode(&sig)
        );
        Current {
            signed,
            usersig: Arc::from(sig),
            created,
            expires: created.saturating_add(ttl),
            key,
            key_changes,
        }
    }

    fn snapshot(&self) -> Arc<Current> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The current UserSig, renewed first if it has lived past 75% of its lifetime.
    pub fn usersig(&self) -> Arc<str> {
        self.fresh().usersig.clone()
    }

    /// The current sig and what goes with it, renewed first if it has lived past 75% of its
    /// lifetime.
    fn fresh(&self) -> Arc<Current> {
        let current = self.snapshot();
        let age = (self.clock)() - current.created;
        if (age as f64) < self.ttl.as_secs_f64() * RENEW_AT {
            return current;
        }
        self.renew_from(&current)
    }

    /// Renews the UserSig now (after Tencent answered 70001), re-reading a key file.
    pub fn renew(&self) -> Arc<str> {
        let current = self.snapshot();
        self.renew_from(&current).usersig.clone()
    }

    fn renew_from(&self, seen: &Arc<Current>) -> Arc<Current> {
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Another request renewed it while this one waited for the lock.
        if !Arc::ptr_eq(&guard, seen) {
            return guard.clone();
        }
        let key = read_key(&self.source).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "Keeping the previous SecretKey.");
            guard.key.clone()
        });
        let changes = guard.key_changes + u64::from(key != guard.key);
        *guard = Arc::new(self.generate(key, changes));
        guard.clone()
    }

    /// Re-reads a `secret_key_file` (a Kubernetes Secret swaps it by symlink) and, if the key
    /// changed, makes a new UserSig with it at once. Returns whether it changed. Requests already
    /// signed keep their sig; the next ones use the new one.
    pub fn reload_key(&self) -> bool {
        let SecretSource::File(path) = &self.source else {
            return false;
        };
        let key = match read_key(&self.source) {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(error = %e, "Keeping the previous SecretKey.");
                return false;
            }
        };
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.key == key {
            return false;
        }
        let changes = guard.key_changes + 1;
        *guard = Arc::new(self.generate(key, changes));
        tracing::info!(path = %path.display(), "SecretKey file changed: new UserSig made.");
        true
    }

    /// How many times the key has changed since start. A call that met 70009 compares the
    /// count from before it was signed with the count now: another call, or the periodic look
    /// at the file, may have found the new key first.
    pub fn key_changes(&self) -> u64 {
        self.snapshot().key_changes
    }

    /// When the current UserSig expires, in Unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.snapshot().expires
    }

    /// The signed query string of one attempt: the five parameters Tencent reads, with a fresh
    /// `random` each time, so that Tencent can tell a retry from a replay.
    pub fn query(&self) -> String {
        let random: u32 = rand::rng().random();
        let fresh = self.fresh();
        // Appended rather than `format!`ed: this runs at every attempt.
        let mut query = String::with_capacity(fresh.signed.len() + 40);
        query.push_str(&fresh.signed);
        query.push_str("&random=");
        query.push_str(itoa::Buffer::new().format(random));
        query.push_str("&contenttype=json");
        query
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::sync::atomic::{AtomicI64, Ordering};

    static NOW: AtomicI64 = AtomicI64::new(1_700_000_000);

    fn test_clock() -> i64 {
        NOW.load(Ordering::SeqCst)
    }

    #[test]
    fn renews_after_three_quarters_of_the_lifetime_and_not_before() {
        let config = Config::from_toml(
            "[tencent]\nsdkappid = 1400000000\nsecret_key = \"k\"\nusersig_ttl_secs = 1000",
        )
        .expect("valid");
        let signer = Signer::with_clock(&config.tencent, test_clock).expect("signer");
        let first = signer.usersig();
        assert_eq!(signer.expires_at(), 1_700_001_000);
        NOW.store(1_700_000_749, Ordering::SeqCst);
        assert_eq!(signer.usersig(), first);
        NOW.store(1_700_000_750, Ordering::SeqCst);
        let second = signer.usersig();
        assert_ne!(second, first);
        assert_eq!(signer.expires_at(), 1_700_001_750);
        let decoded = usersig::verify(&second, 1400000000, "administrator", "k", 1_700_000_751)
            .expect("renewed sig verifies");
        assert_eq!(decoded.expire, 1000);
        // A forced renewal (after 70001) makes a new sig even when the old one is young.
        NOW.store(1_700_000_800, Ordering::SeqCst);
        assert_ne!(signer.renew(), second);
    }

    #[test]
    fn key_changes_count_a_new_key_whoever_reads_it_and_not_a_renewal() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("secret-key");
        std::fs::write(&path, "one").expect("key");
        let config = Config::from_toml(&format!(
            "[tencent]\nsdkappid = 1\nsecret_key_file = \"{}\"",
            path.display()
        ))
        .expect("valid");
        let signer = Signer::new(&config.tencent).expect("signer");
        assert_eq!(signer.key_changes(), 0);
        signer.renew();
        assert_eq!(signer.key_changes(), 0, "the same key, renewed");
        std::fs::write(&path, "two").expect("key");
        assert!(signer.reload_key());
        // A second reader finds nothing new in the file, but the count says it changed.
        assert!(!signer.reload_key());
        assert_eq!(signer.key_changes(), 1);
        // A renewal that reads a changed file counts it too.
        std::fs::write(&path, "three").expect("key");
        signer.renew();
        assert_eq!(signer.key_changes(), 2);
    }

    #[test]
    fn query_carries_a_fresh_random_each_time() {
        let config =
            Config::from_toml("[tencent]\nsdkappid = 1\nsecret_key = \"k\"\nidentifier = \"a b\"")
                .expect("valid");
        let signer = Signer::new(&config.tencent).expect("signer");
        let a = signer.query();
        let b = signer.query();
        assert!(a.starts_with("sdkappid=1&identifier=a%20b&usersig="), "{a}");
        assert!(a.ends_with("&contenttype=json"));
        let random = |q: &str| {
            q.split('&')
                .find(|p| p.starts_with("random="))
                .map(str::to_owned)
        };
        assert_ne!(random(&a), random(&b));
    }
}
