"""`--examples overlay.yaml`: named examples added to the specs, answered by `Prefer: example=<name>`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from contracts.live import LiveServer
from mockserver import MockConfig, create_app
from mockserver.cli import main
from mockserver.spec import SpecError


def _overlay(tmp_path: Path, examples: dict[str, object]) -> str:
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump({"stemmock-examples": 1, "examples": examples}))
    return str(path)


def test_an_overlay_example_is_answered_through_the_real_server(tmp_path: Path) -> None:
    """`Prefer: example=<name>` answers the overlay's body, in the provider's transport."""
    body = {"code": 200, "msg": "success", "data": 77.5}
    config = MockConfig(examples=_overlay(tmp_path, {"getRemainingCredits": {"recorded_200": {"status": 200,
                                                                                             "value": body}}}))
    with LiveServer(create_app(config)) as server:
        answer = httpx.get(f"{server.url}/api/v1/generate/credit", trust_env=False,
                           headers={"Authorization": "Bearer k", "Prefer": "example=recorded_200"})
        unknown = httpx.get(f"{server.url}/api/v1/generate/credit", trust_env=False,
                            headers={"Authorization": "Bearer k", "Prefer": "example=recorded_201"})
    assert answer.status_code == 200
    assert answer.json() == body
    assert "recorded_200" in unknown.json()["msg"]


def test_an_overlay_naming_an_unknown_operation_stops_the_mock(tmp_path: Path) -> None:
    """A typo in an overlay's operation is a SpecError with the nearest operationId."""
    with pytest.raises(SpecError, match="Did you mean 'getVox'"):
        create_app(MockConfig(examples=_overlay(tmp_path, {"getVoxx": {"x": {"status": 200, "value": {}}}})))


@pytest.mark.parametrize(("entry", "says"), [
    ({"success": {"status": 200, "value": {}}}, "already named by the spec"),
    ({"new": {"status": 418, "value": {}}}, "has status 418; expected one the spec documents"),
])
def test_an_overlay_that_cannot_be_served_stops_the_mock(tmp_path: Path, entry: dict[str, object], says: str) -> None:
    """A name the spec already uses, or an undocumented status, is refused at load with the reason."""
    with pytest.raises(SpecError, match=says):
        create_app(MockConfig(examples=_overlay(tmp_path, {"separateVocals": entry})))


def test_serve_exits_2_on_an_overlay_it_cannot_load(tmp_path: Path) -> None:
    """`stemmock serve --examples` with a bad overlay stops start-up with exit code 2 and the reason."""
    path = tmp_path / "bad.yaml"
    path.write_text("just: text\n")
    result = CliRunner().invoke(main, ["serve", "--port", "0", "--examples", str(path)])
    assert result.exit_code == 2
    assert "has no 'examples' mapping" in result.output
