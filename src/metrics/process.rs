//! The standard `process_*` metrics (Prometheus's client conventions, which stock dashboards
//! read): CPU seconds as a fraction, memory, file descriptors, threads and start time, read from
//! `/proc/self` at each scrape. The prometheus crate's own collector counts CPU in whole seconds
//! (an integer counter, so 0 after minutes of traffic) and would take the registry's `timgate_`
//! prefix; this one lives in a registry of its own, without one.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};

/// What `/proc/self/stat` and its neighbours say about this process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Sample {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// OS threads.
    pub threads: i64,
    /// Start time, in seconds since the Unix epoch.
    pub start_time: f64,
}

/// The `process_*` metrics of this process.
#[derive(Debug)]
pub(super) struct ProcessCollector {
    cpu: Counter,
    /// Held while the counter is brought up to the value read: two scrapes at once must not
    /// both add the same difference.
    cpu_lock: Mutex<()>,
    open_fds: IntGauge,
    max_fds: IntGauge,
    virtual_bytes: IntGauge,
    resident_bytes: IntGauge,
    threads: IntGauge,
    start_time: Gauge,
    descs: Vec<Desc>,
}

impl ProcessCollector {
    /// The collector, with its start time read once (it never changes).
    pub(super) fn new() -> ProcessCollector {
        let opts = |name: &str, help: &str| Opts::new(name, help);
        let gauge = |name: &str, help: &str| IntGauge::with_opts(opts(name, help)).expect("static");
        let collector = ProcessCollector {
            cpu: Counter::with_opts(opts(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            ))
            .expect("static"),
            cpu_lock: Mutex::new(()),
            open_fds: gauge("process_open_fds", "Number of open file descriptors."),
            max_fds: gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            virtual_bytes: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            resident_bytes: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            threads: gauge("process_threads", "Number of OS threads in the process."),
            start_time: Gauge::with_opts(opts(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            ))
            .expect("static"),
            descs: Vec::new(),
        };
        let descs = collector
            .parts()
            .iter()
            .flat_map(|part| part.desc().into_iter().cloned())
            .collect();
        if let Some(sample) = sample() {
            collector.start_time.set(sample.start_time);
        }
        ProcessCollector { descs, ..collector }
    }

    fn parts(&self) -> [&dyn Collector; 7] {
        [
            &self.cpu,
            &self.open_fds,
            &self.max_fds,
            &self.virtual_bytes,
            &self.resident_bytes,
            &self.threads,
            &self.start_time,
        ]
    }

    /// Reads `/proc/self` into the metrics; what cannot be read keeps its last value.
    fn refresh(&self) {
        if let Some(sample) = sample() {
            let _held = self.cpu_lock.lock().unwrap_or_else(|p| p.into_inner());
            let behind = sample.cpu_seconds - self.cpu.get();
            if behind > 0.0 {
                self.cpu.inc_by(behind);
            }
            self.virtual_bytes.set(sample.virtual_bytes as i64);
            self.resident_bytes.set(sample.resident_bytes as i64);
            self.threads.set(sample.threads);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
        let limits = std::fs::read_to_string("/proc/self/limits");
        if let Some(max) = limits.ok().as_deref().and_then(max_open_files) {
            self.max_fds.set(max as i64);
        }
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        self.parts()
            .iter()
            .flat_map(|part| part.collect())
            .collect()
    }
}

/// This process's sample, or `None` where `/proc` cannot be read.
fn sample() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    parse_stat(&stat, &boot, ticks, rustix::param::page_size() as u64)
}

/// Parses `/proc/self/stat` (`stat`) with `/proc/stat` (`boot`, for the boot time), given the
/// clock ticks per second and the page size (proc(5)).
pub(super) fn parse_stat(stat: &str, boot: &str, ticks: f64, page: u64) -> Option<Sample> {
    // The command name may hold spaces and parentheses: the fields start after the last `)`.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // `fields[0]` is field 3 of proc(5) (state): field n is at n - 3.
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let btime: u64 = boot
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(Sample {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        threads: field(20)? as i64,
        start_time: btime as f64 + field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
    })
}

/// The soft limit on open files from `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.strip_prefix("Max open files")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_a_command_name_holding_spaces_and_parentheses() {
        let stat = "4242 (tim gate) (x)) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    1234 56 0 0 20 0 7 0 250 1243021312 10008 18446744073709551615";
        let boot = "cpu  1 2 3\nbtime 1796599000\nprocesses 9\n";
        let sample = parse_stat(stat, boot, 100.0, 4096).expect("parses");
        assert_eq!(
            sample,
            Sample {
                cpu_seconds: 12.9,
                virtual_bytes: 1_243_021_312,
                resident_bytes: 10_008 * 4096,
                threads: 7,
                start_time: 1_796_599_002.5,
            }
        );
        assert_eq!(parse_stat("garbage", boot, 100.0, 4096), None);
    }

    #[test]
    fn reads_the_open_file_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                524288               files\n";
        assert_eq!(max_open_files(limits), Some(20_000));
    }
}
