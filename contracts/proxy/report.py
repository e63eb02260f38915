"""The drift log of one proxy run: calls and drifts per operation, the first sample of each kind, and client
violations kept apart (the request broke the contract: the client's fault, not the provider's)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts.referee import ContractViolation

from .drift import Drift

MAX_KEPT = 1000  # drifts and violations kept in full; counts go on past it


@dataclass
class _Operation:
    calls: int = 0
    callbacks: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> its first drift


class DriftLog:
    """Thread-safe tally of what the proxy saw."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: dict[str, _Operation] = {}
        self.drifts: list[dict[str, Any]] = []
        self.violations: list[dict[str, Any]] = []
        self.upstream_errors: list[dict[str, Any]] = []
        self.drift_count = 0

    def call(self, operation: str, drifts: Sequence[Drift], violations: Sequence[ContractViolation] = (),
             callback: bool = False) -> None:
        with self._lock:
            entry = self._ops.setdefault(operation, _Operation())
            if callback:
                entry.callbacks += 1
            else:
                entry.calls += 1
            for drift in drifts:
                self.drift_count += 1
                entry.kinds[drift.kind] += 1
                entry.samples.setdefault(drift.kind, drift.as_dict())
                if len(self.drifts) < MAX_KEPT:
                    self.drifts.append(drift.as_dict())
            for violation in violations:
                if len(self.violations) < MAX_KEPT:
                    self.violations.append({"title": violation.title, "operation": violation.operation,
                                            "pointer": violation.pointer, "detail": violation.detail,
                                            "message": str(violation)})

    def upstream_error(self, operation: str, message: str) -> None:
        with self._lock:
            self._ops.setdefault(operation, _Operation()).calls += 1
            if len(self.upstream_errors) < MAX_KEPT:
                self.upstream_errors.append({"operation": operation, "message": message})

    def as_dict(self) -> dict[str, Any]:
        """The report as `GET /__mock/drift` and `--json` give it."""
        with self._lock:
            operations = {name: {"calls": e.calls, "callbacks": e.callbacks, "drifts": dict(sorted(e.kinds.items())),
                                 "samples": dict(sorted(e.samples.items()))}
                          for name, e in sorted(self._ops.items())}
            return {"drift_count": self.drift_count, "operations": operations, "drifts": list(self.drifts),
                    "client_violations": list(self.violations), "upstream_errors": list(self.upstream_errors)}

    def table(self) -> str:
        """The summary printed at exit: one row per operation, then each kind's first sample."""
        report = self.as_dict()
        rows = [("operation", "calls", "callbacks", "drifts")]
        for name, entry in report["operations"].items():
            kinds = ", ".join(f"{kind} x{n}" for kind, n in entry["drifts"].items()) or "none"
            rows.append((name, str(entry["calls"]), str(entry["callbacks"]), kinds))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = ["Drift report"]
        lines += ["  " + "  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip()
                  for row in rows]
        samples = [(name, s) for name, e in report["operations"].items() for s in e["samples"].values()]
        if samples:
            lines.append("First sample of each kind:")
            lines += [f"  - {name} ({s['where']}): {s['message']}" for name, s in samples]
        if report["client_violations"]:
            lines.append(f"Client violations ({len(report['client_violations'])}), the request broke the contract:")
            lines += [f"  - {v['message']}" for v in report["client_violations"]]
        if report["upstream_errors"]:
            lines.append(f"Upstream errors ({len(report['upstream_errors'])}):")
            lines += [f"  - {e['operation']}: {e['message']}" for e in report["upstream_errors"]]
        lines.append(f"{'DRIFT' if self.drift_count else 'OK'}: {self.drift_count} drift(s) from the spec.")
        return "\n".join(lines)
