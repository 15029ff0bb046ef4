// Live inbox: tickets arrive over ws/agent/inbox/ without a reload.
(function () {
  "use strict";
  const body = document.querySelector('[data-role="tickets"]');
  const conn = document.querySelector('[data-role="connection"]');
  const duty = document.querySelector('[data-role="duty"]');
  const tickets = new Map();
  let socket = null;
  let retry = 500;

  function waited(iso) {
    const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function render() {
    body.textContent = "";
    const active = [...tickets.values()].filter((t) => t.status === "open" || t.status === "assigned");
    const rank = { urgent: 0, high: 1, normal: 2, low: 3 };
    active.sort((a, b) => (rank[a.priority] - rank[b.priority]) || a.handoff_at.localeCompare(b.handoff_at));
    if (!active.length) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      tr.appendChild(cell("No open escalations.")).colSpan = 7;
      body.appendChild(tr);
      return;
    }
    for (const t of active) {
      const tr = document.createElement("tr");
      tr.dataset.ticket = t.id;
      tr.className = "ticket priority-" + t.priority;
      tr.appendChild(cell(t.priority, "priority"));
      tr.appendChild(cell(t.reason.replace(/_/g, " ") + (t.reason_detail ? " — " + t.reason_detail : ""), "reason"));
      const s = t.sentiment || {};
      tr.appendChild(cell(s.label ? s.label + (s.score !== undefined ? " (" + s.score + ")" : "") : "—", "sentiment"));
      tr.appendChild(cell(t.last_customer_message || "", "said"));
      const w = cell(waited(t.handoff_at), "waiting");
      w.dataset.since = t.handoff_at;
      tr.appendChild(w);
      tr.appendChild(cell(t.status + (t.assigned_agent ? " · " + t.assigned_agent : ""), "status"));
      const open = document.createElement("td");
      const a = document.createElement("a");
      a.href = "/agent/conversations/" + t.conversation_id + "/";
      a.textContent = "Open";
      open.appendChild(a);
      tr.appendChild(open);
      body.appendChild(tr);
    }
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
        render();
      } else if (frame.type === "ticket") {
        tickets.set(frame.ticket.id, frame.ticket);
        render();
      } else if (frame.type === "duty") {
        duty.checked = frame.on_duty;
      }
    };
  }

  duty.addEventListener("change", () => {
    if (socket && socket.readyState === 1) socket.send(JSON.stringify({ type: "duty", on_duty: duty.checked }));
  });
  setInterval(() => {
    for (const td of body.querySelectorAll("td.waiting")) td.textContent = waited(td.dataset.since);
  }, 1000);
  setInterval(() => { if (socket && socket.readyState === 1) socket.send('{"type":"ping"}'); }, 30000);
  connect();
})();
