// js/axes.js: a line chart's frame (domains, pixel maps), polyline points, tick thinning, heatmap range and colour.
"use strict";
const { test } = require("node:test");
const assert = require("node:assert/strict");
require("../../../src/crosstime/report/js/format.js");
require("../../../src/crosstime/report/js/axes.js");
const { frame, polyPoints, thin, heatRange, heatColor } = globalThis.CT.axes;

const SIZE = { W: 380, H: 200, L: 44, R: 18, T: 10, B: 30 };  // the defaults: plot x in [44, 362], y in [10, 170]

test("frame: sizes only when no series has a finite point", () => {
  assert.deepEqual(frame({ series: [] }), SIZE);
  assert.deepEqual(frame({ series: [{ points: [[null, 1], [1, NaN], [Infinity, 2]] }] }), SIZE);
  assert.deepEqual(frame({ series: [], ylabel: "acc", width: 250, height: 150, top: 16 }), { W: 250, H: 150, L: 56, R: 18, T: 16, B: 30 });
});

test("frame: linear axes span the points", () => {
  const f = frame({ series: [{ points: [[0, 0], [10, 5], [null, 99]] }] });
  assert.deepEqual([f.y0, f.y1], [0, 5]);
  assert.deepEqual([f.X(0), f.X(10), f.X(5)], [44, 362, 203]);
  assert.deepEqual([f.Y(0), f.Y(5), f.Y(2.5)], [170, 10, 90]);
});

test("frame: ymin / ymax fix the y domain; one x or one y is widened by 1 each way", () => {
  const f = frame({ series: [{ points: [[0, 0.5], [10, 0.5]] }], ymin: 0, ymax: 1 });
  assert.deepEqual([f.y0, f.y1, f.Y(0.5)], [0, 1, 90]);
  const flat = frame({ series: [{ points: [[0, 2], [10, 2]] }] });
  assert.deepEqual([flat.y0, flat.y1], [1, 3]);
  const one = frame({ series: [{ points: [[4, 2]] }] });
  assert.deepEqual([one.X(3), one.X(4), one.X(5)], [44, 203, 362]);
});

test("frame: log x, x <= 0 drawn at half the smallest positive x", () => {
  const f = frame({ series: [{ points: [[10, 1], [1000, 2]] }], logx: true });
  assert.deepEqual([f.X(10), f.X(100), f.X(1000)], [44, 203, 362]);
  const z = frame({ series: [{ points: [[0, 1], [10, 1], [1000, 2]] }], logx: true });  // 0 at 5: log10 5 .. 3
  assert.equal(z.X(0), 44);
  assert.equal(z.X(-3), 44);
  assert.ok(Math.abs(z.X(1000) - 362) < 1e-9);
  const nonpos = frame({ series: [{ points: [[0, 1], [-1, 2]] }], logx: true });  // no positive x: floor 1/2
  assert.deepEqual([nonpos.X(0), nonpos.X(-1)], [203, 203]);  // both at 0.5: the middle of log10 0.5 ± 1
});

test("frame: bands and (hlinesInRange) horizontal lines widen the y domain", () => {
  const series = [{ points: [[0, 1], [1, 2]] }];
  const bands = [{ points: [[0, 0.5, 3], [1, null, 2.5]] }];
  assert.deepEqual([frame({ series, bands }).y0, frame({ series, bands }).y1], [0.5, 3]);
  const hlines = [[4, "ref"], [null, "none"]];
  assert.deepEqual([frame({ series, hlines }).y0, frame({ series, hlines }).y1], [1, 2]);
  assert.deepEqual([frame({ series, hlines, hlinesInRange: true }).y0, frame({ series, hlines, hlinesInRange: true }).y1], [1, 4]);
});

test("polyPoints: pixel pairs to one decimal, y the chosen element", () => {
  const f = frame({ series: [{ points: [[0, 0], [10, 5]] }] });
  assert.equal(polyPoints(f, [[0, 0], [10, 5]], 1), "44.0,170.0 362.0,10.0");
  assert.equal(polyPoints(f, [[0, 9, 2.5], [10, 9, 5]], 2), "44.0,90.0 362.0,10.0");
  assert.equal(polyPoints(f, [], 1), "");
});

test("thin: at most n ticks, evenly spread, first and last kept", () => {
  const ticks = Array.from({ length: 10 }, (_, i) => i);
  assert.deepEqual(thin(ticks, 10), ticks);
  assert.deepEqual(thin(ticks, 20), ticks);
  assert.deepEqual(thin(ticks, 4), [0, 3, 6, 9]);
  assert.deepEqual(thin([0, 1, 2, 3, 4, 5], 3), [0, 3, 5]);  // steps of 2.5, rounded half up
  assert.deepEqual(thin([], 2), []);
});

test("heatRange: the numbers' range, lo fixed by min, hi above lo", () => {
  assert.deepEqual(heatRange([[1, 2], [null, 4]]), { lo: 1, hi: 4 });
  assert.deepEqual(heatRange([[1, 2], [NaN, 4]], 0), { lo: 0, hi: 4 });
  assert.deepEqual(heatRange([[2, 2]]), { lo: 2, hi: 3 });
  assert.deepEqual(heatRange([[0, 0]], 0), { lo: 0, hi: 1 });  // a confusion matrix of zeros
});

test("heatColor: white at 0 to blue at 1", () => {
  assert.equal(heatColor(0), "rgb(255,255,255)");
  assert.equal(heatColor(1), "rgb(47,111,222)");
  assert.equal(heatColor(0.5), "rgb(151,183,239)");
});
