//! The metrics of pressure on the process: connections per listener (open, cap, closed by the
//! gateway and why) and the memory budget (the budget, what is accounted, the resident set).

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::table::register;

/// Connection and memory metrics, a part of [`super::Metrics`].
#[derive(Clone, Debug)]
pub struct PressureMetrics {
    /// Open connections, by listener (`proxy`, `admin`).
    pub connections: IntGaugeVec,
    /// The connection cap in force, by listener.
    pub connections_max: IntGaugeVec,
    /// Connections the gateway closed itself, by listener and reason (`header_timeout`,
    /// `idle_timeout`, `evicted`).
    pub connections_closed: IntCounterVec,
    /// The memory budget in bytes (0: none).
    pub memory_budget: IntGauge,
    /// Bytes accounted to requests and connections now.
    pub memory_accounted: IntGauge,
    /// The resident set size last sampled, in bytes.
    pub memory_resident: IntGauge,
}

/// One listener's handles, with its label resolved.
#[derive(Clone, Debug)]
pub struct ListenerMetrics {
    /// Open connections.
    pub open: IntGauge,
    /// The cap in force.
    pub max: IntGauge,
    /// Closed by the gateway, by listener and reason.
    closed: IntCounterVec,
    name: &'static str,
}

impl ListenerMetrics {
    /// Counts a connection the gateway closed for `reason`.
    pub fn closed(&self, reason: &str) {
        self.closed.with_label_values(&[self.name, reason]).inc();
    }
}

impl PressureMetrics {
    /// Registers the pressure metrics in `r`.
    pub fn new(r: &Registry) -> PressureMetrics {
        let vec = |name: &str, help: &str| {
            register(
                r,
                IntGaugeVec::new(Opts::new(name, help), &["listener"]).expect("static"),
            )
        };
        let one = |name: &str, help: &str| register(r, IntGauge::new(name, help).expect("static"));
        let metrics = PressureMetrics {
            connections: vec("connections", "Open connections, by listener."),
            connections_max: vec(
                "connections_max",
                "The connection cap in force, by listener.",
            ),
            connections_closed: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "connections_closed_total",
                        "Connections the gateway closed itself, by listener and reason.",
                    ),
                    &["listener", "reason"],
                )
                .expect("static"),
            ),
            memory_budget: one(
                "memory_budget_bytes",
                "The memory budget (server.memory_limit_bytes or the cgroup's limit); 0: none.",
            ),
            memory_accounted: one(
                "memory_accounted_bytes",
                "Bytes the gateway accounts to request bodies, waiting callers and connections.",
            ),
            memory_resident: one(
                "memory_resident_bytes",
                "The resident set size, as last sampled by the memory guard.",
            ),
        };
        for listener in ["proxy", "admin"] {
            for reason in ["header_timeout", "idle_timeout", "evicted"] {
                metrics
                    .connections_closed
                    .with_label_values(&[listener, reason]);
            }
        }
        metrics
    }

    /// The handles of the listener called `name`.
    pub fn listener(&self, name: &'static str) -> ListenerMetrics {
        ListenerMetrics {
            open: self.connections.with_label_values(&[name]),
            max: self.connections_max.with_label_values(&[name]),
            closed: self.connections_closed.clone(),
            name,
        }
    }
}
