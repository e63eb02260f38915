"""api.box client that reads record-info's `data` as always present: an unknown task (`data: null`) crashes it.

    stemmock check-client --script '[{}, {"example": "unknown_task"}]' -- python examples/zoo/crash_on_null.py
"""

import json
import os
import time
import urllib.request

BASE, KEY = os.environ["STEMMOCK_APIBOX_URL"], os.environ["STEMMOCK_API_KEY"]
SCALE = float(os.environ.get("STEMMOCK_TIME_SCALE", "1"))


def call(method, path, body=None):
    request = urllib.request.Request(BASE + path, json.dumps(body).encode() if body else None, method=method,
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request).read())


task = call("POST", "/api/v1/generate", {"customMode": False, "instrumental": False, "model": "V4_5",
                                         "prompt": "a calm piano song",
                                         "callBackUrl": os.environ["STEMMOCK_CALLBACK_URL"]})["data"]["taskId"]
for _ in range(20):
    time.sleep(30 * SCALE)
    info = call("GET", f"/api/v1/generate/record-info?taskId={task}")
    if info["data"]["status"] == "SUCCESS":  # the bug: data is null for a task the provider does not know
        print("tracks:", [t["id"] for t in info["data"]["response"]["sunoData"]])
        break
