//! What an operator reaches for, over real sockets and the real binary: the admin views
//! (`/config`, `/queues`, `/log-level`), `check-config`'s problems and summary, and the command
//! line's refusals, `usersig --identifier`, the demo's `[log]` and logs without colour codes.

#[path = "operators/admin.rs"]
mod admin;
mod binary;
#[path = "operators/cli.rs"]
mod cli;
#[path = "operators/process.rs"]
mod process;
mod support;
