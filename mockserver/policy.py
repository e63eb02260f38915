"""What deciding a call reads beyond the request: the configured policy (costs, maintenance windows, rate limits,
latency), and `CallView`, the read-only view of the state that `scenarios.decide` gets for one call."""

from __future__ import annotations

import random
from typing import Any

from .callbacks import refused_target
from .clock import Clock
from .config import MockConfig, RateLimit, parse_instant
from .providers import Action, Context
from .scenarios import Refusal, matches, outcome_code, rate_class
from .spec import Operation, Spec
from .store import CallState, Store


class Policy:
    """The config's rules for each operation, looked up once: costs, maintenance, rate windows, latency."""

    def __init__(self, config: MockConfig, specs: list[Spec], store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock
        self.costs = {s.provider.name: {**s.provider.costs, **config.costs} for s in specs}
        self.windows = [(parse_instant(w.start), parse_instant(w.end), w.provider) for w in config.maintenance]
        self._rate_windows = {op.key: ((config.rate_limits.get(spec.provider.name) or {}).get(rate_class(op)),
                                       f"{spec.provider.name}/{rate_class(op)}/")
                              for spec in specs for op in spec.operations}
        # Each operation's latency rule, the first that names it, found once.
        self._latency_rules = {op.key: rule for spec in specs for op in spec.operations
                               if (rule := next((r for r in config.latency if matches(op, r.operation)), None))}
        self.seed(config.seed)

    def seed(self, seed: int) -> None:
        # A stream of its own, so that adding a latency rule does not change the ids a session gets.
        self.latency_rng = random.Random(f"latency/{seed}")

    def in_maintenance(self, provider: str, flags: dict[str, bool] | None = None) -> bool:
        """Whether `provider` is down: switched to maintenance (`flags`: the store's switches, as read for
        the call) or inside a configured window."""
        if (self.store.maintenance() if flags is None else flags).get(provider):
            return True
        if not self.windows:
            return False
        now = self.clock.now()
        return any(start <= now < end and who in (None, "", provider) for start, end, who in self.windows)

    def rate_window(self, op: Operation, api_key: str) -> tuple[RateLimit | None, str]:
        """The operation's rate limit (None: unlimited) and the key of its sliding window for `api_key`."""
        limit, prefix = self._rate_windows[op.key]
        return limit, prefix + api_key

    def latency(self, op: Operation) -> float:
        rule = self._latency_rules.get(op.key)
        if rule is None:
            return 0.0
        return rule.fixed or (self.latency_rng.uniform(rule.min, rule.max) if rule.max else 0.0)


class CallView:
    """The read-only view of the mock's state that decide() gets for one request."""

    def __init__(self, policy: Policy, config: MockConfig, op: Operation, ctx: Context,
                 action: Action | None) -> None:
        self.policy, self.store, self.clock, self.config = policy, policy.store, policy.clock, config
        self.op, self.ctx, self.action = op, ctx, action
        self.costs = policy.costs[op.provider.name]
        self._step: dict[str, Any] | None = None
        self._step_taken = False
        self._state: CallState | None = None  # read with the script step; dropped by `forget_reads`

    def precheck(self) -> Refusal | None:
        for callback in self.op.callbacks.values():  # an http(s) URL, on the configured allow-list of hosts
            url = self.ctx.req.json.get(callback.url_field or "")
            refused = refused_target(url, self.config.callbacks.allow_hosts) if isinstance(url, str) else None
            if refused is not None:
                code = outcome_code(self.op, "validation", 400)
                return Refusal(code, f"{callback.url_field}: {refused}", "callback target refused")
        return self.action.precheck(self.ctx) if self.action else None

    def balance(self) -> dict[str, float]:
        if self._state is not None:
            return dict(self._state.balance)
        return self.store.balance(self.op.provider.name, self.ctx.api_key)

    def in_maintenance(self) -> bool:
        return self.policy.in_maintenance(self.op.provider.name,
                                          self._state.maintenance if self._state is not None else None)

    def retry_after(self) -> float | None:
        limit, key = self.policy.rate_window(self.op, self.ctx.api_key)
        if limit is None:
            return None
        return self.store.rate_retry_after(key, self.clock.now(), limit.limit, limit.window)

    def scripted_fault(self) -> dict[str, Any] | None:
        for fault in self._state.faults if self._state is not None else self.store.faults():
            if fault["operation"] == self.op.operation_id and fault["used"] < fault["times"] and \
                    fault.get("api_key") in (None, self.ctx.api_key):
                return fault
        return None

    def seeded_rules(self) -> tuple[Any, ...]:
        return self.config.faults

    def script_step(self) -> dict[str, Any] | None:
        """The call's scripted behaviour, taken from the script once however often decide asks.

        Decide asks for it before maintenance, faults and balance, so those are read with it (one round
        trip on a shared store) and answered from that read until `forget_reads`.
        """
        if not self._step_taken:
            reads = [r for r in self.action.reads(self.ctx) if r not in self.ctx.reads] \
                if self.action and self.store.shared else []  # memory reads cost nothing: read when used
            self._state = self.store.call_state(self.op.provider.name, self.ctx.api_key, reads)
            self.clock.pin(self._state.clock)
            observe = getattr(self.ctx.rng, "observe", None)  # ids drawn on a shared store: a stale block goes
            if observe is not None:
                observe(self._state.generation)
            for read, record in (self._state.records or {}).items():
                self.ctx.reads.setdefault(read, record)
            self._step, self._step_taken = self._state.script_step, True
        return self._step

    def forget_reads(self) -> None:
        """Read maintenance, faults and balance afresh from now on (another worker has changed them)."""
        self._state = None
