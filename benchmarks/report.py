"""The Markdown report: one table of results (stemmock, floor, ratio, target) and the versions used."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    metric: str
    mock: float
    floor: float | None
    unit: str
    target: str = ""
    met: bool | None = None  # None: no target on this row

    @property
    def ratio(self) -> float | None:
        return self.mock / self.floor if self.floor else None


@dataclass
class Report:
    mode: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    noise: list[tuple[str, float]] = field(default_factory=list)  # (load row, cores used by other processes)
    foreign_cores: float = 0.0  # the same, averaged over the whole run

    def add(self, metric: str, mock: float, floor: float | None, unit: str, target: str = "",
            met: bool | None = None) -> Row:
        row = Row(metric, mock, floor, unit, target, met)
        self.rows.append(row)
        return row

    def table(self) -> str:
        lines = ["| measurement | stemmock | floor | stemmock ÷ floor | target | |",
                 "|---|---:|---:|---:|---|---|"]
        for r in self.rows:
            verdict = "" if r.met is None else ("met" if r.met else "**missed**")
            ratio = "—" if r.ratio is None else f"{r.ratio:.2f}"
            floor = "—" if r.floor is None else _fmt(r.floor, r.unit)
            lines.append(f"| {r.metric} | {_fmt(r.mock, r.unit)} | {floor} | {ratio} | {r.target} | {verdict} |")
        return "\n".join(lines)

    def markdown(self) -> str:
        met = [r for r in self.rows if r.met is not None]
        missed = [r for r in met if not r.met]
        parts = [
            f"# stemmock benchmark ({self.mode})", "",
            "Produced by `python -m benchmarks" + (" --quick" if self.mode == "quick" else "") + "` in "
            f"{self.seconds / 60:.1f} min. Loopback only; each server pinned to core 0, wrk (`-t1`) and the "
            "callback receiver to core 1. The floor is `benchmarks/floor.py`: a bare Starlette route answering the "
            "same fixed bytes the mock answered, on the same stack (uvicorn, uvloop, httptools). "
            "Ratio = stemmock ÷ floor (higher is better for req/s, lower for ms, s and MiB).", "",
            f"Targets: {len(met) - len(missed)} of {len(met)} met.", "",
            *self.noise_lines(), self.table(), "",
            "## Observations", "", *[f"- {n}" for n in self.notes], "",
            "## Versions", "", "| component | version |", "|---|---|",
            *[f"| {k} | {v} |" for k, v in self.versions.items()], "",
        ]
        return "\n".join(parts)

    def noise_lines(self) -> list[str]:
        """How much of the machine other processes took: the numbers mean little when it is large."""
        if not self.noise:
            return []
        worst = max(self.noise, key=lambda n: n[1])
        mean = sum(n for _, n in self.noise) / len(self.noise)
        line = (f"CPU used by processes other than the benchmark's own (/proc/stat less their CPU time): "
                f"{self.foreign_cores:.2f} cores on average over the run; during load rows mean {mean:.2f}, "
                f"max {worst[1]:.2f} ({worst[0]}).")
        if self.foreign_cores > 0.2 or worst[1] > 0.3:
            line = ("**Warning: the machine was busy with other work; throughput and latency below are "
                    "disturbed.** " + line)
        return [line, ""]


def _fmt(value: Any, unit: str) -> str:
    if unit == "req/s" or unit == "callbacks/s":
        return f"{value:,.0f} {unit}"
    if unit == "count":
        return f"{value:,.0f}"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value} {unit}"
