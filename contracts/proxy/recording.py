"""The proxy's recording (one JSON line per exchange or callback, secrets redacted) and `stemmock examples import`,
which turns the recorded answers into named examples in an overlay the mock loads with `--examples`."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import uuid
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import click
import yaml

from mockserver.spec import PROVIDER_SPECS, Operation, load, spec_path

from .drift import id_shape

REDACTED = "<redacted>"
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "cookie", "proxy-authorization"})
_SECRET_FIELDS = frozenset({"webhook_secret", "api_key", "apikey", "secret"})
_UNSAFE_NAME = re.compile(r"[^0-9A-Za-z_.-]")
_IMAGE = (".jpeg", ".jpg", ".png", ".webp")
_CALLBACK_FIELDS = ("callbackurl", "callback_url", "webhook_url")


def redact(line: dict[str, Any]) -> dict[str, Any]:
    """`line` with API keys and webhook secrets replaced (in headers and bodies, at any depth)."""
    def walk(value: Any, key: str = "") -> Any:
        if key.lower() in _SECRET_HEADERS or key.lower() in _SECRET_FIELDS:
            if isinstance(value, str) and key.lower() in ("authorization", "proxy-authorization"):
                scheme = value.split(" ", 1)[0] if " " in value else ""
                return f"{scheme} {REDACTED}".strip()
            return REDACTED if value is not None else None
        if isinstance(value, dict):
            return {k: walk(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        return value
    return walk(line)  # type: ignore[no-any-return]


class Recorder:
    """Appends redacted lines to a file, one JSON object each, flushed as written (a killed proxy keeps them)."""

    def __init__(self, path: str | Path) -> None:
        # Open for the whole run, closed by close(): a context manager cannot span the proxy's lifetime.
        self._file: IO[str] = Path(path).open("a", encoding="utf-8")  # noqa: SIM115
        self._lock = threading.Lock()

    def write(self, line: dict[str, Any]) -> None:
        text = json.dumps(redact(line), ensure_ascii=False, default=str)
        with self._lock:
            if not self._file.closed:
                self._file.write(text + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_recording(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a recording; a line that is not a JSON object is skipped with its number on stderr."""
    lines = []
    for number, text in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except ValueError:
            click.echo(f"{path}:{number}: is not JSON; skipped.", err=True)
            continue
        if isinstance(value, dict):
            lines.append(value)
    return lines


class _Rewriter:
    """Ids and file URLs of a real answer made the mock's own, the same recorded value always the same new one."""

    def __init__(self, mock_url: str, created_ms: int) -> None:
        self.mock_url = mock_url.rstrip("/")
        self.created_ms = created_ms
        self.seen: dict[str, str] = {}

    def id(self, value: str) -> str:
        shape = id_shape(value)
        if shape == "other" or shape == "digits":
            return value
        if value not in self.seen:
            digest = hashlib.sha256(f"stemmock-example:{value}".encode()).hexdigest()
            self.seen[value] = str(uuid.UUID(digest[:32])) if shape == "uuid" else digest[:32]
        return self.seen[value]

    def url(self, value: str, duration_s: float | None) -> str:
        """A file URL the mock serves: the same name, a cover as a JPEG, anything else as an MP3."""
        parts = urlsplit(value)
        name = parts.path.rsplit("/", 1)[-1] or "file"
        stem, dot, ext = name.rpartition(".")
        stem = _UNSAFE_NAME.sub("_", stem if dot else name)[:120] or "file"
        file_id = hashlib.sha256(value.encode()).hexdigest()[:16]
        if f".{ext.lower()}" in _IMAGE:
            return f"{self.mock_url}/files/{self.created_ms}-0-{file_id}/{stem}.jpeg"
        duration_ms = round((duration_s if duration_s and duration_s > 0 else 30.0) * 1000)
        return f"{self.mock_url}/files/{self.created_ms}-{duration_ms}-{file_id}/{stem}.mp3"

    def rewrite(self, value: Any, key: str = "", duration: float | None = None) -> Any:
        if isinstance(value, dict):
            found = value.get("duration")
            here = float(found) if isinstance(found, (int, float)) and not isinstance(found, bool) else duration
            return {k: self.rewrite(v, str(k), here) for k, v in value.items()}
        if isinstance(value, list):
            return [self.rewrite(v, key, duration) for v in value]
        if isinstance(value, str) and key.lower().endswith("id"):
            return self.id(value)
        if isinstance(value, str) and value.startswith(("http://", "https://")) and \
                key.lower() not in _CALLBACK_FIELDS:
            return self.url(value, duration)
        return value


def _example_name(op: Operation, status: int, body: Any) -> str:
    code = body.get(op.provider.code_field) if op.provider.body_transport and isinstance(body, dict) else status
    return f"recorded_{code if isinstance(code, int) else status}"


def import_examples(lines: list[dict[str, Any]], operations: dict[str, Operation], mock_url: str,
                    warn: Any = None) -> dict[str, Any]:
    """The overlay document: each recorded answer of a documented status as a named example of its operation."""
    warn = warn or (lambda message: None)
    examples: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if line.get("type") != "exchange" or not isinstance(line.get("response"), dict):
            continue
        op = operations.get(str(line.get("operation")))
        if op is None:
            warn(f"line {number}: {line.get('key') or line.get('operation')!r} is no operation of the specs; skipped.")
            continue
        status, body = line["response"].get("status"), line["response"].get("body")
        if status not in op.responses:
            warn(f"line {number}: {op.key} answered HTTP {status}, which the spec does not document; skipped "
                 "(the spec needs that status first).")
            continue
        created_ms = int(float(line.get("time") or 0) * 1000)
        rewritten = _Rewriter(mock_url, created_ms).rewrite(body)
        named = examples.setdefault(op.operation_id, {})
        if any(entry["value"] == rewritten for entry in named.values()):
            continue
        base = _example_name(op, int(status), body)
        name, n = base, 1
        while name in named or name in op.examples():
            n += 1
            name = f"{base}_{n}"
        named[name] = {"status": int(status), "summary": f"Recorded answer of {op.key}",
                       "x-mock-source": f"recorded through stemmock proxy at {created_ms} ms since the epoch",
                       "value": rewritten}
    return {"stemmock-examples": 1, "examples": examples}


@click.group("examples")
def command() -> None:
    """Named examples for the mock, from recordings of the real providers."""


@command.command("import")
@click.argument("recording", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Overlay file to write (default: stdout). The mock loads it with --examples.")
@click.option("--mock-url", default="http://127.0.0.1:8080", show_default=True,
              help="Origin of the mock that will serve the overlay: file URLs are rewritten to it.")
def import_command(recording: str, out: str | None, mock_url: str) -> None:
    """Turn a `stemmock proxy --record` file into an overlay of named examples."""
    operations = {op.operation_id: op for name in PROVIDER_SPECS for op in load(spec_path(name)).operations}
    overlay = import_examples(read_recording(recording), operations, mock_url,
                              lambda message: click.echo(f"{recording}: {message}", err=True))
    text = yaml.safe_dump(overlay, sort_keys=False, allow_unicode=True)
    if out is None:
        sys.stdout.write(text)
    else:
        Path(out).write_text(text, encoding="utf-8")
    count = sum(len(named) for named in overlay["examples"].values())
    click.echo(f"{count} example(s) for {len(overlay['examples'])} operation(s)"
               + (f" written to {out}" if out else "") + ".", err=True)
