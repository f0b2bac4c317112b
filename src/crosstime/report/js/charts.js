/* charts.js: SVG and bar charts: line charts (axes, reference lines, bands, series), heatmaps,
   histograms, bars per checkpoint and bars of counts. Their geometry is axes.js's. */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};
var F = CT.format, isNum = F.isNum, fmt = F.fmt, A = CT.axes, el = CT.dom.el, sv = CT.dom.sv, P = CT.page;
var PALETTE = ["#2f6fde", "#d9480f", "#2b8a3e", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c", "#5f3dc4", "#495057", "#74b816"];

// opts: series [{name, points [[x, y, label]], color}], logx, ymin, ymax, width, height, top, xticks [[x, label]],
// markers [[x, title, label]] (vertical), hlines [[y, label]] (hlinesInRange: counted in the y domain), bands, xlabel, ylabel, cls
function lineChart(opts) {
  var f = A.frame(opts);
  var svg = sv("svg", { width: f.W, height: f.H, viewBox: "0 0 " + f.W + " " + f.H, cls: "chart " + (opts.cls || "") });
  if (!f.X) { svg.appendChild(sv("text", { x: 10, y: 20, text: "no data" })); return svg; }
  svg.appendChild(chartAxes(f, opts));
  chartReferences(svg, f, opts);
  chartSeries(svg, f, opts.series);
  return svg;
}
function chartAxes(f, opts) {
  var L = f.L, R = f.R, T = f.T, B = f.B, W = f.W, H = f.H, X = f.X, Y = f.Y;
  var axis = sv("g", { cls: "axis" });
  axis.appendChild(sv("line", { x1: L, y1: H - B, x2: W - R, y2: H - B }));
  axis.appendChild(sv("line", { x1: L, y1: T, x2: L, y2: H - B }));
  for (var i = 0; i <= 4; i++) {
    var yv = f.y0 + (f.y1 - f.y0) * i / 4;
    axis.appendChild(sv("line", { x1: L - 3, y1: Y(yv), x2: L, y2: Y(yv) }));
    axis.appendChild(sv("text", { x: L - 5, y: Y(yv) + 3, "text-anchor": "end", text: fmt(yv) }));
  }
  (opts.xticks || []).forEach(function (t) {
    if (!isNum(t[0])) return;
    axis.appendChild(sv("line", { x1: X(t[0]), y1: H - B, x2: X(t[0]), y2: H - B + 3 }));
  });
  var labelled = A.thin(opts.xticks || [], Math.max(2, Math.floor((W - L - R) / 46)));
  labelled.forEach(function (t) {
    if (!isNum(t[0])) return;
    axis.appendChild(sv("text", { x: X(t[0]), y: H - B + 13, "text-anchor": "middle", text: t[1] }));
  });
  if (opts.xlabel) axis.appendChild(sv("text", { x: (L + W - R) / 2, y: H - 3, "text-anchor": "middle", text: opts.xlabel }));
  if (opts.ylabel) axis.appendChild(sv("text", { x: 10, y: (T + H - B) / 2, "text-anchor": "middle", transform: "rotate(-90 10 " + (T + H - B) / 2 + ")", text: opts.ylabel }));
  return axis;
}
function chartReferences(svg, f, opts) {
  (opts.markers || []).forEach(function (mk) {
    if (!isNum(mk[0])) return;
    svg.appendChild(sv("line", { x1: f.X(mk[0]), y1: f.T, x2: f.X(mk[0]), y2: f.H - f.B, stroke: "#bbb", "stroke-dasharray": "3,3" }, sv("title", { text: mk[1] })));
    if (mk[2]) svg.appendChild(sv("text", { x: f.X(mk[0]) - 2, y: f.T + 8, "text-anchor": "end", cls: "ref-label", text: mk[2] }));
  });
  (opts.hlines || []).forEach(function (h) {  // [y, label]: reference lines, each labelled
    if (!(h[0] >= f.y0 && h[0] <= f.y1)) return;
    svg.appendChild(sv("line", { x1: f.L, y1: f.Y(h[0]), x2: f.W - f.R, y2: f.Y(h[0]), stroke: "#aaa", "stroke-dasharray": "2,2" }));
    svg.appendChild(sv("text", { x: f.W - f.R, y: f.Y(h[0]) - 3, "text-anchor": "end", cls: "ref-label", text: h[1] }));
  });
  (opts.bands || []).forEach(function (b) {  // {points: [[x, lo, hi]], color}: a shaded interval
    var p = b.points.filter(function (q) { return isNum(q[0]) && isNum(q[1]) && isNum(q[2]); });
    if (p.length < 2) return;
    svg.appendChild(sv("polygon", { points: A.polyPoints(f, p, 2) + " " + A.polyPoints(f, p.slice().reverse(), 1), fill: b.color, "fill-opacity": 0.18, stroke: "none" }));
  });
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
// one bar per checkpoint (values [M]), scaled to the largest |value|; the peak marked; opts: uniform (a tick), title(m), show(m)
function barList(kind, values, opts) {
  opts = opts || {};
  var box = el("div", { cls: "bars " + kind });
  var peak = F.argmax(values);
  var scale = F.maxAbs(values || [], 1e-12);
  for (var m = 0; m < P.M; m++) {
    var v = values ? values[m] : null;
    var w = isNum(v) ? Math.min(100, Math.abs(v) / scale * 100) : 0;
    box.appendChild(el("div", { cls: "bar-row" + (m === peak ? " peak" : ""), "data-checkpoint": P.CK[m] ? P.CK[m].revision : m, title: opts.title ? opts.title(m) : null }, [
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
    box.appendChild(el("figure", null, [histogram(counts, 1, { width: 110, height: 56, color: color, left: "0", right: "1", binLabel: function (b) { return (b / counts.length).toFixed(1) + "–" + ((b + 1) / counts.length).toFixed(1); } }), el("figcaption", { text: P.names.label(m) })]));
  });
  return box;
}

CT.charts = { lineChart: lineChart, legend: legend, heatmap: heatmap, histogram: histogram, barList: barList, countBars: countBars, smallMultiples: smallMultiples };
