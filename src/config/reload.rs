//! What a reload may not change: the parts of a configuration that take effect only at a
//! restart, each compared and kept in one table, so that a new restart-only key is one row.

use super::Config;

/// A part of the configuration that a running gateway keeps until it restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixed {
    /// `server.listen` and `server.admin_listen`: the sockets are bound once.
    Listeners,
    /// The connection caps and the header and idle timeouts: the listeners are built with them.
    Connections,
    /// `[tencent]`: the signer and the upstream's address and trust are built with it.
    Tencent,
    /// `[upstream]`: the HTTP client is built with it.
    Upstream,
    /// `limits.backend`: the budget is local or shared from the start.
    Backend,
    /// `log.format`: the subscriber is installed once.
    LogFormat,
    /// `[queue]`: the durable queue, its partitions and its owner loops are made at the start.
    Queue,
    /// `[tracing]`: the exporter is started once.
    Tracing,
}

impl Fixed {
    /// Every part, in the order a reload reports them.
    const ALL: [Fixed; 8] = [
        Fixed::Listeners,
        Fixed::Connections,
        Fixed::Tencent,
        Fixed::Upstream,
        Fixed::Backend,
        Fixed::LogFormat,
        Fixed::Queue,
        Fixed::Tracing,
    ];

    /// The name a reload's log line and the SIGHUP tests give the part.
    pub fn name(self) -> &'static str {
        match self {
            Fixed::Listeners => "server.listen / server.admin_listen",
            Fixed::Connections => "server connection caps and timeouts",
            Fixed::Tencent => "tencent",
            Fixed::Upstream => "upstream",
            Fixed::Backend => "limits.backend",
            Fixed::LogFormat => "log.format",
            Fixed::Queue => "queue",
            Fixed::Tracing => "tracing",
        }
    }

    /// Whether `new` changes this part of `old`.
    fn differs(self, old: &Config, new: &Config) -> bool {
        let (a, b) = (&old.server, &new.server);
        match self {
            Fixed::Listeners => (a.listen, a.admin_listen) != (b.listen, b.admin_listen),
            Fixed::Connections => {
                let connections = |s: &super::ServerConfig| {
                    let caps = (s.max_connections, s.admin_max_connections);
                    (caps, s.header_read_timeout, s.idle_timeout)
                };
                connections(a) != connections(b)
            }
            Fixed::Tencent => old.tencent != new.tencent,
            Fixed::Upstream => old.upstream != new.upstream,
            Fixed::Backend => old.limits.backend != new.limits.backend,
            Fixed::LogFormat => old.log.format != new.log.format,
            Fixed::Queue => old.queue != new.queue,
            Fixed::Tracing => old.tracing != new.tracing,
        }
    }

    /// Puts this part of `old` back into `new`.
    fn keep(self, old: &Config, new: &mut Config) {
        let (a, b) = (&old.server, &mut new.server);
        match self {
            Fixed::Listeners => (b.listen, b.admin_listen) = (a.listen, a.admin_listen),
            Fixed::Connections => {
                (b.max_connections, b.admin_max_connections) =
                    (a.max_connections, a.admin_max_connections);
                (b.header_read_timeout, b.idle_timeout) = (a.header_read_timeout, a.idle_timeout);
            }
            Fixed::Tencent => new.tencent = old.tencent.clone(),
            Fixed::Upstream => new.upstream = old.upstream.clone(),
            Fixed::Backend => new.limits.backend = old.limits.backend.clone(),
            Fixed::LogFormat => new.log.format = old.log.format,
            Fixed::Queue => new.queue = old.queue.clone(),
            Fixed::Tracing => new.tracing = old.tracing.clone(),
        }
    }
}

/// Settles a reload of `old` to `new`: returns the fixed parts `new` would change, and puts
/// every fixed part of `old` back into `new`, so that what is applied is what can be, and the
/// next reload compares against what is running.
pub fn settle(old: &Config, new: &mut Config) -> Vec<Fixed> {
    let changed = Fixed::ALL
        .into_iter()
        .filter(|part| part.differs(old, new))
        .collect();
    for part in Fixed::ALL {
        part.keep(old, new);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let toml = format!("[tencent]\nsdkappid = 1\nsecret_key = \"k\"\n{extra}");
        Config::from_toml(&toml).expect("config")
    }

    #[test]
    fn a_reload_that_changes_nothing_fixed_settles_to_itself() {
        let old = config("");
        let mut new = config("[limits]\napp_per_second = 100\n");
        assert!(settle(&old, &mut new).is_empty());
        assert_eq!(new.limits.app_per_second, 100, "what can change is kept");
    }

    #[test]
    fn each_fixed_part_is_reported_and_kept_at_its_running_value() {
        let old = config("");
        let mut new = config(concat!(
            "[server]\nlisten = \"127.0.0.1:1\"\nidle_timeout_ms = 7000\n",
            "[upstream]\nconnect_timeout_ms = 7\n",
            "[log]\nformat = \"text\"\n",
            "[queue]\nlease_ms = 3000\n",
        ));
        new.tencent.identifier = "someone".to_string();
        let changed = settle(&old, &mut new);
        let names: Vec<_> = changed.iter().map(|part| part.name()).collect();
        assert_eq!(
            names,
            [
                "server.listen / server.admin_listen",
                "server connection caps and timeouts",
                "tencent",
                "upstream",
                "log.format",
                "queue",
            ]
        );
        assert!(settle(&old, &mut new).is_empty(), "every part was put back");
    }

    #[test]
    fn a_changed_key_is_a_tencent_change_though_its_debug_form_is_redacted() {
        let old = config("");
        let mut new = config("");
        new.tencent.secret = super::super::SecretSource::Inline("other".to_string());
        assert_eq!(settle(&old, &mut new), [Fixed::Tencent]);
    }
}
