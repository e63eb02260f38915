"""`python -m benchmarks.fuzz`: hostile requests against a real `stemmock serve`, and what they did to it.

Sends `--requests` (default 100,000) seeded hostile requests over `--connections` raw keep-alive sockets to a
mock on 127.0.0.1 (its store in memory, its clock manual), for at most `--seconds`: lone surrogates, nesting
thousands deep, 5,000-digit numbers, NaN, duplicate keys, invalid UTF-8 and UTF-16 bodies, truncated JSON,
hostile `Prefer:` values, 70 kB keys, odd file names and paths, on every provider operation, the files and
the read-only control plane (its writes would force outcomes; the property test covers them). Then 1,000
bodies over `limits.max_body_bytes`. It reports, as a Markdown table:

- unforced 5xx: an HTTP status >= 500, or api.box's body code 500 (nothing is forced: no fault, script,
  maintenance or documented `Prefer: code` is sent);
- dropped connections: a request whose connection closed before a whole answer came;
- credits charged without a resource: the drop of each balance minus the cost of the calls answered with a
  created resource (or, for VOX, its result);
- whether the server is alive and serving afterwards (an upload, then VOX on the new clip);
- the server's RSS before and after the run, and before and after the oversized requests.

The exit status is 1 when any of the first three is not 0 or the server is not alive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from .procs import Server, free_port, stemmock_command

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
UNUSED = "http://127.0.0.1:9/cb"  # discard port: a callback the manual clock never makes anyway
COSTS = {"/api/v1/sonic/vox": ("musicapi", 1), "/api/v1/sonic/upload": ("musicapi", 2),
         "/api/v1/sonic/create": ("musicapi", 15), "/api/v1/sonic/stems/basic": ("musicapi", 15),
         "/api/v1/sonic/stems/full": ("musicapi", 75), "/api/v1/generate": ("apibox", 10)}

STRINGS = [b'"\\ud800"', b'"a\\udfff"', b'"\\udc00\\ud800"', b'"\xff\xfe"', b'"\xc3\x28"', b'"\x00"', b'"\\u0000"',
           b'"\xe9"', b'"' + b"a" * 5000 + b'"', b'"gopher://127.0.0.1:6379/_x"', b'"ftp://example.com/a"',
           b'"file:///etc/passwd"', b'"http://"', b'"https://example.com:99999/"', b'""', b'"x"']
NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e-400", b"-0", b"18446744073709551616",
           b"9223372036854775808", b"-9223372036854775809", b"1.5", b"0", b"30", b"true", b"null", b"{}", b"[]"]
WHOLE = [b"", b"{", b'{"a":', b"nul", b"\xff\xfe{\x00}\x00", "{}".encode("utf-16"), "\ufeff{}".encode(), b"[]",
         b"1", b'"x"', b"null", b"{}{}", b"\x00" * 10, b'{"a":1,"a":2}', b"[" * 100_000]
SEGMENTS = ["%00", "%ff", "%c3%28", "%ed%a0%80", "..", "%2e%2e", "a%2fb", "9" * 4301, "-1", "a%0d%0ab", "x",
            "%22%3b%20filename=evil.exe", "e3e70682-c209-4cac-a29f-6fbed82c07cd", "a" * 3000, "%e2%80%ae"]
PREFERS = [b"code=" + b"9" * 4301, b"code=\xb2", b"code=", b"code=abc", b"code=-1", b"code=4040", b"example=\xff",
           b"example=" + b"x" * 1000, b"scenario=nothing", b",;,=,", b"code=200", b"code=1" * 100]
AUTHS = [f"Bearer {KEY}".encode()] * 6 + [b"", b"Bearer", b"Basic abc", b"Bearer a b", b"Bearer \xe9\xff",
                                          b"Bearer " + b"k" * 70_000, b"bearer " + KEY.encode()]
READ_ONLY_CONTROL = ["/__mock/journal", "/__mock/callbacks", "/__mock/clock", "/__mock/maintenance", "/__mock/faults",
                     "/__mock/script"]


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    unforced_5xx: int = 0
    dropped: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    expected_cost: dict[str, float] = field(default_factory=lambda: {"musicapi": 0.0, "apibox": 0.0})
    made: int = 0  # calls answered with what they made (the store keeps each: growth that is state, not a leak)
    examples: list[str] = field(default_factory=list)


class Fuzzer:
    """Seeded hostile requests built as bytes (what no HTTP or JSON library would write)."""

    def __init__(self, seed: int, ids: dict[str, str]) -> None:
        self.rng = random.Random(seed)
        self.ids = ids
        self.valid = {
            "/api/v1/sonic/vox": {"clip_id": ids["clip"], "vocal_start_s": 0, "vocal_end_s": 5},
            "/api/v1/sonic/upload": {"url": "https://example.com/a.mp3"},
            "/api/v1/sonic/create": {"task_type": "create_music", "custom_mode": False, "mv": "sonic-v4-5",
                                     "gpt_description_prompt": "a calm song"},
            "/api/v1/sonic/stems/basic": {"clip_id": ids["clip"]},
            "/api/v1/sonic/stems/full": {"clip_id": ids["clip"]},
            "/api/v1/generate": {"customMode": False, "instrumental": False, "model": "V4_5", "prompt": "night",
                                 "callBackUrl": UNUSED},
            "/api/v1/vocal-removal/generate": {"taskId": ids["task"], "audioId": ids["audio"],
                                               "type": "separate_vocal", "callBackUrl": UNUSED},
        }

    def value(self, depth: int = 0) -> bytes:
        r = self.rng
        kind = r.randrange(8 if depth < 2 else 6)
        if kind == 0:
            return r.choice(STRINGS)
        if kind == 1:
            return r.choice(NUMBERS)
        if kind == 2:
            return b"9" * r.choice([20, 30, 400, 4300, 4301, 5000])
        if kind == 3:
            n = r.choice([10, 63, 64, 65, 300, 1025, 5000])
            return b"[" * n + b"]" * n if r.random() < 0.5 else b'{"a":' * n + b"1" + b"}" * n
        if kind == 4:
            return json.dumps("".join(chr(r.randrange(0x20, 0x3000)) for _ in range(r.randrange(12)))).encode()
        if kind == 5:
            return str(r.randrange(-(2**70), 2**70)).encode()
        return b"[" + b",".join(self.value(depth + 1) for _ in range(r.randrange(4))) + b"]"

    def body(self, path: str) -> bytes:
        r = self.rng
        example = self.valid.get(path)
        roll = r.random()
        if example is not None and roll < 0.35:  # a valid call with at most one field made hostile
            bad = r.choice([None, *example])
            pairs = [json.dumps(k).encode() + b":" + (self.value() if k == bad else json.dumps(v).encode())
                     for k, v in example.items()]
            return b"{" + b",".join(pairs) + b"}"
        if roll < 0.5:
            return r.choice(WHOLE)
        names = list(example or {"x": 1}) + ["\\ud800", "k\\udfff", "", "__proto__"]
        pairs = [b'"' + r.choice(names).encode() + b'":' + self.value() for _ in range(r.randrange(6))]
        return b"{" + b",".join(pairs) + b"}"

    def request(self) -> tuple[str, bytes, str]:
        """(the path the call is counted under, the request's bytes, the method)."""
        r = self.rng
        roll = r.random()
        if roll < 0.55:
            path = r.choice(list(self.valid))
            method, target, body = "POST", path, self.body(path)
        elif roll < 0.75:
            path = r.choice(["/api/v1/sonic/task/{}", "/api/v1/get-credits", "/api/v1/generate/credit",
                             "/api/v1/generate/record-info?taskId={}", "/api/v1/vocal-removal/record-info?taskId={}"])
            target = path.format(r.choice([*SEGMENTS, self.ids["task"], self.ids["clip"]]))
            method, body = "GET", (b"" if r.random() < 0.6 else self.body(""))
        elif roll < 0.88:
            created = r.choice([str(int(time.time() * 1000)), "9" * 4301, "1", "x"])
            path = "/files/"
            target = f"/files/{created}-{r.choice(['1000', '9' * 30])}-{r.choice(SEGMENTS)}/{r.choice(SEGMENTS)}.mp3"
            method, body = r.choice(["GET", "HEAD"]), b""
        elif roll < 0.95:
            path = r.choice(READ_ONLY_CONTROL)
            target = path + r.choice(["", "?limit=" + r.choice(["1", "0", "-1", "9" * 5000, "abc", "%ff"]),
                                      "?operation=" + r.choice(SEGMENTS)])
            method, body = "GET", b""
        else:
            path = "/unknown"
            target = "/" + "/".join(r.choice(SEGMENTS) for _ in range(r.randrange(1, 4)))
            method, body = r.choice(["GET", "POST", "PATCH", "OPTIONS"]), self.body("")
        headers = [b"Host: 127.0.0.1"]
        auth = r.choice([*AUTHS, None])
        if auth is not None:
            headers.append(b"Authorization: " + auth)
        if r.random() < 0.2:
            headers.append(b"Prefer: " + r.choice(PREFERS))
        if r.random() < 0.1:
            headers.append(b"Content-Type: " + r.choice([b"application/json", b"text/plain", b"\xff"]))
        if method in ("POST", "PATCH") or body:
            headers.append(b"Content-Length: " + str(len(body)).encode())
        head = f"{method} {target} HTTP/1.1\r\n".encode("latin-1", "replace") + b"\r\n".join(headers) + b"\r\n\r\n"
        return path, head + body, method


async def read_answer(reader: asyncio.StreamReader, method: str) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer: status, headers (lower-case), body (Content-Length framed)."""
    line = await reader.readline()
    if not line:
        raise ConnectionError("the connection closed before an answer")
    status = int(line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if line == b"":
        raise ConnectionError("the connection closed inside the answer's head")
    length = 0 if method == "HEAD" else int(headers.get("content-length", "0"))
    body = await reader.readexactly(length)
    return status, headers, body


async def worker(port: int, fuzzer: Fuzzer, tally: Tally, stop_at: float, limit: int) -> None:
    reader = writer = None
    while tally.sent < limit and time.monotonic() < stop_at:
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        path, raw, method = fuzzer.request()
        tally.sent += 1
        assert reader is not None
        try:
            writer.write(raw)
            await writer.drain()
            status, headers, body = await asyncio.wait_for(read_answer(reader, method), 30)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError) as exc:
            tally.dropped += 1
            if len(tally.examples) < 10:
                tally.examples.append(f"dropped: {raw[:160]!r} ({type(exc).__name__}: {exc})")
            writer.close()
            reader = writer = None
            continue
        tally.answered += 1
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        parsed: Any = None
        if body and headers.get("content-type", "").startswith("application/json"):
            parsed = json.loads(body)
        body_code = parsed.get("code") if isinstance(parsed, dict) else None
        apibox = path.startswith(("/api/v1/generate", "/api/v1/vocal-removal"))
        if status >= 500 or (apibox and body_code == 500):
            tally.unforced_5xx += 1
            if len(tally.examples) < 10:
                tally.examples.append(f"{status}: {raw[:160]!r} -> {body[:200]!r}")
        _count_cost(path, raw, status, parsed, tally)
        if headers.get("connection", "").lower() == "close":
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def _count_cost(path: str, raw: bytes, status: int, parsed: Any, tally: Tally) -> None:
    """Add the cost of a call whose answer shows what it made (a clip, a task, VOX's result)."""
    head = raw.partition(b"\r\n\r\n")[0].lower()
    if not isinstance(parsed, dict) or f"\r\nauthorization: bearer {KEY}\r\n".encode() not in head + b"\r\n":
        return  # another key's call (each key has its own balance)
    if path == "/api/v1/vocal-removal/generate":
        if parsed.get("code") == 200 and (parsed.get("data") or {}).get("taskId"):
            kind = json.loads(raw.partition(b"\r\n\r\n")[2]).get("type", "separate_vocal")
            tally.expected_cost["apibox"] += 50 if kind == "split_stem" else 10
            tally.made += 1
        return
    if path not in COSTS:
        return
    provider, cost = COSTS[path]
    made = (parsed.get("code") == 200 and (parsed.get("data") or {}).get("taskId")) if provider == "apibox" else (
        status == 200 and any(parsed.get(k) for k in ("clip_id", "task_id", "data")))
    if made:
        tally.expected_cost[provider] += cost
        tally.made += 1


def balances(url: str) -> dict[str, float]:
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
        return {"musicapi": float(c.get("/api/v1/get-credits").json()["credits"]),
                "apibox": float(c.get("/api/v1/generate/credit").json()["data"])}


def prepare(url: str) -> dict[str, str]:
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
        c.put(f"/__mock/credits/{KEY}", json={"credits": 1e12}).raise_for_status()
        clip = c.post("/api/v1/sonic/upload", json={"url": "https://example.com/a.mp3"}).json()["clip_id"]
        gen = c.post("/api/v1/generate", json={"customMode": False, "instrumental": False, "model": "V4_5",
                                               "prompt": "x", "callBackUrl": UNUSED}).json()["data"]["taskId"]
        c.post("/__mock/clock/advance", json={"seconds": 60}).raise_for_status()
        info = c.get("/api/v1/generate/record-info", params={"taskId": gen}).json()["data"]
        return {"clip": clip, "task": gen, "audio": info["response"]["sunoData"][0]["id"]}


def alive(url: str) -> bool:
    """The mock still serves a whole flow: an upload, then VOX on the new clip, answered as documented."""
    try:
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
            clip = c.post("/api/v1/sonic/upload", json={"url": "https://example.com/b.mp3"}).json()["clip_id"]
            c.post("/__mock/clock/advance", json={"seconds": 60}).raise_for_status()
            vox = c.post("/api/v1/sonic/vox", json={"clip_id": clip, "vocal_start_s": 0, "vocal_end_s": 5})
            return vox.status_code == 200 and vox.json()["data"]["source_clip_id"] == clip
    except (httpx.HTTPError, KeyError, ValueError):
        return False


async def oversized(port: int, count: int, size: int) -> int:
    """Send `count` bodies of `size` bytes on fresh connections; how many got the provider's 413."""
    got = 0
    body = b'{"prompt": "' + b"a" * size + b'"}'
    for i in range(count):
        path = "/api/v1/sonic/vox" if i % 2 else "/api/v1/generate"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        try:
            writer.write(head + body)
            await writer.drain()
        except ConnectionError:
            pass  # the mock answered and closed before the whole body was written: it reads no further
        try:
            status, _headers, answer = await asyncio.wait_for(read_answer(reader, "POST"), 30)
            code = json.loads(answer).get("code")
            got += code == 413 and status in (200, 413)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            pass
        writer.close()
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=600.0, help="stop sending after this long")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--oversized", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="stemmock-fuzz-"))
    port = free_port()
    server = Server("stemmock-fuzz", [*stemmock_command(), "serve", "--port", str(port), "--clock", "manual",
                                      "--log-level", "warning"], port, log_dir)
    try:
        server.wait_ready("/__mock/clock", {})
        url = server.url
        ids = prepare(url)
        before = balances(url)
        tally = Tally()
        rss_start = server.rss_kib()
        started = time.monotonic()
        fuzzers = [Fuzzer(args.seed * 1000 + i, ids) for i in range(args.connections)]

        samples: list[tuple[int, int]] = []

        async def sample() -> None:  # RSS at each quarter of the run: flat once the journal's ring is full
            for quarter in (1, 2, 3):
                while tally.sent < args.requests * quarter // 4 and time.monotonic() < started + args.seconds:
                    await asyncio.sleep(0.05)
                samples.append((tally.sent, server.rss_kib()))

        async def run() -> None:
            stop_at = started + args.seconds
            sampler = asyncio.ensure_future(sample())
            await asyncio.gather(*(worker(port, f, tally, stop_at, args.requests) for f in fuzzers))
            sampler.cancel()

        asyncio.run(run())
        elapsed = time.monotonic() - started
        rss_after = server.rss_kib()
        after = balances(url)
        unexplained = {p: round(before[p] - after[p] - tally.expected_cost[p], 6) for p in before}
        rss_big_before = server.rss_kib()
        got_413 = asyncio.run(oversized(port, args.oversized, 2 * 1024 * 1024))
        rss_big_after = server.rss_kib()
        serving = alive(url) and server.proc.poll() is None
    finally:
        server.stop()
    charged = sum(abs(v) for v in unexplained.values())
    rows = [
        ("hostile requests sent", f"{tally.sent:,} in {elapsed:.0f} s ({tally.sent / elapsed:,.0f}/s, "
                                  f"{args.connections} connections)"),
        ("answered", f"{tally.answered:,}"),
        ("statuses", ", ".join(f"{k}: {v:,}" for k, v in sorted(tally.statuses.items()))),
        ("unforced 5xx (HTTP >= 500 or api.box body code 500)", str(tally.unforced_5xx)),
        ("dropped connections", str(tally.dropped)),
        ("credits charged without a resource", f"{charged:g} (musicapi {unexplained['musicapi']:g}, "
                                               f"apibox {unexplained['apibox']:g}; charged with one: "
                                               f"{tally.expected_cost['musicapi']:g} + "
                                               f"{tally.expected_cost['apibox']:g})"),
        ("calls that made a resource or result (kept in the store)", f"{tally.made:,}"),
        ("server alive and serving afterwards", "yes" if serving else "NO"),
        ("RSS before / after the run", f"{rss_start / 1024:.1f} MiB / {rss_after / 1024:.1f} MiB (after "
         + ", ".join(f"{sent:,}: {rss / 1024:.1f} MiB" for sent, rss in samples) + ")"),
        (f"RSS before / after {args.oversized:,} bodies of 2 MiB",
         f"{rss_big_before / 1024:.1f} MiB / {rss_big_after / 1024:.1f} MiB ({got_413:,} answered 413)"),
    ]
    print("| measure | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    for line in tally.examples:
        print(f"- {line}", file=sys.stderr)
    return 0 if tally.unforced_5xx == 0 and tally.dropped == 0 and charged == 0 and serving else 1


if __name__ == "__main__":
    sys.exit(main())
