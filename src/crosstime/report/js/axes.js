/* axes.js: chart geometry: a line chart's frame (margins, domains, data -> pixel maps), polyline
   points, tick thinning, the heatmap's range and colours. Pure (no DOM): node's tests load it. */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};
var isNum = CT.format.isNum;

// The frame of a line chart: its size and margins (W, H, L, R, T, B) and, when a series has a finite
// point, the y domain [y0, y1] and the maps X(x), Y(y) to pixels (log10 x with logx, x <= 0 clamped to
// half the smallest positive x). The y domain spans the points, the bands and (hlinesInRange) the hlines,
// unless ymin / ymax fix it; an empty span is widened by 1 each way.
function frame(opts) {
  var f = { W: opts.width || 380, H: opts.height || 200, L: opts.ylabel ? 56 : 44, R: 18, T: opts.top || 10, B: 30 };
  var pts = [];
  opts.series.forEach(function (s) { s.points.forEach(function (p) { if (isNum(p[0]) && isNum(p[1])) pts.push(p); }); });
  if (!pts.length) return f;
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
  f.y0 = y0;
  f.y1 = y1;
  f.X = function (x) { return f.L + (tx(x) - x0) / (x1 - x0) * (f.W - f.L - f.R); };
  f.Y = function (y) { return f.T + (1 - (y - y0) / (y1 - y0)) * (f.H - f.T - f.B); };
  return f;
}
// "x,y x,y …" of points [[x, …]] through frame f, y the point's element j (1 decimal)
function polyPoints(f, points, j) { return points.map(function (q) { return f.X(q[0]).toFixed(1) + "," + f.Y(q[j]).toFixed(1); }).join(" "); }
// at most n of the ticks, evenly spread, the first and the last kept
function thin(ticks, n) {
  if (ticks.length <= n) return ticks;
  var out = [], step = (ticks.length - 1) / (n - 1);
  for (var i = 0; i < n; i++) out.push(ticks[Math.round(i * step)]);
  return out;
}
// the colour range [lo, hi] of a matrix's numbers: lo fixed by min if given; hi > lo always
function heatRange(matrix, min) {
  var vals = [];
  matrix.forEach(function (r) { r.forEach(function (v) { if (isNum(v)) vals.push(v); }); });
  var lo = min !== undefined ? min : Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
  if (!(hi > lo)) hi = lo + 1;
  return { lo: lo, hi: hi };
}
// a heatmap cell's colour at t in [0, 1]: white to blue
function heatColor(t) { return "rgb(" + Math.round(255 - 208 * t) + "," + Math.round(255 - 144 * t) + "," + Math.round(255 - 33 * t) + ")"; }

CT.axes = { frame: frame, polyPoints: polyPoints, thin: thin, heatRange: heatRange, heatColor: heatColor };
