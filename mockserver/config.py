"""MockConfig: the mock's settings, their defaults, and loading them from YAML, the environment and flags.

One pydantic model describes every setting; the file, `STEMMOCK_*` variables and flags are each validated by it,
so each value is parsed by its field's type and every error names the key's path and what was expected.
Constructing a MockConfig is cheap and never does I/O; `load_config` is the fallible step that reads a file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
from dataclasses import field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from .validation import did_you_mean


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key path and what was expected."""


# Pydantic dataclasses, not BaseModel: they validate the same way, yet stay plain frozen dataclasses, so a field
# read is an ordinary attribute lookup (BaseModel's `__getattr__` makes every read ~3x slower, on every request).
_settings = dataclass(frozen=True, config=ConfigDict(extra="forbid"))


@_settings
class KeyConfig:
    """A known API key and its starting balances (per provider)."""

    credits: float = 1000
    extra_credits: float = 0


@_settings
class Durations:
    """Seconds from a task's creation to each of its stages."""

    generate_text: float = 2.0
    generate_first: float = 4.0
    generate_complete: float = 6.0
    vocal_removal: float = 5.0
    musicapi_create: float = 6.0
    musicapi_stems: float = 5.0
    musicapi_upload: float = 3.0  # async upload (with callback_url) until its result is POSTed


@_settings
class CallbackConfig:
    """How callbacks are delivered."""

    timeout: float = 15.0
    retries: tuple[float, ...] = (60.0, 300.0, 900.0)  # delays of the retries after a failed first attempt
    concurrency: int = 200
    grace: float = 5.0  # seconds given to pending deliveries at shutdown
    webhook_secret: str = "stemmock-default-webhook-secret"  # MusicAPI jobs that send no webhook_secret
    apibox_hmac_key: str | None = None  # set to sign api.box callbacks the kie way (off: api.box documents none)
    allow_hosts: tuple[str, ...] = ()  # when set, callback URLs must target one of these hosts
    late_delay: float = 600.0  # how late `Prefer: scenario=callback_late` delivers, in seconds of the clock


@_settings
class RateLimit:
    """At most `limit` calls per `window` seconds (a sliding window per API key)."""

    limit: int
    window: float


def _default_rate_limits() -> dict[str, dict[str, RateLimit | None]]:
    # api.box: 20 calls per 10 s on the calls that start work (generate, vocal-removal) -> body code 430.
    # Polling/balance calls and MusicAPI have no documented limit: off unless configured.
    return {"apibox": {"work": RateLimit(20, 10.0), "poll": None}, "musicapi": {"work": None, "poll": None}}


@_settings
class MaintenanceWindow:
    """The provider (or both, when `provider` is empty) is under maintenance from `start` to `end`."""

    start: float | str  # epoch seconds or an ISO-8601 date-time
    end: float | str
    provider: str | None = None


@_settings
class FaultRule:
    """Seeded random faults: a matching call fails with probability `rate`, drawing one of the listed faults."""

    operation: str  # "POST /api/v1/generate", an operationId, or "*"
    rate: float
    codes: tuple[int, ...] = ()
    wire_faults: tuple[str, ...] = ()
    scenarios: tuple[str, ...] = ()


@_settings
class LatencyRule:
    """Delay answers of matching operations by `fixed` seconds, or a seeded uniform draw in [min, max]."""

    operation: str = "*"
    fixed: float = 0.0
    min: float = 0.0
    max: float = 0.0


@_settings
class Limits:
    """Bounds on what one request may make the mock read or hold, checked before the body is parsed."""

    max_body_bytes: int = 1024 * 1024  # over it: the provider's 413, and the rest of the body is never read
    max_header_bytes: int = 64 * 1024  # all header names and values together; over it: the provider's 400
    body_timeout: float = 10.0  # seconds for an announced body to arrive; then the provider's 408 and close
    max_json_depth: int = 64  # nesting levels of arrays and objects; over it: the provider's 400 naming the field


@_settings
class Retention:
    """How long the mock keeps what calls made, and how much of it (see README, "Retention")."""

    # Tasks and clips, on the mock's clock: api.box keeps a task's files 14 days (provider-facts §2.8); MusicAPI
    # documents none (§1.10), so the same 14 days, after which a task answers as an unknown one.
    tasks: float = 14 * 24 * 3600.0
    max_tasks: int = 100_000  # per kind of record (clips, tasks, ...): the oldest go first beyond it


@_settings
class MockConfig:
    """Everything the mock can be told. Every field maps 1:1 onto a `stemmock serve` flag or a YAML key."""

    host: str = "127.0.0.1"
    port: int = 8080
    store: str = "memory"  # or redis://host:port/db, shared by every worker and kept across restarts
    seed: int = 0
    clock: str = "real"
    clock_start: float | None = None
    public_url: str | None = None  # base of the file URLs handed out; default: the request's own origin
    keys: dict[str, KeyConfig] | None = None  # None: any non-empty bearer key works
    default_credits: float = 1000
    default_extra_credits: float = 0
    costs: dict[str, float] = field(default_factory=dict)  # overrides x-mock-provider.costs, by cost key
    durations: Durations = field(default_factory=Durations)
    callbacks: CallbackConfig = field(default_factory=CallbackConfig)
    journal_size: int = 1000
    file_retention: float = 14 * 24 * 3600.0
    rate_limits: dict[str, dict[str, RateLimit | None]] = field(default_factory=_default_rate_limits)
    maintenance: tuple[MaintenanceWindow, ...] = ()
    faults: tuple[FaultRule, ...] = ()
    latency: tuple[LatencyRule, ...] = ()
    dribble_seconds: float = 2.0  # how long the `slow_dribble` wire fault takes to send a body
    hang_seconds: float = 30.0  # how long `timeout_after` holds a call that took effect before closing it unanswered
    admin_token: str | None = None  # when set, /__mock/* requires `Authorization: Bearer <admin_token>`
    limits: Limits = field(default_factory=Limits)
    examples: str | None = None  # an overlay of named examples (`stemmock examples import`) added to the specs
    retention: Retention = field(default_factory=Retention)
    access_log: bool = False  # one log line per provider call (off by default: it costs time on every call)

    def replace(self, **changes: Any) -> MockConfig:
        return dataclasses.replace(self, **changes)


_MODEL = TypeAdapter(MockConfig)


def suggest(name: str, options: list[str]) -> str:
    return did_you_mean(name, options) or f" Valid keys: {', '.join(sorted(options))}."


def _members(hint: Any) -> list[Any]:
    """The non-None members of a union (`[hint]` for anything else)."""
    if get_origin(hint) in (Union, types.UnionType):
        return [a for a in get_args(hint) if a is not type(None)]
    return [hint]


def _is_model(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _expected_name(hint: Any) -> str:
    members = _members(hint)
    if len(members) > 1:
        return " or ".join(_expected_name(a) for a in members)
    hint = members[0]
    if get_origin(hint) is tuple:
        return "a list"
    if get_origin(hint) is dict or _is_model(hint):
        return "a mapping"
    return {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(hint, str(hint))


def _locate(loc: tuple[Any, ...]) -> tuple[str, Any, Any]:
    """A pydantic error location as (`a.b[0].c`, the field's type there, the model holding the last key)."""
    path, hint, parent = "", MockConfig, MockConfig
    steps = list(loc)
    while steps:
        members = _members(hint)
        if len(members) > 1:  # pydantic names the union member it tried; the path stops at the union
            break
        hint = members[0]
        step = steps.pop(0)
        if _is_model(hint):
            parent = hint
            hint = get_type_hints(hint).get(str(step))
        elif get_origin(hint) is dict:
            hint = get_args(hint)[1]
        elif get_origin(hint) is tuple:
            hint = get_args(hint)[0]
        path += f"[{step}]" if isinstance(step, int) else (f".{step}" if path else str(step))
    return path, hint, parent


def _message(error: ValidationError, source: dict[str, str] | None = None) -> str:
    """The first problem pydantic found, as one sentence: the key's path, its value, and what was expected."""
    first = error.errors(include_url=False)[0]
    path, hint, parent = _locate(first["loc"])
    origin = f"{source[first['loc'][0]]}: " if source and first["loc"] and first["loc"][0] in source else ""
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{origin}{path} is not a known setting.{suggest(str(first['loc'][-1]), [f.name for f in dataclasses.fields(parent)])}"
    if first["type"] in ("missing", "missing_argument"):
        return f"{origin}{path} is missing; expected {_expected_name(hint)}."
    return f"{origin}{path or 'the config'} is {first['input']!r}; expected {_expected_name(hint)}."


def _validated(data: Any, *, strict: bool, source: dict[str, str] | None = None) -> MockConfig:
    """`data` as a MockConfig: strictly typed for a file's values, parsed from text by type for the environment."""
    if not isinstance(data, dict):
        raise ConfigError(f"the config is {data!r}; expected a mapping.")
    try:
        if strict:  # JSON mode: a YAML list is a tuple's array, but '80' is no integer and true no number
            return _MODEL.validate_json(json.dumps(data, default=str), strict=True)
        return _MODEL.validate_python(data, strict=False)
    except ValidationError as exc:
        raise ConfigError(_message(exc, source)) from None


def env_value(name: str, raw: str, hint: Any) -> Any:
    """An environment variable's text for the field's type: scalars stay text (never YAML), structures are parsed.

    A structure is JSON or a YAML flow collection (`{max_json_depth: 8}`). The model then parses scalars by type,
    so `STEMMOCK_ADMIN_TOKEN=0123` stays the string '0123' and `yes` stays 'yes' where a string is expected.
    """
    members = _members(hint)
    shape = members[0] if len(members) == 1 else hint
    if get_origin(shape) in (dict, tuple) or _is_model(shape):
        try:
            return _structure(raw, shape)
        except ValueError:
            expected = "a JSON or YAML flow " + ("list" if get_origin(shape) is tuple else "mapping")
            raise ConfigError(f"{name}: {name.removeprefix('STEMMOCK_').lower()} is {raw!r}; "
                              f"expected {expected}.") from None
    return raw if str in members else raw.strip()


def _structure(raw: str, shape: Any) -> Any:
    """A mapping or list from JSON, or from a YAML flow collection (`{max_json_depth: 8}`), never a YAML scalar."""
    container = list if get_origin(shape) is tuple else dict
    try:
        value = json.loads(raw)
    except ValueError:
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ValueError(raw) from None
    if not isinstance(value, container):
        raise ValueError(raw)
    return value


def check_against_specs(config: MockConfig, specs: list[Any]) -> MockConfig:
    """Names the config takes from the specs (operations, cost keys, providers) must name something in them."""
    operations = [name for spec in specs for op in spec.operations for name in (op.operation_id, op.key)]
    costs = sorted({key for spec in specs for key in spec.provider.costs})
    providers = [spec.provider.name for spec in specs]
    rules: list[tuple[str, str]] = [(f"faults[{i}].operation", r.operation) for i, r in enumerate(config.faults)]
    rules += [(f"latency[{i}].operation", r.operation) for i, r in enumerate(config.latency)]
    for where, name in rules:
        if name != "*" and name not in operations:
            hint = did_you_mean(name, operations) or " Expected an operationId, `METHOD /path` or '*'."
            raise ConfigError(f"{where} is {name!r}, which names no provider operation.{hint}")
    for key in config.costs:
        if key not in costs:
            raise ConfigError(f"costs.{key} is not a cost key of the specs.{suggest(key, costs)}")
    for i, window in enumerate(config.maintenance):
        if window.provider and window.provider not in providers:
            raise ConfigError(f"maintenance[{i}].provider is {window.provider!r}; expected one of "
                              f"{', '.join(providers)}.{did_you_mean(window.provider, providers)}")
    return config


def check_config(config: MockConfig) -> MockConfig:
    """Validate values that types alone cannot; return the config unchanged."""
    if config.clock not in ("real", "manual"):
        raise ConfigError(f"clock is {config.clock!r}; expected 'real' or 'manual'.")
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"port is {config.port}; expected 0..65535.")
    if config.store != "memory" and not config.store.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"store is {config.store!r}; expected 'memory' or a Redis URL such as "
                          "redis://127.0.0.1:6379/0.")
    if config.journal_size < 1:
        raise ConfigError(f"journal_size is {config.journal_size}; expected at least 1.")
    for provider, classes in config.rate_limits.items():
        if provider not in ("apibox", "musicapi"):
            raise ConfigError(f"rate_limits.{provider} is not a provider.{suggest(provider, ['apibox', 'musicapi'])}")
        for name, limit in classes.items():
            if name not in ("work", "poll"):
                raise ConfigError(f"rate_limits.{provider}.{name} is not a call class."
                                  f"{suggest(name, ['work', 'poll'])}")
            if limit is not None and (limit.limit < 1 or limit.window <= 0):
                raise ConfigError(f"rate_limits.{provider}.{name} is {limit.limit}/{limit.window} s; expected a "
                                  "limit >= 1 and a window > 0.")
    for name in ("max_body_bytes", "max_header_bytes", "body_timeout", "max_json_depth"):
        value = getattr(config.limits, name)
        if value <= 0:
            raise ConfigError(f"limits.{name} is {value}; expected a number above 0.")
    if config.retention.tasks <= 0 or config.retention.max_tasks < 1:
        raise ConfigError(f"retention is {config.retention.tasks} s / {config.retention.max_tasks} tasks; expected "
                          "seconds above 0 and max_tasks of at least 1.")
    for i, rule in enumerate(config.faults):
        if not 0 <= rule.rate <= 1:
            raise ConfigError(f"faults[{i}].rate is {rule.rate}; expected a number from 0 to 1.")
        if not (rule.codes or rule.wire_faults or rule.scenarios):
            raise ConfigError(f"faults[{i}] lists no codes, wire_faults or scenarios to draw from.")
    for i, window in enumerate(config.maintenance):
        parse_instant(window.start, f"maintenance[{i}].start")
        parse_instant(window.end, f"maintenance[{i}].end")
    return config


def parse_instant(value: float | str, path: str = "instant") -> float:
    """Epoch seconds from a number or an ISO-8601 date-time (UTC when it names no zone)."""
    if isinstance(value, (int, float)):
        return float(value)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{path} is {value!r}; expected epoch seconds or an ISO-8601 date-time.") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def config_from_dict(data: dict[str, Any], base: MockConfig | None = None, *, strict: bool = True,
                     source: dict[str, str] | None = None) -> MockConfig:
    """Overlay a parsed mapping onto `base` (or the defaults): strictly typed as from YAML, or (`strict=False`)
    with text parsed by each field's type as from the environment; `source` names where each top key came from."""
    built = _validated(data, strict=strict, source=source)
    if "rate_limits" in data:  # overlay per provider and class, so setting one limit keeps the others
        merged = {p: dict(classes) for p, classes in (base or MockConfig()).rate_limits.items()}
        for provider, classes in built.rate_limits.items():
            merged.setdefault(provider, {}).update(classes)
        built = dataclasses.replace(built, rate_limits=merged)
    if base is None:
        return check_config(built)
    return check_config(dataclasses.replace(base, **{k: getattr(built, k) for k in data}))


def load_config(path: str | Path | None = None, **overrides: Any) -> MockConfig:
    """Read the YAML file (if any), then `STEMMOCK_*` environment variables, then explicit overrides."""
    config = MockConfig()
    if path is not None:
        try:
            with open(path, encoding="utf-8") as stream:  # a stream: YAML's errors then name the file
                data = yaml.safe_load(stream)
        except FileNotFoundError:
            raise ConfigError(f"{path} does not exist; expected a YAML config file.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} cannot be read: {exc}.") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}.") from None
        config = config_from_dict({} if data is None else data, config)
    env, source = {}, {}
    for name, hint in get_type_hints(MockConfig).items():
        variable = f"STEMMOCK_{name.upper()}"
        raw = os.environ.get(variable)
        if raw is not None:
            env[name], source[name] = env_value(variable, raw, hint), variable
    if env:
        config = config_from_dict(env, config, strict=False, source=source)
    clean = {k: v for k, v in overrides.items() if v is not None}
    return config_from_dict(clean, config, strict=False) if clean else config
