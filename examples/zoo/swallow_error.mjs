// MusicAPI client that catches every error and prints a friendly line: the user never learns the provider's code.
//
//   stemmock check-client --fault 'createMusic=429*9' -- node examples/zoo/swallow_error.mjs
const base = process.env.STEMMOCK_MUSICAPI_URL;
const headers = { Authorization: `Bearer ${process.env.STEMMOCK_API_KEY}`, "Content-Type": "application/json" };
try {
  const response = await fetch(`${base}/api/v1/sonic/create`, {
    method: "POST", headers,
    body: JSON.stringify({ custom_mode: false, mv: "sonic-v5", gpt_description_prompt: "a calm piano song" }),
  });
  if (!response.ok) throw new Error(await response.text());
  console.log("started", (await response.json()).task_id);
} catch {
  console.error("Oops, something went wrong. Please try again later."); // the bug: status and message are dropped
  process.exit(1);
}
