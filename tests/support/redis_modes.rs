//! Redis as managed services run it, started by the tests on free ports: a TLS-only server that
//! wants a client certificate and an ACL user's password (certificates made with rcgen), a
//! Cluster of three masters (each with a replica when asked) made with `redis-cli --cluster
//! create`, and a master with a replica watched by a Sentinel.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::redis::{Redis, free_port, skip_without};

/// The ACL user the TLS server knows, and its password (written to a file, as a Secret is).
pub(crate) const USER: &str = "timgate";
const PASSWORD: &str = "s3cret-acl-pass";

/// A private CA, a server certificate for 127.0.0.1 it signed and a client certificate it signed,
/// as PEM files in a temp dir.
pub(crate) struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub(crate) fn new() -> Certs {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "timgate test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
        let leaf = |names: Vec<String>| {
            let key = rcgen::KeyPair::generate().expect("key");
            let params = rcgen::CertificateParams::new(names).expect("params");
            let cert = params.signed_by(&key, &ca).expect("signed");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
        let (client_cert, client_key) = leaf(vec!["timgate-client".into()]);
        Certs {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server_cert),
            server_key: write("server.key", server_key),
            client_cert: write("client.pem", client_cert),
            client_key: write("client.key", client_key),
            dir,
        }
    }
}

/// A redis-server that listens only over TLS, wants a client certificate its CA signed, and
/// lets in only [`USER`] with its password.
pub(crate) struct TlsRedis {
    pub redis: Redis,
    pub certs: Certs,
    /// Where the password is, for `limits.redis_password_file`.
    pub password_file: PathBuf,
}

impl TlsRedis {
    pub(crate) fn start() -> Option<TlsRedis> {
        let certs = Certs::new();
        let password_file = certs.dir.path().join("redis-password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("write password");
        let path = |p: &Path| p.display().to_string();
        let args = [
            "--tls-port".to_string(),
            free_port().to_string(),
            "--tls-cert-file".into(),
            path(&certs.server_cert),
            "--tls-key-file".into(),
            path(&certs.server_key),
            "--tls-ca-cert-file".into(),
            path(&certs.ca),
            "--tls-auth-clients".into(),
            "yes".into(),
        ]
        .into_iter()
        // Each word its own argument: redis-server quotes an argument with a space as one.
        .chain(["--user", "default", "off", "--user", USER, "on"].map(String::from))
        .chain([
            format!(">{PASSWORD}"),
            "~*".into(),
            "&*".into(),
            "+@all".into(),
        ])
        .collect::<Vec<_>>();
        let redis = Redis::start_with("redis-server", 0, &args, None)?;
        Some(TlsRedis {
            redis,
            certs,
            password_file,
        })
    }

    /// The `[limits]` layer that reaches it: the user in the URL, the password from its file,
    /// the private CA and the client certificate.
    pub(crate) fn layer(&self) -> String {
        let c = &self.certs;
        format!(
            "[limits]\nbackend = \"redis\"\nredis_url = \"rediss://{USER}@127.0.0.1:{}\"\n\
             redis_password_file = \"{}\"\nredis_ca_file = \"{}\"\nredis_cert_file = \"{}\"\n\
             redis_key_file = \"{}\"\n",
            self.redis.port,
            self.password_file.display(),
            c.ca.display(),
            c.client_cert.display(),
            c.client_key.display(),
        )
    }
}

/// Runs `redis-cli <args>` and returns what it printed.
pub(crate) fn cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (up to 30 s) until `ready` holds, asking every 100 ms.
pub(crate) fn wait(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..300 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

/// Waits until the server on `port`, if a replica, has synced with its master.
fn wait_synced(port: u16) {
    let port = port.to_string();
    wait("the replica syncs", || {
        let info = cli(&["-p", &port, "info", "replication"]);
        info.contains("role:master") || info.contains("master_link_status:up")
    });
}

/// A Redis Cluster of three masters, each with a replica when made with `replicas`.
pub(crate) struct Cluster {
    /// Its nodes, the masters first as `redis-cli` assigned them.
    pub nodes: Vec<Redis>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub(crate) fn start(replicas: bool) -> Option<Cluster> {
        if skip_without("redis-cli") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        for _ in 0..if replicas { 6 } else { 3 } {
            let port = free_port();
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                // A master gone this long is failed over to its replica.
                "--cluster-node-timeout",
                "1000",
                // A replica syncs at once (the default waits 5 s for others to join it).
                "--repl-diskless-sync-delay",
                "0",
            ]
            .map(String::from);
            nodes.push(Redis::start_with(
                "redis-server",
                port,
                &args,
                Some(dir.path()),
            )?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addrs.iter().map(String::as_str));
        create.extend(["--cluster-replicas", if replicas { "1" } else { "0" }]);
        create.push("--cluster-yes");
        cli(&create);
        let cluster = Cluster { nodes, _dir: dir };
        cluster.wait_ok();
        // A replica that has not synced cannot be failed over to.
        for node in &cluster.nodes {
            wait_synced(node.port);
        }
        Some(cluster)
    }

    /// Waits until every live node says the cluster is ok.
    pub(crate) fn wait_ok(&self) {
        wait("the cluster is ok", || {
            self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                cli(&["-p", &n.port.to_string(), "cluster", "info"]).contains("cluster_state:ok")
            })
        });
    }

    /// The `[limits]` layer that reaches it through its first three nodes.
    pub(crate) fn layer(&self) -> String {
        let seeds: Vec<String> = self.nodes[..3]
            .iter()
            .map(|n| format!("\"redis://127.0.0.1:{}\"", n.port))
            .collect();
        format!(
            "[limits]\nbackend = \"redis\"\nredis_cluster_nodes = [{}]\n",
            seeds.join(", ")
        )
    }

    /// The index in `nodes` of the master that serves `key`'s slot now.
    pub(crate) fn master_of(&self, key: &str) -> usize {
        let asked = self.nodes.iter().find(|n| n.is_running()).expect("a node");
        let port = asked.port.to_string();
        let slot: u16 = cli(&["-p", &port, "cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot");
        let table = cli(&["-p", &port, "cluster", "nodes"]);
        let line = table
            .lines()
            .filter(|line| line.contains("master") && !line.contains("fail"))
            .find(|line| {
                line.split(' ').skip(8).any(|range| {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    let (a, b) = (a.parse().unwrap_or(1), b.parse().unwrap_or(0));
                    (a..=b).contains(&slot)
                })
            })
            .expect("a master serves the slot");
        let address = line.split(' ').nth(1).expect("an address");
        let port: u16 = address
            .split(['@', ':'])
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("a port");
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("one of ours")
    }
}

/// A master and its replica, watched by one Sentinel (quorum 1) under [`MASTER`].
pub(crate) struct Sentinel {
    pub master: Redis,
    pub replica: Redis,
    pub sentinel: Redis,
    _dir: tempfile::TempDir,
}

/// The name the Sentinel monitors the master by.
pub(crate) const MASTER: &str = "timgate-master";

impl Sentinel {
    pub(crate) fn start() -> Option<Sentinel> {
        if skip_without("redis-sentinel") || skip_without("redis-cli") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let no_delay = ["--repl-diskless-sync-delay".to_string(), "0".into()];
        // Both in the temp dir: a replica writes the master's data there as it syncs.
        let master = Redis::start_with("redis-server", free_port(), &no_delay, Some(dir.path()))?;
        let replicaof = [
            "--replicaof".to_string(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ];
        let replica = Redis::start_with("redis-server", free_port(), &replicaof, Some(dir.path()))?;
        wait_synced(replica.port);
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {MASTER} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n",
                master.port
            ),
        )
        .expect("write sentinel.conf");
        let args = [conf.display().to_string()];
        let sentinel = Redis::start_with("redis-sentinel", free_port(), &args, Some(dir.path()))?;
        let sentinel_port = sentinel.port.to_string();
        wait("the Sentinel sees the replica", || {
            cli(&["-p", &sentinel_port, "sentinel", "replicas", MASTER]).contains("slave")
        });
        Some(Sentinel {
            master,
            replica,
            sentinel,
            _dir: dir,
        })
    }

    /// The `[limits]` layer that reaches the master through the Sentinel.
    pub(crate) fn layer(&self) -> String {
        format!(
            "[limits]\nbackend = \"redis\"\nredis_sentinels = [\"redis://127.0.0.1:{}\"]\n\
             redis_sentinel_master = \"{MASTER}\"\n",
            self.sentinel.port
        )
    }

    /// The port of the master the Sentinel names now.
    pub(crate) fn master_port(&self) -> u16 {
        let port = self.sentinel.port.to_string();
        let answer = cli(&["-p", &port, "sentinel", "get-master-addr-by-name", MASTER]);
        answer
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }
}
