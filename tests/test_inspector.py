"""The inspector (`/__mock/ui`) in a real browser, through a real server: Playwright driving Debian's chromium.

The browser is the system's own (`/usr/bin/chromium`, installed by `.ci/run`), since no browser download is
available; without it these tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from contracts.live import LiveServer
from contracts.receiver import CallbackReceiver
from mockserver import MockConfig, create_app
from mockserver.config import CallbackConfig
from mockserver.inspector import hub

from conftest import free_port

KEY = "inspector-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
START = 1_767_225_600
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = os.environ.get("STEMMOCK_SCREENSHOT")  # where to keep the screenshot too (the README's is made so)


def chromium_path() -> str:
    found = shutil.which("chromium") or next((p for p in ("/usr/bin/chromium",) if Path(p).exists()), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it from the distribution's packages")
        pytest.skip("chromium is not installed")
    return found


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    """One chromium for the module, headless, with a fresh profile."""
    executable = chromium_path()
    profile = tempfile.mkdtemp(prefix="stemmock-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


class Page:
    """A fresh tab, with every console error and uncaught exception it shows."""

    def __init__(self, context: Any) -> None:
        self.tab = context.new_page()
        self.errors: list[str] = []
        self.tab.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.tab.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def open(self, url: str) -> Any:
        self.tab.goto(f"{url}/__mock/ui")
        return self.tab


@pytest.fixture()
def page(browser_context: Any) -> Iterator[Page]:
    tab = Page(browser_context)
    yield tab
    errors = list(tab.errors)
    tab.tab.close()
    assert errors == [], errors  # the page shows no console error in any test


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    # api.box callbacks signed (the kie way), so that the page has a signature to show
    config = MockConfig(clock="manual", clock_start=START, callbacks=CallbackConfig(apibox_hmac_key="hmac-key"))
    with LiveServer(create_app(config)) as live:
        yield live


@pytest.fixture()
def mock_url(server: LiveServer) -> str:
    httpx.post(f"{server.url}/__mock/reset").raise_for_status()
    return server.url


def live(tab: Any) -> None:
    tab.wait_for_selector("#live.on", timeout=5000)


def upload(http: httpx.Client) -> str:
    response = http.post("/api/v1/sonic/upload", json={"url": "https://files.example.com/night-drive.mp3"})
    assert response.status_code == 200, response.text
    return str(response.json()["clip_id"])


def test_a_vox_call_appears_on_the_page_within_two_seconds(page: Page, mock_url: str) -> None:
    """A VOX call made with httpx shows in the requests table without a reload, within 2 s."""
    tab = page.open(mock_url)
    live(tab)
    with httpx.Client(base_url=mock_url, headers=AUTH) as http:
        clip = upload(http)
        started = time.monotonic()
        answer = http.post("/api/v1/sonic/vox", json={"clip_id": clip, "vocal_start_s": 0, "vocal_end_s": 30})
    assert answer.status_code == 200
    row = tab.wait_for_selector("#req-rows tr:has(td.operation:text-is('getVox'))", timeout=2000)
    assert time.monotonic() - started < 2.0
    assert row.query_selector("td.status").inner_text() == "200"
    assert row.query_selector("td.outcome").inner_text() == "success"
    assert "…" in row.inner_text()  # the key is shown redacted
    assert KEY not in tab.inner_text("#requests")
    row.click()
    detail = tab.wait_for_selector("#req-detail:not([hidden])")
    assert clip in detail.inner_text() and "vocal_audio_url" in detail.inner_text()


def test_a_misspelled_field_shows_its_pointer_and_did_you_mean(page: Page, mock_url: str) -> None:
    """A body with `clipid` for `clip_id` is highlighted with the pointer, expected vs received and the hint."""
    tab = page.open(mock_url)
    live(tab)
    answer = httpx.post(f"{mock_url}/api/v1/sonic/vox", headers=AUTH,
                        json={"clipid": "abc", "vocal_start_s": 0, "vocal_end_s": 30})
    assert answer.status_code == 400
    row = tab.wait_for_selector("#req-rows tr.violating", timeout=2000)
    text = row.inner_text()
    assert row.query_selector("code.pointer").inner_text() == "/body/clip_id"
    assert "Did you mean 'clip_id' for 'clipid'?" in text
    assert "expected a string" in text
    assert row.query_selector("td.status").inner_text() == "400"


def test_advancing_the_clock_from_the_page_finishes_a_generation_and_delivers_its_callbacks(
        page: Page, mock_url: str, receiver: CallbackReceiver, tmp_path: Path) -> None:
    """Advance on the page moves an api.box generation to SUCCESS and shows its three callbacks delivered."""
    tab = page.open(mock_url)
    live(tab)
    with httpx.Client(base_url=mock_url, headers=AUTH) as http:
        body = http.post("/api/v1/generate", json={"customMode": False, "instrumental": True, "model": "V4_5",
                                                   "prompt": "night drive", "callBackUrl": receiver.endpoint("g")})
    task_id = body.json()["data"]["taskId"]
    card = tab.wait_for_selector(f"[data-task='{task_id}']", timeout=2000)
    assert card.query_selector(".task-status").inner_text() == "PENDING"
    tab.fill("#advance-seconds", "60")
    tab.click("#advance")
    tab.wait_for_selector(f"[data-task='{task_id}'] .task-status:text-is('SUCCESS')", timeout=3000)
    assert "job(s) ran" in tab.inner_text("#advance-result")
    tab.wait_for_function("document.querySelectorAll('.cb-state.state-delivered').length === 3", timeout=3000)
    assert [d.json["data"]["callbackType"] for d in receiver.accepted()] == ["text", "first", "complete"]
    # Each stage on the timeline is reached, and the results are playable files.
    assert len(tab.query_selector_all(f"[data-task='{task_id}'] .stage.reached")) == 3
    assert len(tab.query_selector_all(f"[data-task='{task_id}'] audio")) == 2
    tab.wait_for_function(f"[...document.querySelectorAll(\"[data-task='{task_id}'] img\")]"
                          ".every(i => i.complete && i.naturalWidth > 0)", timeout=5000)
    tab.screenshot(path=str(tmp_path / "inspector.png"), full_page=True)
    if SCREENSHOT:
        tab.screenshot(path=SCREENSHOT)
    # The signed headers shown are those the receiver got.
    last = receiver.accepted()[-1]
    complete = tab.query_selector(".cb:has-text('generate.complete')")
    complete.query_selector("summary").click()
    tab.wait_for_selector(".cb:has-text('generate.complete') pre.headers:has-text('X-Webhook-Signature')", timeout=2000)
    shown = json.loads(tab.inner_text(".cb:has-text('generate.complete') pre.headers"))
    assert {name.lower(): value for name, value in shown.items()}.items() <= last.headers.items()
    assert shown["X-Webhook-Signature"] == last.headers["x-webhook-signature"]
    # "Send again" on a delivered callback makes one more attempt, shown on the page.
    tab.click(".cb:has(.state-delivered) button.resend")
    tab.wait_for_selector(".attempts li:has-text('(sent again)')", timeout=3000)
    assert len(receiver.accepted()) == 4


def test_maintenance_toggled_on_the_page_makes_the_next_apibox_call_455(page: Page, mock_url: str) -> None:
    """Ticking api.box's maintenance box answers the next api.box call with body code 455, shown on the page."""
    tab = page.open(mock_url)
    live(tab)
    with tab.expect_response(lambda r: r.url.endswith("/__mock/maintenance") and r.request.method == "PUT") as put:
        tab.check("#maint-apibox")
    assert put.value.ok
    answer = httpx.get(f"{mock_url}/api/v1/generate/credit", headers=AUTH)
    assert answer.status_code == 200 and answer.json()["code"] == 455
    row = tab.wait_for_selector("#req-rows tr:has(td.code:text-is('455'))", timeout=2000)
    assert row.query_selector("td.status").inner_text() == "200"
    assert not tab.is_checked("#maint-musicapi")


def test_with_an_admin_token_the_page_refuses_without_it_and_works_with_it(page: Page) -> None:
    """The page asks for the token: without it (or with a wrong one) no data comes; with it the page is live."""
    with LiveServer(create_app(MockConfig(clock="manual", clock_start=START, admin_token="s3cret"))) as guarded:
        assert httpx.get(f"{guarded.url}/__mock/events").status_code == 401
        assert httpx.get(f"{guarded.url}/__mock/tasks").status_code == 401
        tab = page.open(guarded.url)
        tab.wait_for_selector("#login:not([hidden])")
        assert tab.is_hidden("#app")
        tab.fill("#token", "wrong")
        with tab.expect_response(lambda r: r.url.endswith("/__mock/clock")) as refused:
            tab.click("#login button")
        assert refused.value.status == 401
        tab.wait_for_selector("#login-error:text('wrong')")
        page.errors = [e for e in page.errors if "401" not in e]  # the browser logs the refused fetch itself
        tab.fill("#token", "s3cret")
        tab.click("#login button")
        live(tab)
        assert tab.is_hidden("#login")
        httpx.post(f"{guarded.url}/api/v1/sonic/vox", headers=AUTH, json={})
        tab.wait_for_selector("#req-rows tr:has(td.operation:text-is('getVox'))", timeout=2000)
        tab.close()


def test_nothing_is_computed_for_events_while_no_page_is_connected(server: LiveServer, mock_url: str) -> None:
    """Calls made with no page connected cost the inspector nothing; a closed stream stops reading the store."""
    mock = server.app.mock
    events = hub(mock)
    before = events.readings
    with httpx.Client(base_url=mock_url, headers=AUTH) as http:
        for _ in range(20):
            http.post("/api/v1/sonic/vox", json={})
        assert events.pages == 0 and events.readings == before
        with http.stream("GET", "/__mock/events", params={"max_seconds": 0.5}) as stream:
            text = "".join(stream.iter_text())
        assert text.startswith("retry: 300") and "event: snapshot" in text
        assert events.pages == 0
        after = events.readings
        assert after > before
        for _ in range(20):
            http.post("/api/v1/sonic/vox", json={})
    assert events.readings == after


# -- many workers on one Redis ----------------------------------------------------------------------------

def read_events(url: str, seconds: float, connected: threading.Event) -> list[tuple[str, Any]]:
    """The (event, data) pairs of one stream of `seconds`; `connected` is set once its snapshot has come."""
    found: list[tuple[str, Any]] = []
    with httpx.stream("GET", f"{url}/__mock/events", params={"max_seconds": seconds}, timeout=30) as stream:
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                found.append((event, json.loads(line[6:])))
                connected.set()
    return found


def test_on_redis_every_workers_exchanges_reach_every_page(redis_url: str) -> None:
    """With `stemmock serve --workers 2` on Redis, two streams each see all 40 calls, whichever worker took them."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "mockserver", "--port", str(port), "--store", redis_url, "--clock", "manual",
         "--workers", "2", "--log-level", "warning"], start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/__mock/clock").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
            time.sleep(0.05)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            connected = [threading.Event(), threading.Event()]
            pages = [pool.submit(read_events, url, 4.0, ready) for ready in connected]
            assert all(ready.wait(10) for ready in connected)  # the calls below are new events to both
            paths = {f"/api/v1/sonic/task/call-{n}" for n in range(40)}
            for path in sorted(paths):  # a new connection each: the kernel hands them to either worker
                httpx.get(f"{url}{path}", headers={**AUTH, "Connection": "close"})
            streams = [p.result(timeout=30) for p in pages]
        for stream in streams:
            seen = {data["path"] for event, data in stream if event in ("exchange", "snapshot") and "path" in data}
            seen |= {x["path"] for event, data in stream if event == "snapshot" for x in data["exchanges"]}
            assert paths <= seen, sorted(paths - seen)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)


def test_balances_faults_and_reset_are_driven_from_the_page(page: Page, mock_url: str) -> None:
    """A followed key's balance is set on the page and moves with a call; a fault added there answers; reset clears."""
    tab = page.open(mock_url)
    live(tab)
    tab.fill("#balance-key", KEY)
    tab.click("#balance-form button")
    credits = "#balances form[data-provider=musicapi] input[name=credits]"
    tab.wait_for_selector(credits)
    tab.fill(credits, "50")
    with tab.expect_response(lambda r: "/__mock/credits/" in r.url) as put:
        tab.click("#balances form[data-provider=musicapi] button")
    assert put.value.ok
    with httpx.Client(base_url=mock_url, headers=AUTH) as http:
        clip = upload(http)  # costs 2: the page shows the balance the store now holds
        tab.wait_for_function(f"document.querySelector(\"{credits}\").value === '48'", timeout=2000)
        tab.select_option("#fault-op", "getVox")
        tab.fill("#fault-code", "403")
        with tab.expect_response(lambda r: r.url.endswith("/__mock/faults")) as added:
            tab.click("#fault-form button[type=submit]")
        assert added.value.status == 201, added.value.text()
        tab.wait_for_selector("#faults li:has-text('getVox code=403')", timeout=2000)
        answer = http.post("/api/v1/sonic/vox", json={"clip_id": clip, "vocal_start_s": 0, "vocal_end_s": 30})
        assert answer.status_code == 403
        tab.wait_for_selector("#faults li:has-text('1/1 used')", timeout=2000)
        tab.wait_for_selector("#req-rows tr:has(td.status:text-is('403'))", timeout=2000)
    tab.once("dialog", lambda dialog: dialog.accept())
    tab.click("#reset")
    tab.wait_for_function("document.querySelectorAll('#req-rows tr').length === 0", timeout=3000)
    assert tab.query_selector_all("#faults li") == []
