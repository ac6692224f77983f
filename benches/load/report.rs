//! How the load benchmark reports: markdown tables on stdout (and in `--markdown FILE`), one
//! JSON summary line per mode, and the machine the figures were measured on.

use std::path::PathBuf;
use std::process::Command;

use loadgen::pacing::PacingReport;
use loadgen::stack::Proxy;
use serde_json::{Value, json};

/// Where the tables go.
pub(crate) struct Out {
    markdown: Option<PathBuf>,
    text: String,
}

impl Out {
    pub(crate) fn new(markdown: Option<PathBuf>) -> Out {
        Out {
            markdown,
            text: String::new(),
        }
    }

    /// Prints a block of markdown and keeps it for the file.
    pub(crate) fn block(&mut self, block: &str) {
        println!("{block}");
        self.text.push_str(block);
        self.text.push('\n');
    }

    /// Prints the JSON summary line of a mode.
    pub(crate) fn summary(&self, value: Value) {
        println!("{value}");
    }

    /// Describes the machine: CPU, cores, memory, kernel, and the proxies' versions.
    pub(crate) fn machine(&mut self) {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .next()
                    .map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            })
            .flatten()
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or("?".into(), |kib| {
                format!("{:.0} GiB", kib as f64 / 1048576.0)
            });
        let kernel = run("uname", &["-r"]);
        let nginx = run("nginx", &["-v"]);
        let haproxy = run("haproxy", &["-v"]);
        let haproxy = haproxy.lines().next().unwrap_or("").to_string();
        self.block(&format!(
            "Measured on {cpu}, {cores} cores, {memory}, Linux {kernel}; {nginx}; {haproxy}. \
             Client, proxy and emulator share the cores, over 127.0.0.1.\n"
        ));
    }

    /// The pacing-accuracy table.
    pub(crate) fn pacing_table(&mut self, seconds: u64, rows: &[(Proxy, PacingReport)]) {
        let mut table = format!(
            "Pacing accuracy, {seconds} s: 1,000 cold groups and 5 hot ones, steady load with \
             bursts (app-bound first half, group-bound second half), Tencent's limits \
             enforced by the emulator (5 writes per group, 200 calls per API, sliding second).\n\n\
             | | offered | OK | refused by the proxy (429) | most calls in a second (API, limit 200) \
             | most writes in a second (group, limit 5) | emulator limit refusals | app limit \
             utilization | hot group utilization (min / mean) | caller p99 |\n\
             |---|---|---|---|---|---|---|---|---|---|\n"
        );
        for (proxy, r) in rows {
            table.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.3} / {:.3} | {:.0} ms |\n",
                proxy.name(),
                r.offered,
                r.callers.ok,
                r.callers.statuses.get("429").copied().unwrap_or(0),
                r.app_peak,
                r.group_peak,
                r.limit_refusals,
                r.app_utilization,
                r.hot_utilization_min,
                r.hot_utilization_mean,
                r.callers.p99_ms,
            ));
        }
        self.block(&table);
        let runs: Vec<Value> = rows
            .iter()
            .map(|(proxy, r)| json!({"proxy": proxy.name(), "report": r, "violations": r.violations()}))
            .collect();
        self.summary(json!({"mode": "pacing", "seconds": seconds, "runs": runs}));
    }

    /// Writes the markdown file, if one was asked for.
    pub(crate) fn finish(&self) {
        if let Some(path) = &self.markdown
            && let Err(e) = std::fs::write(path, &self.text)
        {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
}

/// What a command prints (stdout, else stderr), trimmed; empty when it cannot run.
fn run(program: &str, args: &[&str]) -> String {
    let Ok(output) = Command::new(program).args(args).output() else {
        return String::new();
    };
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    String::from_utf8_lossy(&text).trim().to_string()
}
