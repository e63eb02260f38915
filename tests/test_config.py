"""Unit tests for mockserver.config: defaults, config_from_dict and load_config."""

from __future__ import annotations

from pathlib import Path

import pytest

from mockserver.config import (
    CallbackConfig,
    ConfigError,
    Durations,
    KeyConfig,
    MockConfig,
    config_from_dict,
    load_config,
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep STEMMOCK_* variables of the surrounding shell out of these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("STEMMOCK_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    """Starts from documented defaults: local host, real clock, any key, 1000 credits."""
    config = MockConfig()
    assert (config.host, config.port, config.seed, config.clock) == ("127.0.0.1", 8080, 0, "real")
    assert config.keys is None and config.public_url is None and config.clock_start is None
    assert (config.default_credits, config.default_extra_credits) == (1000, 0)
    assert config.costs == {}
    assert config.durations == Durations() and config.durations.vocal_removal == 5.0
    assert config.callbacks.retries == (60.0, 300.0, 900.0)
    assert config.callbacks.timeout == 15.0
    assert config.journal_size == 1000
    assert config.file_retention == 14 * 24 * 3600.0


def test_config_from_empty_dict_is_the_default() -> None:
    """Builds the default configuration from an empty mapping."""
    assert config_from_dict({}) == MockConfig()


def test_config_from_dict_with_nested_keys() -> None:
    """Builds nested sections, coerces numbers to float and lists to tuples."""
    config = config_from_dict({
        "port": 9000,
        "durations": {"vocal_removal": 1},
        "callbacks": {"retries": [1, 2.5], "timeout": 3},
        "keys": {"alice": {"credits": 50}},
        "costs": {"vox": 2},
    })
    assert config.port == 9000
    assert config.durations.vocal_removal == 1.0 and isinstance(config.durations.vocal_removal, float)
    assert config.durations.generate_text == 2.0
    assert config.callbacks.retries == (1.0, 2.5)
    assert config.callbacks.timeout == 3.0
    assert config.callbacks.concurrency == CallbackConfig().concurrency
    assert config.keys == {"alice": KeyConfig(credits=50.0, extra_credits=0)}
    assert config.costs == {"vox": 2.0}


def test_config_from_dict_overlays_a_base() -> None:
    """Changes only the keys given, keeping the base's other values."""
    base = MockConfig(port=1234, seed=7)
    config = config_from_dict({"seed": 9}, base)
    assert (config.port, config.seed) == (1234, 9)


def test_optional_values_accept_null() -> None:
    """Accepts null for an optional setting and a number for clock_start."""
    config = config_from_dict({"public_url": None, "clock_start": 1_767_225_600})
    assert config.public_url is None
    assert config.clock_start == 1_767_225_600.0


def test_unknown_key_suggests_the_nearest() -> None:
    """Names an unknown top-level key and suggests the nearest valid one."""
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"duratons": {}})
    assert str(caught.value) == "duratons is not a known setting. Did you mean 'durations'?"


def test_nested_unknown_key_names_its_path() -> None:
    """Names a nested unknown key by its dotted path and suggests the nearest key of its section."""
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"callbacks": {"retires": [1]}})
    assert str(caught.value) == "callbacks.retires is not a known setting. Did you mean 'retries'?"


def test_unknown_key_without_a_near_match_lists_the_valid_keys() -> None:
    """Lists the valid keys when no name is close."""
    with pytest.raises(ConfigError, match=r"durations\.zzz is not a known setting\. Valid keys: generate_complete, "):
        config_from_dict({"durations": {"zzz": 1}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"port": "80"}, "port is '80'; expected an integer."),
        ({"port": True}, "port is True; expected an integer."),
        ({"seed": 1.5}, "seed is 1.5; expected an integer."),
        ({"host": 1}, "host is 1; expected a string."),
        ({"durations": {"vocal_removal": "fast"}}, "durations.vocal_removal is 'fast'; expected a number."),
        ({"callbacks": {"retries": 60}}, "callbacks.retries is 60; expected a list."),
        ({"callbacks": {"retries": [60, "x"]}}, "callbacks.retries[1] is 'x'; expected a number."),
        ({"costs": ["vox"]}, "costs is ['vox']; expected a mapping."),
        ({"keys": {"alice": {"credits": "lots"}}}, "keys.alice.credits is 'lots'; expected a number."),
        ({"durations": 5}, "durations is 5; expected a mapping."),
        ({"clock_start": "soon"}, "clock_start is 'soon'; expected a number."),
        ({"public_url": 5}, "public_url is 5; expected a string."),
    ],
)
def test_wrong_type_names_the_path_and_the_type(data: dict[str, object], message: str) -> None:
    """Rejects a value of the wrong type, naming its path and the expected type."""
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"clock": "fast"}, "clock is 'fast'; expected 'real' or 'manual'."),
        ({"port": 70000}, "port is 70000; expected 0..65535."),
        ({"journal_size": 0}, "journal_size is 0; expected at least 1."),
    ],
)
def test_bad_values_are_rejected(data: dict[str, object], fragment: str) -> None:
    """Rejects values of the right type that the mock cannot use."""
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert str(caught.value) == fragment


def test_load_config_without_a_file_is_the_default() -> None:
    """Returns the defaults when there is no file, no environment and no override."""
    assert load_config() == MockConfig()


def test_load_config_reads_a_yaml_file(tmp_path: Path) -> None:
    """Reads settings, nested sections included, from a YAML file."""
    path = tmp_path / "stemmock.yaml"
    path.write_text(
        "port: 9090\n"
        "clock: manual\n"
        "durations:\n  vocal_removal: 0.5\n"
        "callbacks:\n  retries: [1, 2, 3]\n"
        "keys:\n  alice: {credits: 10, extra_credits: 5}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert (config.port, config.clock) == (9090, "manual")
    assert config.durations.vocal_removal == 0.5
    assert config.callbacks.retries == (1.0, 2.0, 3.0)
    assert config.keys == {"alice": KeyConfig(10.0, 5.0)}


def test_load_config_reads_an_empty_file(tmp_path: Path) -> None:
    """Treats an empty YAML file as no settings."""
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_config(path) == MockConfig()


def test_load_config_reports_the_unknown_key_of_a_file(tmp_path: Path) -> None:
    """Reports an unknown key in a file with its path and a suggestion."""
    path = tmp_path / "typo.yaml"
    path.write_text("callbacks:\n  retires: [1]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"callbacks\.retires is not a known setting\. Did you mean 'retries'\?"):
        load_config(path)


def test_load_config_reports_unreadable_files(tmp_path: Path) -> None:
    """Raises ConfigError saying the file is missing, or that it is not YAML, naming the file and the line."""
    with pytest.raises(ConfigError, match=r"missing\.yaml does not exist; expected a YAML config file\."):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("port: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML: .*in \"[^\"]*bad\.yaml\", line 2") as caught:
        load_config(bad)
    assert "<unicode string>" not in str(caught.value)


def test_load_config_rejects_a_non_mapping_file(tmp_path: Path) -> None:
    """Raises ConfigError when the file's top level is not a mapping."""
    path = tmp_path / "list.yaml"
    path.write_text("- port\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_load_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads STEMMOCK_SEED from the environment as the field's type, an integer."""
    monkeypatch.setenv("STEMMOCK_SEED", "42")
    assert load_config().seed == 42


def test_environment_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lets an environment variable override the file, keeping the file's other settings."""
    path = tmp_path / "stemmock.yaml"
    path.write_text("seed: 1\nport: 9091\n", encoding="utf-8")
    monkeypatch.setenv("STEMMOCK_SEED", "42")
    config = load_config(path)
    assert (config.seed, config.port) == (42, 9091)


def test_bad_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rejects an environment value of the wrong type, naming the setting."""
    monkeypatch.setenv("STEMMOCK_SEED", "abc")
    with pytest.raises(ConfigError, match="seed is 'abc'; expected an integer."):
        load_config()


def test_overrides_beat_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Applies explicit overrides last, ignoring None ones."""
    path = tmp_path / "stemmock.yaml"
    path.write_text("port: 9091\n", encoding="utf-8")
    monkeypatch.setenv("STEMMOCK_SEED", "42")
    config = load_config(path, seed=5, port=None)
    assert (config.seed, config.port) == (5, 9091)


@pytest.mark.parametrize("source", ["file", "env", "override"])
def test_bad_clock_value(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rejects a clock other than 'real' or 'manual' from a file, the environment or an override."""
    path = None
    overrides = {}
    if source == "file":
        path = tmp_path / "clock.yaml"
        path.write_text("clock: sometimes\n", encoding="utf-8")
    elif source == "env":
        monkeypatch.setenv("STEMMOCK_CLOCK", "sometimes")
    else:
        overrides = {"clock": "sometimes"}
    with pytest.raises(ConfigError, match="clock is 'sometimes'; expected 'real' or 'manual'."):
        load_config(path, **overrides)


def test_replace_returns_a_changed_copy() -> None:
    """Returns a new config with the changes, leaving the original as it was."""
    base = MockConfig()
    changed = base.replace(port=1)
    assert changed.port == 1 and base.port == 8080


def test_a_config_travels_to_worker_processes_unchanged() -> None:
    """Rebuilds the exact config from its JSON form, as `serve --workers N` hands it to each worker."""
    import dataclasses
    import json

    from mockserver.config import CallbackConfig, FaultRule, KeyConfig, MaintenanceWindow, RateLimit

    config = MockConfig(store="redis://127.0.0.1:6379/3", seed=7, clock="manual", clock_start=5.0,
                        keys={"k": KeyConfig(3, 1)}, costs={"vox": 2},
                        callbacks=CallbackConfig(retries=(1.0, 2.0), allow_hosts=("127.0.0.1",)),
                        rate_limits={"apibox": {"work": RateLimit(5, 1.0), "poll": None},
                                     "musicapi": {"work": None, "poll": None}},
                        maintenance=(MaintenanceWindow("2027-01-01T00:00:00Z", 10.0, "apibox"),),
                        faults=(FaultRule("*", 0.5, codes=(500,)),))
    assert config_from_dict(json.loads(json.dumps(dataclasses.asdict(config)))) == config


def test_store_must_be_memory_or_redis() -> None:
    """Names the store setting and what it accepts."""
    with pytest.raises(ConfigError, match="store is 'postgres://x'; expected 'memory' or a Redis URL"):
        config_from_dict({"store": "postgres://x"})


def test_an_environment_error_names_the_variable_and_the_nested_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names the variable and the key inside its structure when a nested value has the wrong type."""
    monkeypatch.setenv("STEMMOCK_LIMITS", "{max_json_depth: deep}")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert str(caught.value) == "STEMMOCK_LIMITS: limits.max_json_depth is 'deep'; expected an integer."


def test_an_unknown_key_inside_an_environment_structure_suggests_the_nearest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Suggests the nearest key for a typo inside a structured environment value."""
    monkeypatch.setenv("STEMMOCK_CALLBACKS", '{"retires": [1]}')
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert str(caught.value) == ("STEMMOCK_CALLBACKS: callbacks.retires is not a known setting. "
                                 "Did you mean 'retries'?")


@pytest.mark.parametrize(("raw", "value"), [("off", False), ("1", True), ("FALSE", False)])
def test_an_environment_boolean_is_parsed_as_one(monkeypatch: pytest.MonkeyPatch, raw: str, value: bool) -> None:
    """Reads the usual spellings of true and false for a boolean setting."""
    monkeypatch.setenv("STEMMOCK_ACCESS_LOG", raw)
    assert load_config().access_log is value


def test_an_environment_scalar_is_never_read_as_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuses a YAML-looking text for a number rather than reading it as YAML."""
    monkeypatch.setenv("STEMMOCK_HANG_SECONDS", "[1]")
    with pytest.raises(ConfigError, match=r"^STEMMOCK_HANG_SECONDS: hang_seconds is '\[1\]'; expected a number\.$"):
        load_config()


def test_overrides_are_validated_by_the_same_model() -> None:
    """Parses an override by its field's type and rejects one of the wrong type, naming the key."""
    assert load_config(seed="7", access_log="yes").seed == 7
    with pytest.raises(ConfigError, match=r"^port is 'eighty'; expected an integer\.$"):
        load_config(port="eighty")


def test_a_union_mismatch_names_every_accepted_type() -> None:
    """Names both accepted types when a value fits neither member of a union."""
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"maintenance": [{"start": [1], "end": 0}]})
    assert str(caught.value) == "maintenance[0].start is [1]; expected a number or a string."


def test_an_unquoted_yaml_timestamp_is_an_instant(tmp_path: Path) -> None:
    """Takes a YAML date-time written without quotes as the instant it names."""
    from mockserver.config import parse_instant

    path = tmp_path / "maintenance.yaml"
    path.write_text("maintenance:\n  - {start: 2027-01-01T00:00:00Z, end: 2027-01-02T00:00:00Z}\n", encoding="utf-8")
    window = load_config(path).maintenance[0]
    assert parse_instant(window.end) - parse_instant(window.start) == 24 * 3600


def test_settings_build_by_position_and_keyword_and_validate() -> None:
    """Builds a setting group by position or keyword alike and refuses a value of the wrong type."""
    from pydantic import ValidationError

    from mockserver.config import RateLimit

    assert RateLimit(5, 1) == RateLimit(limit=5, window=1.0)
    assert MockConfig(faults=[{"operation": "*", "rate": 1, "codes": [500]}]).faults[0].codes == (500,)
    with pytest.raises(ValidationError):
        MockConfig().replace(port="eighty")
