"""The mock under test: its config, a started `stemmock serve`, and the three requests the rows send."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .procs import BenchError, Server, free_port, stemmock_command

KEY = "bench"
AUTH = {"Authorization": f"Bearer {KEY}"}
READY_PATH = "/api/v1/get-credits"  # the first 200 that start-up waits for
# api.box rate limits off, credits that a million calls cannot spend.
CONFIG = "rate_limits: {apibox: {work: null, poll: null}}\ndefault_credits: 1000000000000\n"
UNUSED_CALLBACK = "http://127.0.0.1:9/callback"  # discard port: nothing listens; never called (manual clock)


@dataclass
class Case:
    name: str  # as shown in the table
    path: str
    body: str  # JSON text wrk sends
    status: int  # the HTTP status every answer must have
    sample: bytes = b""  # one answer of the mock, which the floor returns verbatim
    cost: tuple[str, float] | None = None  # (provider, credits) charged per success, to confirm the count


# The load rows send more vocal separations of one generation's track than `retention.max_tasks` (100,000) keeps:
# past it the generation itself would be dropped and every further call answered "task not found" (cheap, and
# charged nothing). Their server keeps more, so each answer is a separation; the soaks keep the default.
LOAD_CONFIG = CONFIG + "retention: {max_tasks: 10000000}\n"


def write_config(directory: Path, text: str = CONFIG, name: str = "stemmock-bench.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def start_mock(config: Path, log_dir: Path, name: str = "stemmock") -> Server:
    port = free_port()
    cmd = [*stemmock_command(), "serve", "--port", str(port), "--clock", "manual", "--config", str(config),
           "--log-level", "warning"]
    return Server(name, cmd, port, log_dir)


def prepare(url: str) -> list[Case]:
    """Make a clip and a finished generation through the API; the three requests the load rows send."""
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
        clip = c.post("/api/v1/sonic/upload", json={"url": "https://example.com/bench.mp3"}).json()["clip_id"]
        gen = c.post("/api/v1/generate", json={"prompt": "a benchmark", "customMode": False, "instrumental": False,
                                               "model": "V4_5", "callBackUrl": UNUSED_CALLBACK}).json()
        task_id = gen["data"]["taskId"]
        c.post("/__mock/clock/advance", json={"seconds": 10}).raise_for_status()
        info = c.get("/api/v1/generate/record-info", params={"taskId": task_id}).json()
        audio_id = info["data"]["response"]["sunoData"][0]["id"]
        cases = [
            Case("`POST /api/v1/sonic/vox`", "/api/v1/sonic/vox",
                 json.dumps({"clip_id": clip, "vocal_start_s": 0, "vocal_end_s": 30}), 200,
                 cost=("musicapi", 1)),
            Case("`POST /api/v1/vocal-removal/generate`", "/api/v1/vocal-removal/generate",
                 json.dumps({"taskId": task_id, "audioId": audio_id, "type": "separate_vocal",
                             "callBackUrl": UNUSED_CALLBACK}), 200, cost=("apibox", 10)),
            Case("invalid VOX (clip_id not a string)", "/api/v1/sonic/vox",
                 json.dumps({"clip_id": 12345, "vocal_start_s": 0, "vocal_end_s": 30}), 400),
        ]
        for case in cases:
            r = c.post(case.path, content=case.body, headers={"Content-Type": "application/json"})
            body = r.json()
            ok = r.status_code == case.status and (case.status != 200 or body.get("code") == 200)
            if not ok:
                raise BenchError(f"{case.name} answered {r.status_code} {r.text[:300]}; expected {case.status}")
            case.sample = r.content
    return cases


# The soaks' call: a vocal separation of an audio URL makes a task of its own, so it keeps succeeding however many
# tasks retention dropped (one of a generation's tracks would stop once the generation itself is dropped).
SOAK = Case("`POST /api/v1/vocal-removal/generate` (audioUrl)", "/api/v1/vocal-removal/generate",
            json.dumps({"audioUrl": "https://example.com/bench.mp3", "type": "separate_vocal",
                        "callBackUrl": UNUSED_CALLBACK}), 200, cost=("apibox", 10))


def balance(url: str, provider: str) -> float:
    """The key's live balance on one provider (to count the successes a run was charged for)."""
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
        if provider == "musicapi":
            return float(c.get("/api/v1/get-credits").json()["credits"])
        return float(c.get("/api/v1/generate/credit").json()["data"])


def clock_state(url: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=30) as c:
        return dict(c.get("/__mock/clock").json())
