// Loopdesk customer chat: a small WebSocket client, no build step.
// Protocol: docs/chat-protocol.md. Every message the customer sends waits in an outbox
// (kept in localStorage) until the server acks it, and is re-sent with the same
// client_id after a reconnect or reload: the server deduplicates, nothing is lost.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("chat-config").textContent);
  const $ = (role) => document.querySelector(`[data-role="${role}"]`);
  const list = $("messages");
  const composer = $("composer");
  const input = composer.querySelector("textarea");
  const humanButton = document.querySelector('[data-action="human"]');
  const endButton = document.querySelector('[data-action="end"]');

  let conversationId = config.conversationId || "";
  let socket = null;
  let attempt = 0;
  let lastSeq = 0;
  let ended = false;
  let closedForGood = false;
  let reconnectTimer = null;
  const shown = new Map(); // seq -> element
  const streams = new Map(); // reply_to_id -> {el, parts}
  const pendingEls = new Map(); // client_id -> element
  const answered = new Set(); // reply_to_id of answers already shown (late deltas are ignored)
  let lastFrameAt = Date.now();
  let handling = "assistant";
  let typingTimer = null;
  let lastTypingSent = 0;

  // --- outbox -----------------------------------------------------------------------------
  const outboxKey = () => `loopdesk.outbox.${conversationId}`;
  function outboxLoad() {
    try { return JSON.parse(localStorage.getItem(outboxKey()) || "[]"); } catch (e) { return []; }
  }
  function outboxSave(items) { localStorage.setItem(outboxKey(), JSON.stringify(items)); }
  function outboxAdd(item) { const items = outboxLoad(); items.push(item); outboxSave(items); }
  function outboxRemove(clientId) { outboxSave(outboxLoad().filter((m) => m.client_id !== clientId)); }

  function newClientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "c-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  // --- rendering --------------------------------------------------------------------------
  function timeLabel(iso) {
    const d = iso ? new Date(iso) : new Date();
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function speaker(m) {
    if (m.role === "customer") return "You";
    if (m.role === "assistant") return "Assistant";
    if (m.role === "agent") return (m.author_name || "Support agent") + " · Support team";
    return "";
  }

  function bubble(role, who, text, iso) {
    const li = document.createElement("li");
    li.className = `msg ${role}`;
    if (who) {
      const w = document.createElement("div");
      w.className = "who";
      w.textContent = who;
      li.appendChild(w);
    }
    const b = document.createElement("div");
    b.className = "bubble";
    b.textContent = text;
    li.appendChild(b);
    const t = document.createElement("time");
    t.textContent = timeLabel(iso);
    if (iso) t.dateTime = iso;
    li.appendChild(t);
    return li;
  }

  // Sources are numbered like the [n] markers in the answer; a help article's source
  // opens its page at the cited passage, in a new tab.
  function addSources(li, sources) {
    if (!sources || !sources.length) return;
    const div = document.createElement("div");
    div.className = "sources";
    div.textContent = "Sources:";
    const ol = document.createElement("ol");
    sources.forEach((s, i) => {
      const item = document.createElement("li");
      item.dataset.slug = s.slug || "";
      const number = document.createElement("span");
      number.className = "n";
      number.textContent = `[${i + 1}]`;
      item.appendChild(number);
      const label = s.title || s.slug;
      if (s.slug && (!s.kind || s.kind === "article")) {
        const link = document.createElement("a");
        link.href = `/help/${encodeURIComponent(s.slug)}/` + (s.anchor ? `#${encodeURIComponent(s.anchor)}` : "");
        link.target = "_blank";
        link.rel = "noopener";
        link.textContent = label;
        item.appendChild(link);
      } else {
        item.appendChild(document.createTextNode(label));
      }
      ol.appendChild(item);
    });
    div.appendChild(ol);
    li.insertBefore(div, li.querySelector("time"));
  }

  // Messages are placed in seq order, so a replay after a reconnect slots in correctly.
  function place(li, seq) {
    li.dataset.seq = seq;
    const later = [...list.querySelectorAll("li[data-seq]")].find((el) => Number(el.dataset.seq) > seq);
    const firstPending = list.querySelector("li.pending, li.streaming");
    list.insertBefore(li, later || firstPending || null);
  }

  function scrollDown() { list.scrollTop = list.scrollHeight; }

  function renderMessage(m) {
    if (shown.has(m.seq)) return; // never twice
    const welcome = $("welcome");
    if (welcome) welcome.remove();
    const li = bubble(m.role, speaker(m), m.text, m.created_at);
    li.dataset.messageId = m.id;
    if (m.client_id) li.dataset.clientId = m.client_id;
    if (m.role === "assistant") {
      addSources(li, m.sources);
      // An answer from the team's approved answers (answer memory) cites it first.
      const fromTeam = (m.sources || []).some((s) => s.kind === "answer");
      if (m.provider === "local") {
        const tag = document.createElement("div");
        tag.className = "offline-tag";
        tag.textContent = fromTeam
          ? "Offline assistant: an answer our support team approved"
          : "Offline assistant: quoted from our help articles";
        li.insertBefore(tag, li.querySelector("time"));
      }
    }
    if (m.client_id && pendingEls.has(m.client_id)) {
      pendingEls.get(m.client_id).remove();
      pendingEls.delete(m.client_id);
      outboxRemove(m.client_id);
    }
    if (m.reply_to_id && m.role !== "customer") answered.add(m.reply_to_id);
    if (m.reply_to_id && streams.has(m.reply_to_id) && m.role !== "customer") {
      streams.get(m.reply_to_id).el.remove();
      streams.delete(m.reply_to_id);
    }
    if (m.role === "assistant" || m.role === "system" || m.role === "agent") {
      setThinking(false);
      $("stalled").hidden = true;
    }
    shown.set(m.seq, li);
    place(li, m.seq);
    lastSeq = Math.max(lastSeq, m.seq);
    scrollDown();
  }

  function renderPending(item) {
    const li = bubble("customer pending", "You", item.text, null);
    li.dataset.clientId = item.client_id;
    list.appendChild(li);
    pendingEls.set(item.client_id, li);
    const welcome = $("welcome");
    if (welcome) welcome.remove();
    scrollDown();
  }

  // "Thinking" never lasts forever: if neither an answer nor the server's failure notice
  // arrives within the turn's time limit, say so and offer a person.
  let thinkingTimer = null;
  function setThinking(on) {
    $("thinking").hidden = !on;
    clearTimeout(thinkingTimer);
    if (on) {
      $("stalled").hidden = true;
      thinkingTimer = setTimeout(turnStalled, config.turnTimeoutMs || 35000);
      scrollDown();
    }
  }
  function turnStalled() {
    if ($("thinking").hidden) return;
    $("thinking").hidden = true;
    $("stalled").hidden = false;
    send({ type: "resume", after_seq: lastSeq }); // the failure notice may be waiting
    scrollDown();
  }

  function setStatus(state) {
    const status = $("status");
    if (state.handling) handling = state.handling;
    if (state.status === "ended") status.textContent = "Conversation ended";
    else if (state.handling === "human") status.textContent = `${state.agent_name || "An agent"} from our support team is with you`;
    else if (state.handling === "waiting_for_human") status.textContent = "Waiting for a person from our team…";
    else status.textContent = "Assistant · usually answers in seconds";
    if (state.handling !== "waiting_for_human") showQueue(null);
    humanButton.disabled = state.status === "ended" || state.handling !== "assistant";
    endButton.disabled = state.status === "ended";
    if (state.status === "ended") conversationEnded();
  }

  // Waiting for a person: the place in the queue and an honest estimate, live.
  function showQueue(q) {
    const el = $("queue");
    let text = "";
    if (q && q.state === "assigned") text = `${q.agent_name || "A person from our team"} will be with you shortly.`;
    else if (q && q.state === "queued") {
      text = q.position === 1 ? "You are next in line" : `You are number ${q.position} in line`;
      if (!q.someone_on_duty) text += " · nobody from our team is on duty right now; we will reply as soon as someone is";
      else if (q.estimate_minutes) text += ` · about ${q.estimate_minutes} min (from our last ${q.estimate_samples} conversations)`;
      else text += " · we cannot estimate the wait yet";
      text += ".";
    }
    el.textContent = text;
    el.hidden = !text;
  }

  function conversationEnded() {
    ended = true;
    input.disabled = true;
    composer.querySelector("button").disabled = true;
    input.placeholder = "This conversation has ended.";
    setThinking(false);
    if (!localStorage.getItem(`loopdesk.rated.${conversationId}`)) $("rating").hidden = false;
  }

  function connectionNotice(text) {
    const el = $("connection");
    el.textContent = text || "";
    el.hidden = !text;
  }

  // --- socket -----------------------------------------------------------------------------
  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(frame)); return true; }
    return false;
  }

  function flushOutbox() {
    for (const item of outboxLoad()) {
      if (!pendingEls.has(item.client_id) && !shownClientId(item.client_id)) renderPending(item);
      send({ type: "message", client_id: item.client_id, text: item.text });
    }
  }

  function shownClientId(clientId) {
    return [...list.querySelectorAll("li[data-client-id]")].some((el) => el.dataset.clientId === clientId && !el.classList.contains("pending"));
  }

  function connect() {
    if (!conversationId || closedForGood) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${config.wsPath}${conversationId}/`);
    socket.onopen = () => {
      attempt = 0;
      connectionNotice("");
      send({ type: "resume", after_seq: lastSeq });
    };
    socket.onmessage = (event) => { lastFrameAt = Date.now(); handle(JSON.parse(event.data)); };
    socket.onclose = (event) => {
      socket = null;
      if (event.code === 4403 || event.code === 4404) {
        closedForGood = true;
        connectionNotice(event.code === 4404 ? "This conversation does not exist." : "This conversation belongs to someone else.");
        return;
      }
      // Exponential backoff with jitter: 0.5s, 1s, 2s ... up to 15s.
      const delay = Math.min(15000, 500 * 2 ** attempt) * (0.75 + Math.random() / 2);
      attempt += 1;
      connectionNotice(`Connection lost. Reconnecting in ${Math.round(delay / 1000)}s…`);
      clearTimeout(reconnectTimer);
      reconnectTimer = setTimeout(connect, delay);
    };
  }

  function handle(frame) {
    switch (frame.type) {
      case "conversation.state":
        setStatus(frame);
        break;
      case "queue":
        showQueue(frame);
        break;
      case "replay.done":
        flushOutbox();
        break;
      case "message":
        renderMessage(frame.message);
        break;
      case "ack": {
        outboxRemove(frame.client_id);
        const el = pendingEls.get(frame.client_id);
        if (el) el.classList.remove("failed");
        break;
      }
      case "assistant.thinking":
        setThinking(true);
        break;
      case "assistant.delta": {
        if (answered.has(frame.reply_to_id)) break;
        setThinking(false);
        let stream = streams.get(frame.reply_to_id);
        if (!stream) {
          const el = bubble("assistant streaming", "Assistant", "", null);
          list.appendChild(el);
          stream = { el, parts: [] };
          streams.set(frame.reply_to_id, stream);
        }
        stream.parts[frame.index] = frame.delta;
        stream.el.querySelector(".bubble").textContent = stream.parts.join("");
        scrollDown();
        break;
      }
      case "assistant.cancelled": {
        const stream = streams.get(frame.reply_to_id);
        if (stream) { stream.el.remove(); streams.delete(frame.reply_to_id); }
        setThinking(false);
        break;
      }
      case "typing": {
        const el = $("typing");
        if (frame.role !== "agent") break;
        el.textContent = frame.is_typing ? `${frame.author_name || "An agent"} is typing…` : "";
        el.hidden = !frame.is_typing;
        clearTimeout(typingTimer);
        if (frame.is_typing) typingTimer = setTimeout(() => { el.hidden = true; }, 6000);
        break;
      }
      case "feedback.saved":
        localStorage.setItem(`loopdesk.rated.${conversationId}`, "1");
        $("rating").hidden = true;
        $("thanks").hidden = false;
        break;
      case "error": {
        if (frame.client_id && pendingEls.has(frame.client_id)) {
          const el = pendingEls.get(frame.client_id);
          el.classList.add("failed");
          el.querySelector(".who").textContent = `Not sent: ${frame.message}`;
          pendingEls.delete(frame.client_id);
          outboxRemove(frame.client_id);
        } else {
          connectionNotice(frame.message);
          setTimeout(() => connectionNotice(""), 5000);
        }
        break;
      }
      default:
        break;
    }
  }

  // --- actions ----------------------------------------------------------------------------
  function csrfToken() {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function startConversation(title) {
    const response = await fetch(config.startUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({ title: title.slice(0, 80) }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || "Could not start a conversation.");
    conversationId = body.id;
    history.replaceState(null, "", `?c=${conversationId}`);
    const historyList = $("history");
    const empty = historyList.querySelector(".empty");
    if (empty) empty.remove();
    const li = document.createElement("li");
    li.innerHTML = `<a href="?c=${conversationId}" class="current"></a>`;
    li.firstChild.textContent = title.slice(0, 40);
    historyList.prepend(li);
  }

  composer.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || ended) return;
    if (text.length > config.maxChars) { connectionNotice(`Messages are at most ${config.maxChars} characters.`); return; }
    input.value = "";
    try {
      if (!conversationId) { await startConversation(text); }
    } catch (error) {
      connectionNotice(error.message);
      input.value = text;
      return;
    }
    const item = { client_id: newClientId(), text };
    // The message ends this bout of typing: the next keystroke announces typing at once.
    lastTypingSent = 0;
    outboxAdd(item);
    renderPending(item);
    if (!socket) connect(); // the outbox is flushed after the replay
    else send({ type: "message", client_id: item.client_id, text });
  });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); composer.requestSubmit(); }
  });
  input.addEventListener("input", () => {
    const now = Date.now();
    if (now - lastTypingSent > 3000) { lastTypingSent = now; send({ type: "typing", is_typing: true }); }
  });

  humanButton.addEventListener("click", () => { send({ type: "request_human" }); humanButton.disabled = true; });
  document.querySelector('[data-action="human-stalled"]').addEventListener("click", () => {
    $("stalled").hidden = true;
    humanButton.click();
  });
  endButton.addEventListener("click", () => { send({ type: "end" }); });
  document.querySelector('[data-action="new"]').addEventListener("click", () => { location.href = location.pathname; });

  $("rating").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const choice = form.querySelector('input[name="score"]:checked');
    if (!choice) { connectionNotice("Please choose a rating from 1 to 5."); return; }
    send({
      type: "feedback",
      score: Number(choice.value),
      better_answer: form.better_answer.value,
      comment: form.comment.value,
    });
  });

  // Self-healing: while an answer or an ack is awaited and nothing arrived for a while,
  // ask for a replay; the server sends only what this page has not shown yet.
  setInterval(() => {
    const waiting = !$("thinking").hidden || outboxLoad().length > 0;
    if (waiting && Date.now() - lastFrameAt > 12000) {
      lastFrameAt = Date.now();
      send({ type: "resume", after_seq: lastSeq });
    }
  }, 3000);
  // Live events are notifications; the conversation itself is on the server. While a
  // person is on it (or about to be), their messages come without the customer waiting
  // for anything, so the page also asks for what it may have missed every 30 s and when
  // it comes back into view (the server sends only what this page has not shown).
  setInterval(() => { if (handling !== "assistant" && !ended) send({ type: "resume", after_seq: lastSeq }); }, 30000);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !ended) send({ type: "resume", after_seq: lastSeq });
  });

  // --- layout: the menu (the sidebar as a drawer at phone width) and the notice --------
  const pageEl = $("page");
  const menuButton = document.querySelector('[data-action="open-menu"]');
  const backdrop = document.querySelector(".backdrop");
  function setMenu(open) {
    pageEl.classList.toggle("menu-open", open);
    menuButton.setAttribute("aria-expanded", String(open));
    backdrop.hidden = !open;
    if (open) document.querySelector("#chat-menu .new-chat").focus();
  }
  menuButton.addEventListener("click", () => setMenu(true));
  for (const el of document.querySelectorAll('[data-action="close-menu"]')) {
    el.addEventListener("click", () => { setMenu(false); menuButton.focus(); });
  }
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && pageEl.classList.contains("menu-open")) { setMenu(false); menuButton.focus(); }
  });
  const notice = $("offline-notice");
  const noticeKey = "loopdesk.notice.offline";
  if (notice) {
    if (localStorage.getItem(noticeKey) === "dismissed") notice.hidden = true;
    notice.querySelector('[data-action="dismiss-notice"]').addEventListener("click", () => {
      notice.hidden = true;
      localStorage.setItem(noticeKey, "dismissed");
    });
  }

  for (const a of document.querySelectorAll(".history a")) {
    if (a.dataset.id === conversationId) a.classList.add("current");
  }
  if (conversationId) connect();
})();
