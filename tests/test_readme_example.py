"""The README's pytest example runs as written, and fails, naming the field, once a field is misspelled."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- readme-example -->"


def readme_example() -> str:
    """The fenced Python block that follows the marker in README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(MARKER) == 1, f"README.md should hold {MARKER} exactly once"
    found = re.match(r"\s*```python\n(.*?)\n```", text.split(MARKER, 1)[1], re.DOTALL)
    assert found, f"no ```python block directly follows {MARKER} in README.md"
    return found.group(1) + "\n"


@pytest.fixture()
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A fresh test project that sees only installed packages: not the checkout, so its imports must be shipped."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.chdir(pytester.path)
    return pytester


def run(project: pytest.Pytester, code: str, *args: str) -> pytest.RunResult:
    project.makepyfile(test_readme=code)
    return project.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_the_readme_example_imports_only_installed_packages(project: pytest.Pytester) -> None:
    """Every module the example imports resolves outside the checkout, from the installed distribution."""
    code = readme_example()
    modules = re.findall(r"^(?:from|import) ([\w.]+)", code, re.M)
    assert "contracts.examples.musicapi_client" in modules
    project.makepyfile(probe="import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n")
    result = project.run(sys.executable, "-P", "probe.py", *modules)
    assert result.ret == 0, result.stderr.str()


def test_the_quickstart_starts_with_a_venv_and_names_python_3_11() -> None:
    """The Quickstart's first command makes and activates a virtual environment, after naming Python 3.11+."""
    quickstart = (ROOT / "README.md").read_text(encoding="utf-8").split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "Python 3.11 or newer" in quickstart
    first = re.search(r"```\n(.*?)\n", quickstart)
    assert first and first.group(1) == "python3 -m venv .venv && . .venv/bin/activate"


def test_the_readme_example_passes(project: pytest.Pytester) -> None:
    """Both tests of the example pass: a valid VOX flow under the fixture, and the reference flow under check_client."""
    run(project, readme_example()).assert_outcomes(passed=2)


def test_a_misspelled_field_fails_the_example_naming_it(project: pytest.Pytester) -> None:
    """With `vocal_end_s` misspelled the VOX call is refused, and teardown names the field and the fix."""
    code = readme_example()
    assert code.count('"vocal_end_s"') == 1
    # -x: the first test is the one the typo breaks; the check_client test after it is unchanged and not rerun.
    result = run(project, code.replace('"vocal_end_s"', '"vocal_end"'), "-x")
    result.assert_outcomes(failed=1, errors=1)
    text = result.stdout.str()
    assert "POST /api/v1/sonic/vox /body/vocal_end:" in text and "Did you mean 'vocal_end_s'?" in text
    assert "request has only documented fields" in text
