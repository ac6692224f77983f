//! Wiring: settings in, a bound gateway out. `App::build` makes the metrics, signer, upstream and
//! gateway and binds both listeners; `App::serve` runs until the shutdown future resolves, then
//! drains within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admin::{Admin, Running};
use crate::config::reload::{self, Fixed};
use crate::config::{Backend, Config, redact};
use crate::error::Error;
use crate::gateway::Gateway;
use crate::memory::{self, MemoryGuard};
use crate::metrics::Metrics;
use crate::server::{self, ListenerLimits, Timeouts, fds};
use crate::signer::Signer;
use crate::telemetry::LogLevel;
use crate::upstream::Upstream;

/// A gateway with its listeners bound, ready to serve.
#[derive(Debug)]
pub struct App {
    config: Config,
    /// The configuration in force and the last reload, shared with the reloader and `/config`.
    running: Arc<Running>,
    /// What `PUT /log-level` changes, when timgate installed the subscriber.
    log: Option<LogLevel>,
    gateway: Arc<Gateway>,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    listener: TcpListener,
    admin_listener: TcpListener,
}

/// The kernel's queue of connections not yet accepted (clamped by `net.core.somaxconn`). Near
/// the memory budget or at a connection cap new connections wait there, so it is made deeper
/// than tokio's 1,024: a burst of callers then waits for a place instead of retrying its SYN.
pub const BACKLOG: u32 = 4096;

/// Binds a listener, naming the setting when the address cannot be had.
pub async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, Error> {
    let fail = |e: std::io::Error| Error::Internal(format!("{key}: cannot listen on {addr}: {e}"));
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    socket.listen(BACKLOG).map_err(fail)
}

impl App {
    /// Builds every part from `config` and binds the proxy and admin listeners.
    pub async fn build(config: Config) -> Result<App, Error> {
        let metrics = Metrics::new();
        let signer = Arc::new(Signer::new(&config.tencent)?);
        metrics.usersig_expiry.set(signer.expires_at() as f64);
        let upstream = Upstream::new(&config, &metrics)?;
        let tracer = crate::trace::Tracer::start(&config.tracing, &metrics)?;
        let gateway = Gateway::new(&config, signer, upstream, metrics.clone()).with_tracer(tracer);
        let gateway = Arc::new(gateway);
        gateway.start_queue();
        let listener = bind(config.server.listen, "server.listen").await?;
        let admin_listener = bind(config.server.admin_listen, "server.admin_listen").await?;
        Ok(App {
            running: Arc::new(Running::new(config.clone())),
            log: None,
            config,
            gateway,
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
            listener,
            admin_listener,
        })
    }

    /// The proxy listener's address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The log filter `/log-level` reads and changes: the handle `telemetry::init` gave.
    pub fn with_log_level(self, log: Option<LogLevel>) -> App {
        App { log, ..self }
    }

    /// A handle that applies configuration reloads to this gateway while it serves.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            gateway: self.gateway.clone(),
            running: self.running.clone(),
        }
    }

    /// The metrics registry (tests read counters from it).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves until `shutdown` resolves, then stops accepting, answers what is in flight within
    /// `server.shutdown_grace_ms`, and returns. The admin listener stays up until the end so that
    /// probes and scrapes see the drain.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let App {
            config,
            running,
            log,
            gateway,
            metrics,
            ready,
            listener,
            admin_listener,
        } = self;
        let (proxy_limits, admin_limits) = listener_limits(&config, &metrics, gateway.memory());
        let sampler = gateway.memory().spawn_sampler();
        if let Some(budget) = gateway.memory().budget() {
            tracing::info!(
                budget_bytes = budget,
                refuse_at_bytes = (budget as f64 * memory::REFUSE_AT) as u64,
                "Memory budget in force."
            );
        }
        let t = &config.tencent;
        tracing::info!(
            upstream = %redact::credentials(&t.base_url),
            backup = %t.backup_url.as_deref().map_or("none".into(), redact::credentials),
            "Tencent endpoint."
        );
        if let Some(region) = &t.legacy_region {
            tracing::warn!(
                region = %region,
                "Tencent's current pages no longer list this region; check that the app is still served there."
            );
        }
        let shared_limiter = matches!(config.limits.backend, Backend::Redis(_));
        let views = (running, gateway.pacer().clone(), log);
        let admin = Admin::new(metrics, ready.clone(), shared_limiter, views);
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(server::serve(
            admin_listener,
            None,
            move |req| {
                let admin = admin.clone();
                async move { Ok(admin.handle(req).await) }
            },
            async {
                let _ = admin_stopped.await;
            },
            Duration::from_secs(1),
            admin_limits,
        ));
        ready.store(true, Ordering::SeqCst);
        tracing::info!(listen = %listener.local_addr().map_err(|e| Error::Internal(e.to_string()))?, "Serving.");
        let handler = {
            let gateway = gateway.clone();
            move |req| {
                // Boxed here, where the request is moved into it: a block that took the request
                // and called `handle` inside would hold it twice while the request waits.
                let answering: std::pin::Pin<Box<dyn Future<Output = _> + Send>> =
                    if crate::gateway::durable::is_job_request(&req) {
                        Box::pin(gateway.clone().job(req))
                    } else {
                        Box::pin(gateway.clone().handle(req))
                    };
                async move { Ok(answering.await) }
            }
        };
        // Housekeeping once a second: a quiet gateway forgets idle groups too, and a rotated
        // SecretKey file (Kubernetes swaps a symlink) is picked up without a restart.
        let forget = {
            let gateway = gateway.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    gateway.pacer().forget_idle();
                    gateway.reload_key();
                }
            })
        };
        let grace = config.server.shutdown_grace;
        // Queued requests may still be sent while an answer can come back within the grace.
        let send_by = grace.saturating_sub(config.upstream.request_timeout);
        let draining = async {
            shutdown.await;
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                send_by_ms = send_by.as_millis() as u64,
                "Shutting down: no new requests; draining."
            );
            ready.store(false, Ordering::SeqCst);
            gateway.start_draining(tokio::time::Instant::now() + send_by);
        };
        let drained = server::serve(listener, None, handler, draining, grace, proxy_limits).await;
        forget.abort();
        if let Some(tracer) = gateway.tracer() {
            // The last answers' spans, within the export timeout at most.
            tracer.flush(config.tracing.export_timeout).await;
        }
        if let Some(sampler) = sampler {
            sampler.abort();
        }
        let _ = stop_admin.send(());
        let _ = admin_task.await;
        tracing::info!(drained, "Stopped.");
        Ok(())
    }
}

/// The proxy's and the admin listener's caps and timeouts: the soft open-file limit is raised to
/// the hard one, and both caps are lowered to fit under it with a reserve (`server::fds`).
fn listener_limits(
    config: &Config,
    metrics: &Metrics,
    memory: &MemoryGuard,
) -> (ListenerLimits, ListenerLimits) {
    let s = &config.server;
    let fd_limit = fds::raise_nofile().unwrap_or(u64::MAX);
    let caps = fds::Caps::fit(s.max_connections, s.admin_max_connections, fd_limit);
    if caps.proxy < s.max_connections || caps.admin < s.admin_max_connections {
        tracing::warn!(
            open_file_limit = fd_limit,
            reserve = fds::reserve(fd_limit),
            max_connections = caps.proxy,
            admin_max_connections = caps.admin,
            "Connection caps lowered to fit the open-file limit."
        );
    }
    let timeouts = Timeouts {
        header: Some(s.header_read_timeout),
        idle: Some(s.idle_timeout),
    };
    let limits = |cap, name, memory| ListenerLimits {
        max_connections: cap,
        timeouts,
        metrics: Some(metrics.pressure.listener(name)),
        memory,
    };
    // Probes and scrapes are not held back by the budget: they must see the pressure.
    (
        limits(caps.proxy, "proxy", memory.clone()),
        limits(caps.admin, "admin", MemoryGuard::default()),
    )
}

/// Applies reloaded configurations (SIGHUP) to a running gateway.
#[derive(Debug, Clone)]
pub struct Reloader {
    gateway: Arc<Gateway>,
    running: Arc<Running>,
}

impl Reloader {
    /// Applies `new`: the allow-list, tokens, body cap, limits, waits and retry policy change at
    /// once, keeping every queue. Returns the sections whose changes need a restart (listeners,
    /// identity, upstream, limiter backend, log format), which stay as they were. `/config`
    /// shows the result and when.
    pub fn apply(&self, mut new: Config) -> Vec<&'static str> {
        let mut running = self.running.config();
        // What needs a restart keeps its running value, so that the next reload compares right.
        let restart = reload::settle(&running, &mut new);
        self.gateway.reconfigure(&new);
        *running = new;
        drop(running);
        let restart: Vec<&'static str> = restart.into_iter().map(Fixed::name).collect();
        self.running.applied(restart.clone());
        restart
    }

    /// A reload was refused for `problems`: the running configuration stays, and `/config`
    /// says so.
    pub fn refused(&self, problems: &crate::config::ConfigError) {
        self.running.refused(problems);
    }
}
