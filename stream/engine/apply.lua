#!lua name=engagement_stream_v1
--[[
Applies one input partition's batch of pre-aggregated deltas to Redis together with the
partition's progress, atomically. This is the exactly-once guard, a compare-and-set on the stored
offset: the caller says which offset it believes is stored (the one its batch continues from).
If Redis holds another one -- ahead (a replay after a crash, a zombie worker that lost its
partitions) or behind (a failover lost the last writes) -- nothing changes and the stored
position is returned so the caller can seek there. Nothing is applied twice or skipped.

KEYS[1]  partition state hash (offset, max_ts); KEYS[2..] data keys, all in the same hash slot.
ARGV: expected_stored_offset (-1: none), last_offset, max_ts, n_ops, the n_ops operations
as one MessagePack array, then (field, value) pairs stored in the partition state hash along with
the offset (the home shard's relay high-water marks, stream/engine/relay.py). The operations, flat:
  H keyidx expire_at n  field delta ...            HINCRBY
  P keyidx expire_at n  member ...                 PFADD (distinct users)
  Q keyidx expire_at n  countersidx legacyidx prefix (pair field di dc) ...
        orphan clicks: per (user, campaign, placement, day) pair state in KEYS[keyidx], one of
        the day's 256 small hashes (stream/engine/deltas.py): pair = the last 7 bytes of the
        pair's 8-byte digest (binary; its first byte, as 2 hex digits in prefix, picked the
        hash); value 0 = an impression was seen, n >= 1 = n clicks seen without an impression.
        Moves the day's orphan counter (KEYS[countersidx], field `field`) so the result does
        not depend on the order events arrive in. A pair the hash does not hold yet is looked
        up in the day's hash of the layout before, KEYS[legacyidx] (field: the 16 hex digits of
        the digest; -1 = an impression was seen), which is read and kept alive, never written:
        an upgrade in the middle of a day neither forgets nor double counts a pair.
  O keyidx expire_at n  countersidx (pair field di dc) ...
        the layout before Q (one hash a day, hex fields), kept so that a batch of a worker
        not yet upgraded still applies.
  K keyidx expire_at n  dueidx (field value due) ...
        keyed open state (sessions, ...): HSET field value and ZADD due in KEYS[dueidx];
        an empty value deletes the field and its due entry; a negative due time keeps the
        field but takes it off the due set (nothing can change it without an event).
  Z keyidx expire_at n  member score ...           ZADD; an empty score ZREMs the member
  X keyidx expire_at n  seqfield payload ...       outbox: each payload gets the next sequence
        number (HINCRBY seqfield in the partition state) and is XADDed with id 0-<seq>, so the
        publisher can tell what it already sent (stream/engine/outbox.py).
  A keyidx expire_at n  dueidx (field due user last first channel m (bucket activity count)*m) ...
        pending activity of keyed state that is not evaluated yet (customer scores): merged into
        the MessagePack record [user, last, first, channel, (bucket, activity, count)...] that
        follows a NUL byte after the entity's value in KEYS[keyidx] (the state's own encoding
        never contains one; the user is blanked when a state precedes it) -- last = max,
        (first, channel) = min (channel compared bytewise), counts added -- and ZADD LT due (the
        due time only moves earlier; a new member is added). Op K's HSET of a new value drops
        the record, which the worker has then folded in.
Returns {1} when applied, {0, stored_offset, stored_max_ts} when refused.

es_read_keyed_v2 (read-only) -- KEYS[1] state hash, KEYS[2] due set; ARGV: due_until, limit,
the fields as one MessagePack array of str. Returns MessagePack [field, value-or-false, ...] for
the named fields and for up to `limit` entries due at or before due_until, so one round trip
fetches everything a batch must settle. es_read_keyed_split_v2: the same for a state with
pending records (op A), as [field, value-or-false, pending-record-or-false, ...]. One packed
argument instead of one per field: the client encoded each field argument on its own (~0.2 us a
field in redis-py), and Redis parses one bulk string instead of thousands.
es_read_keyed_v1 and es_read_keyed_split_v1 take the fields as ARGV[3..] instead; kept so that a
worker of the release before can still read while the next one rolls out.
]]

-- Variadic commands over a long argument list, in slices that stay far below Lua's C stack
-- limit for unpack(); CHUNK is even, so field/value pairs stay together.
local CHUNK = 4000
local function call_chunked(cmd, key, args, flag)
  local n = #args
  local j = 1
  while j <= n do
    local last = math.min(n, j + CHUNK - 1)
    if flag then
      redis.call(cmd, key, flag, unpack(args, j, last))
    else
      redis.call(cmd, key, unpack(args, j, last))
    end
    j = last + 1
  end
end

local function hmget_chunked(key, fields)
  local out = {}
  local n = #fields
  local j = 1
  while j <= n do
    local last = math.min(n, j + CHUNK - 1)
    local got = redis.call('HMGET', key, unpack(fields, j, last))
    for k = 1, #got do out[#out + 1] = got[k] end
    j = last + 1
  end
  return out
end

-- Byte-wise string order (= Python's code-point order for UTF-8); Lua's < follows the locale.
local function bytes_lt(a, b)
  local n = math.min(#a, #b)
  for j = 1, n do
    local x, y = string.byte(a, j), string.byte(b, j)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Op A: merge pending activity records (see the header), one HMGET and one HSET per batch.
local function merge_pending(key, due, ops, i, n)
  local fields, starts = {}, {}
  local j = i
  for k = 1, n do
    fields[k] = ops[j]
    starts[k] = j
    j = j + 7 + 3 * tonumber(ops[j + 6])
  end
  local values = hmget_chunked(key, fields)
  local sets, dues = {}, {}
  for k = 1, n do
    local s = starts[k]
    local m = tonumber(ops[s + 6])
    local rec, old
    local state = values[k] or ''
    local at0 = string.find(state, '\0', 1, true)
    if at0 then
      old = string.sub(state, at0 + 1)
      state = string.sub(state, 1, at0 - 1)
    end
    if old then
      rec = cmsgpack.unpack(old)
      if ops[s + 3] > rec[2] then rec[2] = ops[s + 3] end
      local first, ch = ops[s + 4], ops[s + 5]
      if first < rec[3] or (first == rec[3] and bytes_lt(ch, rec[4])) then
        rec[3] = first
        rec[4] = ch
      end
      local at = {}
      for p = 5, #rec, 3 do at[rec[p] * 4096 + rec[p + 1]] = p end
      for q = s + 7, s + 6 + 3 * m, 3 do
        local p = at[ops[q] * 4096 + ops[q + 1]]
        if p then
          rec[p + 2] = rec[p + 2] + ops[q + 2]
        else
          local len = #rec
          rec[len + 1] = ops[q]
          rec[len + 2] = ops[q + 1]
          rec[len + 3] = ops[q + 2]
        end
      end
    else
      rec = {ops[s + 2], ops[s + 3], ops[s + 4], ops[s + 5]}
      for q = 0, 3 * m - 1 do rec[5 + q] = ops[s + 7 + q] end
    end
    if state ~= '' then rec[1] = '' end
    sets[#sets + 1] = fields[k]
    sets[#sets + 1] = state .. '\0' .. cmsgpack.pack(rec)
    dues[#dues + 1] = ops[s + 1]
    dues[#dues + 1] = fields[k]
  end
  call_chunked('HSET', key, sets)
  call_chunked('ZADD', due, dues, 'LT')
  return j
end

-- Lower-case hex of a binary string (op Q's fields in the layout before).
local function tohex(s)
  return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))
end

-- Op Q: one pair-state hash of a day (see the header). `legacy_live` caches, per legacy key,
-- whether it exists (asked once per batch).
local function orphan_pairs(key, expire_at, counters, legacy, prefix, ops, i, n, legacy_live)
  local names = {}
  for k = 0, n - 1 do names[k + 1] = ops[i + 4 * k] end
  local states = hmget_chunked(key, names)
  local live = legacy_live[legacy]
  if live == nil then
    live = redis.call('EXISTS', legacy) == 1
    legacy_live[legacy] = live
    -- it must outlive the state written next to it
    if live then redis.call('EXPIREAT', legacy, expire_at, 'GT') end
  end
  local before = {}
  if live then
    local missing, at = {}, {}
    for k = 1, n do
      if not states[k] then
        missing[#missing + 1] = prefix .. tohex(names[k])
        at[#missing] = k
      end
    end
    if #missing > 0 then
      local got = hmget_chunked(legacy, missing)
      for j = 1, #got do
        if got[j] then before[at[j]] = tonumber(got[j]) end
      end
    end
  end
  local sets = {}
  for k = 1, n do
    local pair, cfield = ops[i], ops[i + 1]
    local di, dc = tonumber(ops[i + 2]), tonumber(ops[i + 3])
    i = i + 4
    -- s: -1 = an impression was seen, n >= 0 = clicks without one (as op O)
    local s
    local v = states[k]
    if v then
      s = tonumber(v)
      if s == 0 then s = -1 end
    else
      s = before[k] or 0
    end
    if di > 0 then
      if s > 0 then redis.call('HINCRBY', counters, cfield, -s) end
      if s ~= -1 then sets[#sets + 1] = pair; sets[#sets + 1] = 0 end
    elseif s >= 0 and dc > 0 then
      sets[#sets + 1] = pair
      sets[#sets + 1] = s + dc
      redis.call('HINCRBY', counters, cfield, dc)
    end
  end
  call_chunked('HSET', key, sets)
  return i
end

local function apply_batch(keys, args)
  local state = keys[1]
  local stored = redis.call('HGET', state, 'offset') or '-1'
  if tonumber(stored) ~= tonumber(args[1]) then
    return {0, stored, redis.call('HGET', state, 'max_ts') or '-1'}
  end
  -- The operations arrive as one MessagePack array: decoding it here in C is far cheaper than
  -- shipping (and parsing) hundreds of thousands of separate command arguments.
  local ops = cmsgpack.unpack(args[5])
  local i = 1
  local legacy_live = {}
  for _ = 1, tonumber(args[4]) do
    local op = ops[i]
    local key = keys[tonumber(ops[i + 1])]
    local expire_at = tonumber(ops[i + 2])
    local n = tonumber(ops[i + 3])
    i = i + 4
    if op == 'H' then
      if redis.call('EXISTS', key) == 0 then
        -- A window nobody wrote yet (most of them when catching up over event time): its
        -- increments are its values, so one variadic HSET instead of a call per field.
        local j = 0
        while j < 2 * n do
          local m = math.min(2 * n - j, 4000)
          redis.call('HSET', key, unpack(ops, i + j, i + j + m - 1))
          j = j + m
        end
      else
        for j = i, i + 2 * n - 1, 2 do
          redis.call('HINCRBY', key, ops[j], ops[j + 1])
        end
      end
      i = i + 2 * n
    elseif op == 'P' then
      local j = 0
      while j < n do
        local m = math.min(n - j, 4000)
        redis.call('PFADD', key, unpack(ops, i + j, i + j + m - 1))
        j = j + m
      end
      i = i + n
    elseif op == 'O' then
      local counters = keys[tonumber(ops[i])]
      i = i + 1
      -- One HMGET for every pair's state, one variadic HSET for the changes: a redis.call costs
      -- about a microsecond of Lua overhead, so per-pair calls would dominate the batch.
      local pairs_ = {}
      for k = 0, n - 1 do pairs_[k + 1] = ops[i + 4 * k] end
      local states = hmget_chunked(key, pairs_)
      local sets = {}
      for k = 0, n - 1 do
        local pair, cfield = ops[i], ops[i + 1]
        local di, dc = tonumber(ops[i + 2]), tonumber(ops[i + 3])
        i = i + 4
        local s = tonumber(states[k + 1] or '0')
        if di > 0 then
          if s > 0 then redis.call('HINCRBY', counters, cfield, -s) end
          if s ~= -1 then sets[#sets + 1] = pair; sets[#sets + 1] = -1 end
        elseif s >= 0 and dc > 0 then
          sets[#sets + 1] = pair
          sets[#sets + 1] = s + dc
          redis.call('HINCRBY', counters, cfield, dc)
        end
      end
      call_chunked('HSET', key, sets)
    elseif op == 'Q' then
      i = orphan_pairs(key, expire_at, keys[tonumber(ops[i])], keys[tonumber(ops[i + 1])],
        ops[i + 2], ops, i + 3, n, legacy_live)
    elseif op == 'K' then
      local due = keys[tonumber(ops[i])]
      i = i + 1
      local sets, dues, gone, gone_due = {}, {}, {}, {}
      for _ = 1, n do
        local f, value, at = ops[i], ops[i + 1], ops[i + 2]
        i = i + 3
        if value == '' then
          gone[#gone + 1] = f
        else
          sets[#sets + 1] = f
          sets[#sets + 1] = value
          if tonumber(at) < 0 then
            gone_due[#gone_due + 1] = f
          else
            dues[#dues + 1] = at
            dues[#dues + 1] = f
          end
        end
      end
      call_chunked('HSET', key, sets)
      call_chunked('ZADD', due, dues)
      call_chunked('HDEL', key, gone)
      call_chunked('ZREM', due, gone)
      call_chunked('ZREM', due, gone_due)
    elseif op == 'Z' then
      local adds, rems = {}, {}
      for _ = 1, n do
        local member, score = ops[i], ops[i + 1]
        i = i + 2
        if score == '' then
          rems[#rems + 1] = member
        else
          adds[#adds + 1] = score
          adds[#adds + 1] = member
        end
      end
      call_chunked('ZADD', key, adds)
      call_chunked('ZREM', key, rems)
    elseif op == 'A' then
      i = merge_pending(key, keys[tonumber(ops[i])], ops, i + 1, n)
    elseif op == 'X' then
      local seqfield = ops[i]
      i = i + 1
      for _ = 1, n do
        local seq = redis.call('HINCRBY', state, seqfield, 1)
        redis.call('XADD', key, '0-' .. seq, 'm', ops[i])
        i = i + 1
      end
    else
      return redis.error_reply('unknown op ' .. tostring(op))
    end
    if expire_at > 0 then redis.call('EXPIREAT', key, expire_at) end
  end
  redis.call('HSET', state, 'offset', args[2], 'max_ts', args[3], unpack(args, 6))
  return {1}
end

local function read_keyed(keys, args, named, split)
  local out = {}
  local seen = {}
  local fields = {}
  for j = 1, #named do
    local f = named[j]
    if not seen[f] then
      seen[f] = true
      fields[#fields + 1] = f
    end
  end
  local due = redis.call('ZRANGE', keys[2], '-inf', args[1], 'BYSCORE', 'LIMIT', 0, args[2])
  for _, f in ipairs(due) do
    if not seen[f] then
      seen[f] = true
      fields[#fields + 1] = f
    end
  end
  local values = hmget_chunked(keys[1], fields)
  if split then
    for k = 1, #fields do
      local v, pending = values[k], false
      local at0 = v and string.find(v, '\0', 1, true)
      if at0 then
        -- nested as an array (a MessagePack blob inside the reply would not be valid UTF-8)
        pending = cmsgpack.unpack(string.sub(v, at0 + 1))
        v = at0 > 1 and string.sub(v, 1, at0 - 1)
      end
      out[#out + 1] = fields[k]
      out[#out + 1] = v
      out[#out + 1] = pending
    end
    return cmsgpack.pack(out)
  end
  for k = 1, #fields do
    out[#out + 1] = fields[k]
    out[#out + 1] = values[k]
  end
  return cmsgpack.pack(out)
end

local function packed_fields(args) return cmsgpack.unpack(args[3]) end
local function listed_fields(args)
  local fields = {}
  for j = 3, #args do fields[j - 2] = args[j] end
  return fields
end

local function register_read(name, fields_of, split)
  redis.register_function{
    function_name = name,
    callback = function(keys, args) return read_keyed(keys, args, fields_of(args), split) end,
    flags = {'no-writes'},
  }
end

redis.register_function('es_apply_v1', apply_batch)
register_read('es_read_keyed_v2', packed_fields, false)
register_read('es_read_keyed_split_v2', packed_fields, true)
register_read('es_read_keyed_v1', listed_fields, false)
register_read('es_read_keyed_split_v1', listed_fields, true)
