//! The Lua scripts the shared budget runs in Redis: each atomic and on Redis's own clock, so the
//! replicas' clocks never matter, and each naming only keys under one hash tag (one Cluster slot).

/// Reserves the next slot: KEYS[1] the fence, KEYS[2] the API lane, KEYS[3] the app's total
/// lane, KEYS[4] (optional) the group lane; ARGV[1] and ARGV[2] the API's and the group's
/// spacing in microseconds, ARGV[3] how long an idle key lives in milliseconds, ARGV[4] the
/// horizon in microseconds, ARGV[5] the total's spacing in microseconds (0: no total cap). Returns `{0, slot, now}` for a
/// slot reserved at `slot` (microseconds on Redis's clock, which read `now`); or, having reserved
/// nothing, `{1, later, now}` when the
/// group's next slot is `later` microseconds off (so that a write waiting for its group never
/// holds the API lane against other groups) and `{2, later, now}` when the API's next slot lies beyond the horizon
/// (no replica ever holds a slot further ahead than that: what Redis knows, should it go away,
/// ends within the horizon).
pub(super) const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if #KEYS > 3 then
  local group_at = tonumber(redis.call('GET', KEYS[4]) or '0')
  if group_at > now then
    return {1, group_at - now, now}
  end
end
local total = tonumber(ARGV[5])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
slot = math.max(slot, tonumber(redis.call('GET', KEYS[2]) or '0'))
if total > 0 then
  slot = math.max(slot, tonumber(redis.call('GET', KEYS[3]) or '0'))
end
local horizon = tonumber(ARGV[4])
if slot - now > horizon then
  return {2, slot - now - horizon, now}
end
local idle = tonumber(ARGV[3])
local app_next = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[2], string.format('%.0f', app_next), 'PX', math.floor((app_next - now) / 1000) + idle)
if total > 0 then
  local total_next = slot + total
  redis.call('SET', KEYS[3], string.format('%.0f', total_next), 'PX', math.floor((total_next - now) / 1000) + idle)
end
if #KEYS > 3 then
  local group_next = slot + tonumber(ARGV[2])
  redis.call('SET', KEYS[4], string.format('%.0f', group_next), 'PX', math.floor((group_next - now) / 1000) + idle)
end
return {0, slot, now}
";

/// Takes one of an API's daily calls: KEYS[1] a sorted set of the calls taken, scored by when
/// (microseconds on Redis's clock), ARGV[1] the cap, ARGV[2] the window in microseconds, ARGV[3]
/// a name unique to this call. Returns `{0, 0}` when taken, or `{1, later}` when the window holds
/// the cap already, `later` microseconds until the oldest leaves it.
pub(super) const DAILY: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {1, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.floor(window / 1000) + 1000)
return {0, 0}
";

/// Raises the fence (KEYS[1]) to ARGV[1] microseconds from now. A replica coming back from its
/// local share raises it by one window before it reserves again, so that no shared slot shares a
/// window with the local sends that replica made; the others come back within one probe of it
/// and raise it again for theirs.
pub(super) const FENCE: &str = r"
local t = redis.call('TIME')
local fence = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1])
if fence > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%.0f', fence), 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1000)
end
return 1
";

/// Announces a replica: KEYS[1] a sorted set of replica ids scored by when each announcement
/// lapses, ARGV[1] this replica's id, ARGV[2] how long an announcement lives in milliseconds.
/// Forgets the lapsed ones and returns how many replicas are alive (this one included).
pub(super) const ANNOUNCE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
";
