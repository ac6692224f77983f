//! The durable queue's names in Redis and on the wire: a group's partition, each partition's
//! keys (one hash tag, so that a script's keys share a Cluster slot), and job ids.

/// The consumer group every partition's owners read its stream as.
pub const CONSUMERS: &str = "owners";

/// The hash field of a partition's count hash that holds the partition's total.
pub const TOTAL_FIELD: &str = "";

/// The partition of `group` among `partitions`: FNV-1a of the GroupId, the same on every replica
/// and in every version (a change would split a group's writes over two streams).
pub fn partition_of(group: &str, partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in group.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

/// The keys of one SDKAppID's queue.
#[derive(Debug, Clone)]
pub struct Keys {
    /// `{prefix}:q:{<sdkappid>.` — the partition and the closing brace follow.
    base: String,
}

impl Keys {
    /// The queue keys under `prefix` for `sdkappid`.
    pub fn new(prefix: &str, sdkappid: u64) -> Keys {
        Keys {
            base: format!("{prefix}:q:{{{sdkappid}."),
        }
    }

    fn key(&self, partition: u32, what: &str) -> String {
        format!("{}{partition}}}:{what}", self.base)
    }

    /// The stream of a partition's accepted writes.
    pub fn stream(&self, partition: u32) -> String {
        self.key(partition, "stream")
    }

    /// The hash of a partition's queued writes per group (and in all, [`TOTAL_FIELD`]).
    pub fn counts(&self, partition: u32) -> String {
        self.key(partition, "counts")
    }

    /// The lease naming a partition's owner.
    pub fn lease(&self, partition: u32) -> String {
        self.key(partition, "lease")
    }

    /// The entries of a partition sent to Tencent and not yet ended: a next owner that claims one
    /// of them knows it may have reached Tencent (a redelivery), and its job reads `sending`.
    pub fn sent(&self, partition: u32) -> String {
        self.key(partition, "sent")
    }

    /// The answer of a job, once it has one.
    pub fn result(&self, job: &JobId) -> String {
        self.key(job.partition, &format!("result:{}", job.entry))
    }
}

/// A job: its partition and its stream entry's id, written `<partition>-<ms>-<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobId {
    /// The partition whose stream holds it.
    pub partition: u32,
    /// The stream entry's id, `<ms>-<seq>`.
    pub entry: String,
}

impl JobId {
    /// Reads a job id as [`JobId`]'s `Display` writes it; `None` for anything else.
    pub fn parse(text: &str, partitions: u32) -> Option<JobId> {
        let (partition, entry) = text.split_once('-')?;
        let partition: u32 = partition.parse().ok()?;
        let (ms, seq) = entry.split_once('-')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        (partition < partitions && digits(ms) && digits(seq)).then(|| JobId {
            partition,
            entry: entry.to_string(),
        })
    }

    /// When the entry was added, in Redis's milliseconds since the epoch.
    pub fn added_ms(&self) -> u64 {
        self.entry
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .unwrap_or(0)
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.partition, self.entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_of("room-1", 16), partition_of("room-1", 16));
        let used: std::collections::HashSet<u32> = (0..200)
            .map(|i| partition_of(&format!("g{i}"), 16))
            .collect();
        assert_eq!(
            used.len(),
            16,
            "200 groups reach every one of 16 partitions"
        );
        assert_eq!(partition_of("anything", 1), 0);
    }

    #[test]
    fn a_partitions_keys_share_one_hash_tag() {
        let keys = Keys::new("timgate", 1400000000);
        let job = JobId::parse("3-1733280000000-7", 16).expect("a job id");
        assert_eq!(keys.stream(3), "timgate:q:{1400000000.3}:stream");
        assert_eq!(
            keys.result(&job),
            "timgate:q:{1400000000.3}:result:1733280000000-7"
        );
        assert_eq!(job.to_string(), "3-1733280000000-7");
        assert_eq!(job.added_ms(), 1733280000000);
    }

    #[test]
    fn job_ids_outside_the_partitions_or_malformed_are_refused() {
        for bad in [
            "16-1-0", "x-1-0", "3-1", "3-1-", "3--0", "3-1-0-0", "", "3-a-0",
        ] {
            assert_eq!(JobId::parse(bad, 16), None, "{bad:?}");
        }
    }
}
