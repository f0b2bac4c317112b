/* charts.js: SVG and bar charts: line charts (axes, reference lines, bands, series), heatmaps,
   histograms, bars per checkpoint and bars of counts. Their geometry is axes.js's. */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};
var F = CT.format, isNum = F.isNum, fmt = F.fmt, A = CT.axes, el = CT.dom.el, sv = CT.dom.sv, P = CT.page;
var PALETTE = ["#2f6fde", "#d9480f", "#2b8a3e", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c", "#5f3dc4", "#495057", "#74b816"];

var DASHES = ["4,3", "1,2", "8,3,1,3", "2,5"];  // the reference lines' dash patterns, in the order of opts.hlines
var TICK_PX = 10, REF_PX = 9;  // font sizes of tick labels and of the checkpoint markers' labels (dashboard.css)

// opts: series [{name, points [[x, y, label]], color}], logx, ymin, ymax, width, height, top, xticks [[x, label, title]],
// markers [[x, title, label]] (vertical; labelled above the plot, in as many rows as they need), hlines [[y, label]]
// (dashed, told apart by refLegend; hlinesInRange: counted in the y domain), bands, xlabel, ylabel, cls.
// No label is drawn inside the plot, where a curve could cross it.
function lineChart(opts) {
  var f = A.frame(opts);
  var svg = sv("svg", { width: f.W, height: f.H, viewBox: "0 0 " + f.W + " " + f.H, cls: "chart " + (opts.cls || "") });
  if (!f.X) { svg.appendChild(sv("text", { x: 10, y: 20, text: "no data" })); return svg; }
  var rows = markerRows(f, opts.markers || []);
  var need = rows.n ? 6 + rows.n * (REF_PX + 2) : f.T;
  if (need > f.T) {  // room above the plot for the markers' labels
    f = A.frame(Object.assign({}, opts, { top: need }));
    svg.setAttribute("viewBox", "0 0 " + f.W + " " + f.H);
  }
  svg.appendChild(chartAxes(f, opts));
  chartReferences(svg, f, opts, rows.rows);
  chartSeries(svg, f, opts.series);
  return svg;
}
// the row (0: the nearest the plot) of each marker's label, null when none is free; n: the rows used
function markerRows(f, markers) {
  var items = markers.map(function (mk) { var w = mk[2] ? A.textWidth(mk[2], REF_PX) : 0; return { x: isNum(mk[0]) && mk[2] ? within(f.X(mk[0]), w, f.W) : NaN, w: w }; });
  var order = items.map(function (_, k) { return k; }).filter(function (k) { return isNum(items[k].x); }).sort(function (a, b) { return items[a].x - items[b].x; });
  var placed = A.stackLabels(order.map(function (k) { return items[k]; }), 3, 3), rows = markers.map(function () { return null; }), n = 0;
  order.forEach(function (k, i) { rows[k] = placed[i]; if (placed[i] !== null) n = Math.max(n, placed[i] + 1); });
  return { rows: rows, n: n };
}
// x: kept within the chart for a label of width w centred there
function within(x, w, W) { return Math.max(w / 2 + 1, Math.min(W - w / 2 - 1, x)); }
function chartAxes(f, opts) {
  var L = f.L, R = f.R, T = f.T, B = f.B, W = f.W, H = f.H, X = f.X, Y = f.Y;
  var axis = sv("g", { cls: "axis" });
  axis.appendChild(sv("line", { x1: L, y1: H - B, x2: W - R, y2: H - B }));
  axis.appendChild(sv("line", { x1: L, y1: T, x2: L, y2: H - B }));
  f.yticks.forEach(function (t) {
    axis.appendChild(sv("line", { x1: L - 3, y1: Y(t[0]), x2: L, y2: Y(t[0]) }));
    axis.appendChild(sv("text", { x: L - 5, y: Y(t[0]) + 3, "text-anchor": "end", text: t[1] }));
  });
  var ticks = (opts.xticks || []).filter(function (t) { return isNum(t[0]); }).sort(function (a, b) { return a[0] - b[0]; });
  var items = ticks.map(function (t) { var w = A.textWidth(t[1], TICK_PX); return { x: within(X(t[0]), w, W), w: w }; });
  var rows = A.stackLabels(items, 4, 1);
  ticks.forEach(function (t, k) {
    axis.appendChild(sv("line", { x1: X(t[0]), y1: H - B, x2: X(t[0]), y2: H - B + 3 }, t[2] ? sv("title", { text: t[2] }) : null));
    if (rows[k] !== null) axis.appendChild(sv("text", { x: items[k].x, y: H - B + 13, "text-anchor": "middle", text: t[1] }, t[2] ? sv("title", { text: t[2] }) : null));
  });
  if (opts.xlabel) axis.appendChild(sv("text", { x: (L + W - R) / 2, y: H - 3, "text-anchor": "middle", text: opts.xlabel }));
  if (opts.ylabel) axis.appendChild(sv("text", { x: 10, y: (T + H - B) / 2, "text-anchor": "middle", transform: "rotate(-90 10 " + (T + H - B) / 2 + ")", text: opts.ylabel }));
  return axis;
}
function chartReferences(svg, f, opts, rows) {
  (opts.markers || []).forEach(function (mk, k) {
    if (!isNum(mk[0])) return;
    svg.appendChild(sv("line", { x1: f.X(mk[0]), y1: f.T, x2: f.X(mk[0]), y2: f.H - f.B, stroke: "#bbb", "stroke-dasharray": "3,3" }, sv("title", { text: mk[1] })));
    if (mk[2] && rows[k] !== null) {
      var w = A.textWidth(mk[2], REF_PX);
      svg.appendChild(sv("text", { x: within(f.X(mk[0]), w, f.W), y: f.T - 6 - rows[k] * (REF_PX + 2), "text-anchor": "middle", cls: "ref-label", text: mk[2] }, sv("title", { text: mk[1] })));
    }
  });
  (opts.hlines || []).forEach(function (h, k) {  // [y, label]: reference lines, told apart by their dashes (refLegend)
    if (!isNum(h[0]) || !(h[0] >= f.y0 && h[0] <= f.y1)) return;
    svg.appendChild(sv("line", { x1: f.L, y1: f.Y(h[0]), x2: f.W - f.R, y2: f.Y(h[0]), stroke: "#888", "stroke-dasharray": DASHES[k % DASHES.length] }, sv("title", { text: h[1] })));
  });
  (opts.bands || []).forEach(function (b) {  // {points: [[x, lo, hi]], color}: a shaded interval
    var p = b.points.filter(function (q) { return isNum(q[0]) && isNum(q[1]) && isNum(q[2]); });
    if (p.length < 2) return;
    svg.appendChild(sv("polygon", { points: A.polyPoints(f, p, 2) + " " + A.polyPoints(f, p.slice().reverse(), 1), fill: b.color, "fill-opacity": 0.18, stroke: "none" }));
  });
}
// what the reference lines of a chart (hlines [[y, label]], in the chart's order) are: a sample of each dash and its label
function refLegend(hlines) {
  return el("div", { cls: "legend refs" }, hlines.map(function (h, k) {
    if (!isNum(h[0])) return null;
    return el("span", null, [sv("svg", { width: 22, height: 8, cls: "dash" }, sv("line", { x1: 0, y1: 4, x2: 22, y2: 4, stroke: "#888", "stroke-dasharray": DASHES[k % DASHES.length] })), " " + h[1]]);
  }));
}
function chartSeries(svg, f, series) {
  series.forEach(function (s, k) {
    var col = s.color || PALETTE[k % PALETTE.length];
    var p = s.points.filter(function (q) { return isNum(q[0]) && isNum(q[1]); });
    if (p.length > 1) svg.appendChild(sv("polyline", { fill: "none", stroke: col, "stroke-width": 1.6, points: A.polyPoints(f, p, 1) }));
    p.forEach(function (q) {
      svg.appendChild(sv("circle", { cx: f.X(q[0]), cy: f.Y(q[1]), r: 2.6, fill: col }, sv("title", { text: (s.name ? s.name + " · " : "") + (q[2] || fmt(q[0])) + ": " + fmt(q[1]) })));
    });
  });
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
  var hover = opts.hover || String;  // a label as its tooltip says it
  var nr = matrix.length, nc = nr ? matrix[0].length : 0;
  var cell = opts.cell || 34, L = opts.left || 56, T = 4, B = opts.bottom || 46;
  var W = L + nc * cell + 4, H = T + nr * cell + B;
  var range = A.heatRange(matrix, opts.min), lo = range.lo, hi = range.hi;
  var svg = sv("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, cls: "heatmap" + (opts.cls ? " " + opts.cls : "") });
  for (var i = 0; i < nr; i++) {
    for (var j = 0; j < nc; j++) {
      var v = matrix[i][j], t = isNum(v) ? (v - lo) / (hi - lo) : 0;
      var g = sv("g", { cls: "cell" }, [sv("rect", { x: L + j * cell, y: T + i * cell, width: cell - 1, height: cell - 1, fill: isNum(v) ? A.heatColor(t) : "#eee" }),
        sv("text", { x: L + j * cell + cell / 2 - 0.5, y: T + i * cell + cell / 2 + 3, "text-anchor": "middle", cls: "cell-value", fill: t > 0.55 ? "#fff" : "#222",
          text: isNum(v) ? (opts.format || fmt)(v) : "–" }),
        sv("title", { text: hover(rowLabels[i]) + " × " + hover(colLabels[j]) + ": " + fmt(v) })]);
      svg.appendChild(g);
    }
    svg.appendChild(sv("text", { x: L - 4, y: T + i * cell + cell / 2 + 3, "text-anchor": "end", text: rowLabels[i] }, sv("title", { text: hover(rowLabels[i]) })));
  }
  for (j = 0; j < nc; j++) {
    var x = L + j * cell + cell / 2, y = T + nr * cell + 8;
    svg.appendChild(sv("text", { x: x, y: y, "text-anchor": "end", transform: "rotate(-40 " + x + " " + y + ")", text: colLabels[j] }, sv("title", { text: hover(colLabels[j]) })));
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
// one bar per checkpoint (values [M]), scaled to the largest |value|; the peak marked; opts: uniform (a tick), title(m), show(m)
function barList(kind, values, opts) {
  opts = opts || {};
  var box = el("div", { cls: "bars " + kind });
  var peak = F.argmax(values);
  var scale = F.maxAbs(values || [], 1e-12);
  for (var m = 0; m < P.M; m++) {
    var v = values ? values[m] : null;
    var w = isNum(v) ? Math.min(100, Math.abs(v) / scale * 100) : 0;
    box.appendChild(el("div", { cls: "bar-row" + (m === peak ? " peak" : ""), "data-checkpoint": P.CK[m] ? P.CK[m].revision : m, title: P.names.title(m) + (opts.title ? ": " + opts.title(m) : "") }, [
      el("span", { cls: "lab", text: P.names.label(m) }),
      el("span", { cls: "track" }, [el("span", { cls: "fill", style: "width:" + w.toFixed(1) + "%" }),
        opts.uniform ? el("span", { cls: "uniform", title: "uniform share 1/M", style: "left:" + Math.min(100, opts.uniform / scale * 100).toFixed(1) + "%" }) : null]),
      el("span", { cls: "val", text: opts.show ? opts.show(m) : fmt(v) })
    ]));
  }
  return box;
}
// counts {name: n} as bars, each with its share of the total
function countBars(counts) {
  var box = el("div", { cls: "bars counts" });
  CT.data.countRows(counts).forEach(function (r) {
    box.appendChild(el("div", { cls: "bar-row" }, [el("span", { cls: "lab", text: r.name }), el("span", { cls: "track" }, el("span", { cls: "fill", style: "background:#868e96;width:" + r.width + "%" })),
      el("span", { cls: "val", text: r.text })]));
  });
  return box;
}
// one histogram of shares in [0, 1] per checkpoint (perCk: [M][bins])
function smallMultiples(perCk, color) {
  var box = el("div", { cls: "small-multiples" });
  perCk.forEach(function (counts, m) {
    box.appendChild(el("figure", null, [histogram(counts, 1, { width: 110, height: 56, color: color, left: "0", right: "1", binLabel: function (b) { return (b / counts.length).toFixed(1) + "–" + ((b + 1) / counts.length).toFixed(1); } }), el("figcaption", { text: P.names.label(m), title: P.names.title(m) })]));
  });
  return box;
}

CT.charts = { lineChart: lineChart, legend: legend, refLegend: refLegend, heatmap: heatmap, histogram: histogram, barList: barList, countBars: countBars, smallMultiples: smallMultiples };
