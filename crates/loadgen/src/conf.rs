//! The configuration each proxy under test runs with, written out by the load run. nginx and
//! HAProxy get what an operator would write for a keep-alive reverse proxy; nothing is tuned
//! against them, nothing for timgate.

use std::net::SocketAddr;

use super::procs::Workdir;
use super::stack::Limits;
use timgate::emulator::{DEMO_IDENTIFIER, DEMO_SDKAPPID, DEMO_SECRET_KEY};

/// timgate's configuration: the demo app at `upstream`, logging warnings only (the other
/// proxies' access logs are off too), pacing out of the way for `Limits::Open`. `extra_limits`
/// holds more lines for the `[limits]` table.
pub fn timgate(
    listen: SocketAddr,
    admin: SocketAddr,
    upstream: SocketAddr,
    limits: Limits,
    extra_limits: &str,
) -> String {
    let open = match limits {
        Limits::Open => {
            "app_per_second = 100000000\ngroup_writes_per_second = 100000000\n\
             max_queue_per_group = 100000\n"
        }
        Limits::Tencent => "",
        Limits::Hold => "max_wait_ms = 600000\nmax_queued = 1000000\n",
    };
    let server = match limits {
        Limits::Hold => "max_connections = 100000\n",
        _ => "",
    };
    format!(
        "[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\n{server}\n\
         [tencent]\nsdkappid = {DEMO_SDKAPPID}\nidentifier = \"{DEMO_IDENTIFIER}\"\n\
         secret_key = \"{DEMO_SECRET_KEY}\"\nbase_url = \"http://{upstream}\"\n\n\
         [limits]\n{open}{extra_limits}\n\n[log]\nlevel = \"warn\"\n"
    )
}

/// nginx as a reverse proxy with upstream keep-alive. With `Limits::Tencent`, `limit_req` with
/// a burst and no `nodelay` (requests over the rate are delayed, not refused, as timgate queues
/// them): 5 per second keyed by the `group` query parameter, 200 per second keyed by the path
/// (one API, one path), bursts as deep as timgate's queues.
pub fn nginx(dir: &Workdir, listen: SocketAddr, upstream: SocketAddr, limits: Limits) -> String {
    let d = dir.path.display();
    let (zones, limit) = match limits {
        Limits::Open => (String::new(), String::new()),
        Limits::Tencent => (
            "limit_req_zone $arg_group zone=group:20m rate=5r/s;\n  \
             limit_req_zone $uri zone=app:1m rate=200r/s;\n  limit_req_status 429;\n"
                .to_string(),
            "limit_req zone=group burst=64;\n      limit_req zone=app burst=6000;\n".to_string(),
        ),
        Limits::Hold => (
            "limit_req_zone $arg_group zone=group:20m rate=5r/s;\n  \
             limit_req_zone $uri zone=app:1m rate=200r/s;\n  limit_req_status 429;\n"
                .to_string(),
            "limit_req zone=group burst=64;\n      limit_req zone=app burst=100000;\n".to_string(),
        ),
    };
    // Holding 16,000 callers takes more connections per worker than a pass-through run.
    let (connections, files) = match limits {
        Limits::Hold => (40_000, 90_000),
        _ => (9_000, 20_000),
    };
    format!(
        "worker_processes 2;\nworker_rlimit_nofile {files};\ndaemon off;\nuser root;\n\
         pid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n\
         events {{ worker_connections {connections}; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         keepalive_requests 100000000;\n  keepalive_timeout 120s;\n  {zones}\
         upstream tencent {{\n    server {upstream};\n    keepalive 512;\n    \
         keepalive_requests 100000000;\n  }}\n  \
         server {{\n    listen {listen};\n    location / {{\n      {limit}\
         proxy_pass http://tencent;\n      proxy_http_version 1.1;\n      \
         proxy_set_header Connection \"\";\n      proxy_read_timeout 120s;\n    }}\n  }}\n}}\n"
    )
}

/// HAProxy as a reverse proxy, two threads (one per core, as nginx's two workers), with
/// server-side connection reuse.
pub fn haproxy(listen: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        "global\n  nbthread 2\n  maxconn 9000\n\n\
         defaults\n  mode http\n  timeout connect 3s\n  timeout client 120s\n  \
         timeout server 120s\n  timeout http-keep-alive 120s\n  option http-keep-alive\n  \
         http-reuse always\n\n\
         frontend callers\n  bind {listen}\n  default_backend tencent\n\n\
         backend tencent\n  server emulator {upstream} maxconn 4000\n"
    )
}
