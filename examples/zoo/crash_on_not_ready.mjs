// MusicAPI client that takes any 2xx poll answer for the finished task: the 202 `{"type": "not_ready"}` crashes it.
//
//   stemmock check-client -- node examples/zoo/crash_on_not_ready.mjs
const base = process.env.STEMMOCK_MUSICAPI_URL;
const headers = { Authorization: `Bearer ${process.env.STEMMOCK_API_KEY}`, "Content-Type": "application/json" };
const created = await (await fetch(`${base}/api/v1/sonic/create`, {
  method: "POST", headers,
  body: JSON.stringify({ custom_mode: false, mv: "sonic-v5", gpt_description_prompt: "a calm piano song" }),
})).json();
const task = await fetch(`${base}/api/v1/sonic/task/${created.task_id}`, { headers });
if (!task.ok) throw new Error(`poll answered ${task.status}`);
const clips = (await task.json()).data; // the bug: HTTP 202 carries no data yet
console.log("first clip", clips[0].clip_id);
