// A tiny MusicAPI "sonic" client in Node 20 (global fetch, no packages): upload a song, cut its vocals (VOX),
// create a song with a webhook, wait for it, split it into stems, and check the balance.
//
//   stemmock check-client -- node examples/clients/node_client.mjs
//
// Against the real provider, set STEMMOCK_MUSICAPI_URL=https://api.musicapi.ai and STEMMOCK_API_KEY.

const base = process.env.STEMMOCK_MUSICAPI_URL;
const key = process.env.STEMMOCK_API_KEY;
const webhook = process.env.STEMMOCK_CALLBACK_URL;
if (!base || !key || !webhook) {
  console.error("set STEMMOCK_MUSICAPI_URL, STEMMOCK_API_KEY and STEMMOCK_CALLBACK_URL, "
    + "or run me under stemmock check-client");
  process.exit(2);
}
// MusicAPI asks for task polls at most every 15 s; the mock's task time may run faster.
const pollMs = 15_000 * Number(process.env.STEMMOCK_TIME_SCALE ?? 1);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function api(method, path, body) {
  const response = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${JSON.stringify(data)}`);
  return { status: response.status, data };
}

async function waitFor(taskId) {
  for (let i = 0; i < 20; i++) {
    const { status, data } = await api("GET", `/api/v1/sonic/task/${taskId}`);
    if (status === 200) { // 202 {"type": "not_ready"} until then
      const failed = (data.data ?? []).find((clip) => clip.state === "failed");
      if (failed || data.type) throw new Error(`task ${taskId} failed: ${failed?.error_message ?? data.error ?? data.type}`);
      return data.data;
    }
    await sleep(pollMs);
  }
  throw new Error(`task ${taskId} did not finish`);
}

// Errors end the run with their message and exit 1; a stack trace would say the client itself broke.
process.on("uncaughtException", (error) => {
  console.error(`MusicAPI client: ${error.message}`);
  process.exit(1);
});

const { data: upload } = await api("POST", "/api/v1/sonic/upload", { url: "https://example.com/demo.mp3" });
const { data: vox } = await api("POST", "/api/v1/sonic/vox",
  { clip_id: upload.clip_id, vocal_start_s: 0, vocal_end_s: 30 });
console.error(`vocals of ${upload.clip_id}: ${vox.data.vocal_audio_url}`);

const { data: created } = await api("POST", "/api/v1/sonic/create", {
  task_type: "create_music", custom_mode: false, mv: "sonic-v5",
  gpt_description_prompt: "a calm piano song", webhook_url: webhook,
});
const clips = await waitFor(created.task_id);
console.error(`created ${clips.map((clip) => clip.clip_id).join(", ")}`);

const { data: stems } = await api("POST", "/api/v1/sonic/stems/basic", { clip_id: clips[0].clip_id });
const parts = await waitFor(stems.task_id);
const audio = await fetch(parts[0].audio_url, { method: "HEAD" });
if (!audio.ok) throw new Error(`stem ${parts[0].audio_url} answered ${audio.status}`);
console.error(`stems: ${parts.map((clip) => clip.stem_type ?? clip.title).join(", ")}`);

const { data: credits } = await api("GET", "/api/v1/get-credits");
console.error(`credits left: ${credits.credits}`);
