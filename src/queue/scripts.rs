//! The durable queue's Lua scripts. Each touches the keys of one partition only (one hash tag),
//! so that it runs on one Cluster node, atomically.

/// Appends a write to a partition's stream within the bounds, counting it for its group and the
/// partition. KEYS: stream, counts. ARGV: group, most per group, most in the partition, the
/// spacing per queued write of the group in microseconds (0: no estimate), how long the write
/// may wait in microseconds, then the entry's fields and values. Returns `{0, id}`, or
/// `{1, queued}` (the group's bound), `{2, queued}` (the partition's), `{3, wait_us}` (its
/// deadline cannot be met behind the group's queued writes).
pub(super) const APPEND: &str = r"
local queued = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if queued >= tonumber(ARGV[2]) then return {1, queued} end
local total = tonumber(redis.call('HGET', KEYS[2], '') or '0')
if total >= tonumber(ARGV[3]) then return {2, total} end
local spacing = tonumber(ARGV[4])
if spacing > 0 and queued * spacing > tonumber(ARGV[5]) then return {3, queued * spacing} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6))
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HINCRBY', KEYS[2], '', 1)
return {0, id}
";

/// Ends jobs of one group: acknowledges and deletes their entries, forgets that they were sent,
/// keeps their answers for the TTL, and uncounts them (only those still there: a job two owners
/// ended counts once). KEYS: stream, counts, sent, then each job's result key. ARGV: consumer
/// group, TTL in seconds, group, then each job's entry id and answer. Returns how many entries it
/// deleted.
pub(super) const COMPLETE: &str = r"
local removed = 0
for i = 1, #KEYS - 3 do
  local id = ARGV[2 + 2 * i]
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('HDEL', KEYS[3], id)
  removed = removed + redis.call('XDEL', KEYS[1], id)
  redis.call('SET', KEYS[3 + i], ARGV[3 + 2 * i], 'EX', ARGV[2])
end
if removed > 0 then
  if redis.call('HINCRBY', KEYS[2], ARGV[3], -removed) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[3])
  end
  if redis.call('HINCRBY', KEYS[2], '', -removed) <= 0 then
    redis.call('HDEL', KEYS[2], '')
  end
end
return removed
";

/// Where a job stands, read at one moment (an owner ending it between separate reads would make
/// it look unknown). KEYS: result, sent, stream. ARGV: its entry id. Returns `{3, answer}`,
/// `{2}` (being sent), `{1}` (queued) or `{0}` (unknown, or its answer expired).
pub(super) const STATE: &str = r"
local answer = redis.call('GET', KEYS[1])
if answer then return {3, answer} end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {2} end
if #redis.call('XRANGE', KEYS[3], ARGV[1], ARGV[1]) > 0 then return {1} end
return {0}
";

/// Takes or renews a partition's lease. KEYS: lease. ARGV: this replica, the lease in
/// milliseconds. Returns 1 (renewed), 2 (taken: it was free) or 0 (another replica holds it).
pub(super) const LEASE: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
";

/// Gives a partition's lease up, if this replica holds it. KEYS: lease. ARGV: this replica.
pub(super) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";
