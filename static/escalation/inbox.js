// Live inbox: tickets arrive over ws/agent/inbox/ without a reload; the queue's places,
// who has what, and the agent's own duty and capacity (each change confirmed in words).
(function () {
  "use strict";
  const $ = (role) => document.querySelector(`[data-role="${role}"]`);
  const body = $("tickets");
  const conn = $("connection");
  const duty = $("duty");
  const capacity = $("capacity");
  const load = $("load");
  const noticeBox = $("notice");
  const errorBox = $("error");
  const me = Number($("inbox").dataset.me);
  const tickets = new Map();
  let mine = JSON.parse(document.getElementById("inbox-me").textContent);
  let socket = null;
  let retry = 500;
  let noticeTimer = null;

  function announce(message) {
    errorBox.hidden = true;
    noticeBox.textContent = message;
    noticeBox.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { noticeBox.hidden = true; }, 15000);
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function waited(iso) {
    const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  }

  function cell(text, cls, label) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    if (label) td.dataset.label = label;
    return td;
  }

  const rank = { urgent: 0, high: 1, normal: 2, low: 3 };
  const order = (a, b) => (rank[a.priority] - rank[b.priority]) || a.handoff_at.localeCompare(b.handoff_at) || a.id - b.id;

  function where(t, position) {
    if (t.status === "open") return "In the queue, #" + position + (t.returned_from ? " (back from " + t.returned_from + ")" : "");
    const who = t.assigned_agent_id === me ? "you" : t.assigned_agent;
    return t.taken ? "With " + who : "Assigned to " + who + ", not taken yet";
  }

  function render() {
    body.textContent = "";
    const active = [...tickets.values()].filter((t) => t.status === "open" || t.status === "assigned").sort(order);
    let position = 0;
    if (!active.length) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      tr.appendChild(cell("No open escalations.")).colSpan = 6;
      body.appendChild(tr);
    }
    for (const t of active) {
      if (t.status === "open") position += 1;
      const tr = document.createElement("tr");
      tr.dataset.ticket = t.id;
      tr.dataset.status = t.status;
      tr.className = "ticket priority-" + t.priority + (t.assigned_agent_id === me ? " for-me" : "") + (t.status === "open" ? " queued" : "");
      tr.appendChild(cell(t.priority, "priority", "Priority"));
      const why = cell("", "reason", "Why");
      const strong = document.createElement("strong");
      strong.textContent = t.reason_label || t.reason.replace(/_/g, " ");
      why.appendChild(strong);
      if (t.reason_words) why.appendChild(document.createTextNode(" " + t.reason_words));
      why.title = t.reason_numbers || "";
      tr.appendChild(why);
      tr.appendChild(cell(t.last_customer_message || "", "said", "Customer said"));
      const w = cell(waited(t.handoff_at), "waiting", "Waiting");
      w.dataset.since = t.handoff_at;
      tr.appendChild(w);
      tr.appendChild(cell(where(t, position), "status", "Where"));
      const open = document.createElement("td");
      open.className = "open";
      const a = document.createElement("a");
      a.href = "/agent/conversations/" + t.conversation_id + "/";
      a.textContent = t.assigned_agent_id === me && !t.taken ? "Open to take over" : "Open";
      open.appendChild(a);
      tr.appendChild(open);
      body.appendChild(tr);
    }
    const assigned = active.filter((t) => t.status === "assigned" && t.assigned_agent_id === me).length;
    mine.load = assigned;
    load.textContent = "You have " + assigned + " of " + mine.capacity + (mine.on_duty ? "." : " (off duty).");
  }

  function applyMe(state) {
    mine = Object.assign(mine, state);
    duty.checked = !!mine.on_duty;
    capacity.value = mine.capacity;
    render();
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(proto + location.host + "/ws/agent/inbox/");
    socket.onopen = () => { conn.textContent = "live"; conn.dataset.state = "live"; retry = 500; };
    socket.onclose = (e) => {
      conn.textContent = "reconnecting…"; conn.dataset.state = "down";
      if (e.code === 4403) { conn.textContent = "not allowed"; return; }
      setTimeout(connect, retry); retry = Math.min(retry * 2, 10000);
    };
    socket.onmessage = (e) => {
      const frame = JSON.parse(e.data);
      if (frame.type === "inbox.snapshot") {
        tickets.clear();
        for (const t of frame.tickets) tickets.set(t.id, t);
        if (frame.me) applyMe(frame.me); else render();
      } else if (frame.type === "ticket") {
        const before = tickets.get(frame.ticket.id);
        tickets.set(frame.ticket.id, frame.ticket);
        render();
        const t = frame.ticket;
        if (t.assigned_agent_id === me && t.status === "assigned" && !(before && before.assigned_agent_id === me)) {
          announce("A ticket was assigned to you: " + (t.reason_label || t.reason) + ". Open it to take it over.");
        } else if (frame.change === "returned" && before && before.assigned_agent_id === me) {
          announce("A ticket went back to the queue: you had not replied in time.");
        }
      } else if (frame.type === "duty") {
        applyMe(frame);
        if (frame.message) announce(frame.message);
      } else if (frame.type === "error") {
        showError(frame.message);
        capacity.value = mine.capacity;
      }
    };
  }

  function sendFrame(frame) {
    if (socket && socket.readyState === 1) { socket.send(JSON.stringify(frame)); return true; }
    showError("Not connected; nothing was changed. Reconnecting…");
    return false;
  }

  duty.addEventListener("change", () => {
    if (!sendFrame({ type: "duty", on_duty: duty.checked })) duty.checked = !duty.checked;
  });
  $("my-duty").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = Number(capacity.value);
    if (!Number.isInteger(value)) return showError("Capacity is a whole number.");
    sendFrame({ type: "capacity", capacity: value });
  });
  setInterval(() => {
    for (const td of body.querySelectorAll("td.waiting")) td.textContent = waited(td.dataset.since);
  }, 1000);
  setInterval(() => { if (socket && socket.readyState === 1) socket.send('{"type":"ping"}'); }, 30000);
  // The whole inbox again every minute and when the page comes back into view, so a
  // ticket event the channel layer never delivered does not stay missing.
  function resync() {
    if (socket && socket.readyState === 1 && document.visibilityState === "visible") {
      socket.send('{"type":"snapshot"}');
    }
  }
  setInterval(resync, 60000);
  document.addEventListener("visibilitychange", resync);
  connect();
})();
