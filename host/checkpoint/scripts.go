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
// each() walks.

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
  redis.call('ZREMRANGEBYLEX', KEYS[3], '-', '[' .. wm)
end
return moved
`)

// scriptClaimPositions reports, per position, 'D' (at or below the
// watermark, or in the done set) or 'C'. It writes nothing.
// KEYS: state, wm, done. ARGV: gen, packed positions.
var scriptClaimPositions = redis.NewScript(luaPrelude + `
local gen = tonumber(ARGV[1])
local cur = fenced(KEYS[1], gen)
if cur then return redis.error_reply('FENCED ' .. cur) end
local wm = redis.call('GET', KEYS[2])
local any = redis.call('EXISTS', KEYS[3]) == 1
if any then
  -- Encoded positions sort as numbers do: look the done set up once for
  -- the batch's range, and per position only if something is in it.
  local lo, hi
  for m in each(ARGV[2]) do
    if (not lo) or le(m, lo) then lo = m end
    if (not hi) or le(hi, m) then hi = m end
  end
  if lo then
    any = #redis.call('ZRANGEBYLEX', KEYS[3], '[' .. lo, '[' .. hi, 'LIMIT', 0, 1) > 0
  end
end
local out = {}
for m in each(ARGV[2]) do
  if wm and le(m, wm) then
    out[#out + 1] = 'D'
  elseif any and redis.call('ZSCORE', KEYS[3], m) then
    out[#out + 1] = 'D'
  else
    out[#out + 1] = 'C'
  end
end
return table.concat(out)
`)

// scriptMarkPositions adds the positions above the watermark to the done
// set and refreshes the TTL of the watermark and the set. It returns how
// many positions it added.
// KEYS: state, wm, done. ARGV: gen, TTL ms, packed positions.
var scriptMarkPositions = redis.NewScript(luaPrelude + `
local gen = tonumber(ARGV[1])
local cur = fenced(KEYS[1], gen)
if cur then return redis.error_reply('FENCED ' .. cur) end
local wm = redis.call('GET', KEYS[2])
local args, n = {}, 0
for m in each(ARGV[3]) do
  if not (wm and le(m, wm)) then
    args[#args + 1] = 0
    args[#args + 1] = m
    if #args >= 1000 then
      redis.call('ZADD', KEYS[3], unpack(args))
      n = n + #args / 2
      args = {}
    end
  end
end
if #args > 0 then
  redis.call('ZADD', KEYS[3], unpack(args))
  n = n + #args / 2
end
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
