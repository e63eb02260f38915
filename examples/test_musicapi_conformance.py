"""The reference MusicAPI client keeps the contract under every provider behaviour Hypothesis tries, and the
kit catches each bug planted in a variant of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from contracts.conformance import Harness, Step, check_client
from contracts.plugin import Stemmock
from contracts.receiver import CallbackReceiver
from contracts.examples.musicapi_client import (
    COSTS,
    POLL_INTERVAL_S,
    Forbidden,
    InsufficientCredits,
    MusicApiClient,
    MusicApiError,
    RateLimited,
    VocalExtractor,
    Vox,
    WebhookError,
    WebhookVerifier,
    extract_vocals,
    upload_and_extract,
)

KEY = "test-key"  # the plugin's default key
SECRET = "whsec_test"


def test_create_webhook_vox_flow_conforms() -> None:
    """Errors, wire faults, repeated, late, failed and missing webhooks around create and VOX: no check fails."""
    check_client(extract_vocals, expected_errors=(MusicApiError,), providers=["musicapi"], max_examples=40)


def test_upload_vox_flow_conforms() -> None:
    """The same for upload followed by VOX."""
    check_client(upload_and_extract, expected_errors=(MusicApiError,), providers=["musicapi"], max_examples=15)


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    """One mock and receiver for the replays of this module, reset before each run."""
    shared = Harness()
    yield shared
    shared.close()


def test_a_hard_script_still_ends_in_vocals(harness: Harness) -> None:
    """429, maintenance, a missing webhook and a cut poll answer are ridden out: vocals, and no violation."""
    # get-credits: 429, then ok; create: 503, then ok but no webhook; polls: a cut answer, not ready, done; VOX
    steps: list[Step] = [{"code": 429}, {}, {"code": 503}, {"scenario": "callback_never"},
                         {"wire_fault": "truncated_body"}, {"example": "not_ready"}]
    result = harness.run(extract_vocals, steps, (MusicApiError,))
    assert result.violations == [] and result.run.error is None
    assert [e["operation"] for e in result.run.calls()] == ["getCredits"] * 2 + ["createMusic"] * 2 + \
        ["getTask"] * 3 + ["getVox"]


def test_a_repeated_webhook_leads_to_one_vox_call(harness: Harness) -> None:
    """The webhook, delivered twice, is what finishes the task; VOX is called once and nothing is polled."""
    result = harness.run(extract_vocals, [{}, {"scenario": "callback_duplicate"}], (MusicApiError,))
    assert result.violations == [] and result.run.error is None
    assert len(result.run.callbacks) == 2
    assert [e["operation"] for e in result.run.calls()] == ["getCredits", "createMusic", "getVox"]


# -- planted bugs: each must be caught, by the check that names it ------------------------------------------------

def _planted(bug: str) -> Callable[[Any], Vox]:
    """The reference flow with one bug planted."""

    class Stubborn(MusicApiClient):
        def _call(self, method: str, path: str, **kwargs: Any) -> Any:
            for _ in range(self.attempts):
                try:
                    return super()._call(method, path, **kwargs)
                except Forbidden:  # planted: credits do not come back by asking again
                    self.sleep(2.0)
            return super()._call(method, path, **kwargs)

    def flow(env: Any) -> Vox:
        client = (Stubborn if bug == "retry_credits" else MusicApiClient)(
            env.url, env.api_key, sleep=(lambda _s: None) if bug == "no_backoff" else env.sleep)
        webhooks, vocals = WebhookVerifier("s"), VocalExtractor(client)
        client.ensure_credits(COSTS["create"] + COSTS["vox"])
        task_id = client.create("a song", webhook_url=env.callback_url, webhook_secret="s")
        for _ in range(30):
            env.sleep(5.0 if bug == "fast_polls" else POLL_INTERVAL_S)
            for delivery in env.callbacks():
                try:
                    if bug == "double_process":  # planted: neither the webhook id nor the task is remembered
                        vocals.done.clear()
                        vocals.on_webhook(webhooks.verify(delivery.headers, delivery.raw))
                    else:
                        webhooks.receive(delivery.headers, delivery.raw, vocals.on_webhook)
                except WebhookError:
                    continue  # forged: dropped
            if vocals.result(task_id) is None:
                clips = client.task(task_id)
                if clips is not None:
                    vocals.finish(task_id, clips)
            result = vocals.result(task_id)
            if result is not None:
                return result
        raise MusicApiError("no result")

    return flow


PLANTED: dict[str, tuple[list[Step], str, str]] = {
    "double_process": ([{}, {"scenario": "callback_duplicate"}],
                       "a duplicate callback is not processed twice", "same paid POST /api/v1/sonic/vox call "),
    "fast_polls": ([{}, {"scenario": "callback_never"}, {"example": "not_ready"}],
                   "never polls faster than documented", "the documented interval is 15 s"),
    "no_backoff": ([{"code": 429}], "waits after a call-frequency error before retrying", "retried 0.000 s after"),
    "retry_credits": ([{}, {"code": 403}, {"code": 403}, {"code": 403}],
                      "does not retry in a loop after insufficient credits", "credits do not come back"),
}


@pytest.mark.parametrize("bug", sorted(PLANTED))
def test_each_planted_bug_is_caught(harness: Harness, bug: str) -> None:
    """Replaying the script that exposes the bug yields the named violation; the unbroken flow passes it."""
    steps, title, detail = PLANTED[bug]
    found = [str(v) for v in harness.run(_planted(bug), steps, (MusicApiError,)).violations]
    assert any(title in v and detail in v for v in found), found
    assert harness.run(_planted("none"), steps, (MusicApiError,)).violations == []


# -- the same behaviours, one at a time, through the pytest plugin's fixtures ------------------------------------

def _client(stemmock: Stemmock, slept: list[float]) -> MusicApiClient:
    def sleep(seconds: float) -> None:
        slept.append(seconds)
        stemmock.clock.advance(seconds)

    return MusicApiClient(stemmock.url, KEY, sleep=sleep)


def _create_and_wait(stemmock: Stemmock, receiver: CallbackReceiver, client: MusicApiClient) -> str:
    """Create a song with a webhook to `receiver`, then move the clock past its completion."""
    task_id = client.create("a song", webhook_url=receiver.endpoint("songs"), webhook_secret=SECRET)
    stemmock.clock.advance(POLL_INTERVAL_S)
    return task_id


def test_webhook_signatures_are_checked(stemmock: Stemmock, callback_receiver: CallbackReceiver) -> None:
    """A real delivery verifies; a changed body, a wrong secret or a missing signature is refused."""
    with _client(stemmock, []) as client:
        task_id = _create_and_wait(stemmock, callback_receiver, client)
    [delivery] = callback_receiver.accepted()
    assert WebhookVerifier(SECRET).verify(delivery.headers, delivery.raw)["task_id"] == task_id
    tampered = delivery.raw.replace(b'"code":200', b'"code":201')
    assert tampered != delivery.raw
    unsigned = {k: v for k, v in delivery.headers.items() if k != "x-webhook-signature"}
    for headers, raw, secret in ((delivery.headers, tampered, SECRET), (delivery.headers, delivery.raw, "other"),
                                 (unsigned, delivery.raw, SECRET)):
        with pytest.raises(WebhookError):
            WebhookVerifier(secret).verify(headers, raw)


@pytest.mark.stemmock(scenario="callback_duplicate")
def test_a_duplicate_webhook_is_processed_once(stemmock: Stemmock, callback_receiver: CallbackReceiver) -> None:
    """Two deliveries with one X-Webhook-Id: the second is skipped and VOX is called (and charged) once."""
    with _client(stemmock, []) as client:
        _create_and_wait(stemmock, callback_receiver, client)
        first, second = callback_receiver.accepted()
        assert first.headers["x-webhook-id"] == second.headers["x-webhook-id"] == second.headers["idempotency-key"]
        webhooks, vocals = WebhookVerifier(SECRET), VocalExtractor(client)
        assert webhooks.receive(first.headers, first.raw, vocals.on_webhook) is True
        assert webhooks.receive(second.headers, second.raw, vocals.on_webhook) is False
    assert [e["operation"] for e in stemmock.journal].count("getVox") == 1


def test_429_waits_for_retry_after(stemmock: Stemmock) -> None:
    """A 429 is retried after its Retry-After (1 s here); one that never passes ends in RateLimited."""
    slept: list[float] = []
    with _client(stemmock, slept) as client:
        clip_id = client.upload("https://example.com/song.mp3")
        stemmock.fault("getVox", 429)
        assert client.vox(clip_id, 10, 40).end_s == 40
        assert slept == [1.0]
        stemmock.fault("getVox", 429, times=10)
        with pytest.raises(RateLimited):
            client.vox(clip_id)
    assert [e["response"]["status"] for e in stemmock.journal if e["operation"] == "getVox"] == [429, 200] + [429] * 4


def test_maintenance_is_waited_out(stemmock: Stemmock) -> None:
    """A 503 is retried after a pause; the call succeeds once maintenance ends."""
    slept: list[float] = []

    def maintenance_ends(seconds: float) -> None:
        slept.append(seconds)
        stemmock.maintenance(False, provider="musicapi")

    with MusicApiClient(stemmock.url, KEY, sleep=maintenance_ends) as client:
        stemmock.maintenance(True, provider="musicapi")
        assert client.upload("https://example.com/song.mp3")
    assert slept == [30.0]
    assert [e["response"]["status"] for e in stemmock.journal] == [503, 200]


@pytest.mark.stemmock(credits=2)
def test_credits_short_is_not_retried(stemmock: Stemmock) -> None:
    """The balance check refuses before spending; a 403 from the provider is raised after one call."""
    with _client(stemmock, []) as client:
        with pytest.raises(InsufficientCredits):
            client.ensure_credits(COSTS["upload"] + COSTS["vox"])
        clip_id = client.upload("https://example.com/song.mp3")  # exactly the 2 credits left
        with pytest.raises(Forbidden) as refused:
            client.vox(clip_id)
    assert refused.value.status == 403
    assert [e["operation"] for e in stemmock.journal] == ["getCredits", "uploadMusic", "getVox"]
