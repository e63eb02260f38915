// The inspector page: reads GET /__mock/events (server-sent events) and drives the control plane.
// Plain JS, no build step, no network beyond the mock. Every value shown is set as text, never as HTML.
"use strict";
(function () {
  const TOKEN = "stemmock.inspector.token", KEYS = "stemmock.inspector.keys";
  const state = { exchanges: new Map(), tasks: new Map(), deliveries: new Map(), balances: {}, clock: null,
                  controls: null, selected: null };
  let source = null;
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  const token = () => sessionStorage.getItem(TOKEN) || "";
  const keys = () => JSON.parse(sessionStorage.getItem(KEYS) || "[]");
  const clockText = (t) => (t === null || t === undefined) ? "" :
    new Date(t * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  const json = (v) => JSON.stringify(v, null, 2);

  async function api(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await response.json().catch(() => null);
    if (!response.ok) throw Object.assign(new Error((data && data.message) || response.statusText), { status: response.status });
    return data;
  }

  // -- requests ------------------------------------------------------------------------------------------
  function bodyCode(x) {
    const body = x.response && x.response.body;
    return body && typeof body === "object" && !Array.isArray(body) && "code" in body ? body.code : "";
  }
  function shown(x) {
    const f = (id) => $(id).value.trim().toLowerCase();
    const has = (value, wanted) => !wanted || String(value === null || value === undefined ? "" : value).toLowerCase().includes(wanted);
    return has(x.provider, $("f-provider").value) && has(x.operation, f("f-operation")) && has(x.api_key, f("f-key")) &&
      (!f("f-status") || String(x.response ? x.response.status : "") === f("f-status") || String(bodyCode(x)) === f("f-status")) &&
      has(x.outcome && x.outcome.kind, $("f-outcome").value);
  }
  function renderRequests() {
    const rows = [...state.exchanges.values()].sort((a, b) => b.seq - a.seq);
    const providers = new Set(rows.map((x) => x.provider).filter(Boolean));
    const outcomes = new Set(rows.map((x) => x.outcome && x.outcome.kind).filter(Boolean));
    fillSelect($("f-provider"), "any provider", providers);
    fillSelect($("f-outcome"), "any outcome", outcomes);
    const body = $("req-rows");
    body.replaceChildren(...rows.filter(shown).map((x) => {
      const violations = x.violations || [];
      const why = [x.outcome ? x.outcome.reason : (x.error || "")];
      if (violations.length) {
        why.push(el("ul", { class: "violations" }, violations.map((v) => el("li", {},
          el("code", { class: "pointer" }, v.pointer), " ", v.message,
          v.expected ? el("span", { class: "muted" }, " expected ", v.expected) : null,
          v.received !== null && v.received !== undefined ? el("span", { class: "muted" }, ", received ", JSON.stringify(v.received)) : null))));
      }
      const row = el("tr", { "data-seq": x.seq, class: (violations.length ? "violating " : "") + (state.selected === x.seq ? "selected" : ""),
                             onclick: () => { state.selected = x.seq; renderRequests(); } },
        el("td", {}, clockText(x.time)), el("td", {}, x.provider || ""), el("td", { class: "operation" }, x.operation || x.path),
        el("td", {}, x.api_key || ""), el("td", { class: "status" }, x.response ? x.response.status : ""),
        el("td", { class: "code" }, bodyCode(x)), el("td", { class: "outcome" }, x.outcome ? x.outcome.kind : "error"),
        el("td", { class: "why" }, why));
      return row;
    }));
    $("req-count").textContent = `${rows.length} kept`;
    const picked = state.exchanges.get(state.selected);
    $("req-detail").hidden = !picked;
    if (picked) {
      $("req-detail").replaceChildren(
        el("div", {}, el("h3", {}, `Request ${picked.method} ${picked.path}`), el("pre", {}, json(picked.request))),
        el("div", {}, el("h3", {}, "Response"), el("pre", {}, json(picked.response))),
        el("div", {}, el("h3", {}, "Outcome"), el("pre", {}, json(picked.outcome))));
    }
  }
  function fillSelect(select, label, values) {
    const current = select.value, known = [...select.options].map((o) => o.value).slice(1);
    const wanted = [...values].sort();
    if (known.join() === wanted.join()) return;
    select.replaceChildren(el("option", { value: "" }, label), ...wanted.map((v) => el("option", { value: v }, v)));
    select.value = current;
  }

  // -- tasks and callbacks --------------------------------------------------------------------------------
  function renderTasks() {
    const tasks = [...state.tasks.values()].sort((a, b) => b.created_at - a.created_at);
    $("task-list").replaceChildren(...tasks.map((t) => el("div", { class: "task", "data-task": t.id },
      el("div", {}, el("b", {}, `${t.provider} ${t.kind}`), " ", el("code", {}, t.id), " ",
        el("span", { class: "task-status" }, t.status), " ", el("span", { class: "muted" }, t.api_key || "")),
      el("div", { class: "timeline" }, t.stages.map((s) => el("span", { class: "stage" + (s.reached ? " reached" : ""),
        title: clockText(s.at) }, `${s.name} +${Math.round(s.at - t.created_at)}s`))),
      el("div", { class: "files" }, t.files.map((f) => f.kind === "audio" ?
        el("audio", { controls: "", preload: "none", src: f.url }) : el("img", { src: f.url, alt: "cover", loading: "lazy" }))))));
  }
  function renderCallbacks() {
    const list = [...state.deliveries.values()].sort((a, b) => b.id.localeCompare(a.id));
    $("cb-list").replaceChildren(...list.map((d) => el("div", { class: "cb", "data-delivery": d.id },
      el("div", {}, el("b", { class: "cb-state state-" + d.state }, d.state), " ", d.event, " → ", el("code", {}, d.url || "(no url)"),
        " ", el("span", { class: "muted" }, `task ${d.task_id}`),
        d.state === "delivered" ? el("button", { type: "button", class: "resend", onclick: () => resend(d.id) }, "Send again") : null),
      el("ol", { class: "attempts" }, (d.attempts || []).map((a) => el("li", {},
        `${clockText(a.at)}  ${a.status === null ? "—" : "HTTP " + a.status}  ${a.latency_ms === null ? "" : a.latency_ms + " ms"}` +
        `${a.error ? "  " + a.error : ""}${a.resent ? "  (sent again)" : ""}`))),
      d.next_attempt_at ? el("div", { class: "muted" }, `next attempt ${clockText(d.next_attempt_at)}`) : null,
      el("details", { ontoggle: (e) => showHeaders(e.target, d.id) }, el("summary", {}, "payload and headers"),
        el("pre", { class: "payload" }, json(d.payload)), el("pre", { class: "headers" }, "…")))));
    for (const id of openDetails) {
      const box = document.querySelector(`[data-delivery="${CSS.escape(id)}"] details`);
      if (box) box.open = true;
    }
  }
  const openDetails = new Set();
  async function showHeaders(box, id) {
    if (!box.open) { openDetails.delete(id); return; }
    openDetails.add(id);
    try {
      const r = await api("GET", `/__mock/callbacks/${encodeURIComponent(id)}/headers`);
      box.querySelector("pre.headers").textContent = json(r.headers);
    } catch (e) { box.querySelector("pre.headers").textContent = e.message; }
  }
  async function resend(id) {
    try { await api("POST", `/__mock/callbacks/${encodeURIComponent(id)}/resend`); } catch (e) { alert(e.message); }
  }

  // -- state and controls ---------------------------------------------------------------------------------
  function renderClock() {
    const c = state.clock; if (!c) return;
    $("clock-now").textContent = clockText(c.now);
    $("clock-mode").textContent = c.mode; $("clock-pending").textContent = `${c.pending} pending`;
  }
  function renderControls() {
    const c = state.controls; if (!c) return;
    $("maintenance").replaceChildren(...Object.entries(c.maintenance).map(([p, on]) => el("label", {},
      el("input", { type: "checkbox", id: `maint-${p}`, ...(on ? { checked: "" } : {}),
                    onchange: (e) => api("PUT", "/__mock/maintenance", { on: e.target.checked, provider: p }).catch((err) => alert(err.message)) }),
      ` ${p} `)));
    $("faults").replaceChildren(...c.faults.map((f) => el("li", {}, `${f.operation} `,
      Object.entries(f).filter(([k]) => !["id", "operation", "times", "used", "api_key"].includes(k)).map(([k, v]) => `${k}=${v} `),
      el("span", { class: "muted" }, `${f.used}/${f.times} used`))));
    const select = $("fault-op");
    if (select.options.length !== c.operations.length) {
      select.replaceChildren(...c.operations.map((o) => el("option", { value: o }, o)));
    }
    if (document.activeElement !== $("script")) $("script").value = JSON.stringify(c.script);
  }
  function renderBalances() {
    $("balances").replaceChildren(...Object.entries(state.balances).map(([key, per]) => el("div", { class: "balance" },
      el("b", {}, key), Object.entries(per).map(([p, b]) => el("form", { "data-provider": p, onsubmit: (e) => {
        e.preventDefault();
        const credits = Number(e.target.elements.credits.value);
        api("PUT", `/__mock/credits/${encodeURIComponent(key)}`, { credits, extra_credits: b.extra_credits, provider: p })
          .catch((err) => alert(err.message));
      } }, ` ${p} `, el("input", { name: "credits", type: "number", step: "any", value: b.credits, style: "width:6em" }),
        el("span", { class: "muted" }, ` +${b.extra_credits} extra `), el("button", { type: "submit" }, "Set"))))));
  }
  function renderAll() { renderRequests(); renderTasks(); renderCallbacks(); renderClock(); renderControls(); renderBalances(); }

  // -- the event stream -----------------------------------------------------------------------------------
  const handlers = {
    snapshot(d) {
      state.exchanges = new Map(d.exchanges.map((x) => [x.seq, x]));
      state.tasks = new Map(d.tasks.map((t) => [t.id, t]));
      state.deliveries = new Map(d.deliveries.map((x) => [x.id, x]));
      state.balances = d.balances; state.clock = d.clock; state.controls = d.controls; renderAll();
    },
    exchange(x) { state.exchanges.set(x.seq, x); renderRequests(); },
    task(t) { state.tasks.set(t.id, t); renderTasks(); },
    delivery(d) { state.deliveries.set(d.id, d); renderCallbacks(); },
    balance(b) { state.balances[b.api_key] = b.balances; renderBalances(); },
    clock(c) { state.clock = c; renderClock(); },
    state(c) { state.controls = c; renderControls(); },
  };
  function connect() {
    if (source) source.close();
    const query = new URLSearchParams({ keys: keys().join(",") });
    if (token()) query.set("token", token());
    source = new EventSource(`/__mock/events?${query}`);
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => handle(JSON.parse(e.data)));
    }
    source.onopen = () => { $("live").className = "live on"; $("live").textContent = "live"; };
    source.onerror = () => { $("live").className = "live off"; $("live").textContent = "reconnecting…"; };
  }

  async function start() {
    if (document.documentElement.hasAttribute("data-guarded") && !token()) {
      $("login").hidden = false; $("app").hidden = true;
      return;
    }
    try {
      await api("GET", "/__mock/clock");
    } catch (e) {
      if (e.status === 401) {
        $("login").hidden = false; $("app").hidden = true;
        $("login-error").textContent = token() ? "The admin token is wrong." : "";
        return;
      }
      throw e;
    }
    $("login").hidden = true; $("app").hidden = false;
    connect();
  }

  $("login").addEventListener("submit", (e) => { e.preventDefault(); sessionStorage.setItem(TOKEN, $("token").value); start(); });
  for (const id of ["f-provider", "f-operation", "f-key", "f-status", "f-outcome"]) $(id).addEventListener("input", renderRequests);
  $("advance-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("POST", "/__mock/clock/advance", { seconds: Number($("advance-seconds").value) });
      $("advance-result").textContent = `now ${clockText(r.now)}; ${r.ran} job(s) ran; ${r.pending} pending`;
    } catch (err) { $("advance-result").textContent = err.message; }
  });
  $("balance-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("balance-key").value.trim(); if (!key) return;
    sessionStorage.setItem(KEYS, JSON.stringify([...new Set([...keys(), key])])); $("balance-key").value = ""; connect();
  });
  $("fault-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { operation: $("fault-op").value, times: Number($("fault-times").value) || 1 };
    if ($("fault-code").value) body.code = Number($("fault-code").value);
    try { await api("POST", "/__mock/faults", body); $("fault-error").textContent = ""; } catch (err) { $("fault-error").textContent = err.message; }
  });
  $("faults-clear").addEventListener("click", () => api("DELETE", "/__mock/faults").catch((err) => alert(err.message)));
  $("script-set").addEventListener("click", async () => {
    try { await api("PUT", "/__mock/script", { steps: JSON.parse($("script").value || "[]") }); $("script-error").textContent = ""; }
    catch (err) { $("script-error").textContent = err.message; }
  });
  $("reset").addEventListener("click", () => {
    if (confirm("Reset the mock? Every resource, balance, exchange, fault and callback is forgotten.")) {
      api("POST", "/__mock/reset").catch((err) => alert(err.message));
    }
  });
  start();
})();
