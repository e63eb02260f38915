"""MusicAPI client whose retry helper sends `create` again after any broken answer: a lost answer pays twice.

    stemmock check-client --fault createMusic=connection_reset_after -- python examples/zoo/resend_create.py
"""

import json
import os
import time
import urllib.request

BASE, KEY = os.environ["STEMMOCK_MUSICAPI_URL"], os.environ["STEMMOCK_API_KEY"]
BODY = {"custom_mode": False, "mv": "sonic-v5", "gpt_description_prompt": "a calm piano song"}

for attempt in range(3):
    request = urllib.request.Request(BASE + "/api/v1/sonic/create", json.dumps(BODY).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    try:
        print("started", json.loads(urllib.request.urlopen(request, timeout=30).read())["task_id"])
        break
    except (OSError, ValueError) as exc:  # the bug: the create may have taken effect before its answer broke
        print(f"attempt {attempt + 1} failed ({exc}); retrying")
        time.sleep(1.0 * 2**attempt)
