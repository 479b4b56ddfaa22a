/* Whale's chat page: conversations, streamed answers with folded reasoning ("DeepThink"),
 * markdown, and — when the server runs with --accounts — sign-in, API keys, usage, and
 * conversations kept on the server.
 *
 * The one rule of this file: every string that comes from the model, the user or the server is
 * put into the page as text (textContent, Element.append of a string, createTextNode). No
 * innerHTML, no markup from strings, no eval. The one exception is an answer's markdown, which
 * web/render.js turns into markup and then cleans with DOMPurify before it reaches the page. The
 * server's Content-Security-Policy forbids inline scripts, so even a slip could not run code. */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  /* An element with attributes ("text" sets its text) and children (strings become text nodes). */
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    e.append(...kids);
    return e;
  }

  /* Browser storage, which a browser may refuse (private modes, policies): then nothing is kept. */
  const prefs = {
    get(k) { try { return localStorage.getItem(k); } catch (_) { return null; } },
    set(k, v) { try { localStorage.setItem(k, v); } catch (_) { /* not kept */ } },
  };

  const DRAFT_KEY = "whale.draft"; /* the question being typed, kept across reloads and offline */
  const CFG_KEY = "whale.config";  /* the last /web/config, to open offline */
  const S = {
    cfg: null,        /* GET /web/config */
    convs: [],        /* [{id, title, updated}], newest first */
    cur: null,        /* the open conversation {id, title, messages} */
    busy: null,       /* the generation in flight: {ctrl, conv, msg} */
    retry: null,      /* a pending automatic retry: {timer} */
    think: prefs.get("whale.think") !== "0",
    model: null,      /* the chosen model's id (one of S.cfg.models) */
    files: [],        /* text files attached to the question being written: [{name, text, size}] */
    reading: 0,       /* attached files still being read */
    known: new Map(), /* conversations this page has saved: newer than any copy being stored */
    routing: 0,       /* the latest navigation (older ones' answers are dropped) */
  };

  /* ---- talking to the server ----------------------------------------------------------------- */

  class HttpError extends Error {
    constructor(status, message, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  async function failure(r) {
    let msg = `the server answered ${r.status}`;
    try {
      const j = await r.json();
      if (j && j.error && typeof j.error.message === "string") msg = j.error.message;
    } catch (_) { /* not JSON */ }
    return new HttpError(r.status, msg, parseInt(r.headers.get("Retry-After") || "0", 10) || 0);
  }

  async function api(method, path, body) {
    const opt = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      opt.headers["Content-Type"] = "application/json";
      opt.body = JSON.stringify(body);
    }
    const r = await fetch(path, opt);
    if (!r.ok) throw await failure(r);
    return r.json();
  }

  const serverSide = () => S.cfg && S.cfg.accounts;

  /* Conversations: in this browser (local mode) or on the server, per user (--accounts). */
  const LOCAL_KEY = "whale.conversations";
  const local = {
    all() {
      try { return JSON.parse(prefs.get(LOCAL_KEY) || "{}") || {}; } catch (_) { return {}; }
    },
    save(all) { localStorage.setItem(LOCAL_KEY, JSON.stringify(all)); },
  };
  /* A conversation's messages as they are kept: failures are not part of it; a question's versions
   * keep the messages that followed each. */
  function kept(msgs) {
    return msgs.filter((m) => !m.error).map(({ role, content, reasoning, thought_s, versions, v }) => {
      const o = { role, content, reasoning, thought_s };
      if (versions && versions.length > 1) {
        o.versions = versions.map((x) => (x.tail ? { content: x.content, tail: kept(x.tail) } : { content: x.content }));
        o.v = v;
      }
      return o;
    });
  }

  const store = {
    async list() {
      if (serverSide()) return (await api("GET", "/user/conversations")).conversations;
      return Object.values(local.all()).map(({ id, title, updated }) => ({ id, title, updated }))
        .sort((a, b) => b.updated - a.updated);
    },
    async get(id) {
      if (serverSide()) return api("GET", `/user/conversations/${encodeURIComponent(id)}`);
      const c = local.all()[id];
      if (!c) throw new HttpError(404, "no such conversation");
      return c;
    },
    async put(c) {
      const messages = kept(c.messages);
      if (serverSide()) return api("PUT", `/user/conversations/${encodeURIComponent(c.id)}`, { title: c.title, messages });
      const all = local.all();
      all[c.id] = { id: c.id, title: c.title, updated: Math.floor(Date.now() / 1000), messages };
      local.save(all);
    },
    async del(id) {
      if (serverSide()) return api("DELETE", `/user/conversations/${encodeURIComponent(id)}`);
      const all = local.all();
      delete all[id];
      local.save(all);
    },
    async exportAll() {
      if (serverSide()) return api("GET", "/user/conversations/export");
      return { conversations: Object.values(local.all()) };
    },
  };

  function newId() {
    const b = new Uint8Array(12);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function copyText(text, button) {
    const done = () => {
      const was = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = was; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => {});
      return;
    }
    const t = el("textarea", { "aria-hidden": "true" });
    t.value = text;
    document.body.append(t);
    t.select();
    try { document.execCommand("copy"); done(); } catch (_) { /* nothing more to try */ }
    t.remove();
  }

  /* ---- the conversation view ---------------------------------------------------------------------- */

  function action(label, fn, title) {
    const b = el("button", { type: "button", text: label, title: title || label });
    b.addEventListener("click", fn);
    return b;
  }

  function thoughtSummary(m) {
    if (m.thinking) return "Thinking…";
    const s = m.thought_s;
    return s === undefined || s === null ? "Thought" : `Thought for ${s} second${s === 1 ? "" : "s"}`;
  }

  /* The nodes of one assistant message, kept on it to update while it streams. */
  function paintAssistant(m, node) {
    if (m.reasoning) {
      let d = node.querySelector("details.thought");
      if (!d) {
        d = el("details", { class: "thought", open: "" }, el("summary"), el("div", { class: "thought-body" }));
        node.prepend(d);
      }
      d.querySelector("summary").textContent = thoughtSummary(m);
      d.querySelector(".thought-body").textContent = m.reasoning;
    }
    const a = node.querySelector(".answer");
    a.replaceChildren(window.WhaleRender.markdown(m.content || "", copyText)); /* web/render.js */
    if (m.error) a.append(el("p", { text: m.error }));
    if (m.stopped) a.append(el("p", { class: "muted", text: "(stopped)" }));
    if (m.reconnecting) a.append(el("p", { class: "muted", text: "The connection dropped: reconnecting…" }));
    a.classList.toggle("cursor", !!m.live && !m.thinking);
    node.classList.toggle("error", !!m.error);
  }

  function messageNode(c, m, i) {
    const busy = !!S.busy || !!c.readonly; /* a shared conversation is read, not asked */
    if (m.role === "user") {
      const asked = splitFiles(m.content);
      const node = el("div", { class: "msg user" });
      if (asked.files.length) node.append(el("div", { class: "files" }, ...asked.files.map((f) => fileChip(f))));
      if (asked.text) node.append(el("div", { class: "bubble", text: asked.text }));
      const acts = el("div", { class: "actions" });
      const n = m.versions ? m.versions.length : 1;
      if (n > 1 && !c.readonly) { /* DeepSeek's < 2/2 >: the question's versions, each with the answers that followed it */
        const prev = action("‹", () => switchVersion(c, i, m.v - 1), "Previous version");
        const next = action("›", () => switchVersion(c, i, m.v + 1), "Next version");
        prev.disabled = busy || m.v === 0;
        next.disabled = busy || m.v === n - 1;
        acts.append(el("span", { class: "versions" }, prev, el("span", { class: "muted", text: `${m.v + 1}/${n}` }), next));
      }
      acts.append(action("Copy", (e) => copyText(asked.text || m.content, e.target)));
      if (!busy) {
        acts.append(action("Edit", () => editQuestion(c, i, node), "Edit this question and ask again"));
        if (i === c.messages.length - 1) acts.append(action("Send again", () => generate(c, 0)));
      }
      node.append(acts);
      return node;
    }
    const node = el("div", { class: "msg assistant" }, el("div", { class: "md answer" }));
    paintAssistant(m, node);
    m.node = node;
    if (!m.live) {
      const acts = el("div", { class: "actions" }, action("Copy", (e) => copyText(m.content, e.target)));
      if (!busy && i === c.messages.length - 1) acts.append(action("Regenerate", () => regenerate(c)));
      node.append(acts);
    }
    return node;
  }

  function renderChat() {
    const c = S.cur;
    const box = $("messages");
    box.replaceChildren(...(c ? c.messages.map((m, i) => messageNode(c, m, i)) : []));
    $("empty").hidden = !!(c && c.messages.length);
    $("title").textContent = c ? c.title : "New chat";
    document.title = c ? `${c.title} · Whale` : "Whale";
    $("send").hidden = !!S.busy;
    $("stop").hidden = !S.busy;
    const ro = !!(c && c.readonly);
    $("composer").hidden = ro;
    $("readonly-note").hidden = !ro;
    $("share").hidden = ro || !serverSide() || !S.cfg.user || !c || !c.messages.length || !!S.busy;
    if (!c || ro || $("share-panel").dataset.id !== c.id) $("share-panel").hidden = true;
    box.scrollTop = box.scrollHeight;
    renderList();
  }

  /* ---- share links (accounts): a read-only copy of the open conversation -------------------------- */

  async function share() {
    const c = S.cur;
    $("share").disabled = true;
    try {
      await store.put(c); /* the copy is of what is on the page now */
      const r = await api("POST", "/user/shares", { id: c.id });
      if (S.cur !== c) return;
      $("share-url").value = location.origin + r.path;
      $("share-text").textContent = "Anyone with this link can read this conversation as it is now. "
        + "What you ask later is not shared; sharing again makes a new link.";
      $("share-stop").hidden = false;
      $("share-panel").dataset.id = c.id;
      $("share-panel").hidden = false;
      $("share-url").select();
    } catch (e) {
      banner(`Could not share it: ${e.message}`);
    } finally {
      $("share").disabled = false;
    }
  }

  async function stopSharing() {
    const id = $("share-panel").dataset.id;
    try {
      await api("DELETE", `/user/shares/${encodeURIComponent(id)}`);
      $("share-url").value = "";
      $("share-text").textContent = "The link no longer works.";
      $("share-stop").hidden = true;
    } catch (e) {
      banner(`Could not stop sharing: ${e.message}`);
    }
  }

  /* #/s/<token>: someone's shared conversation, read-only (no account needed). */
  async function showShared(token) {
    const seq = ++S.routing;
    show("chat");
    try {
      const s = await api("GET", `/shared/${encodeURIComponent(token)}`);
      if (seq !== S.routing) return;
      S.cur = { id: null, title: s.title, messages: s.messages, readonly: true };
    } catch (e) {
      if (seq !== S.routing) return;
      S.cur = null;
      banner(e.status === 404 ? "This shared link does not work: it was stopped, or is mistyped."
        : `Could not open it: ${e.message}`);
    }
    renderChat();
  }

  /* The conversations whose title (or, kept in this browser, whose messages) hold every word of
   * the search box, ignoring case. A server's list has titles only: there the search is by title. */
  function matching() {
    const words = $("conv-search").value.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) return S.convs;
    const all = serverSide() ? {} : local.all();
    return S.convs.filter((v) => {
      const c = all[v.id];
      const text = [v.title || "", ...(c ? c.messages.map((m) => m.content || "") : [])].join("\n").toLowerCase();
      return words.every((w) => text.includes(w));
    });
  }

  function renderList() {
    const nav = $("conv-list");
    const shown = matching();
    nav.replaceChildren(...shown.map((v) => {
      const a = el("a", { href: `#/c/${encodeURIComponent(v.id)}`, text: v.title || "Untitled" });
      const ren = el("button", { type: "button", text: "✎", "aria-label": `Rename “${v.title}”`, title: "Rename" });
      const del = el("button", { type: "button", text: "✕", "aria-label": `Delete “${v.title}”`, title: "Delete" });
      const row = el("div", { class: "conv" + (S.cur && S.cur.id === v.id ? " active" : "") }, a, ren, del);
      ren.addEventListener("click", () => startRename(v, row, a));
      del.addEventListener("click", () => {
        if (del.dataset.armed) return removeConv(v.id);
        del.dataset.armed = "1";
        del.textContent = "Delete?";
        setTimeout(() => { delete del.dataset.armed; del.textContent = "✕"; }, 3000);
      });
      return row;
    }));
    if (!shown.length && S.convs.length) nav.append(el("div", { class: "none muted", text: "No chat matches." }));
  }

  const MAX_TITLE_BYTES = 200; /* UTF-8 bytes of a title, as the server keeps them */

  /* The title cut to whole characters that fit MAX_TITLE_BYTES. */
  function clipTitle(t) {
    const chars = Array.from(t), enc = new TextEncoder();
    while (enc.encode(chars.join("")).length > MAX_TITLE_BYTES) chars.pop();
    return chars.join("");
  }

  /* The row's title becomes a text box: Enter or leaving it keeps the new title, Esc keeps the old. */
  function startRename(v, row, link) {
    const box = el("input", { type: "text", "aria-label": "New title", maxlength: String(MAX_TITLE_BYTES) });
    box.value = v.title || "";
    let done = false;
    const finish = async (keep) => {
      if (done) return;
      done = true;
      const title = clipTitle(box.value.trim());
      if (keep && title && title !== v.title) await rename(v.id, title);
      else renderList();
    };
    box.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); finish(true); }
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); finish(false); }
    });
    box.addEventListener("blur", () => finish(true));
    link.replaceWith(box);
    for (const b of row.querySelectorAll("button")) b.hidden = true;
    box.focus();
    box.select();
  }

  /* A new title, kept where the conversation is kept (a change like any other: it comes first). */
  async function rename(id, title) {
    try {
      const c = S.cur && S.cur.id === id ? S.cur : await store.get(id);
      await store.put({ ...c, title });
      c.title = title; /* only once it is kept */
      if (S.known.has(id)) S.known.set(id, c);
    } catch (e) {
      banner(`Could not rename: ${e.message}`);
      return renderList();
    }
    S.convs = [{ id, title, updated: Date.now() / 1000 }, ...S.convs.filter((v) => v.id !== id)];
    if (S.cur && S.cur.id === id) renderChat();
    else renderList();
  }

  async function removeConv(id) {
    try {
      await store.del(id);
    } catch (e) {
      return banner(`Could not delete: ${e.message}`);
    }
    S.convs = S.convs.filter((v) => v.id !== id);
    S.known.delete(id);
    if (S.cur && S.cur.id === id) location.hash = "#/";
    else renderList();
  }

  async function save(c) {
    try {
      await store.put(c);
    } catch (e) {
      banner(`This conversation could not be saved: ${e.message}`);
      return;
    }
    S.known.set(c.id, c);
    S.convs = [{ id: c.id, title: c.title, updated: Date.now() / 1000 }, ...S.convs.filter((v) => v.id !== c.id)];
    renderList();
  }

  /* ---- asking -------------------------------------------------------------------------------------- */

  function banner(text, retryNow) {
    $("banner-text").textContent = text;
    $("banner").hidden = false;
    $("banner-retry").hidden = !retryNow;
    $("banner-retry").onclick = retryNow || null;
  }

  function hideBanner() {
    $("banner").hidden = true;
    if (S.retry) clearInterval(S.retry.timer);
    S.retry = null;
  }

  /* 429/503: say so, and ask again after Retry-After (at most 3 times on our own). */
  function busyRetry(c, err, attempt) {
    hideBanner(); /* at most one retry pending */
    const why = err.status === 429 ? "You are sending requests faster than your limit allows"
      : "The server is busy: every generation slot is taken";
    if (attempt >= 3) {
      banner(`${why}. Try again in a moment.`, () => { hideBanner(); generate(c, 0); });
      return;
    }
    let left = Math.max(1, Math.min(err.retryAfter || 2 ** attempt, 60));
    const show = () => banner(`${why}. Retrying in ${left} s…`, () => { hideBanner(); generate(c, attempt + 1); });
    show();
    const timer = setInterval(() => {
      if (!S.retry || S.retry.timer !== timer) return clearInterval(timer); /* replaced or dismissed */
      left -= 1;
      if (left > 0) return show();
      hideBanner();
      if (!S.busy && S.cur === c) generate(c, attempt + 1);
    }, 1000);
    S.retry = { timer };
  }

  /* The chosen model's entry in S.cfg.models: {id, aliases, reasoning, context, loaded}. */
  function chosen() {
    const list = S.cfg.models || [];
    return list.find((m) => m.id === S.model) || list[0] || { id: S.cfg.model, reasoning: S.cfg.reasoning };
  }

  function requestBody(c) {
    const body = {
      model: chosen().id,
      stream: true,
      stream_options: { resumable: true }, /* a dropped connection is taken up again (resume below) */
      messages: c.messages.filter((m) => !m.error).map(({ role, content }) => ({ role, content })),
    };
    if (chosen().reasoning) {
      const budget = $("budget").value;
      if (!S.think) body.reasoning_budget = 0;
      else if (budget) body.reasoning_budget = parseInt(budget, 10);
    }
    return body;
  }

  /* Read an answer's events into m; at.last is the id of the last event read ("<answer>:<n>"),
   * at.done whether its end came. */
  async function readStream(r, m, onDelta, at) {
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (line.startsWith("id:")) at.last = line.slice(3).trim();
          if (!line.startsWith("data:")) continue; /* ": keep-alive" while queued */
          const data = line.slice(5).trim();
          if (data === "[DONE]") { at.done = true; continue; }
          let j;
          try { j = JSON.parse(data); } catch (_) { continue; }
          if (j.error) m.error = `Error: ${j.error.message || "the server failed"}`;
          const d = j.choices && j.choices[0] && j.choices[0].delta;
          if (d) onDelta(d);
        }
      }
    }
  }

  /* Read the answer to its end; when the connection drops (a tunnel, a switch of network), read on
   * from the last event got, again and again for up to RESUME_MS, showing that it reconnects. */
  const RESUME_MS = 5 * 60 * 1000;
  async function readOn(r, m, onDelta, at, ctrl, repaint) {
    const until = Date.now() + RESUME_MS;
    for (let wait = 500; ; wait = Math.min(wait * 2, 5000)) {
      if (r) {
        try {
          await readStream(r, m, onDelta, at);
          if (at.done) return;
        } catch (e) {
          if (e.name === "AbortError" || !at.last) throw e;
        }
      }
      if (!at.last || Date.now() > until) throw new Error("the connection dropped");
      m.reconnecting = true;
      repaint();
      await new Promise((ok) => setTimeout(ok, wait));
      if (ctrl.signal.aborted) throw new DOMException("stopped", "AbortError");
      const id = at.last.slice(0, at.last.lastIndexOf(":"));
      r = null;
      try {
        r = await fetch(`/v1/chat/completions/${encodeURIComponent(id)}/events`, {
          credentials: "same-origin", signal: ctrl.signal, headers: { "Last-Event-ID": at.last },
        });
      } catch (e) {
        if (e.name === "AbortError") throw e; /* else still offline: wait and try again */
      }
      if (r && r.status === 404) throw new Error("the answer was lost while the connection was down");
      if (r && !r.ok) throw await failure(r);
      if (r) {
        m.reconnecting = false;
        wait = 250;
        repaint();
      }
    }
  }

  async function generate(c, attempt) {
    if (S.busy) return;
    hideBanner();
    const m = { role: "assistant", content: "", reasoning: "", live: true };
    const messages = requestBody(c);
    c.messages.push(m);
    const ctrl = new AbortController();
    const who = S.cfg.user; /* the conversation belongs to whoever was signed in when it was asked */
    let finish;
    const finished = new Promise((r) => { finish = r; }); /* settled once it is saved (sign-out waits) */
    S.busy = { ctrl, conv: c, msg: m, finished };
    renderChat();
    let tThink = null, frame = 0;
    const repaint = () => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        if (m.node) paintAssistant(m, m.node);
        const box = $("messages");
        if (box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
      });
    };
    let retryLater = null, signedOut = false;
    const at = { last: null, done: false };
    const onDelta = (d) => {
        if (d.reasoning_content) {
          if (tThink === null) tThink = performance.now();
          m.thinking = true;
          m.reasoning += d.reasoning_content;
        }
        if (d.content) {
          if (m.thinking) {
            m.thinking = false;
            m.thought_s = Math.max(1, Math.round((performance.now() - tThink) / 1000));
          }
          m.content += d.content;
        }
        repaint();
    };
    try {
      const r = await fetch("/v1/chat/completions", {
        method: "POST", credentials: "same-origin", signal: ctrl.signal,
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(messages),
      });
      if (!r.ok) throw await failure(r);
      await readOn(r, m, onDelta, at, ctrl, repaint);
    } catch (e) {
      if (e.name === "AbortError") {
        m.stopped = true;
        const id = at.last && at.last.slice(0, at.last.lastIndexOf(":"));
        if (id && !at.done) { /* the answer runs on without a reader for a while: stop it now */
          try { await fetch(`/v1/chat/completions/${encodeURIComponent(id)}`, { method: "DELETE", credentials: "same-origin" }); }
          catch (_) { /* offline: it stops by itself when no one reads it */ }
        }
      }
      else if (e.status === 429 || e.status === 503) retryLater = e;
      else if (e.status === 401 && serverSide()) {
        m.error = "Your session has ended: sign in again.";
        signedOut = true;
      } else if (e.status === 402) m.error = "Your balance is empty: add funds to keep chatting (see Usage and balance).";
      else m.error = `Error: ${e.message}`;
    }
    if (frame) cancelAnimationFrame(frame);
    if (m.thinking) m.thought_s = Math.max(1, Math.round((performance.now() - tThink) / 1000));
    m.thinking = false;
    delete m.live;
    delete m.reconnecting;
    delete m.node;
    S.busy = null;
    if (retryLater) c.messages.pop(); /* nothing was said: ask again later */
    if (!m.reasoning) delete m.reasoning;
    if (signedOut) {
      finish();
      return start("#/login");
    }
    if (S.cfg.user === who) { /* else signed out (or in as someone else) meanwhile: not theirs */
      if (S.cur === c) renderChat();
      await save(c);
      if (retryLater && S.cur === c && S.cfg.user === who) busyRetry(c, retryLater, attempt);
    }
    finish();
  }

  function stop() {
    if (S.busy) S.busy.ctrl.abort();
  }

  /* ---- attached text files ---------------------------------------------------------------------------
   * A question's files go before it in its text, framed as DeepSeek's own page frames uploads (the
   * template in DeepSeek-R1's README), so that they are kept with the conversation wherever it is
   * kept and any client sees the same text; the page shows them as chips. The caps keep a
   * question's files well inside the 1 MiB a server keeps per conversation (conversations.h); a
   * model's context is usually the tighter limit, and a prompt too long for it is refused by the
   * server with that reason. */
  const FILE_MAX_BYTES = 128 * 1024;
  const FILES_MAX = 4; /* per question */
  const FILE_HEAD = "[file name]: ", FILE_BEGIN = "\n[file content begin]\n", FILE_END = "\n[file content end]\n";

  function withFiles(files, text) {
    return files.map((f) => `${FILE_HEAD}${f.name}${FILE_BEGIN}${f.text}${FILE_END}`).join("") + text;
  }

  /* A question's text split into its framed files ({name, size}) and what was asked. */
  function splitFiles(content) {
    const files = [];
    let rest = content;
    while (rest.startsWith(FILE_HEAD)) {
      const b = rest.indexOf(FILE_BEGIN), e = b < 0 ? -1 : rest.indexOf(FILE_END, b + FILE_BEGIN.length);
      if (b < 0 || e < 0 || rest.slice(FILE_HEAD.length, b).includes("\n")) break;
      files.push({ name: rest.slice(FILE_HEAD.length, b), size: e - b - FILE_BEGIN.length });
      rest = rest.slice(e + FILE_END.length);
    }
    return { files, text: rest };
  }

  function fileChip(f, onRemove) {
    const kb = f.size < 1024 ? `${f.size} B` : `${Math.round(f.size / 1024)} KB`;
    const chip = el("span", { class: "file-chip", title: `${f.name} (${kb})` }, el("span", { text: "📄" }),
      el("span", { class: "name", text: f.name }), el("span", { class: "muted", text: kb }));
    if (onRemove) {
      const x = el("button", { type: "button", text: "✕", "aria-label": `Remove ${f.name}` });
      x.addEventListener("click", onRemove);
      chip.append(x);
    }
    return chip;
  }

  function paintAttachments() {
    $("attachments").replaceChildren(...S.files.map((f, i) => fileChip(f, () => {
      S.files.splice(i, 1);
      paintAttachments();
    })));
  }

  /* Files chosen in the dialog: text only (valid UTF-8, no NUL), each up to FILE_MAX_BYTES. */
  async function addFiles(list) {
    S.reading++;
    try {
      await readFiles(list);
    } finally {
      S.reading--;
    }
    paintAttachments();
  }

  async function readFiles(list) {
    for (const file of list) {
      if (S.files.length >= FILES_MAX) {
        banner(`At most ${FILES_MAX} files per question.`);
        break;
      }
      if (file.size > FILE_MAX_BYTES) {
        banner(`${file.name} is larger than ${FILE_MAX_BYTES / 1024} KB: attach a smaller file.`);
        continue;
      }
      let text;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(await file.arrayBuffer());
      } catch (_) {
        text = null;
      }
      if (text === null || text.includes("\u0000")) {
        banner(`${file.name} is not a text file: only text (code, notes) can be attached.`);
        continue;
      }
      S.files.push({ name: file.name.replace(/[\r\n]+/g, " ").slice(0, 200), text, size: file.size });
    }
  }

  async function ask(text) {
    if (S.busy || (!text.trim() && !S.files.length)) return;
    if (S.reading) return banner("Still reading the attached files: send again in a moment.");
    if (S.offline || navigator.onLine === false) /* the question stays in the box (and as a draft) */
      return banner("You are offline: your question is kept here; send it when the server can be reached.",
        () => start(location.hash));
    const files = S.files;
    let c = S.cur;
    if (!c || c.readonly) { /* (a shared conversation is never asked on: a new one starts) */
      const start = text.trim() || files[0].name;
      c = { id: newId(), title: clipTitle(Array.from(start.replace(/\s+/g, " ")).slice(0, 60).join("")), messages: [] };
      S.cur = c;
      history.replaceState(null, "", `#/c/${c.id}`);
    }
    const asked = { role: "user", content: withFiles(files, text) };
    const why = unkeepable(c, [...c.messages, asked]);
    if (why) return banner(`This question cannot be kept: ${why}. Attach less, or start a new chat.`);
    c.messages.push(asked);
    S.files = [];
    paintAttachments();
    $("input").value = "";
    prefs.set(DRAFT_KEY, "");
    autosize();
    await generate(c, 0);
  }

  function regenerate(c) {
    if (S.busy) return;
    if (c.messages.length && c.messages[c.messages.length - 1].role === "assistant") c.messages.pop();
    generate(c, 0);
  }

  /* Question i asked anew as `content`: what it was and everything after it are kept as a
   * version (m.versions: every version's {content}, the others' with the messages that followed
   * them as {content, tail}; m.v: the one shown, whose messages are the conversation's own). */
  /* Question i as it stands, with the messages that follow it: a version put aside. */
  function shelved(c, i) {
    return { content: c.messages[i].content, tail: c.messages.slice(i + 1).filter((x) => !x.error) };
  }

  function askAgain(c, i, content) {
    const m = c.messages[i];
    const versions = m.versions ? m.versions.slice() : [{ content: m.content }];
    versions[m.v || 0] = shelved(c, i);
    versions.push({ content });
    const asked = { role: "user", content, versions, v: versions.length - 1 };
    const why = unkeepable(c, [...c.messages.slice(0, i), asked]);
    if (why) return banner(`This edit cannot be kept: ${why}. Ask it in a new chat instead.`);
    c.messages.length = i;
    c.messages.push(asked);
    generate(c, 0);
  }

  /* Why the conversation with these messages could not be kept (the server's bounds, which the
   * browser's store keeps too: service/conversations.h), or null. */
  const CONV_MAX_BYTES = 1 << 20, CONV_MAX_MESSAGES = 2000, CONV_MAX_VERSIONS = 64, CONV_MAX_DEPTH = 8;

  function unkeepable(c, messages) {
    let count = 0, deepest = 0, most = 0;
    const walk = (msgs, depth) => {
      count += msgs.length;
      for (const m of msgs)
        if (m.versions && m.versions.length > 1) {
          deepest = Math.max(deepest, depth + 1);
          most = Math.max(most, m.versions.length);
          for (const x of m.versions) if (x.tail) walk(x.tail, depth + 1);
        }
    };
    const keptMsgs = kept(messages);
    walk(keptMsgs, 0);
    if (most > CONV_MAX_VERSIONS) return `a question keeps at most ${CONV_MAX_VERSIONS} versions`;
    if (deepest > CONV_MAX_DEPTH) return `edits nest at most ${CONV_MAX_DEPTH} deep`;
    if (count > CONV_MAX_MESSAGES) return `a conversation keeps at most ${CONV_MAX_MESSAGES} messages`;
    const bytes = new TextEncoder().encode(JSON.stringify({ title: c.title, messages: keptMsgs })).length;
    if (bytes > CONV_MAX_BYTES - 4096) return "a conversation keeps at most 1 MB (its files count)";
    return null;
  }

  function switchVersion(c, i, k) {
    const m = c.messages[i];
    if (S.busy || !m.versions || k < 0 || k >= m.versions.length || k === m.v) return;
    hideBanner(); /* a retry pending for the version left is dropped */
    m.versions[m.v] = shelved(c, i);
    const to = m.versions[k];
    m.versions[k] = { content: to.content };
    m.content = to.content;
    m.v = k;
    c.messages.length = i + 1;
    c.messages.push(...(to.tail || []));
    renderChat();
    save(c);
  }

  function editQuestion(c, i, node) {
    const box = el("textarea", { "aria-label": "Edit your question" });
    const asked = splitFiles(c.messages[i].content); /* its files stay attached */
    const files = c.messages[i].content.slice(0, c.messages[i].content.length - asked.text.length);
    box.value = asked.text;
    const send = el("button", { type: "button", class: "btn primary", text: "Send" });
    const cancel = el("button", { type: "button", class: "btn", text: "Cancel" });
    const form = el("div", { class: "edit-box" }, box, el("div", { class: "row" }, send, cancel));
    node.replaceChildren(form);
    if (asked.files.length) node.prepend(el("div", { class: "files" }, ...asked.files.map((f) => fileChip(f))));
    box.focus();
    cancel.addEventListener("click", renderChat);
    const go = () => {
      const text = box.value;
      if (!text.trim() && !files) return;
      askAgain(c, i, files + text);
    };
    send.addEventListener("click", go);
    box.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); go(); }
      if (e.key === "Escape") renderChat();
    });
  }

  function autosize() {
    const t = $("input");
    t.style.height = "auto";
    t.style.height = `${Math.min(t.scrollHeight, window.innerHeight * 0.4)}px`;
  }

  /* DeepThink follows the model: on a reasoning model it turns thinking on and off; on a plain
   * one it switches to the first reasoning model served, if any. */
  function paintThink() {
    const b = $("think"), m = chosen();
    const other = (S.cfg.models || []).find((x) => x.reasoning);
    b.disabled = !m.reasoning && !other;
    b.setAttribute("aria-pressed", String(m.reasoning && S.think));
    b.title = m.reasoning ? "Reason before answering (DeepSeek-R1 style)"
      : other ? `Reason before answering: switches to ${other.id}`
        : "This model does not reason: serve an R1-format model (DeepSeek-R1 or R1-Distill) for DeepThink";
    $("budget-label").hidden = !(m.reasoning && S.think);
  }

  /* The model picker: shown when the server serves several; the choice is kept in this browser. */
  function paintModels() {
    const list = S.cfg.models || [];
    const kept = prefs.get("whale.model");
    S.model = (list.find((m) => m.id === kept) || list[0] || { id: S.cfg.model }).id;
    const pick = $("model-pick");
    pick.replaceChildren(...list.map((m) => {
      const o = document.createElement("option");
      o.value = m.id;
      o.textContent = m.id + (m.reasoning ? " · reasoning" : "");
      return o;
    }));
    pick.value = S.model;
    pick.hidden = list.length < 2;
    $("model").hidden = list.length >= 2;
    $("model").textContent = chosen().id + (chosen().reasoning ? " · reasoning model" : "");
  }

  function chooseModel(id) {
    S.model = id;
    prefs.set("whale.model", id);
    $("model-pick").value = id;
    if (chosen().reasoning) { /* a reasoning model is chosen to reason */
      S.think = true;
      prefs.set("whale.think", "1");
    }
    paintThink();
  }

  /* ---- accounts: sign-in, keys, usage ---------------------------------------------------------------- */

  let signingUp = false;

  function paintAuth() {
    $("auth-title").textContent = signingUp ? "Create an account" : "Sign in";
    $("auth-submit").textContent = signingUp ? "Sign up" : "Sign in";
    $("auth-switch").textContent = signingUp ? "Have an account? Sign in" : "No account yet? Sign up";
    $("auth-switch").hidden = S.cfg.signup === "closed";
    $("auth-invite-label").hidden = !(signingUp && S.cfg.signup === "invite");
    $("auth-password").autocomplete = signingUp ? "new-password" : "current-password";
    $("auth-error").textContent = "";
  }

  async function submitAuth(e) {
    e.preventDefault();
    const body = { email: $("auth-email").value.trim(), password: $("auth-password").value };
    if (signingUp && S.cfg.signup === "invite") body.invite = $("auth-invite").value.trim();
    try {
      /* a sign-up starts no session (it answers the same for a taken email): sign in next; a
       * taken email then gets the sign-in's one generic failure, unless the password is its own */
      if (signingUp) await api("POST", "/auth/register", body);
      await api("POST", "/auth/login", { email: body.email, password: body.password });
    } catch (err) {
      $("auth-error").textContent = err.message;
      return;
    }
    $("auth-password").value = "";
    await start("#/");
  }

  const fmtDate = (t) => (t ? new Date(t * 1000).toLocaleString() : "—");

  async function showKeys() {
    let keys;
    try {
      keys = (await api("GET", "/user/keys")).keys;
    } catch (e) {
      return banner(`Could not list your keys: ${e.message}`);
    }
    $("keys-table").tBodies[0].replaceChildren(...keys.filter((k) => !k.revoked).map((k) => {
      const revoke = action("Revoke", async () => {
        try {
          await api("POST", "/user/keys/revoke", { prefix: k.prefix });
        } catch (e) {
          return banner(`Could not revoke: ${e.message}`);
        }
        showKeys();
      });
      return el("tr", {}, el("td", {}, el("code", { text: `${k.prefix}…` })), el("td", { text: fmtDate(k.created) }),
        el("td", { text: fmtDate(k.last_used) }), el("td", { text: k.expires ? fmtDate(k.expires) : "never" }),
        el("td", {}, revoke));
    }));
  }

  async function createKey() {
    let k;
    try {
      k = await api("POST", "/user/keys", {});
    } catch (e) {
      return banner(`Could not create a key: ${e.message}`);
    }
    $("key-new-text").textContent = k.key;
    $("key-new").hidden = false;
    showKeys();
  }

  /* ---- usage charts: tokens (cache hit, miss, output) and spend per day, the last USAGE_DAYS days
   * with use, as SVG built node by node (no markup, no styles: classes coloured by app.css) */
  const USAGE_DAYS = 30;
  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    e.append(...kids);
    return e;
  }

  function compact(x) {
    if (x >= 1e6) return `${+(x / 1e6).toFixed(1)}M`;
    if (x >= 1e3) return `${+(x / 1e3).toFixed(1)}k`;
    return String(x < 1 ? +x.toPrecision(2) : Math.round(x));
  }

  /* One bar chart: days along x, each day's parts stacked ([class, value]), the largest day's
   * total at the top of the axis; each bar's title names its figures. */
  function barChart(title, days, parts, unit, legend) {
    const W = 360, H = 160, L = 56, B = 22, T = 8;
    const totals = days.map((d) => parts(d).reduce((a, [, v]) => a + v, 0));
    const top = Math.max(...totals, 0) || 1;
    const bw = Math.min((W - L - 4) / Math.max(days.length, 1), 48);
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
    g.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }),
      svg("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, compact(top)),
      svg("text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0"));
    days.forEach((d, i) => {
      let y = H - B;
      const x = L + 2 + i * bw;
      const tip = svg("title", {}, `${d.date}: ${parts(d).map(([k, v]) => `${k} ${compact(v)}`).join(", ")} ${unit}`);
      const bar = svg("g", { class: "day" }, tip);
      for (const [k, v] of parts(d)) {
        const h = (v / top) * (H - B - T);
        if (h <= 0) continue;
        y -= h;
        bar.append(svg("rect", { class: `bar ${k}`, x: x + bw * 0.15, y, width: Math.max(bw * 0.7, 1), height: h }));
      }
      g.append(bar);
      if (days.length <= 8 || i === 0 || i === days.length - 1)
        g.append(svg("text", { x: x + bw / 2, y: H - 8, "text-anchor": "middle" }, d.date.slice(5)));
    });
    return el("div", { class: "chart" }, el("h3", { text: title }), g,
      el("div", { class: "legend" }, ...legend.map(([k, label]) => el("span", {}, el("i", { class: k }), label))));
  }

  function usageCharts(rows) {
    const byDay = new Map();
    for (const r of rows) {
      const d = byDay.get(r.date) || { date: r.date, hit: 0, miss: 0, out: 0, spend: 0, currency: r.currency };
      d.hit += r.prompt_cache_hit_tokens;
      d.miss += r.prompt_cache_miss_tokens;
      d.out += r.completion_tokens;
      d.spend += parseFloat(r.cost) || 0;
      byDay.set(r.date, d);
    }
    const days = [...byDay.values()].sort((a, b) => (a.date < b.date ? -1 : 1)).slice(-USAGE_DAYS);
    if (!days.length) return [el("p", { class: "muted", text: "No use yet." })];
    const cur = days[days.length - 1].currency || "";
    return [
      barChart("Tokens per day", days, (d) => [["hit", d.hit], ["miss", d.miss], ["out", d.out]], "tokens",
        [["hit", "cache hit"], ["miss", "cache miss"], ["out", "output"]]),
      barChart(`Spend per day (${cur})`, days, (d) => [["spend", d.spend]], cur, [["spend", "spend"]]),
    ];
  }

  async function showUsage() {
    try {
      const [b, u] = await Promise.all([api("GET", "/user/balance"), api("GET", "/user/usage")]);
      const info = (b.balance_infos || [])[0];
      $("balance").textContent = info ? `${info.total_balance} ${info.currency}` : "—";
      $("usage-charts").replaceChildren(...usageCharts(u.usage));
      $("usage-table").tBodies[0].replaceChildren(...u.usage.slice().reverse().map((r) => el("tr", {},
        el("td", { text: r.date }), el("td", { text: r.key_prefix === "web" ? "chat page" : `${r.key_prefix}…` }),
        el("td", { text: String(r.requests) }), el("td", { text: String(r.prompt_cache_hit_tokens) }),
        el("td", { text: String(r.prompt_cache_miss_tokens) }), el("td", { text: String(r.completion_tokens) }),
        el("td", { text: `${r.cost} ${r.currency}` }))));
    } catch (e) {
      banner(`Could not load your usage: ${e.message}`);
    }
  }

  async function exportAll() {
    let data;
    try {
      data = await store.exportAll();
    } catch (e) {
      return banner(`Could not export: ${e.message}`);
    }
    const blob = new Blob([JSON.stringify({ exported: new Date().toISOString(), ...data }, null, 2)],
      { type: "application/json" });
    const a = el("a", { href: URL.createObjectURL(blob), download: "whale-conversations.json" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  /* ---- navigation ----------------------------------------------------------------------------------- */

  function show(view) {
    for (const v of ["chat", "auth", "keys", "usage"]) $(`view-${v}`).hidden = v !== view;
    $("side").classList.remove("open");
    $("menu").setAttribute("aria-expanded", "false");
  }

  async function route() {
    const h = location.hash || "#/";
    const shared = /^#\/s\/([\w-]{1,64})$/.exec(h);
    if (shared) return showShared(shared[1]);
    if (S.cur && S.cur.readonly) S.cur = null; /* left the shared view */
    const signedOut = serverSide() && !S.cfg.user;
    if (signedOut || h === "#/login" || h === "#/signup") {
      if (!signedOut) return void (location.hash = "#/");
      signingUp = h === "#/signup" && S.cfg.signup !== "closed";
      paintAuth();
      $("title").textContent = signingUp ? "Sign up" : "Sign in";
      return show("auth");
    }
    if (h === "#/keys") {
      $("title").textContent = "API keys";
      $("key-new").hidden = true;
      show("keys");
      return showKeys();
    }
    if (h === "#/usage") {
      $("title").textContent = "Usage and balance";
      show("usage");
      return showUsage();
    }
    show("chat");
    const m = /^#\/c\/([\w-]{1,64})$/.exec(h);
    if (!m) S.cur = null;
    else if (!S.cur || S.cur.id !== m[1]) {
      const seq = ++S.routing;
      if (S.busy && S.busy.conv.id === m[1]) S.cur = S.busy.conv;
      else if (S.known.has(m[1])) S.cur = S.known.get(m[1]);
      else {
        try {
          const c = await store.get(m[1]);
          if (seq !== S.routing) return; /* the user has gone elsewhere since */
          S.cur = c;
        } catch (e) {
          if (seq !== S.routing) return;
          S.cur = null;
          banner(e.status === 404 ? "There is no such conversation." : `Could not open it: ${e.message}`);
        }
      }
    }
    renderChat();
    $("input").focus();
  }

  async function start(hash) {
    if (S.busy) S.busy.ctrl.abort(); /* a new sign-in state: nothing of the old one goes on */
    hideBanner();
    S.offline = false;
    try {
      S.cfg = await api("GET", "/web/config");
      prefs.set(CFG_KEY, JSON.stringify(S.cfg));
    } catch (e) {
      /* offline (or the server down): in local mode the conversations are in this browser, so the
       * page opens with them, as it was last configured; questions wait as drafts */
      let was = null;
      try { was = JSON.parse(prefs.get(CFG_KEY) || "null"); } catch (_) { /* none kept */ }
      if (e.status || !was || was.accounts) {
        banner(`Cannot reach the server: ${e.message}`, () => start(hash));
        document.body.dataset.ready = "1";
        return;
      }
      S.cfg = was;
      S.offline = true;
    }
    paintModels();
    $("account").hidden = !(S.cfg.accounts && S.cfg.user);
    $("who").textContent = S.cfg.user || "";
    paintThink();
    S.convs = [];
    S.cur = null;
    S.known.clear();
    if (!serverSide() || S.cfg.user) {
      try {
        S.convs = await store.list();
      } catch (e) {
        banner(`Could not list your conversations: ${e.message}`);
      }
    }
    if (hash && location.hash !== hash) location.hash = hash;
    else await route();
    if (S.offline) banner("The server cannot be reached: your conversations are here to read, and what you "
      + "type is kept until it can be sent.", () => start(location.hash));
    document.body.dataset.ready = "1"; /* drawn from the server's answers (tests wait for it) */
  }

  /* ---- the installed app: the service worker (web/sw.js) and its updates ------------------------------ */

  /* A new server's files wait in a new worker: offer to reload onto them (never a mix of old and new). */
  function offerUpdate(worker) {
    $("update").hidden = false;
    $("update-reload").onclick = () => {
      S.updating = true; /* the worker takes over, then the page reloads onto its files */
      worker.postMessage({ type: "update" });
    };
  }

  function installWorker() {
    if (!("serviceWorker" in navigator)) return;
    let reloading = false;
    navigator.serviceWorker.addEventListener("controllerchange", () => {
      if (S.updating && !reloading) { reloading = true; location.reload(); }
    });
    navigator.serviceWorker.register("/sw.js").then((reg) => {
      const watch = (w) => w && w.addEventListener("statechange", () => {
        if (w.state === "installed" && navigator.serviceWorker.controller) offerUpdate(w);
      });
      if (reg.waiting && navigator.serviceWorker.controller) offerUpdate(reg.waiting);
      watch(reg.installing);
      reg.addEventListener("updatefound", () => watch(reg.installing));
      document.addEventListener("visibilitychange", () => { if (!document.hidden) reg.update().catch(() => {}); });
    }).catch(() => { /* no worker (a plain http address, not localhost): the page works online only */ });
  }

  function paintTheme() {
    const t = prefs.get("whale.theme");
    if (t) document.documentElement.dataset.theme = t;
    const dark = t ? t === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
    $("theme").textContent = dark ? "Light theme" : "Dark theme";
  }

  function wire() {
    $("conv-search").addEventListener("input", renderList);
    $("attach").addEventListener("click", () => $("file").click());
    $("file").addEventListener("change", async () => {
      await addFiles([...$("file").files]);
      $("file").value = "";
    });
    window.WhaleRender.onLibrary(() => { if (S.cur) renderChat(); }); /* math or code drawn before it came */
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      ask($("input").value);
    });
    $("input").addEventListener("input", () => prefs.set(DRAFT_KEY, $("input").value));
    $("input").value = prefs.get(DRAFT_KEY) || "";
    $("input").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        ask($("input").value);
      }
    });
    $("input").addEventListener("input", autosize);
    $("stop").addEventListener("click", stop);
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && S.busy) stop();
      if (e.key.toLowerCase() === "o" && e.ctrlKey && e.shiftKey) {
        e.preventDefault();
        location.hash = "#/";
      }
    });
    $("new-chat").addEventListener("click", () => {
      location.hash = "#/";
      S.cur = null;
      route();
    });
    $("think").addEventListener("click", () => {
      const reasoner = (S.cfg.models || []).find((x) => x.reasoning);
      if (!chosen().reasoning && reasoner) return chooseModel(reasoner.id);
      S.think = !S.think;
      prefs.set("whale.think", S.think ? "1" : "0");
      paintThink();
    });
    $("model-pick").addEventListener("change", (e) => chooseModel(e.target.value));
    $("share").addEventListener("click", share);
    $("share-stop").addEventListener("click", stopSharing);
    $("share-copy").addEventListener("click", (e) => copyText($("share-url").value, e.target));
    $("share-close").addEventListener("click", () => { $("share-panel").hidden = true; });
    $("banner-close").addEventListener("click", hideBanner);
    $("menu").addEventListener("click", () => {
      const open = $("side").classList.toggle("open");
      $("menu").setAttribute("aria-expanded", String(open));
    });
    $("theme").addEventListener("click", () => {
      const dark = document.documentElement.dataset.theme
        ? document.documentElement.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
      prefs.set("whale.theme", dark ? "light" : "dark");
      paintTheme();
    });
    $("export").addEventListener("click", exportAll);
    $("auth-form").addEventListener("submit", submitAuth);
    $("auth-switch").addEventListener("click", () => { location.hash = signingUp ? "#/login" : "#/signup"; });
    $("sign-out").addEventListener("click", async () => {
      hideBanner();
      if (S.busy) { /* stop the answer and keep it, while the session still stands */
        const { finished } = S.busy;
        S.busy.ctrl.abort();
        await finished;
      }
      try { await api("POST", "/auth/logout", {}); } catch (_) { /* signed out either way */ }
      await start("#/login");
    });
    $("key-create").addEventListener("click", createKey);
    $("key-copy").addEventListener("click", (e) => copyText($("key-new-text").textContent, e.target));
    window.addEventListener("hashchange", route);
  }

  paintTheme();
  wire();
  start();
  installWorker();
})();
