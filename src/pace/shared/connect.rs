//! Reaching the shared budget's Redis as configured: one server over TCP or TLS, the master the
//! Sentinels name now, or a Cluster. The CA, client certificate and password files are read at
//! each connection, so that a rotated Secret is used from the next one; a password read is added
//! to what errors are scrubbed of before anything prints them.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ClientTlsConfig, ConnectionInfo, IntoConnectionInfo, RedisFuture,
    TlsCertificates, TlsMode,
};

use crate::config::redact::Secrets;
use crate::config::{RedisMode, RedisTarget};

/// How long one connection may take to open (TCP, TLS and AUTH).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A connection to the budget's Redis, whichever the mode: scripts run on it the same way.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server, or the master a Sentinel named (a failover ends it: the next connection
    /// asks the Sentinels again).
    Single(MultiplexedConnection),
    /// A Cluster: each script goes to the master of its keys' slot; MOVED and ASK are followed
    /// by the client.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The files a connection reads, read now.
struct Files {
    certs: TlsCertificates,
    password: Option<String>,
}

/// Reads `target`'s files; a password read joins `secrets`.
fn read_files(target: &RedisTarget, secrets: &Mutex<Secrets>) -> Result<Files, String> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let root_cert = target.ca_file.as_deref().map(read).transpose()?;
    let client_tls = match (&target.cert_file, &target.key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        _ => None,
    };
    let password = match &target.password_file {
        Some(path) => {
            let text = String::from_utf8(read(path)?)
                .map_err(|_| format!("{} is not UTF-8", path.display()))?;
            let password = text.trim().to_string();
            secrets
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .add(&password);
            Some(password)
        }
        None => None,
    };
    Ok(Files {
        certs: TlsCertificates {
            client_tls,
            root_cert,
        },
        password,
    })
}

/// Opens a connection to `target`, each command of which gives up after `target.timeout`.
/// Errors are the redis crate's, not yet scrubbed.
pub(crate) async fn connect(
    target: &RedisTarget,
    secrets: &Mutex<Secrets>,
) -> Result<Conn, String> {
    let files = read_files(target, secrets)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(target.timeout));
    let info = |url: &str| url.into_connection_info().map_err(|e| e.to_string());
    let tls = target.tls();
    match &target.mode {
        RedisMode::Standalone(url) => {
            let mut info = info(url)?;
            if let Some(password) = files.password {
                let redis = info.redis_settings().clone().set_password(password);
                info = info.set_redis_settings(redis);
            }
            let client = if tls {
                redis::Client::build_with_tls(info, files.certs)
            } else {
                redis::Client::open(info)
            }
            .map_err(|e| e.to_string())?;
            let conn = client.get_multiplexed_async_connection_with_config(&config);
            Ok(Conn::Single(conn.await.map_err(|e| e.to_string())?))
        }
        RedisMode::Sentinel { sentinels, master } => {
            let infos = sentinels
                .iter()
                .map(|url| info(url))
                .collect::<Result<Vec<ConnectionInfo>, String>>()?;
            let first = infos
                .first()
                .ok_or("no Sentinel URL")?
                .redis_settings()
                .clone();
            let addrs = infos.iter().map(|info| info.addr().clone());
            let mut builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
                .map_err(|e| e.to_string())?
                .set_client_to_redis_db(first.db());
            if let Some(user) = first.username() {
                builder = builder
                    .set_client_to_sentinel_username(user)
                    .set_client_to_redis_username(user);
            }
            if let Some(password) = first.password() {
                builder = builder.set_client_to_sentinel_password(password);
            }
            if let Some(password) = files.password.as_deref().or(first.password()) {
                builder = builder.set_client_to_redis_password(password);
            }
            if tls {
                builder = builder
                    .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                    .set_client_to_sentinel_certificates(files.certs.clone())
                    .set_client_to_redis_tls_mode(TlsMode::Secure)
                    .set_client_to_redis_certificates(files.certs);
            }
            let mut client = builder.build().map_err(|e| e.to_string())?;
            let conn = client.get_async_connection_with_config(&config).await;
            Ok(Conn::Single(conn.map_err(|e| e.to_string())?))
        }
        RedisMode::Cluster(nodes) => {
            let infos = nodes
                .iter()
                .map(|url| info(url))
                .collect::<Result<Vec<ConnectionInfo>, String>>()?;
            let first = infos
                .first()
                .ok_or("no Cluster node")?
                .redis_settings()
                .clone();
            let mut builder = ClusterClientBuilder::new(infos.clone())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(target.timeout)
                // A slot's master gone: a few quick retries find its promoted replica, and the
                // command's own timeout bounds them all.
                .retries(3)
                .min_retry_wait(10)
                .max_retry_wait(100);
            if let Some(user) = first.username() {
                builder = builder.username(user);
            }
            if let Some(password) = files.password.as_deref().or(first.password()) {
                builder = builder.password(password);
            }
            if tls {
                builder = builder.tls(TlsMode::Secure).certs(files.certs);
            }
            let client = builder.build().map_err(|e| e.to_string())?;
            let conn = client.get_async_connection().await;
            Ok(Conn::Cluster(conn.map_err(|e| e.to_string())?))
        }
    }
}
