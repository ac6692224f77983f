//! timgate: a gateway that signs, validates, paces and retries calls to the Tencent Cloud IM REST API.
//!
//! The binary (`src/main.rs`) is a thin command line over this library; tests and benchmarks drive
//! the same pieces in-process: [`app::App`] is the gateway, [`emulator`] the Tencent stand-in.

mod admin;
pub mod app;
pub mod clock;
pub mod config;
pub mod demo;
pub mod emulator;
pub mod error;
pub mod gateway;
pub mod log_level;
pub mod memory;
pub mod metrics;
pub mod pace;
pub mod queue;
pub mod retry;
pub mod server;
pub mod signer;
pub mod telemetry;
pub mod tencent;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod validate;

pub use error::Error;

/// The map of request paths (APIs, groups, routes): foldhash, seeded per process, hashes a key
/// several times faster than the standard SipHash, which showed in profiles as each request
/// looks its API up a few times. Keys come from validated requests, not from an attacker's
/// choice of colliding strings alone, and the seed is random.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
