// One conversation for an agent: history, withheld drafts, notes, live talk and typing.
(function () {
  "use strict";
  const root = document.querySelector(".conversation");
  const conversationId = root.dataset.conversation;
  let ticketId = root.dataset.ticket;
  const list = document.querySelector('[data-role="messages"]');
  const typing = document.querySelector('[data-role="typing"]');
  const handling = document.querySelector('[data-role="handling"]');
  const errorBox = document.querySelector('[data-role="error"]');
  const text = document.querySelector('[data-role="text"]');
  const seen = new Set();
  let socket = null;
  let retry = 500;
  let typingTimer = null;
  let typingSent = false;
  let typingHide = null;

  function csrf() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function showError(message) {
    errorBox.textContent = message || "";
    errorBox.hidden = !message;
  }

  async function post(url, data) {
    showError("");
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify(data || {}),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      showError(body.detail || "That did not work (" + response.status + ").");
      return null;
    }
    return body;
  }

  function label(m) {
    if (m.role === "customer") return "Customer";
    if (m.role === "assistant") return m.visibility === "withheld" ? "Assistant draft (withheld)" : "Assistant";
    if (m.role === "agent") return (m.author_name || "Agent") + (m.visibility === "internal" ? " · private note" : "");
    return "System";
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
    const next = [...list.children].find((el) => Number(el.dataset.seq) > m.seq);
    list.insertBefore(li, next || null);
    li.scrollIntoView({ block: "end" });
  }

  function setHandling(value, agentName) {
    const names = { assistant: "Assistant", waiting_for_human: "Waiting for a person", human: "Agent" };
    handling.textContent = (names[value] || value) + (agentName && value === "human" ? " · " + agentName : "");
    handling.dataset.handling = value;
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
      }
      else if (frame.type === "conversation.state") setHandling(frame.handling, frame.agent_name);
      else if (frame.type === "typing") {
        typing.hidden = !frame.is_typing;
        typing.textContent = frame.is_typing ? (frame.role === "customer" ? "Customer" : frame.author_name) + " is typing…" : "";
        clearTimeout(typingHide);
        if (frame.is_typing) typingHide = setTimeout(() => { typing.hidden = true; }, 6000);
      } else if (frame.type === "ticket") {
        ticketId = String(frame.ticket.id);
        root.dataset.ticket = ticketId;
        const st = document.querySelector('[data-role="ticket-status"]');
        if (st) st.textContent = frame.ticket.status;
        const ag = document.querySelector('[data-role="ticket-agent"]');
        if (ag) ag.textContent = frame.ticket.assigned_agent || "—";
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

  document.querySelector('[data-role="canned"]').addEventListener("change", (e) => {
    if (e.target.value) { text.value = e.target.value; text.focus(); e.target.value = ""; }
  });

  document.querySelector('[data-role="composer"]').addEventListener("submit", (e) => {
    e.preventDefault();
    const value = text.value.trim();
    if (!value || !socket || socket.readyState !== 1) return;
    showError("");
    const clientId = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
    socket.send(JSON.stringify({ type: "message", text: value, client_id: clientId }));
    text.value = "";
    sendTyping(false);
  });

  document.querySelector('[data-action="note"]').addEventListener("click", () => {
    const value = text.value.trim();
    if (!value || !socket || socket.readyState !== 1) return;
    socket.send(JSON.stringify({ type: "note", text: value }));
    text.value = "";
  });

  document.querySelector('[data-action="take-over"]').addEventListener("click", async () => {
    const ticket = await post("/api/escalation/conversations/" + conversationId + "/take-over/");
    if (ticket) { ticketId = String(ticket.id); root.dataset.ticket = ticketId; }
  });

  document.querySelector('[data-action="hand-back"]').addEventListener("click", async () => {
    if (!ticketId) return showError("There is no ticket for this conversation.");
    await post("/api/escalation/tickets/" + ticketId + "/hand-back/");
  });

  document.querySelector('[data-role="resolve"]').addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!ticketId) return showError("There is no ticket for this conversation.");
    const form = new FormData(e.target);
    const needed = form.get("person_needed");
    const done = await post("/api/escalation/tickets/" + ticketId + "/resolve/", {
      outcome: form.get("outcome"),
      note: form.get("note") || "",
      person_needed: needed === "yes" ? true : needed === "no" ? false : null,
      category: form.get("category") || "",
    });
    if (done) {
      const st = document.querySelector('[data-role="ticket-status"]');
      if (st) st.textContent = done.status;
    }
  });

  document.querySelector('[data-role="flag"]').addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    if (!form.get("category")) return showError("Pick why it should have come to a person.");
    const flagged = await post("/api/escalation/conversations/" + conversationId + "/flag/",
      { category: form.get("category") });
    if (flagged) showError("Thanks: the assistant will learn from this message.");
  });

  document.querySelector('[data-action="knowledge"]').addEventListener("click", async () => {
    if (!ticketId) return showError("There is no ticket for this conversation.");
    const draft = await post("/api/escalation/tickets/" + ticketId + "/knowledge-draft/");
    if (draft) showError("Draft " + draft.article + " is waiting for a reviewer.");
  });

  // presence heartbeat: an agent working a conversation counts as available
  setInterval(() => { if (socket && socket.readyState === 1) socket.send('{"type":"ping"}'); }, 30000);
  connect();
})();
