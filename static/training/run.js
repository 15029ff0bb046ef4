/* Training run page: live progress, metric chart (inline SVG) and log; preset filler. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = ["#2f6fb0", "#c0392b", "#27ae60", "#8e44ad"];

  function el(name, attrs) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function drawChart(box, series, names) {
    box.textContent = "";
    var shown = names.filter(function (n) { return series[n] && series[n].length; });
    if (!shown.length) { box.textContent = "No metrics yet."; return; }
    shown.forEach(function (name, i) {
      var points = series[name];
      var w = 360, h = 140, pad = 28;
      var xs = points.map(function (p) { return p[0]; });
      var ys = points.map(function (p) { return p[1]; });
      var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
      var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
      if (x1 === x0) { x1 = x0 + 1; }
      if (y1 === y0) { y1 = y0 + 1; y0 = y0 - 1; }
      var sx = function (x) { return pad + (x - x0) / (x1 - x0) * (w - 2 * pad); };
      var sy = function (y) { return h - pad + 8 - (y - y0) / (y1 - y0) * (h - 2 * pad); };
      var svg = el("svg", {width: w, height: h, viewBox: "0 0 " + w + " " + h, role: "img",
                           "aria-label": name, "class": "training-chart-panel"});
      var title = el("text", {x: pad, y: 14, "font-size": 12});
      title.textContent = name + " (last " + ys[ys.length - 1].toPrecision(4) + ")";
      svg.appendChild(title);
      svg.appendChild(el("line", {x1: pad, y1: h - pad + 8, x2: w - pad, y2: h - pad + 8, stroke: "#999"}));
      var lo = el("text", {x: 2, y: h - pad + 8, "font-size": 9}); lo.textContent = y0.toPrecision(3);
      var hi = el("text", {x: 2, y: pad, "font-size": 9}); hi.textContent = y1.toPrecision(3);
      var st = el("text", {x: w - pad, y: h - 4, "font-size": 9, "text-anchor": "end"});
      st.textContent = "step " + x1;
      svg.appendChild(lo); svg.appendChild(hi); svg.appendChild(st);
      var d = points.map(function (p, k) {
        return (k ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1);
      }).join(" ");
      svg.appendChild(el("path", {d: d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.6}));
      box.appendChild(svg);
    });
  }

  function fmtEta(seconds) {
    if (seconds === null || seconds === undefined) { return ""; }
    var s = Math.round(seconds);
    return "ETA " + (s >= 60 ? Math.floor(s / 60) + " min " : "") + (s % 60) + " s";
  }

  function startLive(root) {
    var url = root.getAttribute("data-live-url");
    var names = JSON.parse(root.getAttribute("data-chart-metrics") || "[]");
    var chart = document.getElementById("training-chart");
    function tick() {
      fetch(url, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (data) {
        var pct = Math.round((data.fraction || 0) * 100);
        if (data.status === "succeeded") { pct = 100; }
        document.getElementById("training-progress-fill").style.width = pct + "%";
        document.getElementById("training-status").textContent = data.status;
        document.getElementById("training-steps").textContent = data.step + " / " + data.total_steps;
        document.getElementById("training-eta").textContent = fmtEta(data.eta_seconds);
        var err = document.getElementById("training-error");
        err.hidden = !data.error; err.textContent = data.error || "";
        document.getElementById("training-log").textContent = (data.log_tail || []).join("\n");
        var extra = Object.keys(data.metrics).filter(function (n) { return names.indexOf(n) < 0; });
        drawChart(chart, data.metrics, names.length ? names : extra.slice(0, 3));
        if (data.status === "queued" || data.status === "running") { setTimeout(tick, 2000); }
      }).catch(function () { setTimeout(tick, 5000); });
    }
    tick();
  }

  function presetFiller() {
    var select = document.getElementById("id_preset");
    if (!select || !select.getAttribute("data-presets")) { return; }
    var presets = JSON.parse(select.getAttribute("data-presets"));
    select.addEventListener("change", function () {
      var p = presets[select.value];
      if (!p) { return; }
      Object.keys(p).forEach(function (key) {
        var input = document.getElementById("id_" + key);
        if (!input) { return; }
        var v = p[key];
        input.value = (typeof v === "object") ? JSON.stringify(v) : String(v);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("training-run");
    if (root) { startLive(root); }
    presetFiller();
  });
})();
