//! The configuration in force and how the last reload went: kept by the reloader, read by
//! `GET /config`, so that after several SIGHUPs and a Secret rotation an operator can see what
//! runs without guessing which reload took.

use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use crate::config::{Config, ConfigError};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// Every change was applied.
    Applied,
    /// Applied, but for the parts that need a restart, which kept their running values.
    AppliedPartly,
    /// The new configuration had problems; the running one stayed in force.
    Refused,
}

/// The last reload: when, what it did, and why not all of it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Reload {
    /// When, in Unix seconds.
    pub(crate) at: i64,
    /// The same instant as an HTTP date, for people.
    pub(crate) at_text: String,
    /// What it did.
    pub(crate) outcome: Outcome,
    /// The parts whose changes need a restart (kept at their running values).
    pub(crate) needs_restart: Vec<&'static str>,
    /// The problems that refused it, secrets masked as every config problem is.
    pub(crate) problems: Vec<String>,
}

impl Reload {
    fn now(outcome: Outcome, needs_restart: Vec<&'static str>, problems: Vec<String>) -> Reload {
        let at = crate::clock::unix_now();
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.max(0) as u64);
        Reload {
            at,
            at_text: httpdate::fmt_http_date(time),
            outcome,
            needs_restart,
            problems,
        }
    }
}

/// The configuration a gateway runs with, and its last reload.
#[derive(Debug)]
pub(crate) struct Running {
    config: Mutex<Config>,
    last_reload: Mutex<Option<Reload>>,
    /// When the gateway was built, in Unix seconds.
    pub(crate) started_at: i64,
}

impl Running {
    /// A gateway started with `config`.
    pub(crate) fn new(config: Config) -> Running {
        Running {
            config: Mutex::new(config),
            last_reload: Mutex::new(None),
            started_at: crate::clock::unix_now(),
        }
    }

    /// The configuration in force (held while a reload replaces it).
    pub(crate) fn config(&self) -> MutexGuard<'_, Config> {
        self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last reload, if there was one.
    pub(crate) fn last_reload(&self) -> Option<Reload> {
        self.last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A reload was applied; `needs_restart` lists what it could not change.
    pub(crate) fn applied(&self, needs_restart: Vec<&'static str>) {
        let outcome = match needs_restart.is_empty() {
            true => Outcome::Applied,
            false => Outcome::AppliedPartly,
        };
        self.record(Reload::now(outcome, needs_restart, Vec::new()));
    }

    /// A reload was refused for `problems`.
    pub(crate) fn refused(&self, problems: &ConfigError) {
        let problems = problems.problems.clone();
        self.record(Reload::now(Outcome::Refused, Vec::new(), problems));
    }

    fn record(&self, reload: Reload) {
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(reload);
    }
}
