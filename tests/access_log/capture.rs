//! The gateway's log lines, captured as the JSON lines a deployment writes (`log.format =
//! "json"`), by one subscriber for the whole test binary.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;

/// Every line written so far.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Lines {
        self.clone()
    }
}

static LINES: OnceLock<Lines> = OnceLock::new();

/// Installs the capturing subscriber (once for the binary), at `info` as shipped.
pub(crate) fn capture() {
    LINES.get_or_init(|| {
        let lines = Lines::default();
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter("info")
            .with_writer(lines.clone())
            .init();
        lines
    });
}

/// The `Answered.` line of the request `id`, waited for up to 10 s (the line is written just
/// before the answer leaves, so it is there by the time the caller has it; the wait is slack).
pub(crate) async fn answered(id: &str) -> Value {
    for _ in 0..200 {
        if let Some(line) = find(id) {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no access log line for {id}");
}

fn find(id: &str) -> Option<Value> {
    let lines = LINES.get().expect("capture() first");
    let bytes = lines.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let text = String::from_utf8_lossy(&bytes);
    let mut found = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "Answered." && line["request_id"] == id);
    let line = found.next()?;
    assert!(found.next().is_none(), "one line per answer: {id}");
    Some(line)
}
