//! The container's memory limit, read from the cgroup filesystem: v2 `memory.max` ("max" when
//! unlimited) or v1 `memory.limit_in_bytes` (a huge number when unlimited), in the process's own
//! cgroup (from `/proc/self/cgroup`) or, inside a cgroup namespace, at the mount's root.

use std::path::Path;

/// v1 reports "no limit" as a page-rounded i64::MAX; anything at or above this is no limit.
const V1_UNLIMITED: u64 = 1 << 60;

/// A v2 `memory.max`: bytes, or None for "max".
pub fn parse_v2(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    text.parse::<u64>().ok().filter(|&n| n > 0)
}

/// A v1 `memory.limit_in_bytes`: bytes, or None when it means no limit.
pub fn parse_v1(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0 && n < V1_UNLIMITED)
}

/// The process's cgroup paths from `/proc/self/cgroup`: the v2 one (`0::/path`) and the v1
/// memory controller's (`N:memory:/path` or `N:...,memory,...:/path`).
fn own_paths(self_cgroup: &str) -> (Option<&str>, Option<&str>) {
    let (mut v2, mut v1) = (None, None);
    for line in self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path);
        }
    }
    (v2, v1)
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The memory limit in force for this process under the cgroup mount at `root`, given the text
/// of its `/proc/self/cgroup`; None when there is no limit (or no cgroup filesystem).
pub fn limit(root: &Path, self_cgroup: &str) -> Option<u64> {
    let (v2, v1) = own_paths(self_cgroup);
    fn own(path: Option<&str>) -> Option<&str> {
        path.map(|p| p.trim_start_matches('/'))
            .filter(|p| !p.is_empty())
    }
    // v2: the own cgroup's file, else (inside a cgroup namespace) the mount root's.
    let v2_files = [own(v2).map(|p| root.join(p)), Some(root.to_path_buf())];
    for dir in v2_files.into_iter().flatten() {
        if let Some(text) = read(&dir.join("memory.max")) {
            return parse_v2(&text);
        }
    }
    let memory = root.join("memory");
    let v1_files = [own(v1).map(|p| memory.join(p)), Some(memory.clone())];
    for dir in v1_files.into_iter().flatten() {
        if let Some(text) = read(&dir.join("memory.limit_in_bytes")) {
            return parse_v1(&text);
        }
    }
    None
}

/// The limit for this process under the cgroup mount at `root`.
pub fn own_limit(root: &Path) -> Option<u64> {
    let self_cgroup = read(Path::new("/proc/self/cgroup")).unwrap_or_default();
    limit(root, &self_cgroup)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
            std::fs::write(path, text).expect("write");
        }
        dir
    }

    #[test]
    fn v2_values() {
        assert_eq!(parse_v2("201326592\n"), Some(201_326_592));
        assert_eq!(parse_v2("max\n"), None);
        assert_eq!(parse_v2("garbage"), None);
    }

    #[test]
    fn v1_values() {
        assert_eq!(parse_v1("201326592\n"), Some(201_326_592));
        assert_eq!(
            parse_v1("9223372036854771712\n"),
            None,
            "v1's no-limit value"
        );
    }

    #[test]
    fn v2_in_a_cgroup_namespace_reads_the_root() {
        let dir = fixture(&[("memory.max", "201326592\n")]);
        assert_eq!(limit(dir.path(), "0::/\n"), Some(201_326_592));
    }

    #[test]
    fn v2_reads_the_own_cgroup_before_the_root() {
        let dir = fixture(&[
            ("memory.max", "max\n"),
            ("kubepods/pod1/c1/memory.max", "100663296\n"),
        ]);
        assert_eq!(
            limit(dir.path(), "0::/kubepods/pod1/c1\n"),
            Some(100_663_296)
        );
    }

    #[test]
    fn v2_max_is_no_limit() {
        let dir = fixture(&[("memory.max", "max\n")]);
        assert_eq!(limit(dir.path(), "0::/\n"), None);
    }

    #[test]
    fn v1_reads_the_memory_controller() {
        let dir = fixture(&[("memory/docker/abc/memory.limit_in_bytes", "134217728\n")]);
        let self_cgroup = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n";
        assert_eq!(limit(dir.path(), self_cgroup), Some(134_217_728));
    }

    #[test]
    fn v1_unlimited_and_absent_are_no_limit() {
        let dir = fixture(&[("memory/memory.limit_in_bytes", "9223372036854771712\n")]);
        assert_eq!(limit(dir.path(), "4:memory:/\n"), None);
        let empty = fixture(&[]);
        assert_eq!(limit(empty.path(), ""), None);
    }
}
