/* sedsweep sweep dashboard: draws every section from the embedded JSON payload.
 *
 * Plain JavaScript, no library, no network: all plots are inline SVG built with
 * createElementNS, all strings go into the DOM through text nodes / attributes, except the
 * pre-rendered comparison tables (trusted HTML produced by sedsweep itself).
 * When everything is drawn, <body data-rendered="true"> is set (data-render-errors="N" if a
 * section failed; the failure is shown in that section and at the top of the page).
 */
(function () {
  "use strict";

  var SVGNS = "http://www.w3.org/2000/svg";
  var STATUS_ORDER = ["completed", "pruned", "failed", "running"];
  var STATUS_COLOURS = {
    completed: "#2e8b57",
    pruned: "#d99a1e",
    failed: "#c8413b",
    running: "#3f7fd1",
  };
  // Objective colour scale, worse -> better (reversed, truncated viridis: visible on white).
  var SCALE_STOPS = ["#b5de2b", "#35b779", "#26828e", "#3e4989", "#440154"];
  var CATEGORY_COLOURS = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22",
  ];

  /* ---------- small DOM helpers ---------- */

  function el(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function sv(tag, attrs, parent) {
    var node = document.createElementNS(SVGNS, tag);
    setAttrs(node, attrs);
    if (parent) parent.appendChild(node);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, String(value));
    });
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) {
      child.forEach(function (c) { append(node, c); });
    } else if (typeof child === "string" || typeof child === "number") {
      node.appendChild(document.createTextNode(String(child)));
    } else {
      node.appendChild(child);
    }
  }

  function svgText(parent, x, y, text, attrs) {
    var node = sv("text", Object.assign({ x: r2(x), y: r2(y) }, attrs || {}), parent);
    node.textContent = String(text);
    return node;
  }

  function svgTitle(parent, text) {
    var node = sv("title", null, parent);
    node.textContent = String(text);
    return node;
  }

  function empty(message) {
    return el("p", { class: "empty" }, message);
  }

  function sectionBody(id) {
    var section = document.getElementById(id);
    var body = section.querySelector(".body") || section;
    while (body.firstChild) body.removeChild(body.firstChild);
    return body;
  }

  function r2(v) {
    return Math.round(v * 100) / 100;
  }

  /* ---------- values, formatting, links ---------- */

  function isNum(v) {
    return typeof v === "number" && isFinite(v);
  }

  function fmt(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "boolean") return v ? "true" : "false";
    if (typeof v !== "number") return String(v);
    if (!isFinite(v)) return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e7) return String(v);
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e7)) return expo(v, 3);
    return String(parseFloat(v.toPrecision(4)));
  }

  function expo(v, digits) {
    return v.toExponential(digits - 1).replace(/\.?0+e/, "e").replace("e+", "e");
  }

  function fmtTick(v, step) {
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a < 1e-3 || a >= 1e6) return expo(v, 2);
    var decimals = Math.max(0, Math.min(8, -Math.floor(Math.log10(step) + 1e-9)));
    return v.toFixed(decimals);
  }

  function fmtTime(ms) {
    if (!isNum(ms)) return "—";
    var d = new Date(ms);
    if (isNaN(d.getTime())) return "—";
    return d.toISOString().slice(0, 16).replace("T", " ");
  }

  function fmtIso(s) {
    if (typeof s !== "string" || !s) return "—";
    return s.replace("T", " ").replace(/\.\d+/, "");
  }

  function safeUrl(u) {
    return typeof u === "string" && /^https?:\/\/[^\s]+$/i.test(u) ? u : null;
  }

  function link(url, text) {
    var href = safeUrl(url);
    if (!href) return document.createTextNode(String(text));
    return el("a", { href: href, target: "_blank", rel: "noopener noreferrer" }, String(text));
  }

  function shorten(s, n) {
    s = String(s);
    return s.length > n ? s.slice(0, Math.max(1, n - 1)) + "…" : s;
  }

  function badge(status) {
    var known = STATUS_ORDER.indexOf(status) >= 0;
    return el("span", { class: "badge " + (known ? "st-" + status : "st-other") }, String(status));
  }

  /* ---------- objective ordering and colour ---------- */

  function makeObjective(data) {
    var obj = (data.sweep && data.sweep.objective) || {};
    var mode = obj.mode === "min" ? "min" : "max";
    return {
      metric: obj.metric ? String(obj.metric) : "objective",
      mode: mode,
      arrow: mode === "max" ? "↑" : "↓",
      // negative when a is better than b; null values sort last
      compare: function (a, b) {
        var na = !isNum(a), nb = !isNum(b);
        if (na || nb) return na === nb ? 0 : na ? 1 : -1;
        return mode === "max" ? b - a : a - b;
      },
      better: function (a, b) {
        return mode === "max" ? a > b : a < b;
      },
    };
  }

  function statusRank(s) {
    var i = STATUS_ORDER.indexOf(s);
    return i < 0 ? STATUS_ORDER.length : i;
  }

  // Leaderboard order from the payload (completed by objective, then pruned by the epoch they
  // reached), else by objective.
  function compareTrials(objective) {
    return function (a, b) {
      return (
        (isNum(a.rank) && isNum(b.rank) ? a.rank - b.rank : 0) ||
        objective.compare(a.objective, b.objective) ||
        statusRank(a.status) - statusRank(b.status) ||
        (isNum(a.number) ? a.number : Infinity) - (isNum(b.number) ? b.number : Infinity) ||
        String(a.name).localeCompare(String(b.name))
      );
    };
  }

  function hexToRgb(h) {
    var n = parseInt(h.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function scaleColour(t) {
    t = Math.max(0, Math.min(1, isNum(t) ? t : 0));
    var pos = t * (SCALE_STOPS.length - 1);
    var i = Math.min(SCALE_STOPS.length - 2, Math.floor(pos));
    var f = pos - i;
    var a = hexToRgb(SCALE_STOPS[i]), b = hexToRgb(SCALE_STOPS[i + 1]);
    var c = a.map(function (x, k) { return Math.round(x + (b[k] - x) * f); });
    return "rgb(" + c.join(",") + ")";
  }

  /* ---------- scales and ticks ---------- */

  function niceStep(range, count) {
    var raw = range / Math.max(1, count);
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var n = raw / mag;
    return (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag;
  }

  function widen(lo, hi) {
    if (hi > lo) return [lo, hi];
    var d = Math.abs(lo) * 0.1 || 1;
    return [lo - d, hi + d];
  }

  function linTicks(lo, hi, count) {
    var step = niceStep(hi - lo, count);
    var out = [];
    var start = Math.ceil(lo / step - 1e-9);
    for (var k = start; k * step <= hi + step * 1e-9; k++) {
      out.push(Math.abs(k * step) < step * 1e-9 ? 0 : parseFloat((k * step).toPrecision(12)));
    }
    return { ticks: out, step: step };
  }

  function niceDomain(lo, hi, count) {
    var w = widen(lo, hi);
    var step = niceStep(w[1] - w[0], count);
    return [Math.floor(w[0] / step + 1e-9) * step, Math.ceil(w[1] / step - 1e-9) * step];
  }

  function logTicks(lo, hi) {
    var out = [];
    var e0 = Math.floor(Math.log10(lo)), e1 = Math.ceil(Math.log10(hi));
    var mults = e1 - e0 <= 2 ? [1, 2, 5] : [1];
    for (var e = e0; e <= e1; e++) {
      mults.forEach(function (m) {
        var v = parseFloat((m * Math.pow(10, e)).toPrecision(6));
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
      });
    }
    if (out.length < 2) out = [lo, hi];
    return out;
  }

  /* A numeric scale (linear or log) from [lo, hi] to [r0, r1]. */
  function numScale(lo, hi, r0, r1, log) {
    if (log) {
      var l0 = Math.log10(lo), l1 = Math.log10(hi);
      if (!(l1 > l0)) { l0 -= 1; l1 += 1; }
      return function (v) { return r0 + ((Math.log10(v) - l0) / (l1 - l0)) * (r1 - r0); };
    }
    var w = widen(lo, hi);
    return function (v) { return r0 + ((v - w[0]) / (w[1] - w[0])) * (r1 - r0); };
  }

  function newSvg(plot, width, height, label) {
    var svg = sv("svg", {
      class: "plot",
      "data-plot": plot,
      viewBox: "0 0 " + width + " " + height,
      width: width,
      height: height,
      role: "img",
      "aria-label": label,
      preserveAspectRatio: "xMidYMin meet",
    });
    return svg;
  }

  /* Cartesian frame: axes, ticks, grid, labels, title. Returns {svg, X, Y, g}. */
  function cartesian(o) {
    var m = o.margin;
    var svg = newSvg(o.plot, o.width, o.height, o.title);
    var x0 = m.l, x1 = o.width - m.r, y0 = o.height - m.b, y1 = m.t;
    // integer x (trial numbers): half a unit of room on each side so no point sits on an axis
    var xd = o.xInteger ? [o.x[0] - 0.5, o.x[1] + 0.5] : niceDomain(o.x[0], o.x[1], 6);
    var yd = niceDomain(o.y[0], o.y[1], 5);
    var X = numScale(xd[0], xd[1], x0, x1, false);
    var Y = numScale(yd[0], yd[1], y0, y1, false);
    svgText(svg, o.width / 2, 18, o.title, { class: "title", "text-anchor": "middle" });

    var yt = linTicks(yd[0], yd[1], 5);
    var gy = sv("g", { class: "axis y-axis" }, svg);
    yt.ticks.forEach(function (v) {
      var y = Y(v);
      sv("line", { class: "grid", x1: x0, x2: x1, y1: r2(y), y2: r2(y) }, gy);
      var t = sv("g", { class: "tick" }, gy);
      sv("line", { x1: x0 - 4, x2: x0, y1: r2(y), y2: r2(y) }, t);
      svgText(t, x0 - 7, y + 3.5, fmtTick(v, yt.step), { "text-anchor": "end" });
    });
    var xt = linTicks(xd[0], xd[1], Math.min(8, Math.max(2, Math.round((x1 - x0) / 90))));
    if (o.xInteger && xt.step < 1) xt = linTicks(xd[0], xd[1], Math.max(1, xd[1] - xd[0]));
    var gx = sv("g", { class: "axis x-axis" }, svg);
    xt.ticks.forEach(function (v) {
      if (o.xInteger && !Number.isInteger(v)) return;
      var x = X(v);
      var t = sv("g", { class: "tick" }, gx);
      sv("line", { x1: r2(x), x2: r2(x), y1: y0, y2: y0 + 4 }, t);
      svgText(t, x, y0 + 16, fmtTick(v, xt.step), { "text-anchor": "middle" });
    });
    sv("line", { class: "axis-line", x1: x0, x2: x1, y1: y0, y2: y0 }, svg);
    sv("line", { class: "axis-line", x1: x0, x2: x0, y1: y0, y2: y1 }, svg);
    svgText(svg, (x0 + x1) / 2, o.height - 6, o.xLabel, {
      class: "axis-label", "text-anchor": "middle",
    });
    var yl = svgText(svg, 0, 0, shorten(o.yLabel, 40), {
      class: "axis-label", "text-anchor": "middle",
      transform: "translate(14," + r2((y0 + y1) / 2) + ") rotate(-90)",
    });
    svgTitle(yl, o.yLabel);
    var g = sv("g", { class: "marks" }, svg);
    return { svg: svg, X: X, Y: Y, g: g, x0: x0, x1: x1, y0: y0, y1: y1 };
  }

  /* ---------- sections ---------- */

  function renderHeader(data, objective) {
    var sweep = data.sweep || {};
    var name = sweep.name ? String(sweep.name) : "sweep";
    document.getElementById("sweep-name").textContent = name;
    document.title = name + " — sweep dashboard";
    var trials = data.trials || [];
    var meta = document.getElementById("sweep-meta");
    while (meta.firstChild) meta.removeChild(meta.firstChild);
    [
      ["method", sweep.method],
      ["objective", objective.metric + " (" + objective.mode + " " + objective.arrow + ")"],
      ["status", sweep.status],
      ["trials", String(trials.length)],
      ["started", fmtIso(sweep.started)],
      ["experiment", sweep.experiment_id],
    ].forEach(function (kv) {
      if (kv[1] === null || kv[1] === undefined || kv[1] === "") return;
      meta.appendChild(el("div", null, el("dt", null, kv[0]), el("dd", null, String(kv[1]))));
    });

    var links = document.getElementById("sweep-links");
    while (links.firstChild) links.removeChild(links.firstChild);
    var base = safeUrl(sweep.mlflow_url);
    if (base) {
      base = base.replace(/\/+$/, "");
      var exp = encodeURIComponent(String(sweep.experiment_id || ""));
      if (sweep.parent_run_id) {
        var runUrl = base + "/#/experiments/" + exp + "/runs/" +
          encodeURIComponent(String(sweep.parent_run_id));
        links.appendChild(el("span", null, link(runUrl, "MLflow parent run ↗")));
      }
      if (sweep.experiment_id !== undefined && sweep.experiment_id !== null) {
        links.appendChild(el("span", null, link(base + "/#/experiments/" + exp, "MLflow experiment ↗")));
      }
    }
    if (sweep.parent_run_id) {
      links.appendChild(el("span", { class: "uri" }, "parent run " + String(sweep.parent_run_id)));
    }
    if (sweep.tracking_uri) {
      links.appendChild(el("span", { class: "uri" }, "tracking " + String(sweep.tracking_uri)));
    }

    var notes = document.getElementById("notes");
    while (notes.firstChild) notes.removeChild(notes.firstChild);
    (data.notes || []).forEach(function (n) {
      notes.appendChild(el("li", null, String(n)));
    });

    var footer = document.getElementById("footer");
    footer.textContent = "Generated " + fmtIso(sweep.generated) + " by sedsweep. " +
      "Self-contained page: no network access; plots drawn locally.";
  }

  function statusCounts(data) {
    var counts = {};
    var given = data.counts || null;
    STATUS_ORDER.forEach(function (s) { counts[s] = 0; });
    if (given) {
      STATUS_ORDER.forEach(function (s) { counts[s] = isNum(given[s]) ? given[s] : 0; });
    } else {
      (data.trials || []).forEach(function (t) {
        if (t.status in counts) counts[t.status] += 1;
      });
    }
    return counts;
  }

  function renderStatus(data) {
    var body = sectionBody("status");
    var counts = statusCounts(data);
    var grid = el("div", { class: "counts" });
    var total = 0;
    STATUS_ORDER.forEach(function (s) {
      total += counts[s];
      grid.appendChild(el("div", { class: "count", "data-status": s },
        el("div", { class: "n" }, String(counts[s])),
        el("div", { class: "k" },
          el("span", { class: "swatch st-" + s }), s)));
    });
    body.appendChild(grid);
    if (total <= 0) {
      body.appendChild(empty("No trials recorded yet."));
      return;
    }
    var W = 600, H = 34;
    var svg = newSvg("status", W, H, "trial status counts");
    var x = 0;
    STATUS_ORDER.forEach(function (s) {
      if (!counts[s]) return;
      var w = (counts[s] / total) * W;
      var rect = sv("rect", {
        class: "status-seg", "data-status": s, x: r2(x), y: 2, width: r2(w), height: H - 4,
        rx: 3, fill: STATUS_COLOURS[s],
      }, svg);
      svgTitle(rect, s + ": " + counts[s]);
      if (w > 60) {
        svgText(svg, x + w / 2, H / 2 + 4, s + " " + counts[s], {
          "text-anchor": "middle", fill: "#fff", "font-size": 12, "font-weight": 600,
          style: "fill:#fff",
        });
      }
      x += w;
    });
    body.appendChild(svg);
  }

  function renderBest(data, objective) {
    var body = sectionBody("best");
    var best = data.best;
    if (!best) {
      body.appendChild(empty("No completed trial yet."));
      return;
    }
    body.appendChild(el("div", { class: "best-head" },
      el("span", { class: "obj" }, fmt(best.objective)),
      el("span", null, objective.metric + " " + objective.arrow),
      el("strong", null, link(best.url, best.name || best.run_id || "best trial"))));
    var table = el("table", { class: "kv" });
    if (best.run_id) table.appendChild(el("tr", null, el("th", null, "run id"), el("td", null, String(best.run_id))));
    var params = best.params || {};
    Object.keys(params).forEach(function (k) {
      table.appendChild(el("tr", null, el("th", null, k), el("td", null, fmt(params[k]))));
    });
    body.appendChild(table);
  }

  function metricKeys(trials) {
    var seen = {};
    trials.forEach(function (t) {
      Object.keys(t.metrics || {}).forEach(function (k) { seen[k] = true; });
    });
    function group(k) {
      return k.indexOf("val/") === 0 ? 0 : k.indexOf("test/") === 0 ? 1 : 2;
    }
    return Object.keys(seen).sort(function (a, b) {
      return group(a) - group(b) || a.localeCompare(b);
    });
  }

  function paramKeys(data) {
    var keys = (data.searched || []).map(String);
    var seen = {};
    keys.forEach(function (k) { seen[k] = true; });
    (data.trials || []).forEach(function (t) {
      Object.keys(t.params || {}).forEach(function (k) {
        if (!seen[k]) { seen[k] = true; keys.push(k); }
      });
    });
    return keys;
  }

  function renderLeaderboard(data, objective) {
    var body = sectionBody("leaderboard");
    var trials = (data.trials || []).slice();
    if (!trials.length) {
      body.appendChild(empty("No trials."));
      return;
    }
    var bestId = data.best ? data.best.run_id : null;
    var pkeys = paramKeys(data);
    var mkeys = metricKeys(trials);
    var defaultOrder = compareTrials(objective);

    function cmpValues(a, b, dir) {
      var na = a === null || a === undefined, nb = b === null || b === undefined;
      if (na || nb) return na === nb ? 0 : na ? 1 : -1;
      if (typeof a === "number" && typeof b === "number") return dir * (a - b);
      return dir * String(a).localeCompare(String(b), undefined, { numeric: true });
    }

    var columns = [
      { key: "rank", label: "#", num: true, sortable: false },
      { key: "name", label: "trial", get: function (t) { return t.name; } },
      { key: "number", label: "no.", num: true, get: function (t) { return t.number; } },
      { key: "status", label: "status", get: function (t) { return statusRank(t.status); } },
      {
        key: "objective", label: objective.metric + " " + objective.arrow, num: true,
        objective: true, get: function (t) { return t.objective; },
      },
    ];
    pkeys.forEach(function (k) {
      columns.push({ key: "p:" + k, label: k, group: "param", num: false,
        get: function (t) { return (t.params || {})[k]; } });
    });
    mkeys.forEach(function (k) {
      columns.push({ key: "m:" + k, label: k, group: "metric", num: true,
        get: function (t) { var v = (t.metrics || {})[k]; return isNum(v) ? v : null; } });
    });
    columns.push({ key: "valid", label: "trained", title: "the validity gate: did the trial learn",
      get: function (t) { return t.valid === "false" ? "no" : t.valid === "true" ? "yes" : t.valid ? "not judged" : ""; } });
    columns.push({ key: "epochs", label: "epochs", num: true, get: function (t) { return t.epochs; } });
    columns.push({ key: "selected", label: "selected ep.", num: true,
      get: function (t) { return t.selected_epoch; } });
    if (data.pareto) {
      columns.splice(5, 0, { key: "pareto", label: "front", get: function (t) { return t.pareto ? "◆" : ""; } });
    }
    columns.push({ key: "start", label: "started (UTC)", get: function (t) { return t.start_time; } });

    var state = { key: "objective", dir: 1 }; // dir 1: best first / ascending
    var table = el("table", { class: "data leaderboard" });
    var thead = el("thead");
    var groupRow = el("tr", { class: "groups" });
    var headRow = el("tr");
    var spans = [];
    columns.forEach(function (c) {
      var g = c.group || "";
      if (spans.length && spans[spans.length - 1].g === g) spans[spans.length - 1].n += 1;
      else spans.push({ g: g, n: 1 });
    });
    spans.forEach(function (s) {
      var label = s.g === "param" ? "parameters" : s.g === "metric" ? "final metrics" : "";
      groupRow.appendChild(el("th", { colspan: s.n, class: "group" }, label));
    });
    var arrows = {};
    columns.forEach(function (c) {
      var th = el("th", { class: (c.num ? "num " : "") + (c.sortable === false ? "" : "sortable"),
        "data-col": c.key, scope: "col" }, c.label);
      arrows[c.key] = el("span", { class: "arrow" }, "");
      th.appendChild(arrows[c.key]);
      if (c.sortable !== false) {
        th.addEventListener("click", function () {
          if (state.key === c.key) state.dir = -state.dir;
          else { state.key = c.key; state.dir = 1; }
          fill();
        });
      }
      headRow.appendChild(th);
    });
    thead.appendChild(groupRow);
    thead.appendChild(headRow);
    table.appendChild(thead);
    var tbody = el("tbody");
    table.appendChild(tbody);

    function sorted() {
      var col = columns.filter(function (c) { return c.key === state.key; })[0];
      var dir = state.dir;
      if (!col || col.objective) {
        return trials.slice().sort(function (a, b) {
          var na = !isNum(a.objective), nb = !isNum(b.objective);
          if (na || nb) return na === nb ? defaultOrder(a, b) : na ? 1 : -1;
          return dir * objective.compare(a.objective, b.objective) || defaultOrder(a, b);
        });
      }
      return trials.slice().sort(function (a, b) {
        return cmpValues(col.get(a), col.get(b), dir) || defaultOrder(a, b);
      });
    }

    function arrowFor(key) {
      if (key !== state.key) return "";
      var ascending = key === "objective" ? (objective.mode === "min") === (state.dir === 1)
        : state.dir === 1;
      return ascending ? "▲" : "▼";
    }

    function cell(c, t, i) {
      var td = el("td", { class: c.num ? "num" : null });
      if (c.key === "rank") td.textContent = String(i + 1);
      else if (c.key === "name") td.appendChild(link(t.url, t.name || t.run_id || "?"));
      else if (c.key === "status") td.appendChild(badge(t.status));
      else if (c.key === "start") td.textContent = fmtTime(t.start_time);
      else td.textContent = fmt(c.get(t));
      if (c.key === "name" && t.run_id) td.title = String(t.name) + " (run " + t.run_id + ")";
      else if (c.key === "valid" && t.invalid_reason) {
        td.title = t.invalid_reason;
        td.appendChild(el("div", { class: "reason" }, t.invalid_reason));
      }
      else if (c.group === "param") td.title = td.textContent;
      return td;
    }

    function fill() {
      while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
      sorted().forEach(function (t, i) {
        var cls = [];
        if (bestId && t.run_id === bestId) cls.push("is-best");
        if (t.status === "failed" || t.valid === "false") cls.push("muted");
        var tr = el("tr", { "data-run-id": t.run_id, "data-status": t.status,
          class: cls.length ? cls.join(" ") : null });
        columns.forEach(function (c) { tr.appendChild(cell(c, t, i)); });
        tbody.appendChild(tr);
      });
      Object.keys(arrows).forEach(function (k) {
        arrows[k].textContent = arrowFor(k);
      });
    }
    fill();
    body.appendChild(el("div", { class: "scroll" }, table));
  }

  function renderTables(data) {
    var body = sectionBody("tables");
    var tables = data.tables || [];
    if (!tables.length) {
      body.appendChild(empty("No comparison tables."));
      return;
    }
    tables.forEach(function (t) {
      var block = el("div", { class: "table-block" });
      if (t.title) block.appendChild(el("h3", null, String(t.title)));
      var holder = el("div", { class: "scroll" });
      holder.innerHTML = String(t.html || ""); // trusted: rendered by sedsweep's report code
      block.appendChild(holder);
      body.appendChild(block);
    });
  }

  /* One parallel-coordinates axis over `values` (numbers, strings, bools or null). */
  function buildAxis(key, label, values, top, bottom) {
    var present = values.filter(function (v) { return v !== null && v !== undefined; });
    var hasNA = present.length < values.length;
    var numeric = present.length > 0 && present.every(isNum);
    var span = bottom - top;
    var naY = bottom;
    var axis = { key: key, label: label, numeric: numeric, ticks: [], naY: hasNA ? naY : null };
    var last = hasNA ? bottom - Math.min(40, span * 0.14) : bottom;
    if (numeric) {
      var lo = Math.min.apply(null, present), hi = Math.max.apply(null, present);
      var log = lo > 0 && hi / lo >= 100;
      var w = log ? [lo, hi] : widen(lo, hi);
      var s = numScale(w[0], w[1], last, top, log);
      axis.log = log;
      axis.pos = function (v) { return isNum(v) ? s(v) : naY; };
      if (log) {
        axis.ticks = logTicks(w[0], w[1]).map(function (v) { return { y: s(v), text: fmt(v) }; });
      } else {
        var lt = linTicks(w[0], w[1], 5);
        axis.ticks = lt.ticks.map(function (v) { return { y: s(v), text: fmtTick(v, lt.step) }; });
      }
    } else {
      var cats = [];
      present.forEach(function (v) {
        var k = typeof v === "string" ? v : fmt(v);
        if (cats.indexOf(k) < 0) cats.push(k);
      });
      cats.sort(function (a, b) { return a.localeCompare(b, undefined, { numeric: true }); });
      var n = cats.length;
      var posOf = {};
      cats.forEach(function (c, i) {
        posOf[c] = n === 1 ? (top + last) / 2 : last - (i / (n - 1)) * (last - top);
      });
      axis.pos = function (v) {
        if (v === null || v === undefined) return naY;
        var k = typeof v === "string" ? v : fmt(v);
        return k in posOf ? posOf[k] : naY;
      };
      axis.ticks = cats.map(function (c) { return { y: posOf[c], text: c }; });
    }
    return axis;
  }

  function renderParallel(data, objective) {
    var body = sectionBody("parallel");
    var trials = data.trials || [];
    var searched = (data.searched || []).map(String);
    if (!trials.length) {
      body.appendChild(empty("No trials to plot."));
      return;
    }
    if (!searched.length) {
      body.appendChild(empty("No searched parameters."));
      return;
    }
    var nAxes = searched.length + 1;
    var ml = 80, mr = 170, top = 70, bottom = 370;
    // about 1200 user units wide (1:1 on a desktop page); wider with many axes
    var spacing = Math.max(130, (1200 - ml - mr) / (nAxes - 1));
    var W = ml + mr + spacing * (nAxes - 1), H = bottom + 50;
    var svg = newSvg("parallel", W, H, "parallel coordinates");
    svgText(svg, W / 2, 18, "Searched parameters vs " + objective.metric, {
      class: "title", "text-anchor": "middle",
    });

    var axes = searched.map(function (k) {
      return buildAxis(k, k, trials.map(function (t) { return (t.params || {})[k]; }), top, bottom);
    });
    var objAxis = buildAxis("objective", objective.metric + " " + objective.arrow,
      trials.map(function (t) { return isNum(t.objective) ? t.objective : null; }), top, bottom);
    axes.push(objAxis);
    axes.forEach(function (a, i) { a.x = ml + i * spacing; });

    var done = trials.filter(function (t) { return t.status === "completed" && isNum(t.objective); });
    var others = trials.filter(function (t) { return done.indexOf(t) < 0; });
    var vals = done.map(function (t) { return t.objective; });
    var lo = vals.length ? Math.min.apply(null, vals) : 0;
    var hi = vals.length ? Math.max.apply(null, vals) : 1;
    function goodness(v) {
      if (!(hi > lo)) return 1;
      var t = (v - lo) / (hi - lo);
      return objective.mode === "max" ? t : 1 - t;
    }

    var lines = sv("g", { class: "lines" }, svg);
    function drawLine(t, cls, colour) {
      var d = axes.map(function (a, i) {
        var v = a === objAxis ? t.objective : (t.params || {})[a.key];
        return (i ? "L" : "M") + r2(a.x) + " " + r2(a.pos(v));
      }).join(" ");
      var p = sv("path", { class: cls, d: d, "data-run-id": t.run_id, "data-status": t.status,
        stroke: colour }, lines);
      svgTitle(p, (t.name || t.run_id) + " [" + t.status + "] " + objective.metric + " = " + fmt(t.objective));
    }
    others.forEach(function (t) { drawLine(t, "pc-line muted", null); });
    var bestId = data.best ? data.best.run_id : null;
    done.slice().sort(function (a, b) { return goodness(a.objective) - goodness(b.objective); })
      .forEach(function (t) {
        drawLine(t, "pc-line" + (t.run_id === bestId ? " best" : ""), scaleColour(goodness(t.objective)));
      });

    var maxChars = Math.max(8, Math.floor(spacing / 7));
    axes.forEach(function (a) {
      var g = sv("g", { class: "pc-axis", "data-key": a.key }, svg);
      sv("line", { class: "axis-line", x1: a.x, x2: a.x, y1: top, y2: a.naY !== null ? a.naY : bottom }, g);
      var name = svgText(g, a.x, top - 32, shorten(a.label, maxChars), {
        class: "axis-name", "text-anchor": "middle",
      });
      svgTitle(name, a.label);
      var kind = a.numeric ? (a.log ? "log scale" : "linear") : "categorical";
      svgText(g, a.x, top - 17, kind, { class: "axis-label", "text-anchor": "middle", "font-size": 10, style: "font-size:10px" });
      a.ticks.forEach(function (tk) {
        var tg = sv("g", { class: "tick" }, g);
        sv("line", { x1: a.x - 4, x2: a.x, y1: r2(tk.y), y2: r2(tk.y) }, tg);
        var tx = svgText(tg, a.x - 7, tk.y + 3.5, shorten(tk.text, 16), { "text-anchor": "end" });
        if (tk.text.length > 16) svgTitle(tx, tk.text);
      });
      if (a.naY !== null) {
        var ng = sv("g", { class: "tick" }, g);
        sv("line", { x1: a.x - 4, x2: a.x, y1: a.naY, y2: a.naY }, ng);
        svgText(ng, a.x - 7, a.naY + 3.5, "n/a", { "text-anchor": "end", class: "na-label" });
      }
    });

    // colour legend (worse -> better)
    var lx = W - mr + 40, ly0 = top + 10, ly1 = top + 190;
    var defs = sv("defs", null, svg);
    var grad = sv("linearGradient", { id: "pc-gradient", x1: 0, y1: 1, x2: 0, y2: 0 }, defs);
    SCALE_STOPS.forEach(function (c, i) {
      sv("stop", { offset: (i / (SCALE_STOPS.length - 1)) * 100 + "%", "stop-color": c }, grad);
    });
    var leg = sv("g", { class: "legend" }, svg);
    if (done.length) {
      sv("rect", { x: lx, y: ly0, width: 14, height: ly1 - ly0, fill: "url(#pc-gradient)", rx: 2 }, leg);
      var bestVal = objective.mode === "max" ? hi : lo, worstVal = objective.mode === "max" ? lo : hi;
      svgText(leg, lx + 20, ly0 + 9, "best " + fmt(bestVal));
      svgText(leg, lx + 20, ly1, "worst " + fmt(worstVal));
      svgText(leg, lx - 2, ly0 - 10, "colour: objective", { "font-size": 11, style: "font-size:11px" });
    }
    if (others.length) {
      sv("line", { x1: lx, x2: lx + 26, y1: ly1 + 30, y2: ly1 + 30, class: "pc-line muted" }, leg);
      svgText(leg, lx + 32, ly1 + 34, "not completed");
    }
    body.appendChild(svg);
    var note = done.length + " completed trial" + (done.length === 1 ? "" : "s") + " coloured by " +
      objective.metric + ".";
    if (others.length) {
      note += " " + others.length + " pruned / failed / running trial" +
        (others.length === 1 ? "" : "s") + " drawn grey and dashed (objective at its last value, or n/a).";
    }
    body.appendChild(el("p", { class: "legend-note" }, note));
  }

  function renderImportance(data) {
    var body = sectionBody("importance");
    var imp = data.importance;
    var values = imp && Array.isArray(imp.values) ? imp.values.filter(function (pv) {
      return Array.isArray(pv) && isNum(pv[1]);
    }) : [];
    if (!imp || !values.length) {
      var notes = (data.notes || []).filter(function (n) { return /importance/i.test(String(n)); });
      body.appendChild(empty(notes.length ? notes.join(" ") : "Parameter importance was not computed."));
      return;
    }
    values = values.slice().sort(function (a, b) { return b[1] - a[1]; });
    if (imp.basis) body.appendChild(el("p", { class: "hint", "data-basis": "importance" }, "computed on " + String(imp.basis)));
    var longest = values.reduce(function (m, pv) { return Math.max(m, String(pv[0]).length); }, 4);
    var ml = Math.min(210, 16 + longest * 7), mr = 70, top = 40;
    var barH = Math.max(22, Math.min(40, 250 / values.length));
    var W = 600, H = top + values.length * barH + 40;
    var hiV = Math.max.apply(null, values.map(function (pv) { return pv[1]; }));
    var dom = niceDomain(0, hiV > 0 ? hiV : 1, 4);
    dom[0] = 0;
    var X = numScale(0, dom[1], ml, W - mr, false);
    var svg = newSvg("importance", W, H, "parameter importance");
    var title = "Importance for " + (imp.target || "objective");
    if (imp.evaluator) title += " (" + imp.evaluator + ")";
    svgText(svg, W / 2, 18, title, { class: "title", "text-anchor": "middle" });
    var y0 = top + values.length * barH;
    var lt = linTicks(0, dom[1], 4);
    lt.ticks.forEach(function (v) {
      sv("line", { class: "grid", x1: r2(X(v)), x2: r2(X(v)), y1: top - 4, y2: y0 }, svg);
      var tg = sv("g", { class: "tick" }, svg);
      sv("line", { x1: r2(X(v)), x2: r2(X(v)), y1: y0, y2: y0 + 4 }, tg);
      svgText(tg, X(v), y0 + 16, fmtTick(v, lt.step), { "text-anchor": "middle" });
    });
    values.forEach(function (pv, i) {
      var y = top + i * barH;
      var rect = sv("rect", { class: "bar", "data-param": String(pv[0]), x: ml, y: y + 4,
        width: r2(Math.max(0.5, X(Math.max(0, pv[1])) - ml)), height: barH - 8, rx: 2 }, svg);
      svgTitle(rect, String(pv[0]) + ": " + fmt(pv[1]));
      var lab = svgText(svg, ml - 8, y + barH / 2 + 4, shorten(pv[0], 30), {
        "text-anchor": "end", class: "axis-label",
      });
      svgTitle(lab, String(pv[0]));
      svgText(svg, X(Math.max(0, pv[1])) + 5, y + barH / 2 + 4, fmt(pv[1]), { class: "bar-value" });
    });
    sv("line", { class: "axis-line", x1: ml, x2: ml, y1: top - 4, y2: y0 }, svg);
    sv("line", { class: "axis-line", x1: ml, x2: W - mr, y1: y0, y2: y0 }, svg);
    svgText(svg, (ml + W - mr) / 2, H - 6, "importance", { class: "axis-label", "text-anchor": "middle" });
    body.appendChild(svg);
  }

  function renderProgress(data, objective) {
    var body = sectionBody("progress");
    var trials = data.trials || [];
    // x: Optuna trial number, or the order of start when no trial has a number
    var haveNumbers = trials.some(function (t) { return isNum(t.number); });
    var order = trials.slice().sort(function (a, b) {
      return (isNum(a.start_time) ? a.start_time : Infinity) - (isNum(b.start_time) ? b.start_time : Infinity);
    });
    function xOf(t) { return haveNumbers ? t.number : order.indexOf(t); }
    var pts = trials.filter(function (t) { return isNum(t.objective) && isNum(xOf(t)); });
    if (!pts.length) {
      body.appendChild(empty("No objective values yet."));
      return;
    }
    var xs = pts.map(xOf), ys = pts.map(function (t) { return t.objective; });
    var c = cartesian({
      plot: "progress", width: 600, height: 340,
      margin: { l: 62, r: 18, t: 54, b: 44 },
      x: [Math.min.apply(null, xs), Math.max.apply(null, xs)], xInteger: true,
      y: [Math.min.apply(null, ys), Math.max.apply(null, ys)],
      title: objective.metric + " by trial (" + objective.mode + ")",
      xLabel: haveNumbers ? "trial number" : "trial (order of start)",
      yLabel: objective.metric,
    });
    var done = pts.filter(function (t) { return t.status === "completed"; })
      .sort(function (a, b) { return xOf(a) - xOf(b); });
    if (done.length) {
      var best = null, d = "";
      done.forEach(function (t, i) {
        var x = r2(c.X(xOf(t)));
        if (best === null || objective.better(t.objective, best)) {
          if (i === 0) d += "M" + x + " " + r2(c.Y(t.objective));
          else d += " H" + x + " V" + r2(c.Y(t.objective));
          best = t.objective;
        }
      });
      d += " H" + r2(c.X(Math.max.apply(null, xs) + 0.5));
      var line = sv("path", { class: "best-so-far", d: d }, c.g);
      svgTitle(line, "best so far: " + fmt(best));
    }
    pts.forEach(function (t) {
      var completed = t.status === "completed";
      var p = sv("circle", {
        class: "point" + (completed ? "" : " muted"), "data-run-id": t.run_id, "data-status": t.status,
        cx: r2(c.X(xOf(t))), cy: r2(c.Y(t.objective)), r: completed ? 4.5 : 4,
        fill: completed ? STATUS_COLOURS.completed : null,
      }, c.g);
      svgTitle(p, (t.name || t.run_id) + " [" + t.status + "]: " + fmt(t.objective));
    });
    // legend
    var lg = sv("g", { class: "legend" }, c.svg);
    var lx = c.x0 + 4, ly = c.y1 - 20;
    sv("circle", { cx: lx, cy: ly, r: 4.5, fill: STATUS_COLOURS.completed, class: "point" }, lg);
    svgText(lg, lx + 9, ly + 4, "completed");
    sv("circle", { cx: lx + 90, cy: ly, r: 4, class: "point muted" }, lg);
    svgText(lg, lx + 99, ly + 4, "pruned / other");
    sv("line", { x1: lx + 200, x2: lx + 222, y1: ly, y2: ly, class: "best-so-far" }, lg);
    svgText(lg, lx + 228, ly + 4, "best so far");
    body.appendChild(c.svg);
  }

  function renderCurves(data) {
    var body = sectionBody("curves");
    var curves = (data.curves || []).map(function (cv) {
      var pts = (cv.points || []).filter(function (p) {
        return Array.isArray(p) && isNum(p[0]) && isNum(p[1]);
      });
      return { run_id: cv.run_id, label: cv.label || cv.run_id || "run", metric: cv.metric || "value", pts: pts };
    }).filter(function (cv) { return cv.pts.length; });
    if (!curves.length) {
      body.appendChild(empty("No learning curves recorded."));
      return;
    }
    var metrics = [];
    curves.forEach(function (cv) { if (metrics.indexOf(cv.metric) < 0) metrics.push(cv.metric); });
    var colourOf = {};
    curves.forEach(function (cv) {
      if (!(cv.run_id in colourOf)) {
        colourOf[cv.run_id] = CATEGORY_COLOURS[Object.keys(colourOf).length % CATEGORY_COLOURS.length];
      }
    });
    metrics.forEach(function (metric) {
      var mine = curves.filter(function (cv) { return cv.metric === metric; });
      var xs = [], ys = [];
      mine.forEach(function (cv) { cv.pts.forEach(function (p) { xs.push(p[0]); ys.push(p[1]); }); });
      var c = cartesian({
        plot: "curves", width: 1200, height: 380,
        margin: { l: 62, r: 230, t: 34, b: 44 },
        x: [Math.min.apply(null, xs), Math.max.apply(null, xs)],
        y: [Math.min.apply(null, ys), Math.max.apply(null, ys)],
        title: metric + " during training",
        xLabel: "step", yLabel: metric,
      });
      c.svg.setAttribute("data-metric", metric);
      mine.forEach(function (cv) {
        var colour = colourOf[cv.run_id];
        var d = cv.pts.map(function (p, i) {
          return (i ? "L" : "M") + r2(c.X(p[0])) + " " + r2(c.Y(p[1]));
        }).join(" ");
        var path = sv("path", { class: "curve-line", d: d, stroke: colour, "data-run-id": cv.run_id }, c.g);
        svgTitle(path, cv.label);
        if (cv.pts.length === 1) {
          sv("circle", { cx: r2(c.X(cv.pts[0][0])), cy: r2(c.Y(cv.pts[0][1])), r: 3.5, fill: colour }, c.g);
        }
      });
      var lg = sv("g", { class: "legend" }, c.svg);
      var lx = c.x1 + 20;
      mine.forEach(function (cv, i) {
        var y = c.y1 + 8 + i * 20;
        if (y > c.y0) return;
        var item = sv("g", { class: "legend-item", "data-run-id": cv.run_id }, lg);
        sv("line", { x1: lx, x2: lx + 22, y1: y, y2: y, stroke: cv ? colourOf[cv.run_id] : null,
          "stroke-width": 3 }, item);
        var tx = svgText(item, lx + 28, y + 4, shorten(cv.label, 26));
        svgTitle(tx, cv.label);
      });
      body.appendChild(c.svg);
    });
  }

  function renderClaims(data) {
    var body = sectionBody("claims");
    if (!data.claims || !data.claims.html) {
      body.appendChild(empty("This sweep's file states no claims."));
      return;
    }
    var holder = el("div", { class: "scroll" });
    holder.innerHTML = String(data.claims.html); // trusted: rendered by sedsweep's report code
    body.appendChild(holder);
  }

  /* Pareto sweeps: the completed trials on the first two objectives, the front drawn as a
   * staircase, and the hypervolume of the front after each trial. */
  function renderPareto(data) {
    var body = sectionBody("pareto");
    var pf = data.pareto;
    if (!pf) {
      body.appendChild(empty("A single-objective sweep: no Pareto front."));
      return;
    }
    var metrics = (pf.metrics || []).map(String);
    var modes = pf.modes || [];
    var pts = (pf.points || []).filter(function (p) {
      return Array.isArray(p.values) && isNum(p.values[0]) && isNum(p.values[1]);
    });
    if (!pts.length || metrics.length < 2) {
      body.appendChild(empty("No completed trial has every objective yet."));
      return;
    }
    var xs = pts.map(function (p) { return p.values[0]; });
    var ys = pts.map(function (p) { return p.values[1]; });
    var c = cartesian({
      plot: "pareto", width: 600, height: 380, margin: { l: 62, r: 18, t: 34, b: 44 },
      x: [Math.min.apply(null, xs), Math.max.apply(null, xs)],
      y: [Math.min.apply(null, ys), Math.max.apply(null, ys)],
      title: "Pareto front" + (metrics.length > 2 ? " (first two of " + metrics.length + " objectives)" : ""),
      xLabel: metrics[0] + " (" + (modes[0] || "max") + ")", yLabel: metrics[1] + " (" + (modes[1] || "max") + ")",
    });
    var front = pts.filter(function (p) { return p.front; });
    if (metrics.length === 2 && front.length) {
      var sx = modes[0] === "min" ? 1 : -1;  // best of objective 1 first
      front.sort(function (a, b) { return sx * (a.values[0] - b.values[0]); });
      var d = "";
      front.forEach(function (p, i) {
        var x = r2(c.X(p.values[0])), y = r2(c.Y(p.values[1]));
        d += i ? " H" + x + " V" + y : "M" + x + " " + y;
      });
      sv("path", { class: "front-line", d: d, fill: "none", stroke: STATUS_COLOURS.completed,
        "stroke-width": 2, "data-front": front.length }, c.g);
    }
    pts.forEach(function (p) {
      var dot = sv("circle", {
        class: "point" + (p.front ? " front" : " muted"), "data-run-id": p.run_id,
        "data-front": p.front ? "true" : "false",
        cx: r2(c.X(p.values[0])), cy: r2(c.Y(p.values[1])), r: p.front ? 5 : 3.5,
        fill: p.front ? STATUS_COLOURS.completed : null,
      }, c.g);
      svgTitle(dot, (p.name || p.run_id) + ": " + metrics.map(function (m, i) {
        return m + " " + fmt(p.values[i]);
      }).join(", ") + (p.front ? " (on the front)" : ""));
    });
    body.appendChild(c.svg);
    var hv = (pf.hypervolume || []).filter(function (q) { return Array.isArray(q) && isNum(q[0]) && isNum(q[1]); });
    if (hv.length) {
      var hx = hv.map(function (q) { return q[0]; }), hy = hv.map(function (q) { return q[1]; });
      var h = cartesian({
        plot: "hypervolume", width: 600, height: 300, margin: { l: 62, r: 18, t: 34, b: 44 },
        x: [Math.min.apply(null, hx), Math.max.apply(null, hx)], xInteger: true,
        y: [0, Math.max.apply(null, hy)],
        title: "Hypervolume of the front by trial (reference: worst value of each objective)",
        xLabel: "trial number", yLabel: "hypervolume",
      });
      var hd = hv.map(function (q, i) { return (i ? "L" : "M") + r2(h.X(q[0])) + " " + r2(h.Y(q[1])); }).join(" ");
      sv("path", { class: "best-so-far", d: hd, "data-points": hv.length }, h.g);
      body.appendChild(h.svg);
    }
  }

  function renderFigures(data) {
    var body = sectionBody("figures");
    var figs = data.figures || [];
    if (!figs.length) {
      body.appendChild(empty("No figures for the best trial."));
      return;
    }
    var grid = el("div", { class: "figure-grid" });
    figs.forEach(function (f) {
      var path = typeof f.path === "string" ? f.path : "";
      var fig = el("figure");
      // only local files next to the page: never a URL, never outside figures/
      if (/^figures\/[A-Za-z0-9._\-/]+$/.test(path) && path.indexOf("..") < 0) {
        var img = el("img", { alt: f.title || path });
        img.addEventListener("load", function () { img.dataset.loaded = "true"; });
        img.addEventListener("error", function () {
          img.dataset.loaded = "error";
          fig.appendChild(el("p", { class: "error" }, "missing figure file: " + path));
        });
        img.setAttribute("src", path);
        fig.appendChild(img);
      } else {
        fig.appendChild(el("p", { class: "error" }, "figure path refused (must be figures/NAME): " + path));
      }
      fig.appendChild(el("figcaption", null, String(f.title || path)));
      grid.appendChild(fig);
    });
    body.appendChild(grid);
  }

  /* ---------- main ---------- */

  function main() {
    var errors = [];
    var data = null;
    try {
      data = JSON.parse(document.getElementById("sweep-data").textContent);
    } catch (e) {
      errors.push("payload: " + e.message);
    }
    if (data && typeof data === "object") {
      var objective = makeObjective(data);
      [
        ["header", renderHeader],
        ["status", renderStatus],
        ["best", renderBest],
        ["leaderboard", renderLeaderboard],
        ["tables", renderTables],
        ["parallel", renderParallel],
        ["importance", renderImportance],
        ["progress", renderProgress],
        ["curves", renderCurves],
        ["pareto", renderPareto],
        ["claims", renderClaims],
        ["figures", renderFigures],
      ].forEach(function (step) {
        try {
          step[1](data, objective);
        } catch (e) {
          errors.push(step[0] + ": " + (e && e.message ? e.message : String(e)));
          if (window.console) console.error(e);
          var section = document.getElementById(step[0]);
          if (section) {
            var body = section.querySelector(".body") || section;
            body.appendChild(el("p", { class: "error" }, "could not draw this section: " + String(e)));
          }
        }
      });
    }
    if (errors.length) {
      var box = document.getElementById("render-errors");
      box.hidden = false;
      box.textContent = "Some parts of the dashboard failed to draw:\n" + errors.join("\n");
      document.body.dataset.renderErrors = String(errors.length);
    }
    document.body.dataset.rendered = "true";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
