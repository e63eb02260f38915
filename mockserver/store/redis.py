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
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import redis

from .base import CallState, Job, Record, StaleIds, Store

PREFIX = "stemmock:"

# KEYS counters; ARGV key, index, id, field count, fields and values, cap, ttl (ms): one record stored.
_PUT = """
-- Store one record (key, index, id, then n field/value pairs from ARGV[at]): it expires after ttl ms (0: never),
-- keeps its place in the index (ordered by creation), and the index keeps at most cap ids, the oldest going.
local function store_record(key, index, id, n, at, cap, ttl, counters)
  redis.call('DEL', key)
  for f = 0, n - 1 do redis.call('HSET', key, ARGV[at + 2 * f], ARGV[at + 2 * f + 1]) end
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
local n = tonumber(ARGV[4])
store_record(ARGV[1], ARGV[2], ARGV[3], n, 5, tonumber(ARGV[5 + 2 * n]), tonumber(ARGV[6 + 2 * n]), KEYS[1])
"""

_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], unpack(ARGV))
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] account; ARGV opening credits, opening extra credits, cost ('' to only read). Returns
# {ok, credits, extra_credits}: ok = 0 when the balance is short (nothing is taken).
_ACCOUNT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'credits', ARGV[1], 'extra_credits', ARGV[2])
end
local c = tonumber(redis.call('HGET', KEYS[1], 'credits'))
local e = tonumber(redis.call('HGET', KEYS[1], 'extra_credits'))
local cost = tonumber(ARGV[3])
if cost and cost > 0 then
  if c + e < cost then
    return {0, string.format('%.17g', c), string.format('%.17g', e)}
  end
  local from_extra = math.min(e, cost)
  e = e - from_extra
  c = c - (cost - from_extra)
  redis.call('HSET', KEYS[1], 'credits', string.format('%.17g', c), 'extra_credits', string.format('%.17g', e))
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
_COMMIT = """
-- Store one record (key, index, id, then n field/value pairs from ARGV[at]): it expires after ttl ms (0: never),
-- keeps its place in the index (ordered by creation), and the index keeps at most cap ids, the oldest going.
local function store_record(key, index, id, n, at, cap, ttl, counters)
  redis.call('DEL', key)
  for f = 0, n - 1 do redis.call('HSET', key, ARGV[at + 2 * f], ARGV[at + 2 * f + 1]) end
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
local tail = #ARGV
if ARGV[tail] ~= '' and tonumber(redis.call('GET', KEYS[7]) or '0') ~= tonumber(ARGV[tail]) then
  return {'stale'}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'credits', ARGV[1], 'extra_credits', ARGV[2])
end
local c = tonumber(redis.call('HGET', KEYS[1], 'credits'))
local e = tonumber(redis.call('HGET', KEYS[1], 'extra_credits'))
local cost = tonumber(ARGV[3])
if cost > 0 then
  if c + e < cost then return false end
  local from_extra = math.min(e, cost)
  e = e - from_extra
  c = c - (cost - from_extra)
  redis.call('HSET', KEYS[1], 'credits', string.format('%.17g', c), 'extra_credits', string.format('%.17g', e))
end
local cap, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local i = 6
local records = tonumber(ARGV[i]); i = i + 1
for _ = 1, records do
  local key, index, id, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  i = i + 4
  store_record(key, index, id, n, i, cap, ttl, KEYS[2])
  i = i + 2 * n
end
local jobs = tonumber(ARGV[i]); i = i + 1
for _ = 1, jobs do
  local id = 'job_' .. redis.call('HINCRBY', KEYS[2], 'job', 1)
  redis.call('HSET', KEYS[3], id, ARGV[i + 1])
  redis.call('HSET', KEYS[4], id, ARGV[i])
  redis.call('ZADD', KEYS[5], ARGV[i], id)
  i = i + 2
end
if ARGV[i] ~= '' then
  local seq = redis.call('HINCRBY', KEYS[2], 'journal', 1)
  redis.call('XADD', KEYS[6], 'MAXLEN', ARGV[i + 1], '*', 'seq', seq, 'e', ARGV[i])
end
return {string.format('%.17g', c), string.format('%.17g', e)}
"""

# KEYS journal, counters; ARGV exchange JSON, max length. Returns the exchange's sequence number.
_RECORD = """
local seq = redis.call('HINCRBY', KEYS[2], 'journal', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'seq', seq, 'e', ARGV[1])
return seq
"""

# KEYS script, maintenance, faults, faults:used, account, clock, generation, then the resources the call names;
# ARGV opening credits, opening extra credits. What deciding one call reads, in one trip: {script step or false,
# maintenance, faults, uses, credits, extra, the manual clock's instant or false, the generation, then each
# resource's fields}.
_CALL_STATE = """
local step = redis.call('LPOP', KEYS[1])
local records = {}
for k = 8, #KEYS do records[#records + 1] = redis.call('HGETALL', KEYS[k]) end
if redis.call('EXISTS', KEYS[5]) == 0 then
  redis.call('HSET', KEYS[5], 'credits', ARGV[1], 'extra_credits', ARGV[2])
end
local balance = redis.call('HMGET', KEYS[5], 'credits', 'extra_credits')
return {step or false, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]),
        balance[1], balance[2], redis.call('HGET', KEYS[6], 'manual'), tonumber(redis.call('GET', KEYS[7]) or '0'),
        unpack(records)}
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


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


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
        self._call_state = self._r.register_script(_CALL_STATE)
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
        self._r.close()

    def reset(self) -> None:
        self._new_generation(keys=[f"{PREFIX}counters", f"{PREFIX}generation"])
        keep = {PREFIX + "clock", PREFIX + "generation", PREFIX + "counters"}  # the counters restarted above
        batch: list[str] = []
        for key in self._r.scan_iter(match=PREFIX + "*", count=1000):
            if key not in keep and not key.startswith(PREFIX + "alive:"):  # the clock and the workers' beats stay
                batch.append(key)
            if len(batch) >= 1000:
                self._r.unlink(*batch)
                batch.clear()
        if batch:
            self._r.unlink(*batch)

    # -- resources ------------------------------------------------------------------------------------
    @staticmethod
    def _decode(fields: dict[str, str] | list[str] | None) -> Record | None:
        if not fields:
            return None
        if isinstance(fields, list):  # HGETALL through a script
            fields = _pairs(fields)
        return {name: json.loads(value) for name, value in fields.items()}

    def put(self, kind: str, rid: str, record: Record) -> None:
        if not record:
            raise ValueError(f"{kind} {rid}: an empty record cannot be stored.")
        fields = [part for name, value in record.items() for part in (name, _dumps(value))]
        self._put(keys=[f"{PREFIX}counters"], args=[f"{PREFIX}res:{kind}:{rid}", f"{PREFIX}idx:{kind}", rid,
                                                   len(record), *fields, self._cap, self._ttl_ms])

    def get(self, kind: str, rid: str) -> Record | None:
        return self._decode(self._r.hgetall(f"{PREFIX}res:{kind}:{rid}"))

    def update(self, kind: str, rid: str, changes: Record) -> Record | None:
        if not changes:
            return self.get(kind, rid)
        args = [part for name, value in changes.items() for part in (name, _dumps(value))]
        return self._decode(self._update(keys=[f"{PREFIX}res:{kind}:{rid}"], args=args))

    def all(self, kind: str) -> list[Record]:
        ids = sorted(self._r.zrange(f"{PREFIX}idx:{kind}", 0, -1))
        pipe = self._r.pipeline(transaction=False)
        for rid in ids:
            pipe.hgetall(f"{PREFIX}res:{kind}:{rid}")
        return [r for r in (self._decode(fields) for fields in pipe.execute()) if r is not None]

    # -- credits ----------------------------------------------------------------------------------------
    def _opening_args(self, api_key: str) -> list[str]:
        opening = self._opening.get(api_key, self._default)
        return [repr(float(opening["credits"])), repr(float(opening.get("extra_credits", 0)))]

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
        return {"credits": float(credits), "extra_credits": float(extra_credits)}

    def charge(self, provider: str, api_key: str, cost: float) -> Record | None:
        ok, balance = self._account(provider, api_key, cost)
        return balance if ok else None

    def commit(self, provider: str, api_key: str, cost: float, records: list[tuple[str, str, Record]],
               jobs: list[tuple[float, Record]], journal: Record | Callable[[], Record] | None = None,
               generation: int | None = None) -> Record | None:
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
        built = journal() if callable(journal) else journal
        args += ["" if built is None else _dumps(built), self._journal_size, "" if generation is None else generation]
        found = self._commit(keys=[f"{PREFIX}bal:{provider}:{api_key}", f"{PREFIX}counters", f"{PREFIX}jobs",
                                   f"{PREFIX}jobs:due", f"{PREFIX}due", f"{PREFIX}journal", f"{PREFIX}generation"],
                             args=args)
        if not found:
            return None
        if found[0] == "stale":
            raise StaleIds(f"generation {generation}: the store was reset since the call's ids were reserved.")
        return {"credits": float(found[0]), "extra_credits": float(found[1])}

    # -- rate windows, scripted faults, maintenance ----------------------------------------------------------
    def rate_retry_after(self, key: str, now: float, limit: int, window: float) -> float | None:
        wait = self._rate(keys=[f"{PREFIX}rate:{key}"], args=[repr(now), limit, repr(window), "", "check"])
        return None if wait is None else float(wait)

    def rate_hit(self, key: str, now: float, limit: int, window: float) -> bool:
        token = f"{now!r}:{os.urandom(8).hex()}"
        return bool(self._rate(keys=[f"{PREFIX}rate:{key}"], args=[repr(now), limit, repr(window), token, "hit"]))

    def add_fault(self, fault: Record) -> Record:
        stored = {**fault, "id": f"fault_{self.next_id('fault')}", "used": 0}
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(f"{PREFIX}faults", stored["id"], _dumps(stored))
        pipe.hset(f"{PREFIX}faults:times", stored["id"], int(stored["times"]))
        pipe.execute()
        return stored

    def faults(self) -> list[Record]:
        pipe = self._r.pipeline(transaction=True)
        pipe.hgetall(f"{PREFIX}faults")
        pipe.hgetall(f"{PREFIX}faults:used")
        bodies, used = pipe.execute()
        return _faults(bodies, used)

    def take_fault(self, fault_id: str) -> bool:
        return bool(self._take_fault(keys=[f"{PREFIX}faults:times", f"{PREFIX}faults:used"], args=[fault_id]))

    def clear_faults(self) -> None:
        self._r.delete(f"{PREFIX}faults", f"{PREFIX}faults:times", f"{PREFIX}faults:used")

    def set_script(self, steps: list[Record]) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(f"{PREFIX}script")
        if steps:
            pipe.rpush(f"{PREFIX}script", *(_dumps(step) for step in steps))
        pipe.execute()

    def pop_script(self) -> Record | None:
        step = self._r.lpop(f"{PREFIX}script")
        return None if step is None else json.loads(step)

    def script(self) -> list[Record]:
        return [json.loads(step) for step in self._r.lrange(f"{PREFIX}script", 0, -1)]

    def maintenance(self) -> dict[str, bool]:
        return {provider: on == "1" for provider, on in self._r.hgetall(f"{PREFIX}maintenance").items()}

    def call_state(self, provider: str, api_key: str, reads: list[tuple[str, str]] | None = None) -> CallState:
        reads = reads or []
        step, flags, bodies, used, credits, extra, clock, generation, *records = self._call_state(
            keys=[f"{PREFIX}script", f"{PREFIX}maintenance", f"{PREFIX}faults", f"{PREFIX}faults:used",
                  f"{PREFIX}bal:{provider}:{api_key}", f"{PREFIX}clock", f"{PREFIX}generation",
                  *(f"{PREFIX}res:{kind}:{rid}" for kind, rid in reads)], args=self._opening_args(api_key))
        return CallState(None if step is None else json.loads(step),
                         {name: on == "1" for name, on in _pairs(flags).items()},
                         _faults(_pairs(bodies), _pairs(used)),
                         {"credits": float(credits), "extra_credits": float(extra)},
                         None if clock is None else float(clock),
                         {read: self._decode(fields) for read, fields in zip(reads, records)}, int(generation))

    def set_maintenance(self, provider: str, on: bool) -> None:
        self._r.hset(f"{PREFIX}maintenance", provider, "1" if on else "0")

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
    def record(self, exchange: Record | Callable[[], Record]) -> None:
        built = exchange() if callable(exchange) else exchange
        # _dumps escapes what UTF-8 cannot carry (lone surrogates), so a stored exchange can always be read back.
        self._record(keys=[f"{PREFIX}journal", f"{PREFIX}counters"], args=[_dumps(built), self._journal_size])

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
