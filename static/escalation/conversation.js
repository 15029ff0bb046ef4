// One conversation for an agent: history, withheld drafts, notes, live talk and typing;
// the ticket's buttons follow its state and every action is confirmed in words.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("console-config").textContent);
  const root = document.querySelector(".conversation");
  const conversationId = config.conversationId;
  const $ = (role) => document.querySelector(`[data-role="${role}"]`);
  const button = (action) => document.querySelector(`[data-action="${action}"]`);
  const list = $("messages");
  const typing = $("typing");
  const handlingEl = $("handling");
  const errorBox = $("error");
  const noticeBox = $("notice");
  const text = $("text");
  const seen = new Set();
  const state = {
    ticket: config.ticket,
    handling: config.handling,
    agentName: config.agentName,
    conversationStatus: config.conversationStatus,
    queue: null,
  };
  let socket = null;
  let retry = 500;
  let typingTimer = null;
  let typingSent = false;
  let typingHide = null;
  let noticeTimer = null;

  function csrf() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function showError(message) {
    errorBox.textContent = message || "";
    errorBox.hidden = !message;
    if (message) { noticeBox.hidden = true; }
  }

  // The confirmation after an action: stays until the next one (or 15 s).
  function announce(message) {
    showError("");
    noticeBox.textContent = message;
    noticeBox.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { noticeBox.hidden = true; }, 15000);
  }

  async function post(url, data) {
    showError("");
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
        body: JSON.stringify(data || {}),
      });
    } catch (e) {
      showError("The server could not be reached. Nothing was changed; try again.");
      return null;
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      showError(body.message || "That did not work (" + response.status + ").");
      return null;
    }
    return body;
  }

  // --- the ticket's state, in words and buttons ---------------------------------------------
  const mine = () => state.ticket && state.ticket.assigned_agent_id === config.me;
  const active = () => state.ticket && (state.ticket.status === "open" || state.ticket.status === "assigned");
  const talkingMe = () => state.handling === "human" && active() && mine() && state.ticket.taken;

  function stateWords() {
    const t = state.ticket;
    if (state.conversationStatus === "ended" && !active()) return "The customer ended this conversation.";
    if (!t) return "No escalation yet. Take over to talk to the customer yourself.";
    if (t.status === "resolved") return "Resolved" + (t.outcome_label ? " (" + t.outcome_label + ")" : "") + ". The assistant answers again.";
    if (t.status === "closed") return t.outcome === "handed_back" ? "Handed back to the assistant; the ticket is closed." : "Closed" + (t.outcome_label ? " (" + t.outcome_label + ")" : "") + ".";
    if (t.status === "open") {
      const where = state.queue && state.queue.position ? " (#" + state.queue.position + ")" : "";
      return "Waiting in the queue" + where + (t.returned_from ? "; it came back from " + t.returned_from : "") + ".";
    }
    if (t.taken) return mine() ? "You are talking with the customer." : t.assigned_agent + " is talking with the customer.";
    return mine() ? "Assigned to you: take it over to reply." : "Assigned to " + t.assigned_agent + ".";
  }

  function setButton(action, { shown, enabled, label }) {
    const el = button(action);
    if (!el) return;
    el.hidden = !shown;
    el.disabled = !enabled;
    if (label) el.textContent = label;
  }

  function render() {
    const t = state.ticket;
    const ended = state.conversationStatus === "ended";
    root.dataset.ticket = t ? String(t.id) : "";
    root.dataset.ticketStatus = t ? t.status : "";
    $("ticket-state").textContent = stateWords();
    $("ticket-status").textContent = t ? t.status : "—";
    $("ticket-agent").textContent = t && t.assigned_agent ? t.assigned_agent : "—";
    $("ticket-priority").textContent = t ? t.priority : "—";
    if (t) {
      const reason = $("ticket-reason");
      reason.textContent = t.reason_label + (t.reason_words ? ": " + t.reason_words : "");
      reason.title = t.reason_numbers || "";
    }
    const assignedToOther = active() && t.status === "assigned" && !mine();
    const canTake = !ended && state.handling !== "human" && (!assignedToOther || config.supervisor);
    setButton("take-over", {
      shown: !talkingMe(),
      enabled: canTake && !(state.handling === "human"),
      label: assignedToOther && config.supervisor ? "Take over (as supervisor)" : "Take over",
    });
    setButton("hand-back", { shown: talkingMe(), enabled: talkingMe() });
    const resolveForm = $("resolve");
    const mayResolve = active() && (mine() || !t.assigned_agent_id || config.supervisor);
    resolveForm.hidden = !active();
    for (const el of resolveForm.elements) el.disabled = !mayResolve;
    setButton("knowledge", { shown: !!t && t.status === "resolved", enabled: !!t && t.status === "resolved" });
    const reassign = $("reassign");
    if (reassign) reassign.hidden = !active();
    // the composer: only the agent who took over writes to the customer; notes always
    const send = button("send");
    send.disabled = !talkingMe();
    const hint = $("composer-hint");
    hint.hidden = talkingMe();
    hint.textContent = talkingMe() ? "" : "Take the conversation over to write to the customer; private notes are always possible.";
  }

  function applyTicket(ticket) {
    if (!ticket) return;
    state.ticket = ticket;
    render();
  }

  // --- messages ---------------------------------------------------------------------------
  function label(m) {
    if (m.role === "customer") return "Customer";
    if (m.role === "assistant") return m.visibility === "withheld" ? "Assistant draft (withheld)" : "Assistant";
    if (m.role === "agent") return (m.author_name || "Agent") + (m.visibility === "internal" ? " · private note" : "");
    return m.visibility === "internal" ? "Internal note" : "System";
  }

  function addMessage(m) {
    if (seen.has(m.seq)) return;
    seen.add(m.seq);
    const li = document.createElement("li");
    li.className = "msg role-" + m.role + " vis-" + (m.visibility || "public");
    li.dataset.seq = m.seq;
    const who = document.createElement("div");
    who.className = "who";
    who.textContent = label(m);
    const body = document.createElement("div");
    body.className = "body";
    body.textContent = m.text;
    li.append(who, body);
    if (m.turn && m.role === "customer" && m.turn.detail) {
      const why = document.createElement("div");
      why.className = "turn-why";
      why.textContent = m.turn.detail;
      li.appendChild(why);
    }
    const next = [...list.children].find((el) => Number(el.dataset.seq) > m.seq);
    list.insertBefore(li, next || null);
    list.scrollTop = list.scrollHeight;
  }

  function setHandling(value, agentName) {
    const names = { assistant: "Assistant", waiting_for_human: "Waiting for a person", human: "Agent" };
    handlingEl.textContent = (names[value] || value) + (agentName && value === "human" ? " · " + agentName : "");
    handlingEl.dataset.handling = value;
    state.handling = value;
    state.agentName = agentName || "";
    render();
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(proto + location.host + "/ws/agent/conversations/" + conversationId + "/");
    socket.onopen = () => { retry = 500; root.dataset.live = "1"; };
    socket.onclose = (e) => {
      root.dataset.live = "";
      if (e.code === 4403 || e.code === 4404) { showError("You cannot open this conversation."); return; }
      setTimeout(connect, retry); retry = Math.min(retry * 2, 10000);
    };
    socket.onmessage = (e) => {
      const frame = JSON.parse(e.data);
      if (frame.type === "message") {
        addMessage(frame.message);
        if (frame.message.role === "customer") typing.hidden = true;
      } else if (frame.type === "conversation.state") {
        if (frame.status) state.conversationStatus = frame.status;
        setHandling(frame.handling, frame.agent_name);
      } else if (frame.type === "typing") {
        typing.hidden = !frame.is_typing;
        typing.textContent = frame.is_typing ? (frame.role === "customer" ? "Customer" : frame.author_name) + " is typing…" : "";
        clearTimeout(typingHide);
        if (frame.is_typing) typingHide = setTimeout(() => { typing.hidden = true; }, 6000);
      } else if (frame.type === "ticket") {
        const before = state.ticket;
        applyTicket(frame.ticket);
        if (frame.change === "returned" && before && before.assigned_agent_id === config.me) {
          announce("This ticket went back to the queue: you had not replied in time.");
        } else if (frame.change === "assigned" && mine() && !(before && before.assigned_agent_id === config.me)) {
          announce("This ticket was assigned to you. Take it over to reply.");
        }
      } else if (frame.type === "queue") {
        state.queue = frame;
        render();
      } else if (frame.type === "ack") {
        announce("Sent to the customer.");
      } else if (frame.type === "error") showError(frame.message);
    };
  }

  function sendTyping(active) {
    if (!socket || socket.readyState !== 1 || typingSent === active) return;
    typingSent = active;
    socket.send(JSON.stringify({ type: "typing", is_typing: active }));
  }

  text.addEventListener("input", () => {
    sendTyping(true);
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => sendTyping(false), 2500);
  });

  $("canned").addEventListener("change", (e) => {
    if (e.target.value) { text.value = e.target.value; text.focus(); e.target.value = ""; }
  });

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = text.value.trim();
    if (!value || !socket || socket.readyState !== 1) return;
    showError("");
    const clientId = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
    socket.send(JSON.stringify({ type: "message", text: value, client_id: clientId }));
    text.value = "";
    sendTyping(false);
  });

  button("note").addEventListener("click", () => {
    const value = text.value.trim();
    if (!value) return showError("Write the note first.");
    if (!socket || socket.readyState !== 1) return showError("Not connected; the note was not saved.");
    socket.send(JSON.stringify({ type: "note", text: value }));
    text.value = "";
    announce("Private note added (the customer does not see it).");
  });

  button("take-over").addEventListener("click", async () => {
    const ticket = await post("/api/escalation/conversations/" + conversationId + "/take-over/");
    if (!ticket) return;
    state.handling = "human";
    applyTicket(Object.assign({}, state.ticket || {}, ticket, { taken: true, assigned_agent_id: config.me }));
    announce("You took over. The assistant is silent; the customer sees you joined.");
  });

  button("hand-back").addEventListener("click", async () => {
    if (!state.ticket) return showError("There is no ticket for this conversation.");
    const done = await post("/api/escalation/tickets/" + state.ticket.id + "/hand-back/");
    if (!done) return;
    state.handling = "assistant";
    applyTicket(Object.assign({}, state.ticket, { status: done.status, outcome: done.outcome, taken: false, outcome_label: "Handed back to the assistant" }));
    announce("Handed back to the assistant. The ticket is closed and has left the queue.");
  });

  $("resolve").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!state.ticket) return showError("There is no ticket for this conversation.");
    const form = new FormData(e.target);
    const needed = form.get("person_needed");
    const done = await post("/api/escalation/tickets/" + state.ticket.id + "/resolve/", {
      outcome: form.get("outcome"),
      note: form.get("note") || "",
      person_needed: needed === "yes" ? true : needed === "no" ? false : null,
      category: form.get("category") || "",
    });
    if (!done) return;
    const select = e.target.querySelector('select[name="outcome"]');
    const outcomeLabel = select.options[select.selectedIndex].text;
    state.handling = "assistant";
    applyTicket(Object.assign({}, state.ticket, { status: done.status, outcome: done.outcome, outcome_label: outcomeLabel, taken: false }));
    announce("Resolved (" + outcomeLabel + ")" + (needed ? "; the assistant will learn from your answer" : "") + ". The conversation is back with the assistant.");
  });

  $("flag").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    if (!form.get("category")) return showError("Pick why it should have come to a person.");
    const flagged = await post("/api/escalation/conversations/" + conversationId + "/flag/",
      { category: form.get("category") });
    if (flagged) announce("Flagged: the assistant will learn that this message needed a person.");
  });

  button("knowledge").addEventListener("click", async () => {
    if (!state.ticket) return showError("There is no ticket for this conversation.");
    const draft = await post("/api/escalation/tickets/" + state.ticket.id + "/knowledge-draft/");
    if (draft) announce("Draft “" + draft.article + "” is waiting for a reviewer.");
  });

  const reassign = $("reassign");
  if (reassign) {
    reassign.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!state.ticket) return showError("There is no ticket for this conversation.");
      const select = e.target.querySelector("select");
      const agent = select.value ? Number(select.value) : null;
      const done = await post("/api/escalation/tickets/" + state.ticket.id + "/assign/", { agent });
      if (!done) return;
      announce(agent ? "Reassigned to " + select.options[select.selectedIndex].text.split(" · ")[0] + "." : "Put back in the queue.");
    });
  }

  // figures of a check: hover shows the title; a tap or Enter shows them inline
  for (const check of document.querySelectorAll(".audit .check")) {
    const toggle = () => check.classList.toggle("show-figures");
    check.addEventListener("click", toggle);
    check.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } });
  }

  // Live events are notifications; the conversation itself is on the server (a new socket
  // gets the whole timeline). Every 30 s and when the page comes back into view, ask for the messages
  // after the last one of an unbroken run from the start (an agent sees every message,
  // so a gap is a missed one; addMessage skips any already on the page).
  function resync() {
    if (!socket || socket.readyState !== 1) return;
    let last = 0;
    while (seen.has(last + 1)) last += 1;
    socket.send(JSON.stringify({ type: "resume", after_seq: last }));
  }
  setInterval(resync, 30000);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) resync(); });

  render();
  // presence heartbeat: an agent working a conversation counts as available
  setInterval(() => { if (socket && socket.readyState === 1) socket.send('{"type":"ping"}'); }, 30000);
  connect();
})();
