/* axes.js: chart geometry: a line chart's frame (margins, domains, data -> pixel maps), polyline
   points, tick values and label placement, the heatmap's range and colours. Pure (no DOM): node's tests load it. */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};
var isNum = CT.format.isNum;

// The frame of a line chart: its size and margins (W, H, L, R, T, B) and, when a series has a finite
// point, the y domain [y0, y1], its ticks yticks [[y, label]] and the maps X(x), Y(y) to pixels (log10 x
// with logx, x <= 0 clamped to half the smallest positive x). The y domain spans the points, the bands
// and (hlinesInRange) the hlines, unless ymin / ymax fix it; an empty span is widened by 1 each way; a
// domain not fixed is widened to round ticks (niceTicks), so no tick reads 5.84 or 0.226.
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
  var nice = niceTicks(y0, y1, opts.nticks || 5);
  if (opts.ymin === undefined) y0 = nice.lo;
  if (opts.ymax === undefined) y1 = nice.hi;
  f.y0 = y0;
  f.y1 = y1;
  f.yticks = nice.ticks.filter(function (t) { return t[0] >= y0 - 1e-9 * (y1 - y0) && t[0] <= y1 + 1e-9 * (y1 - y0); });
  f.X = function (x) { return f.L + (tx(x) - x0) / (x1 - x0) * (f.W - f.L - f.R); };
  f.Y = function (y) { return f.T + (1 - (y - y0) / (y1 - y0)) * (f.H - f.T - f.B); };
  return f;
}
// "x,y x,y …" of points [[x, …]] through frame f, y the point's element j (1 decimal)
function polyPoints(f, points, j) { return points.map(function (q) { return f.X(q[0]).toFixed(1) + "," + f.Y(q[j]).toFixed(1); }).join(" "); }
// About n round values spanning [lo, hi] (lo < hi): a step of 1, 2, 2.5 or 5 × 10^k; lo and hi rounded out to
// the step. Returns {lo, hi, step, ticks [[value, label]]} (values rounded to the step's decimals).
function niceTicks(lo, hi, n) {
  var raw = (hi - lo) / Math.max(1, n - 1), mag = Math.pow(10, Math.floor(Math.log10(raw))), r = raw / mag;
  var step = (r <= 1 ? 1 : r <= 2 ? 2 : r <= 2.5 ? 2.5 : r <= 5 ? 5 : 10) * mag;
  var a = Math.floor(lo / step + 1e-9), b = Math.ceil(hi / step - 1e-9);
  var decimals = 0;
  while (decimals < 12 && Math.abs(Math.round(step * Math.pow(10, decimals)) - step * Math.pow(10, decimals)) > 1e-6) decimals++;
  var ticks = [];
  for (var i = a; i <= b; i++) {
    var v = Number((i * step).toFixed(decimals));
    ticks.push([v, Math.abs(v) >= 1e4 ? CT.format.fmt(v) : String(v)]);
  }
  return { lo: Number((a * step).toFixed(decimals)), hi: Number((b * step).toFixed(decimals)), step: step, ticks: ticks };
}
// Labels along a line that must not overlap: items [{x, w}] (centre and width, in pixels, in order of x)
// get a row each (0 the nearest the axis) where they keep gap pixels from the label before them, in at most
// rows rows; null where none is free (the label is left out, its title stays). In one row the last label is
// kept too (an axis's end), in place of the one before it. Returns the rows.
function stackLabels(items, gap, rows) {
  var ends = [];
  var out = items.map(function (it) {
    for (var r = 0; r < rows; r++) {
      if (ends[r] === undefined || it.x - it.w / 2 >= ends[r] + gap) { ends[r] = it.x + it.w / 2; return r; }
    }
    return null;
  });
  var n = items.length;
  if (rows === 1 && n > 1 && out[n - 1] === null) {
    out[n - 1] = 0;
    for (var k = n - 2; k > 0 && out[k] === null; k--);
    var last = items[n - 1];
    if (k > 0 && items[k].x + items[k].w / 2 + gap > last.x - last.w / 2) out[k] = null;
    if (items[0].x + items[0].w / 2 + gap > last.x - last.w / 2) out[n - 1] = null;  // no room beside the first
  }
  return out;
}
// the width of a label of text at a font size of px (system-ui averages about 0.6 em per character)
function textWidth(text, px) { return String(text).length * 0.6 * (px || 10); }
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

CT.axes = { frame: frame, niceTicks: niceTicks, stackLabels: stackLabels, textWidth: textWidth, polyPoints: polyPoints, heatRange: heatRange, heatColor: heatColor };
