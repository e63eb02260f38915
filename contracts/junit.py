"""`check-client --junit FILE`: the report as JUnit XML (the Ant/Jenkins format CI systems read).

One test case per check (failed with every violation it found), per documented code of each operation
(skipped when the client did not meet it: coverage informs, it does not fail) and one for how the command
ended.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from .coverage import BEHAVIOUR_CHECKS, EXIT_COMMAND_FAILED, EXIT_NOT_STARTED, EXIT_TIMEOUT, Report

# The referee's checks, which judge every request against the spec (contracts.referee).
REFEREE_CHECKS = ("request to an operation that exists", "request is authenticated", "request is valid",
                  "request has only documented fields")
_OUTPUT_CHARS = 64 * 1024  # the command's output kept in <system-out> at most


def _clean(text: str) -> str:
    """Text XML 1.0 can carry: control characters other than tab and newlines are dropped."""
    return "".join(c for c in text if c in "\t\n\r" or (ord(c) >= 0x20 and not 0xD800 <= ord(c) <= 0xDFFF
                                                         and ord(c) not in (0xFFFE, 0xFFFF)))


def _suite(root: ET.Element, name: str, timestamp: str, seconds: float = 0.0) -> ET.Element:
    return ET.SubElement(root, "testsuite", name=name, tests="0", failures="0", errors="0", skipped="0",
                         time=f"{seconds:.3f}", timestamp=timestamp, hostname="localhost")


def _case(suite: ET.Element, classname: str, name: str, seconds: float = 0.0) -> ET.Element:
    suite.set("tests", str(int(suite.get("tests", "0")) + 1))
    return ET.SubElement(suite, "testcase", name=name, classname=classname, time=f"{seconds:.3f}")


def _mark(suite: ET.Element, case: ET.Element, kind: str, message: str, text: str = "") -> None:
    """Add a <failure>, <error> or <skipped> to `case` and count it in its suite."""
    counter = {"failure": "failures", "error": "errors", "skipped": "skipped"}[kind]
    suite.set(counter, str(int(suite.get(counter, "0")) + 1))
    element = ET.SubElement(case, kind, message=_clean(message))
    if kind != "skipped":
        element.set("type", "contract violation" if kind == "failure" else "error")
    if text:
        element.text = _clean(text)


def junit_xml(report: Report) -> str:
    """The report as a JUnit XML document."""
    timestamp = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    root = ET.Element("testsuites", name="stemmock check-client")
    checks = _suite(root, "stemmock.checks", timestamp)
    titles = [*REFEREE_CHECKS, *BEHAVIOUR_CHECKS]
    titles += [f.violation.title for f in report.findings if f.violation.title not in titles]
    for title in dict.fromkeys(titles):
        case = _case(checks, "stemmock.checks", title)
        found = [f for f in report.findings if f.violation.title == title]
        if found and report.strict:
            _mark(checks, case, "failure", found[0].describe(), "\n".join(f.describe() for f in found))
        elif found:  # --no-strict: reported, not failed
            ET.SubElement(case, "system-out").text = _clean("\n".join(f.describe() for f in found))
    if report.mock_errors:
        case = _case(checks, "stemmock.checks", "the mock answered without an error of its own")
        _mark(checks, case, "error", report.mock_errors[0].splitlines()[-1] if report.mock_errors[0] else "error",
              "\n\n".join(report.mock_errors))
    coverage = _suite(root, "stemmock.coverage", timestamp)
    for op in report.operations:
        for code in op.documented:
            case = _case(coverage, op.operation, f"{op.operation} meets documented code {code}")
            if code not in op.codes:
                _mark(coverage, case, "skipped", f"the client never met {code} (called {op.calls} time(s))")
    command = _suite(root, "stemmock.command", timestamp, report.command.seconds)
    case = _case(command, "stemmock.command", "the command ends successfully", report.command.seconds)
    code = report.exit_code
    argv = " ".join(report.command.argv)
    if code == EXIT_NOT_STARTED:
        _mark(command, case, "error", f"`{argv}` could not be started: {report.command.error}")
    elif code == EXIT_TIMEOUT:
        _mark(command, case, "failure", f"`{argv}` was still running at --timeout and was killed")
    elif code == EXIT_COMMAND_FAILED:
        _mark(command, case, "failure", f"`{argv}` exited with code {report.command.returncode}")
    if report.command.output:
        ET.SubElement(case, "system-out").text = _clean(report.command.output[-_OUTPUT_CHARS:])
    for name in ("tests", "failures", "errors"):  # the Jenkins schema gives <testsuites> no `skipped`
        root.set(name, str(sum(int(s.get(name, "0")) for s in root)))
    root.set("time", f"{report.command.seconds:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(report: Report, path: str | Path) -> None:
    Path(path).write_text(junit_xml(report), encoding="utf-8")
