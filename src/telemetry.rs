//! Logging setup: tracing with an env-filter, as JSON lines or as text, and a handle that lets a
//! configuration reload change the level without a restart.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, fmt, reload};

use crate::config::LogFormat;

pub use crate::log_level::LogLevel;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the configured level. Returns
/// `None` when a subscriber was installed already (tests, the demo).
pub fn init(format: LogFormat, level: &str) -> Option<LogLevel> {
    let from_env = std::env::var("RUST_LOG").ok();
    let (filter, used) = match from_env
        .as_deref()
        .map(|env| (EnvFilter::try_new(env), env))
    {
        Some((Ok(filter), env)) => (filter, env.to_string()),
        _ => match EnvFilter::try_new(level) {
            Ok(filter) => (filter, level.to_string()),
            Err(_) => (EnvFilter::new("info"), "info".to_string()),
        },
    };
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        // Colour codes only for a terminal: in a file or a log collector they are noise.
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    installed.ok().map(|()| LogLevel::new(handle, &used))
}
