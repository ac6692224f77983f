//! The load benchmarks' parts (`benches/load/` and the CI guard in `tests/load_guard.rs`):
//! a keep-alive caller, the emulator and the proxies under test as separate processes (or in
//! this process, for the pacer and coalescing benchmarks), the pacing-accuracy scenario, and the
//! HTTP/2 flood behind the memory reading.
//!
//! Everything here talks to 127.0.0.1 only, and every run is bounded in count and time.

pub mod client;
pub mod conf;
pub mod flood;
pub mod inproc;
pub mod offer;
pub mod pacing;
pub mod procs;
pub mod stack;
pub mod stats;
