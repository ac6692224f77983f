//! File descriptors: raise the soft `RLIMIT_NOFILE` to the hard limit at start, and share what
//! there is between the proxy listener, the admin listener and a reserve for the gateway's own
//! connections (upstream, Redis, logs), so that no listener can take another's descriptors.

/// Descriptors kept back for the gateway's own use: upstream and Redis connections, the epoll
/// and signal descriptors, standard streams. An eighth of the limit, at least 128.
pub fn reserve(limit: u64) -> u64 {
    (limit / 8).max(128)
}

/// Raises the soft limit on open files to the hard limit and returns the soft limit in force
/// (None where it cannot be read).
pub fn raise_nofile() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(hard)) = (limit.current, limit.maximum)
        && current < hard
    {
        let raised = rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit.current = Some(hard),
            Err(e) => {
                tracing::warn!(error = %e, soft = current, hard, "Could not raise the open-file limit.")
            }
        }
    }
    // None means unlimited, which Linux does not allow for files; treat it as large.
    Some(limit.current.unwrap_or(u64::MAX))
}

/// The connection caps in force: the configured ones, lowered so that both listeners together
/// stay below `limit` with [`reserve`] to spare. The admin listener keeps its cap first (probes
/// and scrapes must get through); the proxy gets the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `server.max_connections`, as in force.
    pub proxy: usize,
    /// `server.admin_max_connections`, as in force.
    pub admin: usize,
}

impl Caps {
    /// Fits `proxy` and `admin` under `limit` descriptors.
    pub fn fit(proxy: usize, admin: usize, limit: u64) -> Caps {
        let usable = limit.saturating_sub(reserve(limit));
        let admin = (admin as u64).min(usable / 4).max(1) as usize;
        let proxy = (proxy as u64)
            .min(usable.saturating_sub(admin as u64))
            .max(1) as usize;
        Caps { proxy, admin }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_under_a_small_limit_with_the_reserve() {
        let caps = Caps::fit(10_000, 64, 1024);
        assert_eq!(
            caps,
            Caps {
                proxy: 832,
                admin: 64
            }
        );
        assert!(caps.proxy as u64 + caps.admin as u64 + reserve(1024) <= 1024);
    }

    #[test]
    fn configured_caps_stand_under_a_large_limit() {
        assert_eq!(
            Caps::fit(10_000, 64, 1_048_576),
            Caps {
                proxy: 10_000,
                admin: 64
            }
        );
    }

    #[test]
    fn a_tiny_limit_still_leaves_one_of_each() {
        let caps = Caps::fit(10_000, 64, 100);
        assert_eq!(caps, Caps { proxy: 1, admin: 1 });
    }

    #[test]
    fn raising_reports_a_limit() {
        let limit = raise_nofile().expect("readable on Linux");
        assert!(limit >= 1024);
    }
}
