/* Training run page: live progress, one small SVG chart per metric, the log tail; the
   preset filler of the add form. No library, nothing fetched from elsewhere. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = ["#2f6fb0", "#c0392b", "#27ae60", "#8e44ad"];
  var W = 320, H = 140, LEFT = 44, RIGHT = 10, TOP = 10, BOTTOM = 22;

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function fmt(value) {
    var abs = Math.abs(value);
    if (abs !== 0 && (abs < 0.001 || abs >= 10000)) { return value.toExponential(2); }
    return String(Number(value.toPrecision(3)));
  }

  function panel(name, points, color) {
    var xs = points.map(function (p) { return p[0]; });
    var ys = points.map(function (p) { return p[1]; });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x1 === x0) { x1 = x0 + 1; }
    if (y1 === y0) { var pad = Math.abs(y0) * 0.1 || 1; y0 -= pad; y1 += pad; }
    var sx = function (x) { return LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT); };
    var sy = function (y) { return TOP + (1 - (y - y0) / (y1 - y0)) * (H - TOP - BOTTOM); };

    var figure = document.createElement("figure");
    var caption = document.createElement("figcaption");
    caption.textContent = name + ": last ";
    var last = document.createElement("strong");
    last.textContent = fmt(ys[ys.length - 1]);
    caption.appendChild(last);
    caption.appendChild(document.createTextNode(" at step " + xs[xs.length - 1]));
    figure.appendChild(caption);

    var svg = el("svg", {viewBox: "0 0 " + W + " " + H, role: "img",
                         "aria-label": name + " per step"});
    [0, 0.5, 1].forEach(function (f) {
      var y = y0 + f * (y1 - y0);
      svg.appendChild(el("line", {x1: LEFT, x2: W - RIGHT, y1: sy(y), y2: sy(y), "class": "grid"}));
      svg.appendChild(el("text", {x: LEFT - 4, y: sy(y) + 3, "text-anchor": "end"}, fmt(y)));
    });
    svg.appendChild(el("line", {x1: LEFT, x2: W - RIGHT, y1: H - BOTTOM, y2: H - BOTTOM, "class": "axis"}));
    svg.appendChild(el("text", {x: LEFT, y: H - 6}, "step " + x0));
    svg.appendChild(el("text", {x: W - RIGHT, y: H - 6, "text-anchor": "end"}, "step " + x1));
    var d = points.map(function (p, k) {
      return (k ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1);
    }).join(" ");
    svg.appendChild(el("path", {d: d, fill: "none", stroke: color, "stroke-width": 1.8,
                                "stroke-linejoin": "round", "vector-effect": "non-scaling-stroke"}));
    if (points.length === 1) {
      svg.appendChild(el("circle", {cx: sx(xs[0]), cy: sy(ys[0]), r: 3, fill: color}));
    }
    figure.appendChild(svg);
    return figure;
  }

  function drawChart(box, series, names) {
    var shown = names.filter(function (n) { return series[n] && series[n].length; });
    box.textContent = "";
    if (!shown.length) { box.textContent = "No metrics yet."; return; }
    shown.forEach(function (name, i) {
      box.appendChild(panel(name, series[name], COLORS[i % COLORS.length]));
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
        var bar = document.getElementById("training-progress-fill");
        bar.style.width = pct + "%";
        bar.parentNode.setAttribute("aria-valuenow", String(pct));
        document.getElementById("training-status").textContent = data.status;
        document.getElementById("training-steps").textContent = "step " + data.step + " / " + data.total_steps;
        document.getElementById("training-eta").textContent = fmtEta(data.eta_seconds);
        var err = document.getElementById("training-error");
        err.hidden = !data.error;
        document.getElementById("training-error-text").textContent = data.error || "";
        document.getElementById("training-error-title").textContent =
          (data.error || "").indexOf("stopped:") === 0 ? "Stopped by a guard" : "Failure";
        document.getElementById("training-log").textContent = (data.log_tail || []).join("\n");
        var present = Object.keys(data.metrics);
        var wanted = names.filter(function (n) { return present.indexOf(n) >= 0; });
        drawChart(chart, data.metrics, wanted.length ? wanted : present.slice(0, 4));
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
