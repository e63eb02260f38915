"""The two published SDKs, on their defaults, as conformance targets: `musicapi-sdk` 0.1.0 and `suno-easy` 0.2.0.

Both wait with the standard library's `time`; `sdk_clock` hands their modules a `time` whose `sleep` moves the
mock's clock (`env.sleep`) and whose readings follow it, so a five-minute client timeout costs no real time.

    stemmock check-client -- python examples/sdks.py suno-easy
    stemmock check-client -- python examples/sdks.py musicapi-sdk
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def sdk_clock(env: Any, *modules: types.ModuleType) -> Iterator[None]:
    """Run the modules' waits on the mock's clock: their `time.sleep` is `env.sleep`, their clock reads follow it."""
    slept = [0.0]

    def sleep(seconds: float) -> None:
        slept[0] += max(0.0, seconds)
        env.sleep(seconds)

    shim = types.SimpleNamespace(sleep=sleep, time=lambda: 1_000_000.0 + slept[0],
                                 monotonic=lambda: 1_000.0 + slept[0], perf_counter=lambda: 1_000.0 + slept[0])
    saved = [(module, module.time) for module in modules]  # type: ignore[attr-defined]
    for module in modules:
        module.time = shim  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, original in saved:
            module.time = original  # type: ignore[attr-defined]


def suno_easy_generate(env: Any) -> list[Any]:
    """suno-easy's `music.generate` on its defaults (model V4_5ALL, wait for completion, poll every 3 s)."""
    import suno_easy.client
    from suno_easy import SunoClient

    client = SunoClient(env.api_key, callback_url=env.callback_url)
    client.BASE_URL = env.apibox_url
    with sdk_clock(env, suno_easy.client):
        return list(client.music.generate("a calm piano song", style="piano", title="Calm"))


def suno_easy_separate(env: Any) -> Any:
    """suno-easy: generate (without waiting), then separate the first track's vocals and wait for the stems."""
    import suno_easy.client
    from suno_easy import SunoClient

    client = SunoClient(env.api_key, callback_url=env.callback_url)
    client.BASE_URL = env.apibox_url
    with sdk_clock(env, suno_easy.client):
        task = client.music.generate("a calm piano song", style="piano", title="Calm", wait=False)
        songs = task.wait()
        return client.audio.separate_vocals(task.task_id, songs[0].id)


def musicapi_generate(env: Any, poll_interval_ms: int | None = None) -> Any:
    """musicapi-sdk's `sonic.generate_and_wait` on its defaults (retries 429/5xx/network errors, polls every 5 s)."""
    import musicapi._http
    import musicapi._polling
    from musicapi import MusicAPI, PollOptions, SonicCreateParams

    client = MusicAPI(api_key=env.api_key, base_url=f"{env.musicapi_url}/api/v1")
    options = PollOptions(poll_interval_ms=poll_interval_ms) if poll_interval_ms else None
    with sdk_clock(env, musicapi._http, musicapi._polling):
        return client.sonic.generate_and_wait(
            SonicCreateParams(custom_mode=False, mv="sonic-v5", gpt_description_prompt="a calm piano song",
                              webhook_url=env.callback_url), options)


def musicapi_generate_politely(env: Any) -> Any:
    """musicapi-sdk as its README suggests for production: polls every 20 s (the documented 15-25 s)."""
    return musicapi_generate(env, poll_interval_ms=20_000)


def _main(which: str) -> None:
    """Run one SDK against $STEMMOCK_*_URL in real time, as a check-client command."""
    env = types.SimpleNamespace(api_key=os.environ["STEMMOCK_API_KEY"], callback_url=os.environ["STEMMOCK_CALLBACK_URL"],
                                apibox_url=os.environ["STEMMOCK_APIBOX_URL"],
                                musicapi_url=os.environ["STEMMOCK_MUSICAPI_URL"])
    if which == "suno-easy":
        from suno_easy import SunoClient

        client = SunoClient(env.api_key, callback_url=env.callback_url)
        client.BASE_URL = env.apibox_url
        songs = client.music.generate("a calm piano song", style="piano", title="Calm", timeout=300)
        print("songs:", ", ".join(song.id for song in songs))
    else:
        from musicapi import MusicAPI, SonicCreateParams

        result = MusicAPI(api_key=env.api_key, base_url=f"{env.musicapi_url}/api/v1").sonic.generate_and_wait(
            SonicCreateParams(custom_mode=False, mv="sonic-v5", gpt_description_prompt="a calm piano song"))
        print("clips:", ", ".join(f"{clip.clip_id} ({clip.state})" for clip in result.data))


if __name__ == "__main__":
    _main(sys.argv[1] if len(sys.argv) > 1 else "suno-easy")
