// js/axes.js: a line chart's frame (domains, round ticks, pixel maps), polyline points, label placement, heatmap range and colour.
"use strict";
const { test } = require("node:test");
const assert = require("node:assert/strict");
require("../../../src/crosstime/report/js/format.js");
require("../../../src/crosstime/report/js/axes.js");
const { frame, niceTicks, stackLabels, textWidth, polyPoints, heatRange, heatColor } = globalThis.CT.axes;

const SIZE = { W: 380, H: 200, L: 44, R: 18, T: 10, B: 30 };  // the defaults: plot x in [44, 362], y in [10, 170]

test("frame: sizes only when no series has a finite point", () => {
  assert.deepEqual(frame({ series: [] }), SIZE);
  assert.deepEqual(frame({ series: [{ points: [[null, 1], [1, NaN], [Infinity, 2]] }] }), SIZE);
  assert.deepEqual(frame({ series: [], ylabel: "acc", width: 250, height: 150, top: 16 }), { W: 250, H: 150, L: 56, R: 18, T: 16, B: 30 });
});

test("frame: linear axes span the points, y widened to round ticks", () => {
  const f = frame({ series: [{ points: [[0, 0], [10, 6], [null, 99]] }] });
  assert.deepEqual([f.y0, f.y1], [0, 6]);
  assert.deepEqual(f.yticks, [[0, "0"], [2, "2"], [4, "4"], [6, "6"]]);
  assert.deepEqual([f.X(0), f.X(10), f.X(5)], [44, 362, 203]);
  assert.deepEqual([f.Y(0), f.Y(6), f.Y(3)], [170, 10, 90]);
  const odd = frame({ series: [{ points: [[0, 0.226], [1, 5.84]] }] });  // no tick reads 5.84 or 0.226
  assert.deepEqual([odd.y0, odd.y1, odd.yticks.map((t) => t[1]).join(" ")], [0, 6, "0 2 4 6"]);
});

test("frame: ymin / ymax fix the y domain; one x or one y is widened by 1 each way", () => {
  const f = frame({ series: [{ points: [[0, 0.5], [10, 0.5]] }], ymin: 0, ymax: 1 });
  assert.deepEqual([f.y0, f.y1, f.Y(0.5)], [0, 1, 90]);
  assert.deepEqual(f.yticks.map((t) => t[1]), ["0", "0.25", "0.5", "0.75", "1"]);
  const flat = frame({ series: [{ points: [[0, 2], [10, 2]] }] });
  assert.deepEqual([flat.y0, flat.y1], [1, 3]);  // 2 ± 1, already round
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
  assert.deepEqual([frame({ series, bands }).y0, frame({ series, bands }).y1], [0, 3]);  // 0.5 to 3, rounded out to steps of 1
  const hlines = [[4, "ref"], [null, "none"]];
  assert.deepEqual([frame({ series, hlines }).y0, frame({ series, hlines }).y1], [1, 2]);
  assert.deepEqual([frame({ series, hlines, hlinesInRange: true }).y0, frame({ series, hlines, hlinesInRange: true }).y1], [1, 4]);
});

test("polyPoints: pixel pairs to one decimal, y the chosen element", () => {
  const f = frame({ series: [{ points: [[0, 0], [10, 6]] }] });
  assert.equal(polyPoints(f, [[0, 0], [10, 6]], 1), "44.0,170.0 362.0,10.0");
  assert.equal(polyPoints(f, [[0, 9, 3], [10, 9, 6]], 2), "44.0,90.0 362.0,10.0");
  assert.equal(polyPoints(f, [], 1), "");
});

test("niceTicks: steps of 1, 2, 2.5 or 5 × 10^k, the span rounded out, labels without float noise", () => {
  assert.deepEqual(niceTicks(4.43, 5.84, 5), { lo: 4, hi: 6, step: 0.5, ticks: [[4, "4"], [4.5, "4.5"], [5, "5"], [5.5, "5.5"], [6, "6"]] });
  assert.deepEqual(niceTicks(0, 1, 5).ticks.map((t) => t[1]), ["0", "0.25", "0.5", "0.75", "1"]);
  assert.deepEqual(niceTicks(0.1, 0.3, 3).ticks.map((t) => t[1]), ["0.1", "0.2", "0.3"]);  // not 0.30000000000000004
  assert.deepEqual(niceTicks(-0.0123, 0.0087, 5).ticks.map((t) => t[1]), ["-0.02", "-0.01", "0", "0.01"]);
  assert.deepEqual(niceTicks(0, 40000, 3).ticks.map((t) => t[1]), ["0", "20,000", "40,000"]);
});

test("stackLabels: a row each where it keeps the gap, null where no row is free; one row keeps the last", () => {
  const at = (...xs) => xs.map((x) => ({ x, w: 10 }));
  assert.deepEqual(stackLabels(at(0, 20, 40), 2, 1), [0, 0, 0]);
  assert.deepEqual(stackLabels(at(0, 8, 20), 2, 2), [0, 1, 0]);
  assert.deepEqual(stackLabels(at(0, 4, 8), 2, 2), [0, 1, null]);
  assert.deepEqual(stackLabels(at(0, 20, 25), 2, 1), [0, null, 0]);  // the end of the axis wins over the one before
  assert.deepEqual(stackLabels(at(0, 5), 2, 1), [0, null]);  // no room beside the first: the first stays
  assert.deepEqual(stackLabels([], 2, 3), []);
  assert.equal(textWidth("step1000", 10), 48);
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
