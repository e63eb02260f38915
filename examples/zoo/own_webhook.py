"""MusicAPI client with its own webhook endpoint that trusts every webhook: it never checks X-Webhook-Signature.

    stemmock check-client -- python examples/zoo/own_webhook.py
"""

import json
import os
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

BASE, KEY = os.environ["STEMMOCK_MUSICAPI_URL"], os.environ["STEMMOCK_API_KEY"]
done = threading.Event()


class Webhook(BaseHTTPRequestHandler):
    def do_POST(self):
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()
        for clip in event.get("data") or []:  # the bug: no signature check before acting on the event
            if clip.get("audio_url"):
                urllib.request.urlopen(clip["audio_url"]).read()
                print("downloaded", clip["clip_id"])
                done.set()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Webhook)
threading.Thread(target=server.serve_forever, daemon=True).start()
body = {"custom_mode": False, "mv": "sonic-v5", "gpt_description_prompt": "a calm piano song",
        "webhook_url": f"http://127.0.0.1:{server.server_port}/webhook"}
request = urllib.request.Request(BASE + "/api/v1/sonic/create", json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
print("started", json.loads(urllib.request.urlopen(request).read())["task_id"])
done.wait(20)
time.sleep(1.0)  # a service keeps serving its webhook endpoint
