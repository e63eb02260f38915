"""What the inspector shows, read from the store: the tasks with their stages and files, and one reading of all
the page follows (`State`), whose difference from the previous reading is the stream's events."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..journal import redact
from ..providers import apibox, musicapi

log = logging.getLogger("stemmock")
_TASK_KINDS = (("musicapi", "task"), ("musicapi", "upload"), ("apibox", "apibox_task"))


def _files(provider: str, task: dict[str, Any], store: Any, now: float) -> list[dict[str, str]]:
    """The result files a task hands out at `now`: its MP3s and cover images."""
    if provider == "apibox" and task.get("kind") == "generate" and "tracks" in task:
        tracks = apibox.generation_tracks(task, now)
        views = [(t.get("audio_url"), t.get("image_url")) for t in tracks]
    else:
        clip_ids = task.get("clips") or ([task["clip_id"]] if task.get("clip_id") else [])
        clips = [store.get("clip", cid) for cid in clip_ids]
        views = []
        for clip in clips:
            if clip is not None:
                view = musicapi.clip_view(clip, now)
                views.append((view.get("audio_url"), view.get("image_url")))
    files = []
    for audio_url, image_url in views:
        if audio_url:
            files.append({"kind": "audio", "url": str(audio_url)})
        if image_url:
            files.append({"kind": "image", "url": str(image_url)})
    return files


def task_view(provider: str, task: dict[str, Any], store: Any, now: float) -> dict[str, Any]:
    """One task as the page shows it: ids, stages against the clock, status, files."""
    stages = task.get("stages") or ({"ready": task["ready_at"]} if "ready_at" in task else {})
    view: dict[str, Any] = {
        "id": task["id"], "provider": provider, "kind": str(task.get("kind", "")),
        "api_key": redact(task.get("api_key")), "created_at": task.get("created_at", 0),
        "stages": [{"name": name, "at": at, "reached": now >= at} for name, at in stages.items()],
        "ids": {k: v for k, v in task.items() if k.endswith("_id") or k == "clips"},
    }
    if provider == "apibox" and "stages" in task:
        try:
            view["status"] = apibox.generation_status(task, now)
        except (KeyError, TypeError):  # a separation task's stages are named otherwise
            view["status"] = "SUCCESS" if all(s["reached"] for s in view["stages"]) else "PENDING"
    else:
        view["status"] = "failed" if task.get("failed") else (
            "complete" if all(s["reached"] for s in view["stages"]) else "pending")
    try:
        view["files"] = _files(provider, task, store, now)
    except Exception:  # a task the views do not know the shape of still shows, without its files
        log.debug("no files for task %s", task.get("id"), exc_info=True)
        view["files"] = []
    return view


def tasks(mock: Any) -> list[dict[str, Any]]:
    now = mock.clock.now()
    found = [task_view(provider, task, mock.store, now)
             for provider, kind in _TASK_KINDS for task in mock.store.all(kind)]
    return sorted(found, key=lambda t: (t["created_at"], t["id"]))


def balances(mock: Any, key: str) -> dict[str, Any]:
    return {p: mock.store.balance(p, key) for p in mock.provider_names}


@dataclass
class State:
    """One reading of everything the page follows."""

    exchanges: list[dict[str, Any]]
    tasks: dict[str, dict[str, Any]]
    deliveries: dict[str, dict[str, Any]]
    balances: dict[str, dict[str, Any]]
    clock: dict[str, Any]
    controls: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"exchanges": self.exchanges, "tasks": list(self.tasks.values()),
                "deliveries": list(self.deliveries.values()), "balances": self.balances, "clock": self.clock,
                "controls": self.controls}

    @property
    def last_seq(self) -> int:
        return int(self.exchanges[-1].get("seq", 0)) if self.exchanges else 0

    def changes(self, now: State) -> Iterator[tuple[str, Any]]:
        """The events that lead from this reading to `now`."""
        if now.last_seq < self.last_seq:  # the journal restarted (a reset): the page starts over
            yield "snapshot", now.as_dict()
            return
        for exchange in now.exchanges:
            if exchange.get("seq", 0) > self.last_seq:
                yield "exchange", exchange
        for kind, old, new in (("task", self.tasks, now.tasks), ("delivery", self.deliveries, now.deliveries)):
            for rid, record in new.items():
                if old.get(rid) != record:
                    yield kind, record
        for key, balance in now.balances.items():
            if self.balances.get(key) != balance:
                yield "balance", {"api_key": key, "balances": balance}
        if now.clock != self.clock:
            yield "clock", now.clock
        if now.controls != self.controls:
            yield "state", now.controls


def read_state(mock: Any, keys: list[str], window: int) -> State:
    """One reading of the store, as the page shows it."""
    return State(
        exchanges=mock.store.journal(window),
        tasks={t["id"]: t for t in tasks(mock)},
        deliveries={d["id"]: d for d in mock.deliveries.list()},
        balances={key: balances(mock, key) for key in keys},
        clock={"mode": mock.clock.mode, "now": mock.clock.now(), "pending": len(mock.scheduler)},
        controls={"maintenance": {p: mock.in_maintenance(p) for p in mock.provider_names},
                  "faults": mock.store.faults(), "script": mock.store.script(),
                  "operations": [op.operation_id for spec in mock.specs for op in spec.operations]},
    )
