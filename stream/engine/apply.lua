#!lua name=engagement_stream_v1
--[[
Applies one input partition's batch of pre-aggregated deltas to Redis together with the
partition's progress, atomically. This is the exactly-once guard, a compare-and-set on the stored
offset: the caller says which offset it believes is stored (the one its batch continues from).
If Redis holds another one -- ahead (a replay after a crash, a zombie worker that lost its
partitions) or behind (a failover lost the last writes) -- nothing changes and the stored
position is returned so the caller can seek there. Nothing is applied twice or skipped.

KEYS[1]  partition state hash (offset, max_ts); KEYS[2..] data keys, all in the same hash slot.
ARGV: expected_stored_offset (-1: none), last_offset, max_ts, n_ops, then n_ops operations:
  H keyidx expire_at n  field delta ...            HINCRBY
  P keyidx expire_at n  member ...                 PFADD (distinct users)
  O keyidx expire_at n  countersidx (pair field di dc) ...
        orphan clicks: per (user, campaign, placement, day) pair state in KEYS[keyidx]:
        -1 = an impression was seen; n >= 0 = clicks seen without an impression. Moves the
        day's orphan counter so the result does not depend on the order events arrive in.
Returns {1} when applied, {0, stored_offset, stored_max_ts} when refused.
]]

local function apply_batch(keys, args)
  local state = keys[1]
  local stored = redis.call('HGET', state, 'offset') or '-1'
  if tonumber(stored) ~= tonumber(args[1]) then
    return {0, stored, redis.call('HGET', state, 'max_ts') or '-1'}
  end
  local i = 5
  for _ = 1, tonumber(args[4]) do
    local op = args[i]
    local key = keys[tonumber(args[i + 1])]
    local expire_at = tonumber(args[i + 2])
    local n = tonumber(args[i + 3])
    i = i + 4
    if op == 'H' then
      for j = i, i + 2 * n - 1, 2 do
        redis.call('HINCRBY', key, args[j], args[j + 1])
      end
      i = i + 2 * n
    elseif op == 'P' then
      local j = 0
      while j < n do
        local m = math.min(n - j, 4000)
        redis.call('PFADD', key, unpack(args, i + j, i + j + m - 1))
        j = j + m
      end
      i = i + n
    elseif op == 'O' then
      local counters = keys[tonumber(args[i])]
      i = i + 1
      for _ = 1, n do
        local pair, cfield = args[i], args[i + 1]
        local di, dc = tonumber(args[i + 2]), tonumber(args[i + 3])
        i = i + 4
        local s = tonumber(redis.call('HGET', key, pair) or '0')
        if di > 0 then
          if s > 0 then redis.call('HINCRBY', counters, cfield, -s) end
          if s ~= -1 then redis.call('HSET', key, pair, -1) end
        elseif s >= 0 and dc > 0 then
          redis.call('HSET', key, pair, s + dc)
          redis.call('HINCRBY', counters, cfield, dc)
        end
      end
    else
      return redis.error_reply('unknown op ' .. tostring(op))
    end
    if expire_at > 0 then redis.call('EXPIREAT', key, expire_at) end
  end
  redis.call('HSET', state, 'offset', args[2], 'max_ts', args[3])
  return {1}
end

redis.register_function('es_apply_v1', apply_batch)
