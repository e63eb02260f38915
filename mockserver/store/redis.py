"""RedisStore: the mock's state in Redis, shared by every worker that points at it and kept across restarts.

Every read-modify-write is one Lua script or one MULTI transaction, so workers never interleave inside a
step: a charge checks and spends the balance at once, a rate window counts a call only if it has room, a
scripted fault is used at most `times`, a job is claimed by one worker only. Keys (prefix `stemmock:`):

    res:{kind}:{id}   hash, one JSON value per record field (so `update` sets fields atomically); expires
    idx:{kind}        sorted set of the kind's ids by creation, capped (the oldest go, with their records)
    bal:{provider}:{key}  hash credits / extra_credits
    rate:{window key} sorted set of admitted calls, scored by the mock's clock
    faults, faults:times, faults:used   scripted faults (JSON, allowance, uses)
    script            list of queued behaviours (JSON)
    maintenance       hash provider -> 0/1
    journal           capped stream of exchanges (MAXLEN journal_size)
    counters          hash name -> last id handed out (ids: reserved in blocks per worker)
    generation        how many resets the store has seen (kept by reset; tags each block of ids)
    jobs, jobs:due, due, claimed   job bodies, their due instants, the queue, the claims (lease, wall clock)
    claims:owner, alive:{worker}   which worker holds each claim; each worker's sign of life (expires)
    clock             hash: the manual instant, the real clock's offset (kept by reset)
    version           moved by every control-plane write (kept by reset): a worker's copy of the control plane
                      is current while it matches
    rv                the last version handed to a record write (kept by reset; each record keeps its own in `_v`)
"""

from __future__ import annotations

import json
import os
import contextvars
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis

from . import codec
from .base import CallState, Job, Record, StaleIds, Store
from .lines import Line, Packer, Pipe

PREFIX = "stemmock:"

# The Lua functions the scripts below share, put in front of each script that uses them.
_LIB = """
-- Store one record (key, index, id, then n field/value pairs from ARGV[at]): it expires after ttl ms (0: never),
-- keeps its place in the index (ordered by creation), and the index keeps at most cap ids, the oldest going. Each
-- write gives it a new version (`_v`, from a counter that outlives resets), which a call that read it can check.
local function store_record(key, index, id, n, at, cap, ttl, counters)
  redis.call('DEL', key)
  for f = 0, n - 1 do redis.call('HSET', key, ARGV[at + 2 * f], ARGV[at + 2 * f + 1]) end
  redis.call('HSET', key, '_v', redis.call('INCR', 'stemmock:rv'))
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  if not redis.call('ZSCORE', index, id) then
    redis.call('ZADD', index, redis.call('HINCRBY', counters, 'order', 1), id)
    local over = redis.call('ZCARD', index) - cap
    if cap > 0 and over > 0 then
      local prefix = string.sub(key, 1, #key - #id)
      local gone = redis.call('ZPOPMIN', index, over)
      for g = 1, #gone, 2 do redis.call('DEL', prefix .. gone[g]) end
    end
  end
end

-- An account's balance, opened with the given credits when it does not exist yet.
local function balance(key, credits, extra)
  local found = redis.call('HMGET', key, 'credits', 'extra_credits')
  if not found[1] then
    redis.call('HSET', key, 'credits', credits, 'extra_credits', extra)
    return tonumber(credits), tonumber(extra)
  end
  return tonumber(found[1]), tonumber(found[2])
end

-- Take cost from the account, extra credits first: true and the new balance, or false (short: nothing is taken).
local function charge(key, c, e, cost)
  if c + e < cost then return false end
  local from_extra = math.min(e, cost)
  e = e - from_extra
  c = c - (cost - from_extra)
  redis.call('HSET', key, 'credits', string.format('%.17g', c), 'extra_credits', string.format('%.17g', e))
  return true, c, e
end

-- Look at `count` queued jobs (from a cursor kept in counters, moving on each time): one whose owner record is gone
-- (retention dropped it) is dropped too, so the queue never outgrows the records, whatever the load.
local function sweep(jobs_key, jobs_due, due, counters, count)
  local prefix = string.sub(jobs_key, 1, #jobs_key - #'jobs')
  local found = redis.call('HSCAN', jobs_key, redis.call('HGET', counters, 'sweep') or '0', 'COUNT', count)
  redis.call('HSET', counters, 'sweep', found[1])
  local entries = found[2]
  for i = 1, math.min(#entries, 2 * count), 2 do  -- [id, body] pairs: at most `count` jobs
    local body = entries[i + 1]
    if string.find(body, '"owner"', 1, true) then
      local ok, job = pcall(cjson.decode, body)
      if ok and type(job) == 'table' and type(job.owner) == 'table' and
          redis.call('EXISTS', prefix .. 'res:' .. tostring(job.owner[1]) .. ':' .. tostring(job.owner[2])) == 0 then
        redis.call('HDEL', jobs_key, entries[i])
        redis.call('HDEL', jobs_due, entries[i])
        redis.call('ZREM', due, entries[i])
      end
    end
  end
end

-- Store what a call made, from ARGV[i]: its records (count, then per record: key, index key, id, field count,
-- fields and values), its jobs (count, then per job: due, body), then journal its exchange ('' for none; then the
-- journal's length).
local function store_effects(i, cap, ttl, counters, jobs_key, jobs_due, due, journal)
  local records = tonumber(ARGV[i]); i = i + 1
  for _ = 1, records do
    local key, index, id, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    i = i + 4
    store_record(key, index, id, n, i, cap, ttl, counters)
    i = i + 2 * n
  end
  local jobs = tonumber(ARGV[i]); i = i + 1
  for _ = 1, jobs do
    local id = 'job_' .. redis.call('HINCRBY', counters, 'job', 1)
    redis.call('HSET', jobs_key, id, ARGV[i + 1])
    redis.call('HSET', jobs_due, id, ARGV[i])
    redis.call('ZADD', due, ARGV[i], id)
    i = i + 2
  end
  if jobs > 0 then sweep(jobs_key, jobs_due, due, counters, 4 * jobs) end
  if ARGV[i] ~= '' then
    local seq = redis.call('HINCRBY', counters, 'journal', 1)
    redis.call('XADD', journal, 'MAXLEN', ARGV[i + 1], '*', 'seq', seq, 'e', ARGV[i])
  end
end
"""

# KEYS counters; ARGV key, index, id, field count, fields and values, cap, ttl (ms): one record stored.
_PUT = _LIB + """
local n = tonumber(ARGV[4])
store_record(ARGV[1], ARGV[2], ARGV[3], n, 5, tonumber(ARGV[5 + 2 * n]), tonumber(ARGV[6 + 2 * n]), KEYS[1])
"""

_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], unpack(ARGV))
redis.call('HSET', KEYS[1], '_v', redis.call('INCR', 'stemmock:rv'))
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] account; ARGV opening credits, opening extra credits, cost ('' to only read). Returns
# {ok, credits, extra_credits}: ok = 0 when the balance is short (nothing is taken).
_ACCOUNT = _LIB + """
local c, e = balance(KEYS[1], ARGV[1], ARGV[2])
local cost = tonumber(ARGV[3])
if cost and cost > 0 then
  local ok, c2, e2 = charge(KEYS[1], c, e, cost)
  if not ok then
    return {0, string.format('%.17g', c), string.format('%.17g', e)}
  end
  c, e = c2, e2
end
return {1, string.format('%.17g', c), string.format('%.17g', e)}
"""

# KEYS[1] window; ARGV now, limit, window, token, mode. mode 'check': seconds until a call is admitted
# (false if one is admitted now). mode 'hit': count the call (1) unless the window is full (0).
_RATE = """
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if ARGV[5] == 'hit' then
  if n >= limit then return 0 end
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  return 1
end
if n < limit then return false end
local oldest = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
return string.format('%.17g', math.max(0, tonumber(oldest[2]) + window - now))
"""

# KEYS faults:times, faults:used; ARGV fault id. 1 when one use was taken.
_TAKE_FAULT = """
local times = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if not times then return 0 end
local used = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if used >= times then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1
"""

# KEYS due, claimed, jobs, jobs:due, claims:owner; ARGV alive-key prefix. Claims go back to the queue when they
# outlived their lease or their worker no longer beats (it died or was stopped): they keep their job id and
# due instant, so the job runs again as it was. Returns how many went back.
_RECLAIM_BODY = """
local t = redis.call('TIME')
local wall = tonumber(t[1]) + tonumber(t[2]) / 1000000
local back = 0
local claims = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #claims, 2 do
  local id, lease = claims[i], tonumber(claims[i + 1])
  local owner = redis.call('HGET', KEYS[5], id)
  if lease <= wall or not owner or redis.call('EXISTS', ARGV[1] .. owner) == 0 then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[5], id)
    local due = redis.call('HGET', KEYS[4], id)
    if due then
      redis.call('ZADD', KEYS[1], due, id)
      back = back + 1
    end
  end
end
"""

_RECLAIM = _RECLAIM_BODY + "return back\n"

# KEYS due, claimed, jobs, jobs:due, claims:owner, alive key of this worker; ARGV alive-key prefix, now (mock
# clock), limit, lease seconds (wall clock), this worker's id, heartbeat ttl (ms). Lapsed claims go back first.
_CLAIM = _RECLAIM_BODY + """
redis.call('SET', KEYS[6], '1', 'PX', tonumber(ARGV[6]))
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], wall + tonumber(ARGV[4]), id)
  redis.call('HSET', KEYS[5], id, ARGV[5])
  table.insert(out, id)
  table.insert(out, redis.call('HGET', KEYS[4], id))
  table.insert(out, redis.call('HGET', KEYS[3], id))
end
return out
"""

# KEYS account, counters, jobs, jobs:due, due, journal, generation; ARGV opening credits, opening extra credits, cost,
# the index cap and the records' ttl (ms), then
# the records (count, then per record: key, index key, id, field count, fields and values), then the jobs
# (count, then per job: due, body), then the exchange to journal ('' for none), the journal's length and the
# generation of the call's ids ('' for any). Charges, stores and journals all of it, or (balance short) nothing:
# returns false; or (the store was reset since the ids were reserved) nothing: returns {'stale'}.
_COMMIT = _LIB + """
local tail = #ARGV
if ARGV[tail] ~= '' and tonumber(redis.call('GET', KEYS[7]) or '0') ~= tonumber(ARGV[tail]) then
  return {'stale'}
end
local c, e = balance(KEYS[1], ARGV[1], ARGV[2])
local cost = tonumber(ARGV[3])
if cost > 0 then
  local ok, c2, e2 = charge(KEYS[1], c, e, cost)
  if not ok then return false end
  c, e = c2, e2
end
store_effects(6, tonumber(ARGV[4]), tonumber(ARGV[5]), KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return {string.format('%.17g', c), string.format('%.17g', e)}
"""

# What deciding a call reads, as the single-step call below answers it when a precondition failed, and as a worker's
# first call (or one naming a resource the worker has not seen) reads it: {'moved', the rate window found full or
# false, the control version, the script, maintenance, faults, uses, the manual instant or false, the generation,
# credits, extra, then each resource's fields (with its version `_v`)}. S = {version, script, maintenance, faults,
# faults:used, clock, generation, account}.
_STATE_FN = """
local function state(S, opening, reads, full)
  if redis.call('EXISTS', S[8]) == 0 then
    redis.call('HSET', S[8], 'credits', opening[1], 'extra_credits', opening[2])
  end
  local balance = redis.call('HMGET', S[8], 'credits', 'extra_credits')
  local out = {'moved', full or false, tonumber(redis.call('GET', S[1]) or '0'), redis.call('LRANGE', S[2], 0, -1),
               redis.call('HGETALL', S[3]), redis.call('HGETALL', S[4]), redis.call('HGETALL', S[5]),
               redis.call('HGET', S[6], 'manual'), tonumber(redis.call('GET', S[7]) or '0'), balance[1], balance[2]}
  for _, k in ipairs(reads) do out[#out + 1] = redis.call('HGETALL', k) end
  return out
end
"""

# KEYS version, script, maintenance, faults, faults:used, clock, generation, account; ARGV opening credits, opening
# extra credits, then the resources' keys.
_STATE = _STATE_FN + """
local reads = {}
for i = 3, #ARGV do reads[#reads + 1] = ARGV[i] end
return state(KEYS, {ARGV[1], ARGV[2]}, reads, false)
"""

# One provider call in one step. KEYS as `_STATE`, then counters, jobs, jobs:due, due, journal, faults:times; ARGV[1]
# what the call's decision relied on (JSON: version, pop, reads [[key, version]], faults [id], rate [[key, now,
# limit, window, token]], opening [credits, extra], cost, gen), then the index cap, the records' ttl (ms), the
# records, the jobs, the exchange and the journal's length as for `_COMMIT`. When all the decision relied on still
# holds, it takes the script step, the fault's turn, the rate window's place and the charge, stores the records and
# jobs and journals the exchange: {'ok', credits, extra, version}. Otherwise it changes nothing and answers the
# fresh state (`_STATE_FN`), so that the worker decides the call again on it.
_CALL = _LIB + _STATE_FN + """
local h = cjson.decode(ARGV[1])
local reads = {}
for _, r in ipairs(h.reads) do reads[#reads + 1] = r[1] end
local function moved(full) return state(KEYS, h.opening, reads, full) end
if h.gen ~= cjson.null and tonumber(redis.call('GET', KEYS[7]) or '0') ~= h.gen then return moved(false) end
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= h.version then return moved(false) end
for _, r in ipairs(h.reads) do
  if (redis.call('HGET', r[1], '_v') or '0') ~= r[2] then return moved(false) end
end
for _, id in ipairs(h.faults) do
  local times = tonumber(redis.call('HGET', KEYS[14], id))
  if not times or tonumber(redis.call('HGET', KEYS[5], id) or '0') >= times then return moved(false) end
end
for _, w in ipairs(h.rate) do
  redis.call('ZREMRANGEBYSCORE', w[1], '-inf', tonumber(w[2]) - tonumber(w[4]))
  if redis.call('ZCARD', w[1]) >= tonumber(w[3]) then return moved(w[1]) end
end
local cost = tonumber(h.cost)
local c, e
if cost > 0 then
  local ok
  c, e = balance(KEYS[8], h.opening[1], h.opening[2])
  ok, c, e = charge(KEYS[8], c, e, cost)
  if not ok then return moved(false) end
  c, e = string.format('%.17g', c), string.format('%.17g', e)
else  -- nothing to take: the balance as it stands (false for an account never opened, which stays unopened)
  local b = redis.call('HMGET', KEYS[8], 'credits', 'extra_credits')
  c, e = b[1], b[2]
end
local version = h.version
if h.pop then
  redis.call('LPOP', KEYS[2])
  version = redis.call('INCR', KEYS[1])
end
for _, id in ipairs(h.faults) do redis.call('HINCRBY', KEYS[5], id, 1) end
for _, w in ipairs(h.rate) do redis.call('ZADD', w[1], w[2], w[5]) end
store_effects(4, tonumber(ARGV[2]), tonumber(ARGV[3]), KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13])
return {'ok', c, e, version}
"""

# KEYS journal, counters; ARGV exchange JSON, max length. Returns the exchange's sequence number.
_RECORD = """
local seq = redis.call('HINCRBY', KEYS[2], 'journal', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'seq', seq, 'e', ARGV[1])
return seq
"""

# KEYS counters, generation; ARGV counter name, count. {generation, first id of the block}.
_RESERVE = """
local last = redis.call('HINCRBY', KEYS[1], ARGV[1], tonumber(ARGV[2]))
return {tonumber(redis.call('GET', KEYS[2]) or '0'), last - tonumber(ARGV[2]) + 1}
"""

# KEYS counters, generation: a reset starts a new generation and restarts the counters in one step, so a block
# reserved while the rest is being cleared belongs to the new generation and is never reserved again.
_NEW_GENERATION = """
redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
"""

# KEYS clock; ARGV name, instant: set the instant unless the clock already reads later.
_FORWARD = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if not current or tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
"""


class StateMoved(StaleIds):
    """What a call's decision relied on changed before its step ran (another worker moved it): nothing was stored,
    and the worker now holds the fresh state to decide the call again on."""


@dataclass(slots=True)
class _Control:
    """A worker's copy of the control plane, as of `version` (every control-plane write moves the version)."""

    version: int
    script: list[str]
    maintenance: dict[str, bool]
    faults: list[Record]
    clock: float | None
    generation: int


@dataclass(slots=True)
class _Ticket:
    """What one call's decision relied on, checked by the step that applies the call (`_CALL`)."""

    provider: str
    api_key: str
    version: int
    pop: bool
    reads: list[tuple[str, str]]  # (key, version: '0' for a resource that did not exist)
    faults: list[str] = field(default_factory=list)
    rate: list[list[str]] = field(default_factory=list)
    basis: _Control | None = None  # the copy of the control plane the call was decided on


def _dumps(value: Any) -> bytes:
    """Compact JSON of a value to store. orjson where it can (several times faster); what it refuses (a lone
    surrogate, integers beyond 64 bits, keys that are not strings) is written by json, with what UTF-8 cannot carry
    escaped, so that a stored value can always be read back. A NaN or infinity is stored as null, as in memory."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, separators=(",", ":"), default=str).encode()


def _journaled(exchange: Record | Callable[[], Record] | None) -> bytes | str:
    """An exchange as the journal stores it ('' for none): encoded by the exchange itself when it can."""
    if exchange is None:
        return ""
    encoded = getattr(exchange, "encoded", None)
    if encoded is not None:
        return cast(bytes, encoded())
    return _dumps(exchange() if callable(exchange) else exchange)


def _pairs(flat: list[str]) -> dict[str, str]:
    """HGETALL's answer inside a script (a flat [field, value, ...] list) as a dict."""
    return dict(zip(flat[::2], flat[1::2]))


def _faults(bodies: dict[str, str], used: dict[str, str]) -> list[Record]:
    """The scripted faults from their stored bodies and use counts, in the order they were added."""
    faults = [{**json.loads(body), "used": int(used.get(fid, 0))} for fid, body in bodies.items()]
    return sorted(faults, key=lambda f: int(f["id"].rsplit("_", 1)[1]))


class RedisStore(Store):
    """The `Store` on a Redis server (`redis://host:port/db`)."""

    shared = True

    def __init__(self, url: str, default_balance: Record | None = None, journal_size: int = 1000,
                 opening: dict[str, Record] | None = None, lease: float = 60.0,
                 client: redis.Redis | None = None, max_records: int | None = None,
                 ttl: float | None = None) -> None:
        self.url = url
        # Bounds on what calls made: each kind's index keeps the newest `max_records` ids (the rest are deleted),
        # and each record expires `ttl` seconds after it was stored (Redis' own clock), so Redis memory stays
        # bounded; the mock's clock decides when a record reads as expired (`Context.owned`).
        self._cap = int(max_records or 0)
        self._ttl_ms = int((ttl or 0) * 1000)
        # Any: redis-py types every answer as bytes | str whatever decode_responses says; these are all str.
        self._r: Any = client or redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
        self._default = dict(default_balance or {"credits": 1000, "extra_credits": 0})
        self._opening = dict(opening or {})
        self._journal_size = journal_size
        self.lease = lease
        self._update = self._r.register_script(_UPDATE)
        self._put = self._r.register_script(_PUT)
        self._account_script = self._r.register_script(_ACCOUNT)
        self._rate = self._r.register_script(_RATE)
        self._take_fault = self._r.register_script(_TAKE_FAULT)
        self._claim = self._r.register_script(_CLAIM)
        self._record = self._r.register_script(_RECORD)
        self._forward = self._r.register_script(_FORWARD)
        self._state = self._r.register_script(_STATE)
        self._call = self._r.register_script(_CALL)
        packer = Packer()
        self._line = Line(self._r, packer)  # steps made outside the event loop, or while it waits for nothing else
        self._pipe = Pipe(url, self._r, self._line, packer)  # the event loop's: overlapping calls' steps go together
        self._openings: dict[str, list[str]] = {}
        self._call_keys: dict[tuple[str, str], list[str]] = {}
        # One round trip per provider call: the call is decided on this worker's copy of the control plane, its
        # balances and the resources it has read (each with its version), and the step that applies it checks
        # that all it relied on still holds (`_CALL`); when not, it answers the fresh state and the call is decided
        # again (a second trip, only then).
        self._control: _Control | None = None
        self._balances: dict[tuple[str, str], tuple[float, float]] = {}
        # key -> (version, the record as stored JSON: a fresh copy for each call costs one orjson.loads)
        self._records: OrderedDict[str, tuple[str, bytes | None]] = OrderedDict()
        self._full_windows: set[str] = set()  # rate windows a call found full: read for real until they admit
        # The ticket of the call being decided in this context: each request runs in its own task, so calls that
        # overlap in one worker (one waits for its step while another is decided) each keep their own.
        self._calls: contextvars.ContextVar[_Ticket | None] = contextvars.ContextVar(f"ticket-{id(self)}",
                                                                                   default=None)
        self._reclaim = self._r.register_script(_RECLAIM)
        self._commit = self._r.register_script(_COMMIT)
        self._reserve = self._r.register_script(_RESERVE)
        self._new_generation = self._r.register_script(_NEW_GENERATION)
        # Who holds a claim: a claim whose worker stops beating goes back to the queue at once (its lease would
        # keep it for a minute), so a restarted mock runs what the killed one left half done.
        self.worker = f"{os.getpid()}-{os.urandom(6).hex()}"

    def ping(self) -> None:
        """Raise redis.ConnectionError (with the URL) when the server cannot be reached."""
        try:
            self._r.ping()
        except redis.RedisError as exc:
            raise redis.ConnectionError(f"cannot reach the store at {self.url}: {exc}") from exc

    def close(self) -> None:
        self._line.close()
        self._r.close()

    async def aclose(self) -> None:
        await self._pipe.aclose()
        self.close()

    def reset(self) -> None:
        self._new_generation(keys=[f"{PREFIX}counters", f"{PREFIX}generation"])
        # The counters restarted above; the versions of the control plane and of records only ever move forward,
        # so a copy taken before the reset can never pass for a current one.
        keep = {PREFIX + "clock", PREFIX + "generation", PREFIX + "counters", PREFIX + "version", PREFIX + "rv"}
        batch: list[str] = []
        for key in self._r.scan_iter(match=PREFIX + "*", count=1000):
            if key not in keep and not key.startswith(PREFIX + "alive:"):  # the clock and the workers' beats stay
                batch.append(key)
            if len(batch) >= 1000:
                self._r.unlink(*batch)
                batch.clear()
        if batch:
            self._r.unlink(*batch)
        self._moved()

    def _moved(self) -> None:
        """A control-plane write: every worker's copy (this one's too) is out of date from now on."""
        self._r.incr(f"{PREFIX}version")
        self._control = None
        self._balances.clear()

    # -- resources ------------------------------------------------------------------------------------
    @staticmethod
    def _decode(fields: dict[str, str] | list[str] | None) -> Record | None:
        if not fields:
            return None
        if isinstance(fields, list):  # HGETALL through a script
            fields = _pairs(fields)
        return {name: json.loads(value) for name, value in fields.items() if name != "_v"}

    def put(self, kind: str, rid: str, record: Record) -> None:
        if not record:
            raise ValueError(f"{kind} {rid}: an empty record cannot be stored.")
        fields = [part for name, value in record.items() for part in (name, _dumps(value))]
        self._records.pop(f"{PREFIX}res:{kind}:{rid}", None)
        self._put(keys=[f"{PREFIX}counters"], args=[f"{PREFIX}res:{kind}:{rid}", f"{PREFIX}idx:{kind}", rid,
                                                   len(record), *fields, self._cap, self._ttl_ms])

    def get(self, kind: str, rid: str) -> Record | None:
        return self._decode(self._r.hgetall(f"{PREFIX}res:{kind}:{rid}"))

    def update(self, kind: str, rid: str, changes: Record) -> Record | None:
        if not changes:
            return self.get(kind, rid)
        args = [part for name, value in changes.items() for part in (name, _dumps(value))]
        self._records.pop(f"{PREFIX}res:{kind}:{rid}", None)
        return self._decode(self._update(keys=[f"{PREFIX}res:{kind}:{rid}"], args=args))

    def all(self, kind: str) -> list[Record]:
        ids = sorted(self._r.zrange(f"{PREFIX}idx:{kind}", 0, -1))
        pipe = self._r.pipeline(transaction=False)
        for rid in ids:
            pipe.hgetall(f"{PREFIX}res:{kind}:{rid}")
        return [r for r in (self._decode(fields) for fields in pipe.execute()) if r is not None]

    # -- credits ----------------------------------------------------------------------------------------
    def _opening_args(self, api_key: str) -> list[str]:
        found = self._openings.get(api_key)
        if found is None:
            opening = self._opening.get(api_key, self._default)
            found = [repr(float(opening["credits"])), repr(float(opening.get("extra_credits", 0)))]
            if len(self._openings) < 10_000:
                self._openings[api_key] = found
        return found

    def _account(self, provider: str, api_key: str, cost: float | None) -> tuple[bool, Record]:
        ok, credits, extra = self._account_script(
            keys=[f"{PREFIX}bal:{provider}:{api_key}"],
            args=[*self._opening_args(api_key), "" if cost is None else repr(float(cost))])
        return bool(ok), {"credits": float(credits), "extra_credits": float(extra)}

    def balance(self, provider: str, api_key: str) -> Record:
        return self._account(provider, api_key, None)[1]

    def set_balance(self, provider: str, api_key: str, credits: float, extra_credits: float = 0) -> Record:
        self._r.hset(f"{PREFIX}bal:{provider}:{api_key}",
                     mapping={"credits": repr(float(credits)), "extra_credits": repr(float(extra_credits))})
        self._moved()  # a balance only grows through here: a worker's copy may be lower than the truth, never higher
        return {"credits": float(credits), "extra_credits": float(extra_credits)}

    def charge(self, provider: str, api_key: str, cost: float) -> Record | None:
        ok, balance = self._account(provider, api_key, cost)
        return balance if ok else None

    def commit(self, provider: str, api_key: str, cost: float, records: list[tuple[str, str, Record]],
               jobs: list[tuple[float, Record]], journal: Record | Callable[[], Record] | None = None,
               generation: int | None = None) -> Record | None:
        ticket = self._ticket(provider, api_key)
        if ticket is not None:
            return self._apply(ticket, cost, records, jobs, journal, generation)
        for kind, rid, _record in records:
            self._records.pop(f"{PREFIX}res:{kind}:{rid}", None)
        args: list[Any] = [*self._opening_args(api_key), repr(float(cost)), self._cap, self._ttl_ms, len(records)]
        for kind, rid, record in records:
            if not record:
                raise ValueError(f"{kind} {rid}: an empty record cannot be stored.")
            args += [f"{PREFIX}res:{kind}:{rid}", f"{PREFIX}idx:{kind}", rid, len(record)]
            for name, value in record.items():
                args += [name, _dumps(value)]
        args.append(len(jobs))
        for due, job in jobs:
            args += [repr(float(due)), _dumps(job)]
        args += [_journaled(journal), self._journal_size, "" if generation is None else generation]
        found = self._line.evalsha(self._commit, [f"{PREFIX}bal:{provider}:{api_key}", f"{PREFIX}counters",
                                                  f"{PREFIX}jobs", f"{PREFIX}jobs:due", f"{PREFIX}due",
                                                  f"{PREFIX}journal", f"{PREFIX}generation"], args)
        if not found:
            return None
        if found[0] == "stale":
            raise StaleIds(f"generation {generation}: the store was reset since the call's ids were reserved.")
        return {"credits": float(found[0]), "extra_credits": float(found[1])}

    # -- rate windows, scripted faults, maintenance ----------------------------------------------------------
    def rate_retry_after(self, key: str, now: float, limit: int, window: float) -> float | None:
        full = f"{PREFIX}rate:{key}"
        if self._ticket() is not None and full not in self._full_windows:
            return None  # assumed to admit: the call's step counts it only if it has room (`_CALL`)
        wait = self._rate(keys=[full], args=[repr(now), limit, repr(window), "", "check"])
        if wait is None:
            self._full_windows.discard(full)
        return None if wait is None else float(wait)

    def rate_hit(self, key: str, now: float, limit: int, window: float) -> bool:
        token = f"{now!r}:{os.urandom(8).hex()}"
        ticket = self._ticket()
        if ticket is not None:
            ticket.rate.append([f"{PREFIX}rate:{key}", repr(now), str(limit), repr(window), token])
            return True
        return bool(self._rate(keys=[f"{PREFIX}rate:{key}"], args=[repr(now), limit, repr(window), token, "hit"]))

    def add_fault(self, fault: Record) -> Record:
        stored = {**fault, "id": f"fault_{self.next_id('fault')}", "used": 0}
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(f"{PREFIX}faults", stored["id"], _dumps(stored))
        pipe.hset(f"{PREFIX}faults:times", stored["id"], int(stored["times"]))
        pipe.execute()
        self._moved()
        return stored

    def faults(self) -> list[Record]:
        pipe = self._r.pipeline(transaction=True)
        pipe.hgetall(f"{PREFIX}faults")
        pipe.hgetall(f"{PREFIX}faults:used")
        bodies, used = pipe.execute()
        return _faults(bodies, used)

    def take_fault(self, fault_id: str) -> bool:
        ticket = self._ticket()
        if ticket is not None:  # the call's step takes the turn if one is left (`_CALL`)
            ticket.faults.append(fault_id)
            return True
        return bool(self._take_fault(keys=[f"{PREFIX}faults:times", f"{PREFIX}faults:used"], args=[fault_id]))

    def clear_faults(self) -> None:
        self._r.delete(f"{PREFIX}faults", f"{PREFIX}faults:times", f"{PREFIX}faults:used")
        self._moved()

    def set_script(self, steps: list[Record]) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(f"{PREFIX}script")
        if steps:
            pipe.rpush(f"{PREFIX}script", *(_dumps(step) for step in steps))
        pipe.execute()
        self._moved()

    def pop_script(self) -> Record | None:
        step = self._r.lpop(f"{PREFIX}script")
        self._moved()
        return None if step is None else json.loads(step)

    def script(self) -> list[Record]:
        return [json.loads(step) for step in self._r.lrange(f"{PREFIX}script", 0, -1)]

    def maintenance(self) -> dict[str, bool]:
        return {provider: on == "1" for provider, on in self._r.hgetall(f"{PREFIX}maintenance").items()}

    def call_state(self, provider: str, api_key: str, reads: list[tuple[str, str]] | None = None) -> CallState:
        keys = [f"{PREFIX}res:{kind}:{rid}" for kind, rid in reads or ()]
        if self._control is None or (provider, api_key) not in self._balances or \
                any(key not in self._records for key in keys):  # a first look: read it (a trip of its own)
            self._install(provider, api_key, keys, self._line.evalsha(
                self._state, self._state_keys(provider, api_key), [*self._opening_args(api_key), *keys]))
        control = self._control
        assert control is not None
        self._calls.set(_Ticket(provider, api_key, control.version, bool(control.script),
                                [(key, self._records[key][0]) for key in keys], basis=control))
        credits, extra = self._balances[(provider, api_key)]
        records = {read: None if (kept := self._records[key][1]) is None else codec.loads(kept)
                   for read, key in zip(reads or (), keys)}
        return CallState(json.loads(control.script[0]) if control.script else None,
                         dict(control.maintenance) if control.maintenance else {},
                         [dict(fault) for fault in control.faults] if control.faults else [],
                         {"credits": credits, "extra_credits": extra}, control.clock, records, control.generation)

    def quiet_call(self, provider: str, api_key: str | None) -> float | None:
        if self._ticket() is not None:
            return None
        if self._control is None:
            self.call_state(provider, api_key or "")
        control = self._control
        assert control is not None
        # The journal's step checks the control version (the instant with it) and takes no script step.
        self._calls.set(_Ticket(provider, api_key or "", control.version, False, [], basis=control))
        return control.clock

    def end_call(self) -> None:
        self._calls.set(None)

    def _ticket(self, provider: str | None = None, api_key: str | None = None) -> _Ticket | None:
        """The ticket of the call being decided (of that provider and key, when given), if any."""
        ticket = self._calls.get()
        if ticket is None or (provider is not None and (ticket.provider, ticket.api_key) != (provider, api_key)):
            return None
        return ticket

    _CALL_KEYS = [f"{PREFIX}counters", f"{PREFIX}jobs", f"{PREFIX}jobs:due", f"{PREFIX}due", f"{PREFIX}journal",
                  f"{PREFIX}faults:times"]

    def _state_keys(self, provider: str, api_key: str) -> list[str]:
        return [f"{PREFIX}version", f"{PREFIX}script", f"{PREFIX}maintenance", f"{PREFIX}faults",
                f"{PREFIX}faults:used", f"{PREFIX}clock", f"{PREFIX}generation", f"{PREFIX}bal:{provider}:{api_key}"]

    RECORDS_KEPT = 10_000  # resources a worker remembers (with their versions) for the calls that name them

    def _install(self, provider: str, api_key: str, keys: list[str], flat: list[Any]) -> None:
        """Take the state `_STATE_FN` answered as this worker's copy."""
        _moved, full, version, script, flags, bodies, used, clock, generation, credits, extra, *records = flat
        if full:
            self._full_windows.add(full)
        self._control = _Control(int(version), list(script), {name: on == "1" for name, on in _pairs(flags).items()},
                                 _faults(_pairs(bodies), _pairs(used)), None if clock is None else float(clock),
                                 int(generation))
        self._balances[(provider, api_key)] = (float(credits), float(extra))
        for key, fields in zip(keys, records):
            pairs = _pairs(fields)
            decoded = self._decode(pairs)
            self._records[key] = (pairs.get("_v", "0"), None if decoded is None else codec.exact_size(_dumps(decoded)))
            self._records.move_to_end(key)
        while len(self._records) > self.RECORDS_KEPT:
            self._records.popitem(last=False)

    def _apply(self, ticket: _Ticket, cost: float, records: list[tuple[str, str, Record]],
               jobs: list[tuple[float, Record]], journal: Record | Callable[[], Record] | None,
               generation: int | None) -> Record:
        """The call in one step (`_CALL`); raises `StateMoved`, storing nothing, when what it relied on changed."""
        return self._applied(ticket, self._line.evalsha(self._call, *self._step(ticket, cost, records, jobs, journal,
                                                                                  generation)))

    async def _aapply(self, ticket: _Ticket, cost: float, records: list[tuple[str, str, Record]],
                      jobs: list[tuple[float, Record]], journal: Record | Callable[[], Record] | None,
                      generation: int | None) -> Record:
        """`_apply` through the event loop's pipe: the steps of calls that overlap go out together."""
        step = self._step(ticket, cost, records, jobs, journal, generation)
        return self._applied(ticket, await self._pipe.evalsha(self._call, *step))

    def _step(self, ticket: _Ticket, cost: float, records: list[tuple[str, str, Record]],
              jobs: list[tuple[float, Record]], journal: Record | Callable[[], Record] | None,
              generation: int | None) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the call's step (`_CALL`)."""
        self._calls.set(None)  # one step per ticket: whatever else the call stores goes on its own
        head = {"version": ticket.version, "pop": ticket.pop, "reads": ticket.reads, "faults": ticket.faults,
                "rate": ticket.rate, "opening": self._opening_args(ticket.api_key), "cost": repr(float(cost)),
                "gen": generation}
        args: list[Any] = [_dumps(head), self._cap, self._ttl_ms, len(records)]
        for kind, rid, record in records:
            if not record:
                raise ValueError(f"{kind} {rid}: an empty record cannot be stored.")
            key = f"{PREFIX}res:{kind}:{rid}"
            self._records.pop(key, None)
            args += [key, f"{PREFIX}idx:{kind}", rid, len(record)]
            for name, value in record.items():
                args += [name, _dumps(value)]
        args.append(len(jobs))
        for due, job in jobs:
            args += [repr(float(due)), _dumps(job)]
        args += [_journaled(journal), self._journal_size]
        keys = self._call_keys.get((ticket.provider, ticket.api_key))
        if keys is None:
            keys = [*self._state_keys(ticket.provider, ticket.api_key), *self._CALL_KEYS]
            if len(self._call_keys) < 10_000:  # per account; bounded, so a stream of new keys cannot grow it
                self._call_keys[(ticket.provider, ticket.api_key)] = keys
        return keys, args

    def _applied(self, ticket: _Ticket, found: list[Any]) -> Record:
        """Take the step's answer into this worker's copy: the new balance, or (`StateMoved`) the fresh state."""
        if found[0] == "moved":
            self._install(ticket.provider, ticket.api_key, [key for key, _version in ticket.reads], found)
            raise StateMoved(f"version {ticket.version}: the state the call was decided on changed meanwhile.")
        _ok, credits, extra, version = found
        if credits is None:  # an account never opened (nothing was taken): its opening balance
            credits, extra = self._opening_args(ticket.api_key)
        else:
            self._balances[(ticket.provider, ticket.api_key)] = (float(credits), float(extra))
        control = self._control
        if control is not None and (ticket.pop or ticket.faults):
            if control is not ticket.basis or control.version != ticket.version:
                # The copy was read again while this step was on its way (a call that overlapped it): whether that
                # read saw this step's script pop and fault turns is unknown, so the copy is read afresh.
                self._control = None
                return {"credits": float(credits), "extra_credits": float(extra)}
            if ticket.pop and control.script:
                control.script.pop(0)
            control.version = int(version)
            for fault in control.faults:
                fault["used"] += ticket.faults.count(fault["id"])
        return {"credits": float(credits), "extra_credits": float(extra)}

    def set_maintenance(self, provider: str, on: bool) -> None:
        self._r.hset(f"{PREFIX}maintenance", provider, "1" if on else "0")
        self._moved()

    # -- counters and the shared clock ------------------------------------------------------------------------
    def next_id(self, name: str) -> int:
        return int(self._r.hincrby(f"{PREFIX}counters", name, 1))

    def reserve_ids(self, name: str, count: int) -> tuple[int, int]:
        generation, first = self._reserve(keys=[f"{PREFIX}counters", f"{PREFIX}generation"], args=[name, count])
        return int(generation), int(first)

    def clock_value(self, name: str, default: float | None = None) -> float | None:
        value = self._r.hget(f"{PREFIX}clock", name)
        if value is None and default is not None:
            self._r.hsetnx(f"{PREFIX}clock", name, repr(float(default)))
            value = self._r.hget(f"{PREFIX}clock", name)
        return None if value is None else float(value)

    def set_clock_value(self, name: str, value: float) -> None:
        if name == "manual":  # workers advancing at once must not move each other's clock back
            self._forward(keys=[f"{PREFIX}clock"], args=[name, repr(float(value))])
            self._moved()  # calls decide on the manual instant of the control plane's copy
        else:
            self._r.hset(f"{PREFIX}clock", name, repr(float(value)))

    # -- jobs -------------------------------------------------------------------------------------------------
    def schedule(self, due: float, job: Record) -> str:
        job_id = f"job_{self.next_id('job')}"
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(f"{PREFIX}jobs", job_id, _dumps(job))
        pipe.hset(f"{PREFIX}jobs:due", job_id, repr(float(due)))
        pipe.zadd(f"{PREFIX}due", {job_id: due})
        pipe.execute()
        return job_id

    _JOB_KEYS = [f"{PREFIX}due", f"{PREFIX}claimed", f"{PREFIX}jobs", f"{PREFIX}jobs:due", f"{PREFIX}claims:owner"]
    HEARTBEAT_TTL = 5.0  # seconds without a beat after which a worker's claims are handed out again

    def heartbeat(self) -> None:
        self._r.set(f"{PREFIX}alive:{self.worker}", "1", px=int(self.HEARTBEAT_TTL * 1000))

    def reclaim(self) -> int:
        return int(self._reclaim(keys=self._JOB_KEYS, args=[f"{PREFIX}alive:"]))

    def claimed_count(self) -> int:
        return int(self._r.zcard(f"{PREFIX}claimed"))

    def claim_due(self, now: float, limit: int) -> list[Job]:
        if limit <= 0:
            return []
        flat = self._claim(keys=[*self._JOB_KEYS, f"{PREFIX}alive:{self.worker}"],
                           args=[f"{PREFIX}alive:", repr(now), limit, repr(float(self.lease)), self.worker,
                                 int(self.HEARTBEAT_TTL * 1000)])
        jobs: list[Job] = []
        for i in range(0, len(flat), 3):
            job_id, due, body = flat[i:i + 3]
            if body is not None:  # a job finished by another worker between its lease lapsing and now
                jobs.append((job_id, float(due), json.loads(body)))
        return jobs

    def finish(self, job_id: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.zrem(f"{PREFIX}claimed", job_id)
        pipe.hdel(f"{PREFIX}claims:owner", job_id)
        pipe.zrem(f"{PREFIX}due", job_id)
        pipe.hdel(f"{PREFIX}jobs", job_id)
        pipe.hdel(f"{PREFIX}jobs:due", job_id)
        pipe.execute()

    def next_due(self) -> float | None:
        first = self._r.zrange(f"{PREFIX}due", 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def pending_jobs(self) -> list[tuple[float, str]]:
        queued = self._r.zrange(f"{PREFIX}due", 0, -1, withscores=True)
        if not queued:
            return []
        bodies = self._r.hmget(f"{PREFIX}jobs", [job_id for job_id, _due in queued])
        return [(float(due), json.loads(body).get("label", "") if body else "")
                for (_job_id, due), body in zip(queued, bodies)]

    def job_count(self) -> int:
        return int(self._r.zcard(f"{PREFIX}due"))

    # -- journal ----------------------------------------------------------------------------------------
    async def acommit(self, provider: str, api_key: str, cost: float, records: list[tuple[str, str, Record]],
                      jobs: list[tuple[float, Record]], journal: Record | Callable[[], Record] | None = None,
                      generation: int | None = None) -> Record | None:
        ticket = self._ticket(provider, api_key)
        if ticket is None:
            return self.commit(provider, api_key, cost, records, jobs, journal, generation)
        return await self._aapply(ticket, cost, records, jobs, journal, generation)

    async def arecord(self, exchange: Record | Callable[[], Record]) -> None:
        ticket = self._ticket()
        if ticket is None:
            self.record(exchange)
        else:
            await self._aapply(ticket, 0.0, [], [], exchange, None)

    def record(self, exchange: Record | Callable[[], Record]) -> None:
        ticket = self._ticket()
        if ticket is not None:  # a call that stores nothing is journaled in its own single step all the same
            self._apply(ticket, 0.0, [], [], exchange, None)
            return
        # Written escaping what UTF-8 cannot carry (lone surrogates), so a stored exchange can always be read back.
        self._line.evalsha(self._record, [f"{PREFIX}journal", f"{PREFIX}counters"],
                           [_journaled(exchange), self._journal_size])

    def journal(self, limit: int | None = None, operation: str | None = None) -> list[Record]:
        if limit and operation is None:
            entries = list(reversed(self._r.xrevrange(f"{PREFIX}journal", count=limit)))
        else:
            entries = self._r.xrange(f"{PREFIX}journal")
        found = []
        for _id, fields in entries:
            try:
                record = {**json.loads(fields["e"]), "seq": int(fields["seq"])}
            except (ValueError, KeyError, TypeError):  # written safely; this keeps one bad entry from hiding all
                record = {"seq": int(fields.get("seq", 0)), "operation": None, "error": "the record cannot be read"}
            if operation is None or record.get("operation") == operation:
                found.append(record)
        return found[-limit:] if limit else found
