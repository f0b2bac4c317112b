/* crosstime dashboard: plain JS, no framework, no network. Data: #crosstime-data (JSON). */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("crosstime-data").textContent);
  var CK = D.checkpoints || [];
  var M = CK.length;
  var VOCAB = D.vocab || {};
  var FEATURES = D.features || [];
  var BY_ID = {};
  FEATURES.forEach(function (f) { BY_ID[f.id] = f; });
  var PALETTE = ["#2f6fde", "#d9480f", "#2b8a3e", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c", "#5f3dc4", "#495057", "#74b816"];
  var SVGNS = "http://www.w3.org/2000/svg";

  // ---------------------------------------------------------------- helpers
  function el(tag, attrs, kids) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, kids);
    return node;
  }
  function sv(tag, attrs, kids) {
    var node = document.createElementNS(SVGNS, tag);
    setAttrs(node, attrs);
    append(node, kids);
    return node;
  }
  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k === "cls") node.setAttribute("class", v);
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    });
  }
  function append(node, kids) {
    if (kids === null || kids === undefined) return;
    if (!Array.isArray(kids)) kids = [kids];
    kids.forEach(function (kid) {
      if (kid === null || kid === undefined || kid === false) return;
      node.appendChild(typeof kid === "string" || typeof kid === "number" ? document.createTextNode(String(kid)) : kid);
    });
  }
  function isNum(x) { return typeof x === "number" && isFinite(x); }
  function fmt(x, digits) {
    if (x === null || x === undefined || x === "") return "–";
    if (typeof x !== "number") return String(x);
    if (!isFinite(x)) return String(x);
    if (Number.isInteger(x) && Math.abs(x) < 1e6) return String(x);
    var a = Math.abs(x);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(2);
    return x.toFixed(digits === undefined ? (a < 1 ? 3 : a < 100 ? 2 : 1) : digits);
  }
  function fmtTokens(t) {
    if (!isNum(t)) return "–";
    var units = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
    for (var i = 0; i < units.length; i++) {
      if (t >= units[i][0]) { var v = t / units[i][0]; return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1).replace(/\.0$/, "") : v.toFixed(2).replace(/\.?0+$/, "")) + units[i][1]; }
    }
    return String(t);
  }
  function ckLabel(m) { return CK[m] ? (CK[m].label || CK[m].revision) : String(m); }
  function tokenText(id) {
    var s = VOCAB[id];
    if (s === undefined) s = "#" + id;
    return s.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
  }
  function missing(text) { return el("div", { cls: "missing", text: text }); }
  function panel(title, body, wide) {
    return el("div", { cls: "panel" + (wide ? " wide" : "") }, [el("h2", { text: title }), body]);
  }
  function sum(xs) { var s = 0; xs.forEach(function (x) { if (isNum(x)) s += x; }); return s; }
  function argmax(xs) { var b = -1, bv = -Infinity; (xs || []).forEach(function (x, i) { if (isNum(x) && x > bv) { bv = x; b = i; } }); return b; }

  // ---------------------------------------------------------------- charts
  function lineChart(opts) {
    var W = opts.width || 380, H = opts.height || 200, L = 44, R = 18, T = 10, B = 30;
    var pts = [];
    opts.series.forEach(function (s) { s.points.forEach(function (p) { if (isNum(p[0]) && isNum(p[1])) pts.push(p); }); });
    var svg = sv("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, cls: "chart " + (opts.cls || "") });
    if (!pts.length) { svg.appendChild(sv("text", { x: 10, y: 20, text: "no data" })); return svg; }
    var logx = !!opts.logx;
    var xs = pts.map(function (p) { return p[0]; });
    if (logx) xs = xs.filter(function (x) { return x > 0; });
    var floor = logx ? Math.min.apply(null, xs.length ? xs : [1]) / 2 : 0;
    function tx(x) { return logx ? Math.log10(Math.max(x, floor)) : x; }
    var x0 = Math.min.apply(null, pts.map(function (p) { return tx(p[0]); })), x1 = Math.max.apply(null, pts.map(function (p) { return tx(p[0]); }));
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    var ys = pts.map(function (p) { return p[1]; });
    var y0 = opts.ymin !== undefined ? opts.ymin : Math.min.apply(null, ys), y1 = opts.ymax !== undefined ? opts.ymax : Math.max.apply(null, ys);
    if (y1 === y0) { y0 -= 1; y1 += 1; }
    function X(x) { return L + (tx(x) - x0) / (x1 - x0) * (W - L - R); }
    function Y(y) { return T + (1 - (y - y0) / (y1 - y0)) * (H - T - B); }
    var axis = sv("g", { cls: "axis" });
    axis.appendChild(sv("line", { x1: L, y1: H - B, x2: W - R, y2: H - B }));
    axis.appendChild(sv("line", { x1: L, y1: T, x2: L, y2: H - B }));
    for (var i = 0; i <= 4; i++) {
      var yv = y0 + (y1 - y0) * i / 4;
      axis.appendChild(sv("line", { x1: L - 3, y1: Y(yv), x2: L, y2: Y(yv) }));
      axis.appendChild(sv("text", { x: L - 5, y: Y(yv) + 3, "text-anchor": "end", text: fmt(yv) }));
    }
    (opts.xticks || []).forEach(function (t) {
      if (!isNum(t[0])) return;
      axis.appendChild(sv("line", { x1: X(t[0]), y1: H - B, x2: X(t[0]), y2: H - B + 3 }));
    });
    var labelled = thin(opts.xticks || [], Math.max(2, Math.floor((W - L - R) / 46)));
    labelled.forEach(function (t) {
      if (!isNum(t[0])) return;
      axis.appendChild(sv("text", { x: X(t[0]), y: H - B + 13, "text-anchor": "middle", text: t[1] }));
    });
    if (opts.xlabel) axis.appendChild(sv("text", { x: (L + W - R) / 2, y: H - 3, "text-anchor": "middle", text: opts.xlabel }));
    svg.appendChild(axis);
    (opts.markers || []).forEach(function (mk) {
      if (!isNum(mk[0])) return;
      svg.appendChild(sv("line", { x1: X(mk[0]), y1: T, x2: X(mk[0]), y2: H - B, stroke: "#bbb", "stroke-dasharray": "3,3" }, sv("title", { text: mk[1] })));
    });
    if (opts.hline !== undefined && opts.hline >= y0 && opts.hline <= y1) {
      svg.appendChild(sv("line", { x1: L, y1: Y(opts.hline), x2: W - R, y2: Y(opts.hline), stroke: "#ccc" }));
    }
    opts.series.forEach(function (s, k) {
      var col = s.color || PALETTE[k % PALETTE.length];
      var p = s.points.filter(function (q) { return isNum(q[0]) && isNum(q[1]); });
      if (p.length > 1) {
        svg.appendChild(sv("polyline", { fill: "none", stroke: col, "stroke-width": 1.6, points: p.map(function (q) { return X(q[0]).toFixed(1) + "," + Y(q[1]).toFixed(1); }).join(" ") }));
      }
      p.forEach(function (q) {
        svg.appendChild(sv("circle", { cx: X(q[0]), cy: Y(q[1]), r: 2.6, fill: col }, sv("title", { text: (s.name ? s.name + " · " : "") + (q[2] || fmt(q[0])) + ": " + fmt(q[1]) })));
      });
    });
    return svg;
  }
  function thin(ticks, n) {
    if (ticks.length <= n) return ticks;
    var out = [], step = (ticks.length - 1) / (n - 1);
    for (var i = 0; i < n; i++) out.push(ticks[Math.round(i * step)]);
    return out;
  }
  function legend(names) {
    return el("div", { cls: "legend" }, names.map(function (n, k) {
      return el("span", null, [el("i", { style: "background:" + PALETTE[k % PALETTE.length] }), n]);
    }));
  }
  function heatmap(matrix, labels, size) {
    var n = matrix.length, S = size || 300, L = 60, cell = (S - L) / Math.max(n, 1);
    var vals = [];
    matrix.forEach(function (r) { r.forEach(function (v) { if (isNum(v)) vals.push(v); }); });
    var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    if (hi === lo) hi = lo + 1;
    var svg = sv("svg", { width: S, height: S, viewBox: "0 0 " + S + " " + S, cls: "heatmap" });
    for (var i = 0; i < n; i++) {
      for (var j = 0; j < n; j++) {
        var v = matrix[i][j], t = isNum(v) ? (v - lo) / (hi - lo) : 0;
        var c = "rgb(" + Math.round(255 - 200 * t) + "," + Math.round(255 - 140 * t) + "," + Math.round(255 - 40 * t) + ")";
        svg.appendChild(sv("rect", { x: L + j * cell, y: i * cell, width: cell + 0.3, height: cell + 0.3, fill: isNum(v) ? c : "#eee" },
          sv("title", { text: (labels[i] || i) + " × " + (labels[j] || j) + ": " + fmt(v) })));
      }
      var every = Math.ceil(n / 16);
      if (i % every === 0) {
        svg.appendChild(sv("text", { x: L - 3, y: i * cell + cell / 2 + 3, "text-anchor": "end", text: labels[i] || i }));
        svg.appendChild(sv("text", { x: L + i * cell + cell / 2, y: n * cell + 10, "text-anchor": "end", transform: "rotate(-45 " + (L + i * cell + cell / 2) + " " + (n * cell + 10) + ")", text: labels[i] || i }));
      }
    }
    return el("div", null, [svg, el("div", { cls: "legend", text: "colour: " + fmt(lo) + " (white) … " + fmt(hi) + " (blue)" })]);
  }
  function histogram(counts, upper, opts) {
    opts = opts || {};
    var W = opts.width || 160, H = opts.height || 70, B = 14;
    var svg = sv("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, cls: "hist" });
    var mx = Math.max.apply(null, counts.concat([1]));
    var bw = W / Math.max(counts.length, 1);
    counts.forEach(function (c, b) {
      var h = (opts.log ? Math.log1p(c) / Math.log1p(mx) : c / mx) * (H - B - 2);
      svg.appendChild(sv("rect", { x: b * bw + 0.5, y: H - B - h, width: Math.max(bw - 1, 0.5), height: h, fill: opts.color || "#888" },
        sv("title", { text: (opts.binLabel ? opts.binLabel(b) : "bin " + b) + ": " + c })));
    });
    svg.appendChild(sv("line", { x1: 0, y1: H - B, x2: W, y2: H - B, stroke: "#999" }));
    svg.appendChild(sv("text", { x: 0, y: H - 2, text: opts.left !== undefined ? opts.left : "0" }));
    svg.appendChild(sv("text", { x: W, y: H - 2, "text-anchor": "end", text: opts.right !== undefined ? opts.right : fmt(upper) }));
    return svg;
  }
  function table(columns, rows, opts) {
    opts = opts || {};
    var t = el("table", { cls: "data" });
    var tips = opts.titles || {};
    t.appendChild(el("thead", null, el("tr", null, columns.map(function (c) { return el("th", { text: c, title: tips[c] || null }); }))));
    var tb = el("tbody");
    rows.forEach(function (r) {
      tb.appendChild(el("tr", null, columns.map(function (c, k) {
        var v = Array.isArray(r) ? r[k] : r[c];
        return el("td", { text: fmt(v), style: typeof v === "string" && v.length > 24 ? "white-space:normal;text-align:left;min-width:160px" : null });
      })));
    });
    t.appendChild(tb);
    return el("div", { cls: opts.noscroll ? "hscroll" : "scroll" }, t);
  }
  function kv(obj) {
    var dl = el("dl", { cls: "kv" });
    Object.keys(obj || {}).forEach(function (k) {
      var v = obj[k];
      dl.appendChild(el("dt", { text: k }));
      dl.appendChild(el("dd", { text: typeof v === "object" && v !== null ? JSON.stringify(v) : fmt(v) }));
    });
    return dl;
  }
  function barList(kind, values, opts) {
    opts = opts || {};
    var box = el("div", { cls: "bars " + kind });
    var peak = argmax(values);
    var scale = opts.max || Math.max.apply(null, (values || []).filter(isNum).map(Math.abs).concat([1e-12]));
    for (var m = 0; m < M; m++) {
      var v = values ? values[m] : null;
      var w = isNum(v) ? Math.min(100, Math.abs(v) / scale * 100) : 0;
      var extra = opts.extra ? opts.extra(m) : "";
      box.appendChild(el("div", { cls: "bar-row" + (m === peak ? " peak" : ""), "data-checkpoint": CK[m] ? CK[m].revision : m, title: opts.title ? opts.title(m) : null }, [
        el("span", { cls: "lab", text: ckLabel(m) }),
        el("span", { cls: "track" }, [el("span", { cls: "fill", style: "width:" + w.toFixed(1) + "%" }),
          opts.uniform ? el("span", { cls: "uniform", title: "uniform share 1/M", style: "left:" + Math.min(100, opts.uniform / scale * 100).toFixed(1) + "%" }) : null]),
        el("span", { cls: "val", text: fmt(v) + extra })
      ]));
    }
    return box;
  }
  function tokenX() {
    // x coordinate of checkpoint m on a tokens-seen axis; falls back to the index.
    var ok = CK.length && CK.every(function (c) { return isNum(c.tokens); });
    return { logx: ok, x: function (m) { return ok ? CK[m].tokens : m; }, ticks: CK.map(function (c, m) { return [ok ? c.tokens : m, c.label || c.revision]; }) };
  }

  function suggestionView(sg) {
    var box = el("div");
    var rest = {};
    Object.keys(sg).forEach(function (k) { if (k !== "checkpoints" && k !== "revisions") rest[k] = sg[k]; });
    if (Array.isArray(sg.checkpoints) && sg.checkpoints.length && typeof sg.checkpoints[0] === "object") {
      var cols = ["revision", "label", "role", "reason"].filter(function (c) { return sg.checkpoints.some(function (p) { return p[c] !== undefined; }); });
      box.appendChild(table(cols, sg.checkpoints, { noscroll: true }));
    } else if (Array.isArray(sg.revisions)) rest.revisions = sg.revisions.join(", ");
    box.appendChild(kv(rest));
    return box;
  }

  // ---------------------------------------------------------------- overview
  function renderOverview() {
    var root = document.getElementById("overview");
    var O = D.overview || {};
    if ((D.missing || []).length) {
      root.appendChild(el("div", { cls: "notice" }, [el("strong", { text: "Not in this run (yet): " }),
        el("ul", null, D.missing.map(function (m) { return el("li", { text: m }); }))]));
    }
    if ((D.findings || []).length) {
      root.appendChild(el("div", { cls: "panel findings" }, [el("h2", { text: "Findings" }),
        el("ul", null, D.findings.map(function (t) { return el("li", { text: t }); }))]));
    }
    var grid = el("div", { cls: "grid" });
    root.appendChild(grid);
    // accuracy
    var acc = O.accuracy;
    if (acc && Object.keys(acc).length) {
      var tasks = Object.keys(acc), allTok = [];
      tasks.forEach(function (t) { acc[t].forEach(function (p) { if (isNum(p.tokens)) allTok.push(p.tokens); }); });
      var useTok = allTok.length > 0;
      var series = tasks.map(function (t) { return { name: t, points: acc[t].map(function (p) { return [useTok ? p.tokens : p.step, p.accuracy, p.revision]; }) }; });
      var tickSet = {};
      tasks.forEach(function (t) { acc[t].forEach(function (p) { var x = useTok ? p.tokens : p.step; if (isNum(x)) tickSet[x] = p.label || fmtTokens(x); }); });
      var ticks = Object.keys(tickSet).map(Number).sort(function (a, b) { return a - b; }).map(function (x) { return [x, tickSet[x]]; });
      var markers = CK.map(function (c) { return [useTok ? c.tokens : c.step, c.revision]; });
      grid.appendChild(panel("Task accuracy over training", el("div", null, [
        lineChart({ series: series, logx: true, ymin: 0, ymax: 1, width: 420, height: 220, xticks: ticks, markers: markers, hline: 0.5, xlabel: useTok ? "tokens seen (log)" : "step (log)", cls: "accuracy-chart" }),
        legend(tasks), M ? el("div", { cls: "hint", text: "dashed lines: the crosscoder's checkpoints" }) : null])));
    } else grid.appendChild(panel("Task accuracy over training", missing("scan/accuracy.csv not found — run `crosstime scan`")));
    // similarity
    var sims = O.similarity || [];
    if (sims.length) grid.appendChild(panel("Activation similarity: " + sims[0].name, heatmap(sims[0].matrix, sims[0].labels, 280)));
    else grid.appendChild(panel("Activation similarity", missing("scan/similarity.npz not found")));
    // suggestion and the crosscoder's checkpoints
    var sg = el("div", null, [O.suggestion ? suggestionView(O.suggestion) : missing("scan/suggestion.json not found"),
      el("h3", { text: "Crosscoder checkpoints (M = " + M + ")" }),
      M ? table(["revision", "step", "tokens seen"], CK.map(function (c) { return [c.revision, c.step, fmtTokens(c.tokens)]; })) : missing("no checkpoints found")]);
    grid.appendChild(panel("Checkpoints", sg));
    // evaluation
    var ev = O.evaluation;
    if (ev && ev.columns && ev.columns.length) {
      var body = el("div", null, [table(ev.columns, ev.rows, { noscroll: true, titles: ev.descriptions }), el("div", { cls: "hint", text: "hover a column name for its definition" })]);
      if (ev.overall && Object.keys(ev.overall).length) { body.appendChild(el("h3", { text: "overall" })); body.appendChild(kv(ev.overall)); }
      grid.appendChild(panel("Evaluation per checkpoint", body, true));
    } else if (ev && ev.overall) grid.appendChild(panel("Evaluation", kv(ev.overall)));
    else grid.appendChild(panel("Evaluation per checkpoint", missing("evaluation.json not found — run `crosstime evaluate`")));
    // dynamics
    if (O.dynamics && O.dynamics.series && O.dynamics.series.length) {
      var dyn = O.dynamics;
      grid.appendChild(panel("Training dynamics", el("div", null, [
        lineChart({ series: dyn.series, logx: true, width: 420, height: 200, xticks: dyn.ticks, xlabel: dyn.xlabel }), legend(dyn.series.map(function (s) { return s.name; }))])));
    }
    // distributions
    var dist = O.distributions || {};
    function smallMultiples(title, perCk, color) {
      var box = el("div", { cls: "small-multiples" });
      perCk.forEach(function (counts, m) {
        box.appendChild(el("figure", null, [histogram(counts, 1, { width: 110, height: 56, color: color, left: "0", right: "1", binLabel: function (b) { return (b / counts.length).toFixed(1) + "–" + ((b + 1) / counts.length).toFixed(1); } }), el("figcaption", { text: ckLabel(m) })]));
      });
      return panel(title, box, true);
    }
    if (dist.reldec) grid.appendChild(smallMultiples("RelDec distribution per checkpoint (" + dist.n_reldec + " features)", dist.reldec, "#2f6fde"));
    else grid.appendChild(panel("RelDec distribution", missing("evaluation/features.csv not found")));
    if (dist.relie && Object.keys(dist.relie).length) {
      Object.keys(dist.relie).forEach(function (t) { grid.appendChild(smallMultiples("RelIE distribution per checkpoint — " + t + " (" + dist.n_relie[t] + " features)", dist.relie[t], "#d9480f")); });
    } else grid.appendChild(panel("RelIE distribution", missing("attribution/TASK/features.csv not found — run `crosstime attribute`")));
    // class counts
    var cc = O.class_counts || {};
    var ccKeys = Object.keys(cc);
    if (ccKeys.length) {
      ccKeys.forEach(function (k) {
        var entries = Object.keys(cc[k]).map(function (c) { return [c, cc[k][c]]; });
        var mx = Math.max.apply(null, entries.map(function (e) { return e[1]; }).concat([1]));
        var box = el("div", { cls: "bars counts" });
        entries.forEach(function (e) {
          box.appendChild(el("div", { cls: "bar-row" }, [el("span", { cls: "lab", text: e[0] }), el("span", { cls: "track" }, el("span", { cls: "fill", style: "background:#868e96;width:" + (e[1] / mx * 100).toFixed(1) + "%" })), el("span", { cls: "val", text: String(e[1]) })]));
        });
        grid.appendChild(panel("Class counts — " + k, box));
      });
    }
    sims.slice(1).forEach(function (sm) { grid.appendChild(panel("Activation similarity: " + sm.name, heatmap(sm.matrix, sm.labels, 280))); });
    // ablation
    var att = O.attribution || {}, abl = O.ablation || {};
    TASKS.forEach(function (t) {
      var a = att[t] || {}, body = el("div");
      if (a.summary) body.appendChild(kv(a.summary));
      if (a.per_checkpoint) { body.appendChild(el("h3", { text: "per checkpoint" })); body.appendChild(table(a.per_checkpoint.columns, a.per_checkpoint.rows, { noscroll: true })); }
      if (a.confusion) { body.appendChild(el("h3", { text: "RelIE class × RelDec class (reported features)" })); body.appendChild(table(a.confusion.columns, a.confusion.rows, { noscroll: true })); }
      if (abl[t]) body.appendChild(el("details", null, [el("summary", { text: "exact single-feature ablation (" + abl[t].rows.length + " rows)" }), table(abl[t].columns, abl[t].rows)]));
      if (body.childNodes.length) grid.appendChild(panel("Attribution — " + t, body));
    });
    // crosscoder config
    var CC = D.crosscoder;
    if (CC) {
      grid.appendChild(panel("Crosscoder", el("div", null, [
        el("p", { cls: "inference-rule" + (CC.inference_depends_on_batch ? " warn" : ""), text: "Features fire by: " + CC.inference_rule }),
        kv(CC.config)])));
    } else grid.appendChild(panel("Crosscoder", missing("no crosscoder opened (needs crosscoder/ and activations/)")));
    // figures
    var figs = O.figures || [];
    if (figs.length) {
      var fbox = el("div", { cls: "figs" });
      figs.forEach(function (f) { fbox.appendChild(el("figure", { cls: "png" }, [el("img", { src: f.src, alt: f.name, loading: "lazy" }), el("figcaption", { text: f.name })])); });
      grid.appendChild(panel("Figures from the run", fbox, true));
    }
  }

  // ---------------------------------------------------------------- feature browser
  var TASKS = D.tasks || [];
  // default task: the report's main task (largest total |IE| over the reported features)
  var state = { task: D.main_task && TASKS.indexOf(D.main_task) >= 0 ? D.main_task : TASKS[0] || null, sort: "score", dir: -1, cls: "", peak: "", onset: "", minIE: "", text: "", selected: null, view: "all" };
  var visible = [];

  function taskData(f) { return state.task && f.tasks ? f.tasks[state.task] || null : null; }
  function ieTotal(f) { var t = taskData(f); return t && t.ie ? sum(t.ie.map(Math.abs)) : null; }
  function reliePeak(f) { var t = taskData(f); return t && t.relie ? argmax(t.relie) : -1; }
  function relieMax(f) { var t = taskData(f); return t && t.relie ? Math.max.apply(null, t.relie.filter(isNum)) : null; }
  var COLUMNS = [
    { key: "id", label: "feature", value: function (f) { return f.id; } },
    { key: "cls", label: TASKS.length ? "RelIE class" : "RelDec class", value: function (f) { var t = taskData(f); return TASKS.length ? (t && t.relie_class) || "" : f.reldec_class || ""; }, cls: "cls" },
    { key: "relie", label: "RelIE max", value: relieMax, show: function (f) { var v = relieMax(f); var p = reliePeak(f); return v === null ? "–" : fmt(v, 2) + (p >= 0 ? " @" + ckLabel(p) : ""); } },
    { key: "ie", label: "Σ|IE|", value: ieTotal },
    { key: "onset", label: "onset", value: function (f) { return isNum(f.onset) && f.onset >= 0 ? f.onset : null; }, show: function (f) { return isNum(f.onset) && f.onset >= 0 ? ckLabel(f.onset) : "–"; } },
    { key: "desc", label: "annotation", value: function (f) { return f.description || ""; }, cls: "desc" }
  ];
  function scoreOf(f) { return isNum(f.rank) ? -f.rank : 0; }

  function renderFilters() {
    var box = document.getElementById("filters");
    box.innerHTML = "";
    var taskSel = el("select", { id: "filter-task", onchange: function () { state.task = this.value || null; refreshClassOptions(); renderList(); renderCard(); } },
      TASKS.length ? TASKS.map(function (t) { return el("option", { value: t, text: t, selected: t === state.task ? "selected" : null }); }) : [el("option", { value: "", text: "(no attribution)" })]);
    box.appendChild(el("label", null, ["task", taskSel]));
    box.appendChild(el("label", null, ["class", el("select", { id: "filter-class", onchange: function () { state.cls = this.value; renderList(); } })]));
    var peakSel = el("select", { id: "filter-peak", onchange: function () { state.peak = this.value; renderList(); } }, [el("option", { value: "", text: "any" })].concat(CK.map(function (c, m) { return el("option", { value: String(m), text: c.label || c.revision }); })));
    box.appendChild(el("label", null, ["RelIE peaks at", peakSel]));
    var onsetSel = el("select", { id: "filter-onset", onchange: function () { state.onset = this.value; renderList(); } }, [el("option", { value: "", text: "any" })].concat(CK.map(function (c, m) { return el("option", { value: String(m), text: c.label || c.revision }); })));
    box.appendChild(el("label", null, ["onset (decoder norm)", onsetSel]));
    box.appendChild(el("label", null, ["min Σ|IE|", el("input", { id: "filter-ie", type: "number", step: "any", min: "0", oninput: function () { state.minIE = this.value; renderList(); } })]));
    box.appendChild(el("label", null, ["search id / annotation", el("input", { id: "filter-text", type: "search", oninput: function () { state.text = this.value.toLowerCase(); renderList(); } })]));
    box.appendChild(el("div", { cls: "count", id: "list-count" }));
    refreshClassOptions();
  }
  function refreshClassOptions() {
    var sel = document.getElementById("filter-class");
    var relie = {}, reldec = {}, traj = {};
    FEATURES.forEach(function (f) {
      var t = taskData(f);
      if (t && t.relie_class) relie[t.relie_class] = (relie[t.relie_class] || 0) + 1;
      if (f.reldec_class) reldec[f.reldec_class] = (reldec[f.reldec_class] || 0) + 1;
      if (f.trajectory) traj[f.trajectory] = (traj[f.trajectory] || 0) + 1;
    });
    sel.innerHTML = "";
    sel.appendChild(el("option", { value: "", text: "any" }));
    [["RelIE class", "relie:", relie], ["RelDec class", "reldec:", reldec], ["trajectory", "traj:", traj]].forEach(function (g) {
      var keys = Object.keys(g[2]);
      if (!keys.length) return;
      sel.appendChild(el("optgroup", { label: g[0] }, keys.map(function (k) { return el("option", { value: g[1] + k, text: k + " (" + g[2][k] + ")" }); })));
    });
    if (state.cls && !Array.prototype.some.call(sel.options, function (o) { return o.value === state.cls; })) state.cls = "";
    sel.value = state.cls;
  }
  function passes(f) {
    if (state.cls) {
      var i = state.cls.indexOf(":"), kind = state.cls.slice(0, i), val = state.cls.slice(i + 1), t = taskData(f);
      if (kind === "relie" && !(t && t.relie_class === val)) return false;
      if (kind === "reldec" && f.reldec_class !== val) return false;
      if (kind === "traj" && f.trajectory !== val) return false;
    }
    if (state.peak !== "" && reliePeak(f) !== Number(state.peak)) return false;
    if (state.onset !== "" && f.onset !== Number(state.onset)) return false;
    if (state.minIE !== "" && isNum(Number(state.minIE))) { var ie = ieTotal(f); if (!(ie !== null && ie >= Number(state.minIE))) return false; }
    if (state.text) {
      var hay = (String(f.id) + " " + (f.description || "")).toLowerCase();
      if (hay.indexOf(state.text) < 0) return false;
    }
    return true;
  }
  function sortValue(f) {
    if (state.sort === "score") return scoreOf(f);
    var col = COLUMNS.filter(function (c) { return c.key === state.sort; })[0];
    return col ? col.value(f) : 0;
  }
  function renderList() {
    visible = FEATURES.filter(passes);
    visible.sort(function (a, b) {
      var x = sortValue(a), y = sortValue(b);
      var xn = x === null || x === undefined || x === "", yn = y === null || y === undefined || y === "";
      if (xn && yn) return a.id - b.id;
      if (xn) return 1;
      if (yn) return -1;
      if (typeof x === "string" || typeof y === "string") return state.dir * String(x).localeCompare(String(y)) || a.id - b.id;
      return state.dir * (x - y) || a.id - b.id;
    });
    var thead = document.querySelector("#feature-table thead");
    thead.innerHTML = "";
    thead.appendChild(el("tr", null, COLUMNS.map(function (c) {
      return el("th", { "data-key": c.key, cls: state.sort === c.key ? "sorted" + (state.dir > 0 ? " asc" : "") : null, title: "sort by " + c.label,
        onclick: function () { if (state.sort === c.key) state.dir = -state.dir; else { state.sort = c.key; state.dir = c.key === "id" || c.key === "onset" || c.key === "desc" || c.key === "cls" ? 1 : -1; } renderList(); } }, c.label);
    })));
    var tbody = document.querySelector("#feature-table tbody");
    tbody.innerHTML = "";
    visible.forEach(function (f) {
      tbody.appendChild(el("tr", { cls: "feature-row" + (f.id === state.selected ? " selected" : ""), "data-feature": f.id, onclick: function () { select(f.id); } },
        COLUMNS.map(function (c) { var v = c.value(f); return el("td", { cls: c.cls || null, text: c.show ? c.show(f) : (v === "" ? "–" : fmt(v)), title: c.key === "desc" || c.key === "cls" ? String(v || "") : null }); })));
    });
    document.getElementById("list-count").textContent = visible.length + " of " + FEATURES.length + " reported features" + (D.n_features_total ? " (crosscoder has " + D.n_features_total + ")" : "");
  }
  function select(id, fromHash, quiet) {
    if (!(id in BY_ID)) return;
    state.selected = id;
    document.querySelectorAll("#feature-table tr.feature-row").forEach(function (tr) {
      var on = Number(tr.getAttribute("data-feature")) === id;
      tr.classList.toggle("selected", on);
      if (on) tr.scrollIntoView({ block: "nearest" });
    });
    if (!fromHash && !quiet) {
      var target = "#feature=" + id;
      if (location.hash !== target) history.replaceState(null, "", target);
    }
    if (!quiet) showPage("features");
    renderCard();
  }

  function renderCard() {
    var pane = document.getElementById("card-pane");
    var f = BY_ID[state.selected];
    pane.innerHTML = "";
    if (!f) { pane.appendChild(el("div", { cls: "empty", text: "Select a feature (j/k or arrows to move)." })); return; }
    var card = el("div", { cls: "feature-card", id: "feature-card", "data-feature": f.id });
    var t = taskData(f);
    var head = el("div", { cls: "card-head" }, [el("h2", { text: "Feature " + f.id })]);
    if (t && t.relie_class) head.appendChild(el("span", { cls: "badge relie", title: "RelIE class (" + state.task + ")", text: "RelIE: " + t.relie_class }));
    if (f.reldec_class) head.appendChild(el("span", { cls: "badge reldec", title: "RelDec class", text: "RelDec: " + f.reldec_class }));
    if (f.trajectory) head.appendChild(el("span", { cls: "badge", title: "decoder-norm trajectory", text: f.trajectory }));
    if (isNum(f.frequency)) head.appendChild(el("span", { cls: "badge", text: "freq " + fmt(f.frequency) }));
    card.appendChild(head);
    card.appendChild(el("div", { cls: "annotation" + (f.description ? "" : " none"), text: f.description || "No annotation yet — `crosstime annotate RUN --export annotations.csv`, fill in `description`, then `--import`." }));
    // bars
    var grid = el("div", { cls: "card-grid" });
    var relieBox;
    if (t && t.relie) {
      relieBox = barList("relie", t.relie, {
        uniform: 1 / M,
        title: function (m) { return t.ie ? "IE = " + fmt(t.ie[m]) + (t.ie_lo && t.ie_hi ? " [" + fmt(t.ie_lo[m]) + ", " + fmt(t.ie_hi[m]) + "]" : "") : null; },
        extra: function (m) { return t.ie ? "  IE " + fmt(t.ie[m]) + (t.ie_lo && t.ie_hi && isNum(t.ie_lo[m]) ? " ±" + fmt((t.ie_hi[m] - t.ie_lo[m]) / 2) : "") : ""; }
      });
    } else relieBox = missing(TASKS.length ? "no attribution for this feature in task " + state.task : "no attribution in this run");
    var ablation = null;
    if (t && t.ablation && t.ablation.delta_lpd) {
      ablation = el("div", { cls: "hint ablation", text: "exact ablation, Δ log-prob difference: " + t.ablation.delta_lpd.map(function (v, m) { return ckLabel(m) + " " + fmt(v); }).join(" · ") });
    }
    grid.appendChild(panel("RelIE per checkpoint" + (state.task ? " — " + state.task : ""), el("div", null, [relieBox,
      el("div", { cls: "hint", text: "bars scaled to the largest share; tick: uniform share 1/M" + (t && t.ie ? "; IE ± half the CI" : "") }), ablation])));
    grid.appendChild(panel("RelDec per checkpoint", f.reldec ? barList("reldec", f.reldec, { uniform: 1 / M, extra: function (m) { return f.norm ? "  ‖d‖ " + fmt(f.norm[m]) : ""; } }) : missing("no RelDec (evaluation/features.csv or the crosscoder) for this feature")));
    // trajectory
    if (f.norm) {
      var ax = tokenX();
      grid.appendChild(panel("Decoder norm over training", lineChart({ series: [{ name: "‖W_dec[" + f.id + ", m]‖", points: f.norm.map(function (v, m) { return [ax.x(m), v, ckLabel(m)]; }) }], logx: ax.logx, ymin: 0, width: 380, height: 170, xticks: ax.ticks, xlabel: ax.logx ? "tokens seen (log)" : "checkpoint", cls: "trajectory" })));
    } else grid.appendChild(panel("Decoder norm over training", missing("no decoder norms for this feature")));
    // histogram
    var ev = f.evidence;
    if (ev && ev.histogram) {
      var views = Object.keys(ev.histogram);
      var hv = ev.histogram[state.view] ? state.view : "all";
      var h = ev.histogram[hv] || { counts: [], upper: 0, n_bins: 1 };
      var width = h.upper / (h.n_bins || 1);
      var hb = el("div", null, [histogram(h.counts, width * h.counts.length, { width: 360, height: 110, color: "#f08c00", log: false,
        binLabel: function (b) { return fmt(b * width) + "–" + fmt((b + 1) * width); } }),
        el("div", { cls: "hint", text: "view " + viewName(hv) + ": fires on " + fmt(100 * (ev.density[hv] || 0), 3) + "% of " + fmt(D.evidence_meta ? D.evidence_meta.n_rows : null) + " tokens" + (views.length > 1 ? " (pick a view below)" : "") })]);
      grid.appendChild(panel("Activation histogram (non-zero)", hb));
    } else grid.appendChild(panel("Activation histogram", missing("no feature evidence (needs activations/ and crosscoder/)")));
    card.appendChild(grid);
    // contexts
    card.appendChild(renderContexts(f));
    card.appendChild(renderLens(f));
    pane.appendChild(card);
  }
  function viewName(v) {
    if (v === "all") return "all checkpoints (joint)";
    for (var m = 0; m < M; m++) if (CK[m].revision === v) return ckLabel(m) + " alone";
    return v;
  }
  function renderContexts(f) {
    var ev = f.evidence;
    if (!ev || !ev.top) return panel("Top activating contexts", missing("no feature evidence (needs activations/ and crosscoder/)"));
    var views = D.views || Object.keys(ev.top);
    if (views.indexOf(state.view) < 0) state.view = "all";
    var box = el("div");
    var bar = el("div", { cls: "views", id: "view-buttons" });
    views.forEach(function (v) {
      var n = (ev.top[v] || []).length;
      bar.appendChild(el("button", { cls: (v === state.view ? "active" : "") + (n ? "" : " dim"), "data-view": v, title: viewName(v) + " — " + n + " contexts",
        onclick: function () { state.view = v; renderCard(); }, text: v === "all" ? "all (joint)" : labelOfRev(v) }));
    });
    box.appendChild(bar);
    var ids = D.evidence_meta && D.evidence_meta.token_text === false;
    box.appendChild(el("div", { cls: "hint", text: "“all”: the crosscoder's activation (reads every checkpoint). A checkpoint: encode that checkpoint's activations alone (others zero). Colour: activation at each token; outlined: the maximum. Position 0 is not stored (grey)." + (ids ? " Tokens are shown as ids (#id): this report was made with --no-token-text." : "") }));
    var list = ev.top[state.view] || [];
    var scale = list.length ? list[0].value : 1;
    if (!list.length) box.appendChild(missing("never fires in this view on the streamed tokens"));
    list.forEach(function (w) { box.appendChild(contextLine(w, scale)); });
    if (state.view === "all" && ev.quantiles && ev.quantiles.length) {
      box.appendChild(el("h3", { text: "Examples across the activation distribution (quantiles of non-zero activations)" }));
      ev.quantiles.forEach(function (w) { box.appendChild(contextLine(w, scale, "q" + Math.round(w.quantile * 100))); });
    }
    return panel("Top activating contexts", box, true);
  }
  function labelOfRev(rev) { for (var m = 0; m < M; m++) if (CK[m].revision === rev) return ckLabel(m); return rev; }
  function contextLine(w, scale, tag) {
    var toks = el("span", { cls: "toks" });
    w.tokens.forEach(function (id, k) {
      var a = w.acts[k];
      var pos = w.start + k;
      var alpha = isNum(a) && scale > 0 ? Math.max(0, Math.min(1, a / scale)) : 0;
      toks.appendChild(el("span", { cls: "tok" + (pos === w.position ? " max" : "") + (a === null ? " na" : ""), style: alpha > 0 ? "background:rgba(var(--act)," + (0.08 + 0.82 * alpha).toFixed(3) + ")" : null,
        title: "pos " + pos + " · token " + id + " · act " + (a === null ? "not stored" : fmt(a)), text: tokenText(id) }));
    });
    return el("div", { cls: "ctx", "data-context": w.context, "data-position": w.position }, [
      el("span", { cls: "v", title: "context " + w.context + ", position " + w.position, text: (tag ? tag + " " : "") + fmt(w.value) }), toks]);
  }
  function renderLens(f) {
    var ev = f.evidence;
    var off = D.evidence_meta && D.evidence_meta.logit_lens_method === "none";
    if (!ev || !ev.logit_lens || !Object.keys(ev.logit_lens).length) return panel("Logit lens", missing(off ? "no logit lens: this report was made with --logit-lens none" : "no logit lens (needs the series' checkpoints to load the final norm and unembedding)"));
    var tbl = el("table", { cls: "lens" });
    tbl.appendChild(el("tr", null, [el("th", { text: "checkpoint" }), el("th", { text: "promoted" }), el("th", { text: "suppressed" })]));
    CK.forEach(function (c, m) {
      var e = ev.logit_lens[c.revision];
      if (!e) return;
      function toks(list, cls) { return el("td", { cls: cls }, el("div", { cls: "chips" }, list.slice(0, 8).map(function (p) { return el("code", { title: "Δlogit " + fmt(p[1]), text: tokenText(p[0]) }); }))); }
      tbl.appendChild(el("tr", { "data-checkpoint": c.revision }, [el("td", { text: ckLabel(m) }), toks(e.promoted, "up"), toks(e.suppressed, "down")]));
    });
    var method = D.evidence_meta ? D.evidence_meta.logit_lens_method : "";
    var note = method === "mean_activation" ? "Δlogits of adding the feature's decoder direction (at its typical activation) to the checkpoint's mean site activation, through that checkpoint's final norm and unembedding." :
      method === "norm_weight" ? "Decoder direction through the final norm's weight (linear part) and the unembedding." : "";
    return panel("Logit lens per checkpoint", el("div", null, [tbl, el("div", { cls: "hint", text: note })]), true);
  }

  // ---------------------------------------------------------------- navigation
  function showPage(name) {
    document.querySelectorAll(".page").forEach(function (p) { p.classList.toggle("active", p.id === name); });
    document.querySelectorAll("header nav button").forEach(function (b) { b.classList.toggle("active", b.getAttribute("data-page") === name); });
  }
  function fromHash() {
    var m = /feature=(\d+)/.exec(location.hash);
    if (m && Number(m[1]) in BY_ID) { select(Number(m[1]), true); return true; }
    if (/overview/.test(location.hash)) { showPage("overview"); return true; }
    if (/features/.test(location.hash)) { showPage("features"); return true; }
    return false;
  }
  function move(delta) {
    if (!visible.length) return;
    var i = -1;
    for (var k = 0; k < visible.length; k++) if (visible[k].id === state.selected) i = k;
    var j = i < 0 ? 0 : Math.max(0, Math.min(visible.length - 1, i + delta));
    select(visible[j].id);
  }
  document.addEventListener("keydown", function (e) {
    var tag = (e.target && e.target.tagName) || "";
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "j" || e.key === "ArrowDown") { move(1); e.preventDefault(); }
    else if (e.key === "k" || e.key === "ArrowUp") { move(-1); e.preventDefault(); }
    else if (e.key === "o") showPage("overview");
    else if (e.key === "f") showPage("features");
  });
  window.addEventListener("hashchange", fromHash);
  document.querySelectorAll("header nav button").forEach(function (b) {
    b.addEventListener("click", function () { var p = b.getAttribute("data-page"); showPage(p); if (p === "overview") history.replaceState(null, "", "#overview"); });
  });

  document.getElementById("title").textContent = D.title || "crosstime report";
  document.getElementById("meta").textContent = M + " checkpoints · " + FEATURES.length + " features · generated " + (D.generated || "");
  renderOverview();
  renderFilters();
  renderList();
  if (!fromHash()) showPage("overview");
  if (state.selected === null && visible.length) select(visible[0].id, false, true);  // a card is ready when Features opens
})();
