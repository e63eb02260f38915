"""Hypothesis strategies for hostile requests: bodies, headers, paths and queries no client should send.

Shared by the property test (tests/test_hostile.py) and the fuzz benchmark (benchmarks/fuzz.py). A request is
(method, path with query, headers as bytes, body bytes); bodies are built as JSON *text*, so that they can hold
what no JSON library writes: lone surrogates, NaN, 5,000-digit numbers, duplicate keys, nesting thousands deep,
invalid UTF-8, UTF-16 with a BOM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from mockserver.spec import PROVIDER_SPECS, Operation, load, spec_path

SPECS = {name: load(spec_path(name)) for name in (*PROVIDER_SPECS, "control")}
OPERATIONS: list[Operation] = [op for spec in SPECS.values() for op in spec.operations]
API_KEY = "test-key"


@dataclass(frozen=True)
class HostileRequest:
    operation: Operation | None  # None: a path no operation serves (files, unknown paths)
    method: str
    path: str  # with its query string
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def _text(value: str) -> bytes:
    return json.dumps(value).encode()


SCALAR_TEXT = st.one_of(
    st.text(max_size=20).map(_text),
    st.sampled_from([b'"\\ud800"', b'"a\\udfff"', b'"\\ud800\\ud800"', b'"\xff\xfe"', b'"\xc3\x28"', b'"\x00"',
                     b'"\\u0000"', b'"' + "é".encode("latin-1") + b'"', b'"http://127.0.0.1:9/cb"',
                     b'"gopher://127.0.0.1:6379/_x"', b'"ftp://example.com/a"', b'"http://127.0.0.1:9/"',
                     b'"e3e70682-c209-4cac-a29f-6fbed82c07cd"', b'"' + b"a" * 5000 + b'"']),
    st.integers(1, 5000).map(lambda n: b"9" * n),
    st.integers(1, 400).map(lambda n: b"-" + b"1" * n),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e-400", b"0", b"-0", b"1.5", b"30",
                     b"true", b"false", b"null", b"{}", b"[]", b"18446744073709551616", b"9223372036854775808"]),
    st.integers(-(2**70), 2**70).map(lambda n: str(n).encode()),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: json.dumps(f).encode()),
)


def _nest(depth: int, kind: str) -> bytes:
    if kind == "[":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


NESTED = st.builds(_nest, st.sampled_from([10, 63, 64, 65, 100, 300, 1000, 1025, 5000]), st.sampled_from(["[", "{"]))


def _values(depth: int = 2) -> st.SearchStrategy[bytes]:
    if depth == 0:
        return st.one_of(SCALAR_TEXT, NESTED)
    inner = _values(depth - 1)
    return st.one_of(SCALAR_TEXT, NESTED, st.lists(inner, max_size=3).map(lambda items: b"[" + b",".join(items) + b"]"))


def _object(names: list[str]) -> st.SearchStrategy[bytes]:
    keys = st.one_of(st.sampled_from(names or ["x"]), st.text(max_size=8),
                     st.sampled_from(["\ud800", "k\udfff", "", "__proto__"]))
    pair = st.tuples(keys.map(lambda k: json.dumps(k).encode()), _values())
    # Duplicate keys come from drawing a name twice.
    return st.lists(pair, max_size=8).map(lambda pairs: b"{" + b",".join(k + b":" + v for k, v in pairs) + b"}")


def _from_example(example: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """A documented example with at most one field made hostile: calls that may well succeed, and charge."""
    def build(name: str | None, value: bytes) -> bytes:
        pairs = [json.dumps(k).encode() + b":" + (value if k == name else json.dumps(v).encode())
                 for k, v in example.items()]
        return b"{" + b",".join(pairs) + b"}"

    return st.builds(build, st.none() | st.sampled_from(sorted(example)), _values(1))


def _body(op: Operation | None) -> st.SearchStrategy[bytes]:
    names = list((op.body_schema or {}).get("properties", {})) if op is not None else []
    examples = [e for e in (op.body_examples.values() if op is not None else ()) if isinstance(e, dict) and e]
    if examples:
        return st.one_of(st.sampled_from(examples).flatmap(_from_example), _body_hostile(names))
    return _body_hostile(names)


def _body_hostile(names: list[str]) -> st.SearchStrategy[bytes]:
    whole = st.sampled_from([b"", b"{", b'{"a":', b"nul", b"\xff\xfe{\x00}\x00", "{}".encode("utf-16"),
                             "\ufeff{}".encode(), b"[]", b"1", b'"x"', b"null", b"{}" * 3, b"\x00" * 10])
    return st.one_of(_object(names), _object(names), whole, _values(1),
                     _object(names).map(lambda raw: raw.decode("utf-8", "replace").encode("utf-16")))


SEGMENT = st.one_of(
    st.text(max_size=40).map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="")),
    st.sampled_from(["%00", "%ff", "%c3%28", "%ed%a0%80", "..", "%2e%2e", "a%2fb", "9" * 4301, "-1", "", "a%0d%0ab",
                     "e3e70682-c209-4cac-a29f-6fbed82c07cd", "a" * 5000]),
)
QUERY_VALUE = st.one_of(SEGMENT, st.sampled_from(["1", "0", "-1", "1e3", "abc", "9" * 5000, "2", "getVox"]))


def _path(op: Operation | None) -> st.SearchStrategy[str]:
    if op is None:
        files = st.builds(lambda c, d, i, n: f"/files/{c}-{d}-{i}/{n}.mp3", st.sampled_from(["1", "9" * 4301, "x"]),
                          st.sampled_from(["1000", "9" * 30, "0"]), SEGMENT, SEGMENT)
        return st.one_of(files, st.builds(lambda a, b: f"/{a}/{b}", SEGMENT, SEGMENT),
                         st.sampled_from(["/", "/api/v1/", "/__mock/", "/__mock/nothing", "/api/v1/sonic/task/"]))
    template = op.path

    def fill(values: list[str]) -> str:
        path = template
        for value in values:
            start = path.find("{")
            if start < 0:
                break
            path = path[:start] + (value or "x") + path[path.find("}", start) + 1:]
        return path

    return st.lists(SEGMENT, min_size=template.count("{"), max_size=template.count("{")).map(fill)


def _query(op: Operation | None) -> st.SearchStrategy[str]:
    names = [p.name for p in op.params if p.location == "query"] if op is not None else []
    pairs = st.lists(st.tuples(st.sampled_from([*names, "x", "limit", "taskId"]), QUERY_VALUE), max_size=3)
    return pairs.map(lambda items: ("?" + "&".join(f"{quote(k)}={v}" for k, v in items)) if items else "")


AUTHORIZATION = st.one_of(
    st.just(f"Bearer {API_KEY}".encode()), st.just(f"Bearer {API_KEY}".encode()), st.just(f"Bearer {API_KEY}".encode()),
    st.sampled_from([b"", b"Bearer", b"Basic abc", b"bearer " + API_KEY.encode(), b"Bearer a b",
                     b"Bearer \xe9\xff", b"Bearer " + b"k" * 70_000, b"Bearer \x7f"]),
)
PREFER = st.sampled_from([b"code=" + b"9" * 4301, b"code=\xb2", b"code=", b"code=abc", b"code=-1", b"code=4040",
                          b"example=\xff", b"example=" + b"x" * 1000, b"scenario=nothing", b"scenario=callback_late",
                          b",;,=,", b"code=200", b"code=1" * 100])
EXTRA_HEADER = st.tuples(st.sampled_from([b"x-a", b"content-type", b"range", b"accept", b"x-" + b"b" * 100]),
                         st.binary(max_size=30).map(lambda b: bytes(c for c in b if c > 0x20 and c != 0x7f)))


def requests() -> st.SearchStrategy[HostileRequest]:
    """A hostile request for any operation of the three specs (or a path none of them serves)."""
    return st.sampled_from([*OPERATIONS, None]).flatmap(_request)


def _request(op: Operation | None) -> st.SearchStrategy[HostileRequest]:
    method = st.just(op.method) if op is not None else st.sampled_from(["GET", "POST", "HEAD", "DELETE", "PATCH"])
    headers = st.builds(
        lambda auth, prefer, extra: tuple([(b"authorization", auth)] if auth is not None else [])
        + tuple([(b"prefer", prefer)] if prefer is not None else []) + tuple(extra),
        st.none() | AUTHORIZATION, st.none() | st.none() | PREFER, st.lists(EXTRA_HEADER, max_size=2))
    # (Header values never start or end with blanks: an HTTP client refuses to send those, so no server sees them.)
    return st.builds(HostileRequest, st.just(op), method, st.builds(str.__add__, _path(op), _query(op)), headers,
                     _body(op))


def forced(outcome: dict[str, Any] | None) -> bool:
    """Whether a journaled outcome was forced (Prefer, a fault, the script, maintenance) rather than chosen."""
    reason = str((outcome or {}).get("reason", ""))
    return reason.startswith(("Prefer:", "scripted fault", "script step", "seeded fault", "maintenance"))
