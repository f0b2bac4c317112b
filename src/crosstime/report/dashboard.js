/* crosstime dashboard: plain JS, no framework, no network. Data: #crosstime-data (JSON); a large
   report's features live beside it in features/ (index.js: the list; shard-KKKKK.js: whole entries),
   loaded by <script> tags that call crosstimeIndex / crosstimeShard (works from file://, no server). */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("crosstime-data").textContent);
  var CK = D.checkpoints || [];
  var M = CK.length;
  var VOCAB = D.vocab || {};
  var FEATURES = D.features || [];  // what the list shows: whole entries, or a sharded report's summaries
  var BY_ID = {};  // whole entries, as loaded
  FEATURES.forEach(function (f) { BY_ID[f.id] = f; });
  var SHARDS = D.feature_shards || null;  // {path, starts, count} when the features are not embedded
  var LIST_MAX = 400;  // rows drawn at once; the search narrows the rest
  var shardState = {};  // shard number -> "loading" | "loaded" | "failed"
  var shardWaiters = {};
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
  // numbers to 3 significant figures; counts (integers) exact, grouped by thousands
  function fmt(x) {
    if (x === null || x === undefined || x === "") return "–";
    if (typeof x === "boolean") return x ? "yes" : "no";
    if (typeof x !== "number") return String(x);
    if (!isFinite(x)) return String(x);
    if (Number.isInteger(x)) return Math.abs(x) < 1e4 ? String(x) : x.toLocaleString("en-US");
    var a = Math.abs(x);
    if (a < 1e-3 || a >= 1e5) return x.toExponential(2).replace("e+", "e");
    if (a >= 100) return Math.round(x).toLocaleString("en-US");
    return x.toPrecision(3);
  }
  // a share in [0, 1] as a percentage (3 significant figures; "<0.1%" for tiny non-zero shares)
  function pct(x) {
    if (!isNum(x)) return "–";
    if (x !== 0 && Math.abs(x) < 1e-3) return "<0.1%";
    var p = 100 * x;
    return (Math.abs(p) >= 100 ? p.toFixed(0) : Math.abs(p) >= 10 ? p.toFixed(1) : p.toFixed(2)) + "%";
  }
  // x next to the largest magnitude of its row: "≈ 0" when below a thousandth of it (an IE of 1e-7 beside 1.6)
  function fmtRel(x, scale) {
    if (!isNum(x)) return "–";
    if (isNum(scale) && scale > 0 && Math.abs(x) < 1e-3 * scale) return "≈ 0";
    return fmt(x);
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
    var W = opts.width || 380, H = opts.height || 200, L = opts.ylabel ? 56 : 44, R = 18, T = opts.top || 10, B = 30;
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
    (opts.bands || []).forEach(function (b) { b.points.forEach(function (q) { if (isNum(q[1])) ys.push(q[1]); if (isNum(q[2])) ys.push(q[2]); }); });
    (opts.hlines || []).forEach(function (h) { if (isNum(h[0]) && opts.hlinesInRange) ys.push(h[0]); });
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
    if (opts.ylabel) axis.appendChild(sv("text", { x: 10, y: (T + H - B) / 2, "text-anchor": "middle", transform: "rotate(-90 10 " + (T + H - B) / 2 + ")", text: opts.ylabel }));
    svg.appendChild(axis);
    (opts.markers || []).forEach(function (mk) {
      if (!isNum(mk[0])) return;
      svg.appendChild(sv("line", { x1: X(mk[0]), y1: T, x2: X(mk[0]), y2: H - B, stroke: "#bbb", "stroke-dasharray": "3,3" }, sv("title", { text: mk[1] })));
      if (mk[2]) svg.appendChild(sv("text", { x: X(mk[0]) - 2, y: T + 8, "text-anchor": "end", cls: "ref-label", text: mk[2] }));
    });
    (opts.hlines || []).forEach(function (h) {  // [y, label]: reference lines, each labelled
      if (!(h[0] >= y0 && h[0] <= y1)) return;
      svg.appendChild(sv("line", { x1: L, y1: Y(h[0]), x2: W - R, y2: Y(h[0]), stroke: "#aaa", "stroke-dasharray": "2,2" }));
      svg.appendChild(sv("text", { x: W - R, y: Y(h[0]) - 3, "text-anchor": "end", cls: "ref-label", text: h[1] }));
    });
    (opts.bands || []).forEach(function (b) {  // {points: [[x, lo, hi]], color}: a shaded interval
      var p = b.points.filter(function (q) { return isNum(q[0]) && isNum(q[1]) && isNum(q[2]); });
      if (p.length < 2) return;
      var up = p.map(function (q) { return X(q[0]).toFixed(1) + "," + Y(q[2]).toFixed(1); });
      var down = p.slice().reverse().map(function (q) { return X(q[0]).toFixed(1) + "," + Y(q[1]).toFixed(1); });
      svg.appendChild(sv("polygon", { points: up.concat(down).join(" "), fill: b.color, "fill-opacity": 0.18, stroke: "none" }));
    });
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
  function legend(names, colors) {
    return el("div", { cls: "legend" }, names.map(function (n, k) {
      return el("span", null, [el("i", { style: "background:" + (colors ? colors[k] : PALETTE[k % PALETTE.length]) }), n]);
    }));
  }
  // a matrix with its value printed in every cell; rows and columns labelled (columns may differ from rows)
  function heatmap(matrix, rowLabels, opts) {
    opts = opts || {};
    var colLabels = opts.colLabels || rowLabels;
    var nr = matrix.length, nc = nr ? matrix[0].length : 0;
    var cell = opts.cell || 34, L = opts.left || 56, T = 4, B = opts.bottom || 46;
    var W = L + nc * cell + 4, H = T + nr * cell + B;
    var vals = [];
    matrix.forEach(function (r) { r.forEach(function (v) { if (isNum(v)) vals.push(v); }); });
    var lo = opts.min !== undefined ? opts.min : Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    if (!(hi > lo)) hi = lo + 1;
    var svg = sv("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, cls: "heatmap" + (opts.cls ? " " + opts.cls : "") });
    for (var i = 0; i < nr; i++) {
      for (var j = 0; j < nc; j++) {
        var v = matrix[i][j], t = isNum(v) ? (v - lo) / (hi - lo) : 0;
        var c = "rgb(" + Math.round(255 - 208 * t) + "," + Math.round(255 - 144 * t) + "," + Math.round(255 - 33 * t) + ")";
        var g = sv("g", { cls: "cell" }, [sv("rect", { x: L + j * cell, y: T + i * cell, width: cell - 1, height: cell - 1, fill: isNum(v) ? c : "#eee" }),
          sv("text", { x: L + j * cell + cell / 2 - 0.5, y: T + i * cell + cell / 2 + 3, "text-anchor": "middle", cls: "cell-value", fill: t > 0.55 ? "#fff" : "#222",
            text: isNum(v) ? (opts.format || fmt)(v) : "–" }),
          sv("title", { text: rowLabels[i] + " × " + colLabels[j] + ": " + fmt(v) })]);
        svg.appendChild(g);
      }
      svg.appendChild(sv("text", { x: L - 4, y: T + i * cell + cell / 2 + 3, "text-anchor": "end", text: rowLabels[i] }));
    }
    for (j = 0; j < nc; j++) {
      var x = L + j * cell + cell / 2, y = T + nr * cell + 8;
      svg.appendChild(sv("text", { x: x, y: y, "text-anchor": "end", transform: "rotate(-40 " + x + " " + y + ")", text: colLabels[j] }));
    }
    return svg;
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
  // a heading cell in words whose tooltip names the field: {label, name, description}
  function wordCell(tag, w) {
    return el(tag, { text: w.label, title: w.name + (w.description ? " — " + w.description : ""), "data-field": w.name, scope: tag === "th" ? "col" : null });
  }
  // columns [{label, name, description}], rows [[value, …]]
  function table(columns, rows, opts) {
    opts = opts || {};
    var t = el("table", { cls: "data" });
    t.appendChild(el("thead", null, el("tr", null, columns.map(function (c) { return wordCell("th", c); }))));
    var tb = el("tbody");
    rows.forEach(function (r) {
      tb.appendChild(el("tr", null, columns.map(function (c, k) { return el("td", { text: fmt(r[k]) }); })));
    });
    t.appendChild(tb);
    return el("div", { cls: opts.noscroll ? "hscroll" : "scroll" }, t);
  }
  // one row per field ({label, name, description, values [M]}), one column per checkpoint
  function checkpointTable(rows, revisions, cls) {
    var t = el("table", { cls: "data by-checkpoint" + (cls ? " " + cls : "") });
    t.appendChild(el("thead", null, el("tr", null, [el("th", { text: "" })].concat(revisions.map(function (r) {
      return el("th", { text: labelOfRev(r), title: "checkpoint " + r });
    })))));
    var tb = el("tbody");
    rows.forEach(function (w) {
      tb.appendChild(el("tr", null, [wordCell("th", w)].concat(w.values.map(function (v) { return el("td", { text: fmt(v) }); }))));
    });
    t.appendChild(tb);
    return el("div", { cls: "hscroll" }, t);
  }
  // scalars in words: [{label, name, description, value}]
  function kvWords(rows) {
    var dl = el("dl", { cls: "kv" });
    rows.forEach(function (w) {
      dl.appendChild(wordCell("dt", w));
      dl.appendChild(el("dd", null, valueView(w.value)));
    });
    return dl;
  }
  // any JSON value as text, lists and tables: never the raw JSON
  function valueView(v) {
    if (v === null || v === undefined || typeof v !== "object") return document.createTextNode(fmt(v));
    if (Array.isArray(v)) {
      if (v.every(function (x) { return x === null || typeof x !== "object"; })) return document.createTextNode(v.map(fmt).join(", "));
      return el("ul", { cls: "plain" }, v.map(function (x) { return el("li", null, valueView(x)); }));
    }
    var keys = Object.keys(v);
    var rowsOfObjects = keys.length && keys.every(function (k) { return v[k] && typeof v[k] === "object" && !Array.isArray(v[k]); });
    if (rowsOfObjects) {  // {name: {field: value}}: a table, one row per name
      var cols = [];
      keys.forEach(function (k) { Object.keys(v[k]).forEach(function (c) { if (cols.indexOf(c) < 0) cols.push(c); }); });
      var t = el("table", { cls: "data" });
      t.appendChild(el("thead", null, el("tr", null, [el("th", { text: "" })].concat(cols.map(function (c) { return el("th", { text: c.replace(/_/g, " "), title: c }); })))));
      t.appendChild(el("tbody", null, keys.map(function (k) {
        return el("tr", null, [el("td", { text: k })].concat(cols.map(function (c) { return el("td", null, valueView(v[k][c])); })));
      })));
      return el("div", { cls: "hscroll" }, t);
    }
    var dl = el("dl", { cls: "kv" });
    keys.forEach(function (k) { dl.appendChild(el("dt", { text: k.replace(/_/g, " "), title: k })); dl.appendChild(el("dd", null, valueView(v[k]))); });
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
      box.appendChild(el("div", { cls: "bar-row" + (m === peak ? " peak" : ""), "data-checkpoint": CK[m] ? CK[m].revision : m, title: opts.title ? opts.title(m) : null }, [
        el("span", { cls: "lab", text: ckLabel(m) }),
        el("span", { cls: "track" }, [el("span", { cls: "fill", style: "width:" + w.toFixed(1) + "%" }),
          opts.uniform ? el("span", { cls: "uniform", title: "uniform share 1/M", style: "left:" + Math.min(100, opts.uniform / scale * 100).toFixed(1) + "%" }) : null]),
        el("span", { cls: "val", text: opts.show ? opts.show(m) : fmt(v) })
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
    var box = el("div", { cls: "suggestion" });
    box.appendChild(table([{ label: "checkpoint", name: "revision" }, { label: "tokens seen", name: "label" }, { label: "role", name: "role", description: "before / after / late / last / extra" }, { label: "why", name: "reason" }],
      sg.checkpoints.map(function (p) { return [p.revision, p.label, p.role, p.reason]; }), { noscroll: true }));
    var jump = sg.jump;
    if (jump) {
      box.appendChild(el("h3", { text: "Accuracy jump: from " + jump.before + " to " + jump.after }));
      var tasks = jump.tasks || {};
      box.appendChild(table([{ label: "task", name: "task" }, { label: "rise starts", name: "starts" }, { label: "rise ends", name: "ends" }, { label: "fitted low", name: "low" }, { label: "fitted high", name: "high" }, { label: "rise", name: "rise" }],
        Object.keys(tasks).map(function (t) { var j = tasks[t]; return [t, j.starts, j.ends, j.low, j.high, j.rise]; }), { noscroll: true }));
      if ((jump.no_jump || []).length) box.appendChild(el("div", { cls: "hint", text: "no jump: " + jump.no_jump.join(", ") }));
    } else box.appendChild(el("div", { cls: "hint", text: "no accuracy jump found" }));
    if ((sg.blocks || []).length) {
      box.appendChild(el("h3", { text: "Blocks of similar checkpoints (CKA)" }));
      box.appendChild(el("ol", { cls: "blocks" }, sg.blocks.map(function (b) { return el("li", { text: (b.length > 1 ? b[0] + " … " + b[b.length - 1] : b[0]) + " (" + b.length + " checkpoint" + (b.length > 1 ? "s" : "") + ")", title: b.join(", ") }); })));
    }
    box.appendChild(el("details", null, [el("summary", { text: "how the checkpoints were chosen" }), el("p", { cls: "hint", text: sg.method })]));
    return box;
  }
  // the second paper's figures (two phases, dimensionality, direction turn, typed emergence), each captioned
  // with its one-line reading (findings.evolution_readings); what the run lacks for them is in D.missing
  function evolutionSection(root, O) {
    var figs = (O.figures || []).filter(function (f) { return f.evolution; });
    var grid = section(root, "Evolution", "the order in which the model learns: n-gram statistics, then features (report/two_phase.png, evaluation/)");
    if (!figs.length) {
      grid.appendChild(panel("Evolution", missing("no evolution figures: the run lacks scan/dynamics.csv and the evaluation's decoder analyses (see “Not in this run”)"), true));
      return;
    }
    var box = el("div", { cls: "figs evolution" });
    figs.forEach(function (f) {
      box.appendChild(el("figure", { cls: "png", "data-figure": f.name }, [el("img", { src: f.src, alt: f.name, loading: "lazy" }),
        el("figcaption", null, [el("span", { cls: "reading", text: f.caption || "no reading: its inputs are not in this run" }),
          el("span", { cls: "figname", text: " (" + f.name + ")" })])]));
    });
    grid.appendChild(el("div", { cls: "panel wide" }, box));
  }
  function section(root, title, hint) {
    root.appendChild(el("h2", { cls: "section", text: title }));
    if (hint) root.appendChild(el("div", { cls: "hint section-hint", text: hint }));
    var grid = el("div", { cls: "grid" });
    root.appendChild(grid);
    return grid;
  }
  function smallMultiples(perCk, color) {
    var box = el("div", { cls: "small-multiples" });
    perCk.forEach(function (counts, m) {
      box.appendChild(el("figure", null, [histogram(counts, 1, { width: 110, height: 56, color: color, left: "0", right: "1", binLabel: function (b) { return (b / counts.length).toFixed(1) + "–" + ((b + 1) / counts.length).toFixed(1); } }), el("figcaption", { text: ckLabel(m) })]));
    });
    return box;
  }
  function countBars(counts, labelOf) {
    var entries = Object.keys(counts).map(function (c) { return [c, counts[c]]; });
    var mx = Math.max.apply(null, entries.map(function (e) { return e[1]; }).concat([1]));
    var total = sum(entries.map(function (e) { return e[1]; }));
    var box = el("div", { cls: "bars counts" });
    entries.forEach(function (e) {
      box.appendChild(el("div", { cls: "bar-row" }, [el("span", { cls: "lab", text: labelOf ? labelOf(e[0]) : e[0] }), el("span", { cls: "track" }, el("span", { cls: "fill", style: "background:#868e96;width:" + (e[1] / mx * 100).toFixed(1) + "%" })),
        el("span", { cls: "val", text: e[1] + " (" + pct(e[1] / total) + ")" })]));
    });
    return box;
  }
  function scanSection(root, O) {
    var grid = section(root, "The model across training", "from scan/: task accuracy, loss and representation similarity at every checkpoint of the series");
    var acc = O.accuracy;
    if (acc && Object.keys(acc).length) {
      var tasks = Object.keys(acc), allTok = [];
      tasks.forEach(function (t) { acc[t].forEach(function (p) { if (isNum(p.tokens)) allTok.push(p.tokens); }); });
      var useTok = allTok.length > 0;
      var series = tasks.map(function (t) { return { name: t, points: acc[t].map(function (p) { return [useTok ? p.tokens : p.step, p.accuracy, p.revision]; }) }; });
      var tickSet = {};
      tasks.forEach(function (t) { acc[t].forEach(function (p) { var x = useTok ? p.tokens : p.step; if (isNum(x)) tickSet[x] = p.label || fmtTokens(x); }); });
      var ticks = Object.keys(tickSet).map(Number).sort(function (a, b) { return a - b; }).map(function (x) { return [x, tickSet[x]]; });
      var markers = CK.map(function (c) { return [useTok ? c.tokens : c.step, c.revision, c.label || c.revision]; });
      grid.appendChild(panel("Task accuracy over training", el("div", null, [
        lineChart({ series: series, logx: true, ymin: 0, ymax: 1, width: 440, height: 230, top: 16, xticks: ticks, markers: markers, hlines: [[0.5, "chance"]], xlabel: useTok ? "tokens seen (log)" : "step (log)", ylabel: "accuracy", cls: "accuracy-chart" }),
        legend(tasks), M ? el("div", { cls: "hint", text: "dashed vertical lines: the crosscoder's checkpoints" }) : null])));
    } else grid.appendChild(panel("Task accuracy over training", missing("scan/accuracy.csv not found — run `crosstime scan`")));
    if (O.dynamics && O.dynamics.series && O.dynamics.series.length) {
      var dyn = O.dynamics;
      var curves = dyn.series.filter(function (s) { return !isConstant(s.points); });
      var refs = dyn.series.filter(function (s) { return isConstant(s.points); });
      grid.appendChild(panel("Held-out loss and distance to n-gram statistics", el("div", null, [
        lineChart({ series: curves, logx: true, width: 440, height: 230, xticks: dyn.ticks, xlabel: dyn.xlabel, ylabel: "nats", cls: "dynamics-chart",
          hlinesInRange: true, hlines: refs.map(function (s) { return [s.points[0][1], s.label + " " + fmt(s.points[0][1])]; }) }),
        legend(curves.map(function (s) { return s.label; })), refs.length ? el("div", { cls: "hint", text: "dotted horizontal lines: " + refs.map(function (s) { return s.label; }).join("; ") }) : null])));
    }
    grid.appendChild(panel("Checkpoints the scan suggests", O.suggestion ? suggestionView(O.suggestion) : missing("scan/suggestion.json not found")));
    var sims = O.similarity || [];
    var simTitle = { cosine: "Mean per-token cosine between checkpoints", cka: "Linear CKA between checkpoints" };
    sims.forEach(function (sm) {
      grid.appendChild(panel(simTitle[sm.name] || sm.name, el("div", null, [heatmap(sm.matrix, sm.labels, { cell: 30, cls: "similarity", format: function (v) { return v.toFixed(2); } }),
        el("div", { cls: "hint", text: "rows and columns: checkpoints by tokens seen; darker = more similar" })])));
    });
    if (!sims.length) grid.appendChild(panel("Activation similarity", missing("scan/similarity.npz not found")));
  }
  function isConstant(points) { return points.length > 1 && points.every(function (p) { return p[1] === points[0][1]; }); }
  function crosscoderSection(root, O) {
    var grid = section(root, "The crosscoder", "from crosscoder/ and evaluate: its settings, how well it reconstructs each checkpoint, and how its features are spread over the checkpoints");
    var CC = D.crosscoder;
    if (CC) {
      var arch = (CC.settings || []).filter(function (w) { return w.group === "architecture"; });
      var train = (CC.settings || []).filter(function (w) { return w.group === "training"; });
      grid.appendChild(panel("Crosscoder settings", el("div", { cls: "crosscoder-settings" }, [
        el("p", { cls: "inference-rule" + (CC.inference_depends_on_batch ? " warn" : ""), text: "Features fire by: " + CC.inference_rule }),
        kvWords(arch), train.length ? el("h3", { text: "training" }) : null, train.length ? kvWords(train) : null,
        el("div", { cls: "hint", text: "only the settings that apply to the " + CC.config.variant + " variant" })])));
    } else grid.appendChild(panel("Crosscoder settings", missing("no crosscoder opened (needs crosscoder/ and activations/)")));
    var ev = O.evaluation;
    if (ev && ev.rows) {
      grid.appendChild(panel("Reconstruction per checkpoint", el("div", { cls: "evaluation" }, [checkpointTable(ev.rows, ev.checkpoints, "evaluation-table"),
        el("h3", { text: "over all checkpoints" }), kvWords(ev.overall), (O.class_counts || {})["RelDec disputed by latent scaling"] ? disputedView(O.class_counts["RelDec disputed by latent scaling"], ev.overall) : null,
        el("div", { cls: "hint", text: "hover a row name for its field and definition" })])));
    } else grid.appendChild(panel("Reconstruction per checkpoint", missing("evaluation.json not found — run `crosstime evaluate`")));
    var em = O.emergence;
    if (em && em.counts_live) {
      var labels = em.counts_live.map(function (c, m) { return m === 0 ? "present at " + ckLabel(0) : ckLabel(m - 1) + " → " + ckLabel(m); });
      var counts = {};
      labels.forEach(function (l, m) { counts[l] = em.counts_live[m]; });
      grid.appendChild(panel("When features' decoders appear", el("div", { cls: "emergence" }, [countBars(counts),
        el("div", { cls: "hint", text: "live features (fired during evaluation) by onset: the first checkpoint where the decoder norm reaches " + pct(em.presence_fraction) + " of its maximum (as evaluation/emergence.png)" })])));
    }
    var cc = O.class_counts || {};
    ["RelDec class", "decoder-norm trajectory"].forEach(function (k) { if (cc[k]) grid.appendChild(panel("Features per " + k, countBars(cc[k]))); });
    var dist = O.distributions || {};
    if (dist.reldec) grid.appendChild(panel("RelDec share per checkpoint (" + dist.n_reldec + " features)", el("div", null, [smallMultiples(dist.reldec, "#2f6fde"),
      el("div", { cls: "hint", text: "histogram of ‖W_dec[i, m]‖ / Σ_k ‖W_dec[i, k]‖ over the features, one per checkpoint" })]), true));
  }
  var TOP_COLOR = "#c44e52", RANDOM_COLOR = "#4c72b0";
  // attribution/TASK/joint.csv: accuracy after moving the top-k features (by signed IE) together, against k random active ones
  function jointCurves(rows, a) {
    var box = el("div", { cls: "joint" });
    var revs = a.revisions || [];
    var accClean = rowValues(a.per_checkpoint, "accuracy_clean"), accAll = rowValues(a.per_checkpoint, "accuracy_all_ablated");
    [["ablate", "ablating the top k features together (the rest clean)"], ["restore", "restoring the top k features (the rest ablated)"]].forEach(function (mode) {
      var line = el("div", { cls: "small-multiples" });
      revs.forEach(function (rev, m) {
        var here = rows.filter(function (r) { return r.checkpoint === rev && r.mode === mode[0]; });
        var top = here.filter(function (r) { return r.ranking === "signed_ie"; }).sort(function (x, y) { return x.k - y.k; });
        var rand = here.filter(function (r) { return r.ranking === "random"; }).sort(function (x, y) { return x.k - y.k; });
        if (!top.length && !rand.length) return;
        var ticks = top.concat(rand).map(function (r) { return r.k; }).filter(function (k, i, all) { return all.indexOf(k) === i; }).sort(function (x, y) { return x - y; }).map(function (k) { return [k, String(k)]; });
        var hl = [];
        if (accClean && isNum(accClean[m])) hl.push([accClean[m], "clean"]);
        if (accAll && isNum(accAll[m])) hl.push([accAll[m], "all ablated"]);
        line.appendChild(el("figure", { "data-checkpoint": rev, "data-mode": mode[0] }, [lineChart({
          series: [{ name: "random k active", color: RANDOM_COLOR, points: rand.map(function (r) { return [r.k, r.accuracy, "k = " + r.k]; }) },
                   { name: "top k by signed IE", color: TOP_COLOR, points: top.map(function (r) { return [r.k, r.accuracy, "k = " + r.k]; }) }],
          bands: [{ color: RANDOM_COLOR, points: rand.map(function (r) { return [r.k, r.accuracy_lo, r.accuracy_hi]; }) }],
          logx: true, ymin: 0, ymax: 1, width: 250, height: 150, xticks: ticks, hlines: hl, xlabel: "k (log)", ylabel: "accuracy", cls: "joint-chart" }),
          el("figcaption", { text: labelOfRev(rev) })]));
      });
      box.appendChild(el("h3", { text: "Accuracy after " + mode[1] }));
      box.appendChild(line);
    });
    box.appendChild(legend(["random k active features (band: 95% of draws)", "top k by signed IE"], [RANDOM_COLOR, TOP_COLOR]));
    box.appendChild(el("div", { cls: "hint", text: "one chart per checkpoint; dashed lines: accuracy clean and with every feature ablated (error kept)" }));
    return box;
  }
  function rowValues(rows, name) { var r = (rows || []).filter(function (w) { return w.name === name; })[0]; return r ? r.values : null; }
  function disputedView(counts, overall) {
    var judged = (overall || []).filter(function (w) { return w.name === "scaling_judged"; })[0];
    var box = el("div", { cls: "disputed-summary" }, [el("h3", { text: "RelDec classes disputed by latent scaling" + (judged ? " (of " + fmt(judged.value) + " features judged)" : "") }), countBars(counts)]);
    box.appendChild(el("div", { cls: "hint", text: "shrinkage: the reconstruction error carries the decoder direction where RelDec says absent; decoupling: the activations carry it (another latent does). Filter them in the Features tab." }));
    return box;
  }
  function taskPanel(t, a, abl, O) {
    var dist = O.distributions || {}, cc = O.class_counts || {};
    var cols = el("div", { cls: "task-grid" });
    var left = el("div");
    if (a.per_checkpoint) { left.appendChild(el("h3", { text: "per checkpoint" })); left.appendChild(checkpointTable(a.per_checkpoint, a.revisions, "attribution-table")); }
    if ((a.agreement || []).length) { left.appendChild(el("h3", { text: "pooled over checkpoints" })); left.appendChild(kvWords(a.agreement)); }
    if (a.summary) left.appendChild(el("details", null, [el("summary", { text: "settings of the attribution" }), kvWords(a.summary)]));
    cols.appendChild(left);
    var mid = el("div");
    if (dist.relie && dist.relie[t]) { mid.appendChild(el("h3", { text: "RelIE share per checkpoint (" + dist.n_relie[t] + " features)" })); mid.appendChild(smallMultiples(dist.relie[t], "#d9480f")); }
    if (cc["RelIE class (" + t + ")"]) { mid.appendChild(el("h3", { text: "features per RelIE class" })); mid.appendChild(countBars(cc["RelIE class (" + t + ")"])); }
    cols.appendChild(mid);
    if (a.confusion) {
      var c = a.confusion;
      cols.appendChild(el("div", null, [el("h3", { text: "RelIE class (rows) × RelDec class (columns), reported features" }),
        heatmap(c.counts, c.relie_classes, { colLabels: c.reldec_classes, cell: 36, left: 150, bottom: 120, min: 0, cls: "confusion", format: function (v) { return String(v); } })]));
    }
    var body = el("div", null, [cols]);
    if (a.joint && a.joint.length) body.appendChild(jointCurves(a.joint, a));
    if (abl) body.appendChild(el("details", { cls: "ablation" }, [el("summary", { text: "exact single-feature ablation (" + abl.rows.length + " rows)" }), table(abl.columns, abl.rows)]));
    return el("div", { cls: "panel wide task-panel", "data-task": t }, [el("h2", { text: "Task: " + t }), body]);
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
    scanSection(root, O);
    crosscoderSection(root, O);
    evolutionSection(root, O);
    var att = O.attribution || {}, abl = O.ablation || {};
    var tgrid = section(root, "Tasks", "from attribution/TASK/: what the crosscoder's features do for each task, per checkpoint");
    if (!TASKS.length) tgrid.appendChild(panel("Attribution", missing("attribution/TASK/features.csv not found — run `crosstime attribute`")));
    TASKS.forEach(function (t) { tgrid.appendChild(taskPanel(t, att[t] || {}, abl[t], O)); });
    var figs = (O.figures || []).filter(function (f) { return !f.evolution; });  // the Evolution ones are above
    if (figs.length) {
      var fgrid = section(root, "Figures the stages wrote");
      var fbox = el("div", { cls: "figs" });
      figs.forEach(function (f) { fbox.appendChild(el("figure", { cls: "png" }, [el("img", { src: f.src, alt: f.name, loading: "lazy" }), el("figcaption", { text: f.name })])); });
      fgrid.appendChild(el("div", { cls: "panel wide" }, fbox));
    }
  }

  // ---------------------------------------------------------------- feature browser
  var TASKS = D.tasks || [];
  // default task: the report's main task (largest total |IE| over the reported features)
  // the list is sorted by the selected task's Σ|IE| (its columns show that task); features without an attribution in it come last
  var state = { task: D.main_task && TASKS.indexOf(D.main_task) >= 0 ? D.main_task : TASKS[0] || null, sort: TASKS.length ? "ie" : "rank", dir: -1, cls: "", peak: "", onset: "", minIE: "", text: "", selected: null, view: "all" };
  var visible = [];

  function taskData(f) { return state.task && f.tasks ? f.tasks[state.task] || null : null; }
  function ieTotal(f) { var t = taskData(f); return t && t.ie ? sum(t.ie.map(Math.abs)) : null; }
  function reliePeak(f) { var t = taskData(f); return t && t.relie ? argmax(t.relie) : -1; }
  function relieMax(f) { var t = taskData(f); return t && t.relie ? Math.max.apply(null, t.relie.filter(isNum)) : null; }
  function hasEffect(t) { return !!(t && t.relie_class && t.relie_class !== NO_EFFECT); }
  var NO_EFFECT = "no effect";
  var COLUMNS = [
    { key: "id", label: "feature", field: "feature", tip: "feature id", value: function (f) { return f.id; } },
    { key: "rank", label: "rank", field: "rank", tip: "rank in the report: largest Σ_m |IE_m| over all tasks (else decoder norm)", value: function (f) { return isNum(f.rank) ? f.rank : null; } },
    { key: "cls", label: TASKS.length ? "RelIE class" : "RelDec class", field: TASKS.length ? "relie_class" : "reldec_class", tip: TASKS.length ? "class from the RelIE shares of the selected task" : "class from the RelDec shares", value: function (f) { var t = taskData(f); return TASKS.length ? (t && t.relie_class) || "" : f.reldec_class || ""; }, cls: "cls" },
    { key: "relie", label: "largest RelIE", field: "relie", tip: "largest RelIE share |IE_m| / Σ_k |IE_k| of the selected task, and where", value: relieMax, show: function (f) { var v = relieMax(f); var p = reliePeak(f); return v === null || !hasEffect(taskData(f)) ? "–" : pct(v) + (p >= 0 ? " @" + ckLabel(p) : ""); } },
    { key: "ie", label: "Σ|IE|", field: "ie", tip: "Σ_m |IE_m| of the selected task (signed IE: mean change of the metric, per checkpoint)", value: ieTotal },
    { key: "onset", label: "onset", field: "onset", tip: "first checkpoint where the decoder norm is present", value: function (f) { return isNum(f.onset) && f.onset >= 0 ? f.onset : null; }, show: function (f) { return isNum(f.onset) && f.onset >= 0 ? ckLabel(f.onset) : "–"; } },
    { key: "desc", label: "annotation", field: "description", tip: "your description (crosstime annotate)", value: function (f) { return f.description || ""; }, cls: "desc" }
  ].filter(function (c) { return TASKS.length || (c.key !== "relie" && c.key !== "ie"); });

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
    var relie = {}, reldec = {}, traj = {}, disputed = {};
    FEATURES.forEach(function (f) {
      var t = taskData(f);
      if (t && t.relie_class) relie[t.relie_class] = (relie[t.relie_class] || 0) + 1;
      if (f.reldec_class) reldec[f.reldec_class] = (reldec[f.reldec_class] || 0) + 1;
      if (f.trajectory) traj[f.trajectory] = (traj[f.trajectory] || 0) + 1;
      if (f.reldec_disputed) disputed[f.dispute_kind] = (disputed[f.dispute_kind] || 0) + 1;
    });
    sel.innerHTML = "";
    sel.appendChild(el("option", { value: "", text: "any" }));
    [["RelIE class", "relie:", relie], ["RelDec class", "reldec:", reldec], ["trajectory", "traj:", traj], ["RelDec disputed by latent scaling", "disp:", disputed]].forEach(function (g) {
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
      if (kind === "disp" && !(f.reldec_disputed && f.dispute_kind === val)) return false;
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
  function sortColumn() { return COLUMNS.filter(function (c) { return c.key === state.sort; })[0]; }
  function compareFeatures(a, b) {  // a, b: {f, v} with the sort column's value v
    var x = a.v, y = b.v;
    a = a.f; b = b.f;
    var xn = x === null || x === undefined || x === "", yn = y === null || y === undefined || y === "";
    if (xn && yn) return a.id - b.id;
    if (xn) return 1;
    if (yn) return -1;
    if (typeof x === "string" || typeof y === "string") return state.dir * String(x).localeCompare(String(y)) || a.id - b.id;
    return state.dir * (x - y) || a.id - b.id;
  }
  function renderList() {
    var shown = FEATURES.filter(passes);
    // features attributed in the selected task first (in the sort's order), then the others (reported for another task)
    var col = sortColumn();
    function sorted(fs) {  // the sort column's value computed once per feature (a large report lists thousands)
      return fs.map(function (f) { return { f: f, v: col ? col.value(f) : 0 }; }).sort(compareFeatures).map(function (x) { return x.f; });
    }
    var inTask = sorted(shown.filter(function (f) { return !state.task || taskData(f); }));
    var others = sorted(shown.filter(function (f) { return state.task && !taskData(f); }));
    visible = inTask.concat(others);
    var drawn = visible.length > LIST_MAX ? visible.slice(0, LIST_MAX) : visible;
    var drawnIn = Math.min(inTask.length, drawn.length);
    var thead = document.querySelector("#feature-table thead");
    thead.innerHTML = "";
    thead.appendChild(el("tr", null, COLUMNS.map(function (c) {
      return el("th", { "data-key": c.key, "data-field": c.field, cls: state.sort === c.key ? "sorted" + (state.dir > 0 ? " asc" : "") : null, title: c.field + " — " + c.tip + " (click to sort)",
        onclick: function () { if (state.sort === c.key) state.dir = -state.dir; else { state.sort = c.key; state.dir = c.key === "id" || c.key === "rank" || c.key === "onset" || c.key === "desc" || c.key === "cls" ? 1 : -1; } renderList(); } }, c.label);
    })));
    var tbody = document.querySelector("#feature-table tbody");
    tbody.innerHTML = "";
    function row(f) {
      return el("tr", { cls: "feature-row" + (f.id === state.selected ? " selected" : "") + (state.task && !taskData(f) ? " unattributed" : ""), "data-feature": f.id, onclick: function () { select(f.id); } },
        COLUMNS.map(function (c) { var v = c.value(f); return el("td", { cls: c.cls || null, text: c.show ? c.show(f) : (v === "" ? "–" : fmt(v)), title: c.key === "desc" || c.key === "cls" ? String(v || "") : null }); }));
    }
    var rows = document.createDocumentFragment();
    drawn.slice(0, drawnIn).forEach(function (f) { rows.appendChild(row(f)); });
    if (others.length && drawn.length > drawnIn) rows.appendChild(el("tr", { cls: "divider" }, el("td", { colspan: COLUMNS.length, text: fmt(others.length) + " " + (SHARDS ? "listed" : "reported") + " without an attribution in " + state.task })));
    drawn.slice(drawnIn).forEach(function (f) { rows.appendChild(row(f)); });
    tbody.appendChild(rows);
    var noun = SHARDS ? " live features" : " reported features";
    document.getElementById("list-count").textContent = (SHARDS && !FEATURES.length ? "loading the feature list… " : "") +
      fmt(visible.length) + " of " + fmt(FEATURES.length) + noun + (D.n_features_total ? " (crosscoder has " + fmt(D.n_features_total) + ")" : "") +
      (drawn.length < visible.length ? "; the first " + fmt(drawn.length) + " shown, search by id or annotation for the others" : "") +
      (state.task ? "; sorted within " + state.task : "");
  }
  function select(id, fromHash, quiet) {
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
    if (id in BY_ID) { renderCard(); return; }
    renderCard(true);
    withFeature(id, function () { if (state.selected === id) renderCard(); });
  }

  function renderCard(loading) {
    var pane = document.getElementById("card-pane");
    var f = BY_ID[state.selected];
    pane.innerHTML = "";
    if (!f && state.selected !== null) {
      pane.appendChild(loading ? el("div", { cls: "empty loading", text: "Loading feature " + state.selected + "…" })
        : el("div", { cls: "empty", id: "feature-absent", "data-feature": state.selected, text: absentText(state.selected) }));
      return;
    }
    if (!f) { pane.appendChild(el("div", { cls: "empty", text: "Select a feature (j/k or arrows to move)." })); return; }
    var card = el("div", { cls: "feature-card", id: "feature-card", "data-feature": f.id });
    var t = taskData(f);
    var head = el("div", { cls: "card-head" }, [el("h2", { text: "Feature " + f.id })]);
    if (t && t.relie_class) head.appendChild(el("span", { cls: "badge relie" + (t.relie_class === NO_EFFECT ? " none" : ""), title: "relie_class (" + state.task + ")", text: t.relie_class === NO_EFFECT ? "no effect on " + state.task : "RelIE: " + t.relie_class }));
    if (f.reldec_class) head.appendChild(el("span", { cls: "badge reldec", title: "RelDec class", text: "RelDec: " + f.reldec_class }));
    if (f.trajectory) head.appendChild(el("span", { cls: "badge", title: "decoder-norm trajectory", text: f.trajectory }));
    if (isNum(f.frequency)) head.appendChild(el("span", { cls: "badge", title: "frequency: share of tokens on which it fires", text: "fires on " + pct(f.frequency) + " of tokens" }));
    if (f.reldec_disputed) head.appendChild(el("span", { cls: "badge disputed", title: "reldec_disputed: latent scaling disputes the RelDec class", text: "RelDec disputed" }));
    card.appendChild(head);
    card.appendChild(el("div", { cls: "annotation" + (f.description ? "" : " none"), text: f.description || "No annotation yet — `crosstime annotate RUN --export annotations.csv`, fill in `description`, then `--import`." }));
    // bars
    var grid = el("div", { cls: "card-grid" });
    var relieBox;
    if (t && t.relie) {
      var ieScale = t.ie ? Math.max.apply(null, t.ie.filter(isNum).map(Math.abs).concat([0])) : null;
      relieBox = barList("relie", t.relie, {
        uniform: 1 / M,
        title: function (m) { return t.ie ? "share " + fmt(t.relie[m]) + "; IE = " + fmt(t.ie[m]) + (t.ie_lo && t.ie_hi ? ", 95% CI [" + fmt(t.ie_lo[m]) + ", " + fmt(t.ie_hi[m]) + "]" : "") : null; },
        show: function (m) {
          if (!t.ie) return pct(t.relie[m]);
          var half = t.ie_lo && t.ie_hi && isNum(t.ie_lo[m]) ? (t.ie_hi[m] - t.ie_lo[m]) / 2 : null;
          var ie = fmtRel(t.ie[m], ieScale);
          return pct(t.relie[m]) + " · IE " + (ie === "≈ 0" ? ie : (t.ie[m] > 0 ? "+" : "") + ie + (isNum(half) ? " ± " + fmtRel(half, ieScale) : ""));
        }
      });
      if (t.relie_class === NO_EFFECT) relieBox = el("div", null, [el("div", { cls: "no-effect", text: "No effect on " + state.task + ": Σ|IE| is below the effect floor, so no RelIE class." }), relieBox]);
    } else relieBox = missing(TASKS.length ? "no attribution for this feature in task " + state.task : "no attribution in this run");
    var ablation = null;
    if (t && t.ablation && t.ablation.delta_lpd) {
      var dl = t.ablation.delta_lpd, dlScale = Math.max.apply(null, dl.filter(isNum).map(Math.abs).concat([0]));
      ablation = el("div", { cls: "hint ablation", text: "exact single-feature ablation, ΔLPD: " + dl.map(function (v, m) { return ckLabel(m) + " " + fmtRel(v, dlScale); }).join(" · ") });
    }
    grid.appendChild(panel("RelIE per checkpoint" + (state.task ? " — " + state.task : ""), el("div", null, [relieBox,
      el("div", { cls: "hint", text: "share of the feature's |IE| at each checkpoint (bars scaled to the largest; tick: uniform 1/M)" + (t && t.ie ? "; IE ± half the 95% CI, “≈ 0” below a thousandth of the largest" : "") }), ablation])));
    var hasBeta = f.beta_share && f.beta_share.some(isNum);
    grid.appendChild(panel("RelDec per checkpoint", f.reldec ? el("div", null, [barList("reldec", f.reldec, { uniform: 1 / M,
      title: function (m) { return "RelDec share " + fmt(f.reldec[m]) + (f.norm ? "; ‖W_dec‖ = " + fmt(f.norm[m]) : "") + (hasBeta ? "; β share " + fmt(f.beta_share[m]) + ", β " + fmt(f.beta[m]) + ", β_error share " + fmt(f.beta_error_share[m]) : ""); },
      show: function (m) { return pct(f.reldec[m]) + (f.norm ? " · ‖d‖ " + fmt(f.norm[m]) : "") + (hasBeta ? " · β " + pct(f.beta_share[m]) : ""); } }),
      hasBeta ? el("div", { cls: "hint beta", text: "β: latent-scaling share (the decoder direction's least-squares scale in each checkpoint's activations, over the held-out rows where it fires" + (isNum(f.beta_tokens) ? ": " + fmt(f.beta_tokens) + " rows" : "") + ")" }) : null,
      f.reldec_disputed ? el("div", { cls: "disputed", text: "RelDec disputed at " + (f.disputed_at || "").split(";").map(labelOfRev).join(", ") + " (" + f.dispute_kind + "): the decoder norm says absent, latent scaling says present" }) : null])
      : missing("no RelDec (evaluation/features.csv or the crosscoder) for this feature")));
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
        el("div", { cls: "hint", text: "view " + viewName(hv) + ": fires on " + pct(ev.density[hv] || 0) + " of " + fmt(D.evidence_meta ? D.evidence_meta.n_rows : null) + " tokens" + (views.length > 1 ? " (pick a view below)" : "") })]);
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
    var excluded = (D.evidence_meta && D.evidence_meta.excluded_tokens) || [];
    if (excluded.length) note += " Special tokens left out: " + excluded.map(tokenText).join(" ") + ".";
    return panel("Logit lens per checkpoint", el("div", null, [tbl, el("div", { cls: "hint", text: note })]), true);
  }

  // ---------------------------------------------------------------- shards (a large report)
  function loadScript(src, onerror) {
    var s = document.createElement("script");
    s.src = src;
    s.onerror = onerror;
    document.head.appendChild(s);
  }
  // the shard that holds id if any: shard k holds ids from starts[k] up to starts[k + 1]
  function shardOf(id) {
    var st = SHARDS ? SHARDS.starts : [], lo = 0, hi = st.length - 1;
    if (!st.length || id < st[0]) return -1;
    while (lo < hi) { var mid = (lo + hi + 1) >> 1; if (st[mid] <= id) lo = mid; else hi = mid - 1; }
    return lo;
  }
  function withShard(k, done) {
    if (shardState[k] === "loaded" || shardState[k] === "failed") { done(); return; }
    (shardWaiters[k] = shardWaiters[k] || []).push(done);
    if (shardState[k] === "loading") return;
    shardState[k] = "loading";
    loadScript(SHARDS.path + "/shard-" + ("0000" + k).slice(-5) + ".js", function () { shardDone(k, "failed"); });
  }
  function shardDone(k, how) {
    shardState[k] = how;
    var waiting = shardWaiters[k] || [];
    shardWaiters[k] = [];
    waiting.forEach(function (f) { f(); });
  }
  window.crosstimeShard = function (k, entries) {
    entries.forEach(function (f) { BY_ID[f.id] = f; });
    shardDone(k, "loaded");
  };
  window.crosstimeIndex = function (summaries) {
    FEATURES = summaries;
    document.getElementById("meta").textContent = metaText();
    refreshClassOptions();
    renderList();
    if (state.selected === null && visible.length) select(visible[0].id, false, true);
  };
  // the entry of feature id, loading its shard first when needed; then done(entry or null)
  function withFeature(id, done) {
    if (id in BY_ID || shardOf(id) < 0) { done(BY_ID[id] || null); return; }
    withShard(shardOf(id), function () { done(BY_ID[id] || null); });
  }
  // why feature id has no card: not a feature of the crosscoder, or not in this report's data
  function absentText(id) {
    var F = D.n_features_total;
    if (isNum(F) && (id < 0 || id >= F)) return "Feature " + id + " does not exist: the crosscoder has " + fmt(F) + " features (ids 0–" + fmt(F - 1) + ").";
    if (SHARDS && shardState[shardOf(id)] === "failed") return "Feature " + id + ": its data file " + SHARDS.path + "/shard-" + ("0000" + shardOf(id)).slice(-5) + ".js could not be loaded (open the report where it was written, or through `crosstime serve RUN`).";
    return "Feature " + id + " is not in this report's data (" + (SHARDS ? "the report holds " + fmt(SHARDS.count) + " live features; it is dead or was left out" : "it reports " + fmt(FEATURES.length) + " features; `crosstime report RUN --features " + id + "` adds it") + ").";
  }

  // ---------------------------------------------------------------- navigation
  function showPage(name) {
    document.querySelectorAll(".page").forEach(function (p) { p.classList.toggle("active", p.id === name); });
    document.querySelectorAll("header nav button").forEach(function (b) { b.classList.toggle("active", b.getAttribute("data-page") === name); });
  }
  function fromHash() {
    var m = /feature=(-?\d+)/.exec(location.hash);
    if (m) { select(Number(m[1]), true); return true; }
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
  function metaText() { return M + " checkpoints · " + fmt(SHARDS ? SHARDS.count : FEATURES.length) + " features · generated " + (D.generated || ""); }
  document.getElementById("meta").textContent = metaText();
  renderOverview();
  renderFilters();
  renderList();
  if (!fromHash()) showPage("overview");
  if (state.selected === null && visible.length) select(visible[0].id, false, true);  // a card is ready when Features opens
  if (SHARDS) loadScript(SHARDS.path + "/index.js", function () {
    document.getElementById("list-count").textContent = "the feature list " + SHARDS.path + "/index.js could not be loaded (open the report where it was written, or through `crosstime serve RUN`)";
  });
})();
