//! The log filter in force and who set it: the configured level (`log.level`, or `RUST_LOG` at
//! start), changed by a reload, and an operator's override through `PUT /log-level`, which lasts
//! until `DELETE /log-level`, its optional time limit, or the next reload.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Changes the filter of the installed subscriber.
#[derive(Debug, Clone)]
pub struct LogLevel {
    handle: reload::Handle<EnvFilter, Registry>,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    configured: String,
    current: String,
    /// Counts changes, so that a timed revert does not undo a later change.
    generation: u64,
    /// When an override reverts by itself, in Unix seconds.
    reverts_at: Option<i64>,
}

/// What `GET /log-level` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LevelView {
    /// The filter in force.
    pub level: String,
    /// The filter the configuration gives (`log.level`, or `RUST_LOG` at start): what a revert
    /// goes back to.
    pub configured: String,
    /// Whether an operator's override is in force.
    pub overridden: bool,
    /// When the override reverts by itself, in Unix seconds; `None` when it lasts until reverted.
    pub reverts_at: Option<i64>,
}

impl LogLevel {
    /// A handle on `handle`, whose filter `level` is in force.
    pub(crate) fn new(handle: reload::Handle<EnvFilter, Registry>, level: &str) -> LogLevel {
        let state = State {
            configured: level.to_string(),
            current: level.to_string(),
            generation: 0,
            reverts_at: None,
        };
        LogLevel {
            handle,
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, level: &str) -> Result<(), String> {
        crate::config::log_filter::check(level)?;
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.handle.reload(filter).map_err(|e| e.to_string())
    }

    /// Applies a configured filter (a reload's `log.level`): it becomes what a revert goes back
    /// to, and ends any override.
    pub fn set(&self, level: &str) -> Result<(), String> {
        let mut state = self.state();
        self.apply(level)?;
        state.configured = level.to_string();
        state.current = level.to_string();
        state.generation += 1;
        state.reverts_at = None;
        Ok(())
    }

    /// An operator's filter, in force until [`LogLevel::revert`], a reload, or `lasting` when
    /// given (then it reverts by itself; needs a tokio runtime).
    pub fn override_with(
        &self,
        level: &str,
        lasting: Option<Duration>,
    ) -> Result<LevelView, String> {
        let mut state = self.state();
        self.apply(level)?;
        state.current = level.to_string();
        state.generation += 1;
        state.reverts_at = lasting.map(|d| crate::clock::unix_now() + d.as_secs() as i64);
        if let Some(lasting) = lasting {
            let (me, generation) = (self.clone(), state.generation);
            tokio::spawn(async move {
                tokio::time::sleep(lasting).await;
                if me.state().generation == generation {
                    tracing::info!("Log level override expired; back to the configured level.");
                    me.revert();
                }
            });
        }
        tracing::info!(
            level,
            lasting_secs = lasting.map(|d| d.as_secs()),
            "Log level overridden."
        );
        Ok(view(&state))
    }

    /// Goes back to the configured filter.
    pub fn revert(&self) -> LevelView {
        let mut state = self.state();
        let configured = state.configured.clone();
        // The configured filter was checked when it was configured.
        if let Err(e) = self.apply(&configured) {
            tracing::warn!(error = %e, "Could not restore the configured log level.");
        }
        state.current = configured;
        state.generation += 1;
        state.reverts_at = None;
        view(&state)
    }

    /// The filter in force and where it comes from.
    pub fn view(&self) -> LevelView {
        view(&self.state())
    }
}

fn view(state: &State) -> LevelView {
    LevelView {
        level: state.current.clone(),
        configured: state.configured.clone(),
        overridden: state.current != state.configured || state.reverts_at.is_some(),
        reverts_at: state.reverts_at,
    }
}
