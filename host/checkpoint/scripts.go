package checkpoint

import "github.com/redis/go-redis/v9"

// The scripts run atomically in Redis, each checking the partition's fence
// and doing a whole batch in one call (one round trip). They only use
// commands of Redis 6 that miniredis also knows, so the embedded Redis of
// `weir quickstart` runs them too. Every script can be run twice with the
// same arguments to the same effect, so go-redis may retry one whose reply
// was lost.
//
// Conventions: KEYS[1] is the partition's state hash when the script is
// fenced; ARGV[1] is then the caller's generation. Positions travel packed
// in one argument (see encodePosition: "NN" + NN digits, repeated), which
// each() walks; runs of positions travel as such pairs (first, last), which
// runs() walks.

// luaPrelude is put before every script.
const luaPrelude = `
local function le(a, b)
  if #a ~= #b then return #a < #b end
  return a <= b
end
local function each(s)
  local i, n = 1, #s
  return function()
    if i > n then return nil end
    local l = tonumber(string.sub(s, i, i + 1))
    local m = string.sub(s, i, i + 1 + l)
    i = i + 2 + l
    return m
  end
end
local function gt(a, b) return not le(a, b) end
local function posat(s, i)
  local l = tonumber(string.sub(s, i, i + 1))
  return string.sub(s, i, i + 1 + l), i + 2 + l
end
local function runs(s)
  local i, n = 1, #s
  return function()
    if i > n then return nil end
    local f, l
    f, i = posat(s, i)
    l, i = posat(s, i)
    return f, l
  end
end
-- A done-set member is a run "LAST:FIRST", which sorts by its last
-- position; a member without ':' (written by weir before runs) is one
-- position.
local function bounds(m)
  local c = string.find(m, ':', 1, true)
  if not c then return m, m end
  return string.sub(m, c + 1), string.sub(m, 1, c - 1)
end
local function toprun(key)
  local m = redis.call('ZREVRANGEBYLEX', key, '+', '-', 'LIMIT', 0, 1)[1]
  if not m then return nil end
  local _, l = bounds(m)
  return l
end
local function fenced(key, gen)
  local cur = redis.call('HGET', key, 'gen')
  if cur and tonumber(cur) > gen then return cur end
  return nil
end
`

// scriptFence raises the partition's generation to ARGV[1], or refuses.
// KEYS: state. ARGV: gen.
var scriptFence = redis.NewScript(luaPrelude + `
local gen = tonumber(ARGV[1])
local cur = fenced(KEYS[1], gen)
if cur then return redis.error_reply('FENCED ' .. cur) end
redis.call('HSET', KEYS[1], 'gen', ARGV[1])
return 1
`)

// scriptCommit stores the checkpoint (never backwards), raises the
// generation, and in ModePosition moves the watermark to the checkpoint and
// trims the done set below it.
// KEYS: state, wm, done. ARGV: gen, checkpoint value, encoded position,
// TTL ms, "1" in ModePosition.
var scriptCommit = redis.NewScript(luaPrelude + `
local gen = tonumber(ARGV[1])
local cur = fenced(KEYS[1], gen)
if cur then return redis.error_reply('FENCED ' .. cur) end
redis.call('HSET', KEYS[1], 'gen', ARGV[1])
local old = redis.call('HGET', KEYS[1], 'ckm')
local moved = 0
if (not old) or not le(ARGV[3], old) then
  redis.call('HSET', KEYS[1], 'ck', ARGV[2], 'ckm', ARGV[3])
  moved = 1
end
if ARGV[5] == '1' then
  local wm = redis.call('GET', KEYS[2])
  if (not wm) or not le(ARGV[3], wm) then wm = ARGV[3] end
  redis.call('SET', KEYS[2], wm, 'PX', ARGV[4])
  -- Runs are stored as "LAST:FIRST" (see runkey): every run whose last
  -- position is at or below wm sorts below wm .. ';' (';' follows ':').
  redis.call('ZREMRANGEBYLEX', KEYS[3], '-', '(' .. wm .. ';')
end
return moved
`)

// scriptClaimPositions reports which positions of the given runs are
// done: the parts of each run at or below the watermark, and its
// intersections with the stored runs of the done set. It writes nothing.
// The reply is packed pairs of encoded positions, each pair a range of done
// positions ("" when nothing is done). A stored run [a,b] means every
// record of the partition from a to b is done (see ClaimPositions), so the
// intersection of two runs holds exactly the batch's records done.
//
// Stored runs are disjoint (scriptMarkPositions merges overlapping ones),
// so in order of their last position their first positions are in order
// too: the scan of a run stops at the first stored run starting after it.
// One look at the highest stored run skips every scan when the batch is
// above it, which is the case for new records.
// KEYS: state, wm, done. ARGV: gen, packed runs (first, last).
var scriptClaimPositions = redis.NewScript(luaPrelude + `
local gen = tonumber(ARGV[1])
local cur = fenced(KEYS[1], gen)
if cur then return redis.error_reply('FENCED ' .. cur) end
local wm = redis.call('GET', KEYS[2])
local top = toprun(KEYS[3])
local out = {}
for f, l in runs(ARGV[2]) do
  if wm and le(l, wm) then
    out[#out + 1] = f
    out[#out + 1] = l
  else
    if wm and le(f, wm) then
      out[#out + 1] = f
      out[#out + 1] = wm
    end
    if top and le(f, top) then
      local from, more = '[' .. f, true
      while more do
        local ms = redis.call('ZRANGEBYLEX', KEYS[3], from, '+', 'LIMIT', 0, 32)
        more = #ms == 32
        for _, m in ipairs(ms) do
          local a, b = bounds(m)
          if not le(a, l) then
            more = false
            break
          end
          out[#out + 1] = gt(a, f) and a or f
          out[#out + 1] = le(b, l) and b or l
        end
        if more then from = '(' .. ms[#ms] end
      end
    end
  end
end
return table.concat(out)
`)

// scriptMarkPositions adds the given runs that end above the watermark to
// the done set, each merged with the stored runs it overlaps (their union
// has no hole, so it is a run too), and refreshes the TTL of the watermark
// and the set. It returns how many runs it stored.
// KEYS: state, wm, done. ARGV: gen, TTL ms, packed runs (first, last).
var scriptMarkPositions = redis.NewScript(luaPrelude + `
local gen = tonumber(ARGV[1])
local cur = fenced(KEYS[1], gen)
if cur then return redis.error_reply('FENCED ' .. cur) end
local wm = redis.call('GET', KEYS[2])
local top = toprun(KEYS[3])
local add, n = {}, 0
local function flush()
  if #add > 0 then
    redis.call('ZADD', KEYS[3], unpack(add))
    add = {}
  end
end
for f, l in runs(ARGV[3]) do
  if not (wm and le(l, wm)) then
    if top and le(f, top) then
      -- It may overlap a stored run (or one added by this call).
      flush()
      local more = true
      while more do
        local ms = redis.call('ZRANGEBYLEX', KEYS[3], '[' .. f, '+', 'LIMIT', 0, 32)
        more = #ms == 32
        local gone = {}
        for _, m in ipairs(ms) do
          local a, b = bounds(m)
          if not le(a, l) then
            more = false
            break
          end
          if gt(f, a) then f = a end
          if gt(b, l) then l = b end
          gone[#gone + 1] = m
        end
        if #gone > 0 then redis.call('ZREM', KEYS[3], unpack(gone)) end
      end
    end
    add[#add + 1] = 0
    add[#add + 1] = l .. ':' .. f
    n = n + 1
    if (not top) or gt(l, top) then top = l end
    if #add >= 1000 then flush() end
  end
end
flush()
if n > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[2]) end
if wm then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return n
`)

// scriptClaimMarks claims template marks. Per key, in order: if the key
// appeared earlier in this call (a duplicate within the batch), 'D' if it
// was done there, else 'B'; 'D' if it is marked done; 'C' if it is free, already ours (this record's own claim,
// on a retry), or a claim left by an older generation of this same
// partition (fenced, so dead), and it is then claimed for ClaimTTL; 'B' if
// another owner holds it.
//
// A claim's value is "c:GEN:TOKEN:POS:PARTITION": the owner's generation,
// its Store's random token, the record's encoded position and the
// partition, so that two records with one key in one lane are told apart.
// KEYS: state, mark... ARGV: gen, "c:GEN:TOKEN:", partition, claim TTL ms,
// packed positions (one per mark).
var scriptClaimMarks = redis.NewScript(luaPrelude + `
local gen = tonumber(ARGV[1])
local cur = fenced(KEYS[1], gen)
if cur then return redis.error_reply('FENCED ' .. cur) end
local pfx, part, ttl = ARGV[2], ARGV[3], ARGV[4]
local nextpos = each(ARGV[5])
local seen, out = {}, {}
for i = 2, #KEYS do
  local k = KEYS[i]
  local me = pfx .. nextpos() .. ':' .. part
  local st = 'B'
  if seen[k] then
    if seen[k] == 'D' then st = 'D' end
  else
    local v = redis.call('GET', k)
    if v == 'done' then
      st = 'D'
    elseif (not v) or v == me then
      st = 'C'
    else
      local g, p = string.match(v, '^c:(%d+):[^:]*:[^:]*:(.*)$')
      if g and p == part and tonumber(g) < gen then st = 'C' end
    end
    if st == 'C' then redis.call('SET', k, me, 'PX', ttl) end
    seen[k] = st
  end
  out[#out + 1] = st
end
return table.concat(out)
`)

// scriptMarkMarks marks template keys done for TTL, overwriting claims.
// KEYS: state, mark... ARGV: gen, TTL ms.
var scriptMarkMarks = redis.NewScript(luaPrelude + `
local gen = tonumber(ARGV[1])
local cur = fenced(KEYS[1], gen)
if cur then return redis.error_reply('FENCED ' .. cur) end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], 'done', 'PX', ARGV[2])
end
return #KEYS - 1
`)

// scriptReleaseMarks deletes the marks that still hold this record's claim
// and returns how many it deleted. It is not fenced: it can only remove the
// caller's own claims.
// KEYS: mark... ARGV: "c:GEN:TOKEN:", partition, packed positions.
var scriptReleaseMarks = redis.NewScript(luaPrelude + `
local nextpos = each(ARGV[3])
local n = 0
for i = 1, #KEYS do
  local me = ARGV[1] .. nextpos() .. ':' .. ARGV[2]
  if redis.call('GET', KEYS[i]) == me then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
`)
