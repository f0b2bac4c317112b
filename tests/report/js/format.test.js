// js/format.js: numbers, shares, token counts and tokens as the dashboard prints them.
"use strict";
const { test } = require("node:test");
const assert = require("node:assert/strict");
require("../../../src/crosstime/report/js/format.js");
const { isNum, fmt, pct, fmtRel, fmtTokens, sum, argmax, maxAbs, tokenText } = globalThis.CT.format;

test("isNum: finite numbers only", () => {
  assert.deepEqual([1, 0, -2.5].map(isNum), [true, true, true]);
  assert.deepEqual([NaN, Infinity, -Infinity, "1", null, undefined, true].map(isNum), [false, false, false, false, false, false, false]);
});

test("fmt: blanks, booleans and strings", () => {
  assert.deepEqual([null, undefined, ""].map(fmt), ["–", "–", "–"]);
  assert.equal(fmt(true), "yes");
  assert.equal(fmt(false), "no");
  assert.equal(fmt("late"), "late");
  assert.deepEqual([NaN, Infinity, -Infinity].map(fmt), ["NaN", "Infinity", "-Infinity"]);
});

test("fmt: integers exact, grouped by thousands from 10,000", () => {
  assert.deepEqual([0, 42, -7, 9999].map(fmt), ["0", "42", "-7", "9999"]);
  assert.deepEqual([10000, 12345, -12345, 32768].map(fmt), ["10,000", "12,345", "-12,345", "32,768"]);
});

test("fmt: decimals to 3 significant figures, exponents outside [1e-3, 1e5)", () => {
  assert.deepEqual([0.5, -0.5, 0.123456, 3.14159, 12.345, 0.001].map(fmt), ["0.500", "-0.500", "0.123", "3.14", "12.3", "0.00100"]);
  assert.deepEqual([123.456, 12345.6, -999.5].map(fmt), ["123", "12,346", "-999"]);
  assert.deepEqual([0.0001234, 100000.5, -2.5e-7, 150000.25].map(fmt), ["1.23e-4", "1.00e5", "-2.50e-7", "1.50e5"]);
  assert.equal(fmt(1.5e20), "150,000,000,000,000,000,000");  // a whole number, however large: a count
});

test("pct: shares as percentages, <0.1% for tiny non-zero ones", () => {
  assert.deepEqual([null, undefined, NaN, "0.5"].map(pct), ["–", "–", "–", "–"]);
  assert.deepEqual([0, 0.0005, -0.0005, 0.001].map(pct), ["0.00%", "<0.1%", "<0.1%", "0.10%"]);
  assert.deepEqual([0.05, 0.1234, 1, 1.5, -0.25].map(pct), ["5.00%", "12.3%", "100%", "150%", "-25.0%"]);
});

test("fmtRel: ≈ 0 below a thousandth of the scale", () => {
  assert.equal(fmtRel(null, 1), "–");
  assert.equal(fmtRel(NaN, 1), "–");
  assert.equal(fmtRel(1e-7, 1.6), "≈ 0");
  assert.equal(fmtRel(0, 5), "≈ 0");
  assert.equal(fmtRel(-0.001, 1.6), "≈ 0");  // 0.001 < 0.0016
  assert.equal(fmtRel(-0.002, 1.6), "-0.00200");
  assert.equal(fmtRel(0.01, 1.6), "0.0100");
  assert.equal(fmtRel(1e-7, 0), "1.00e-7");  // no scale: plain fmt
  assert.equal(fmtRel(1e-7, null), "1.00e-7");
  assert.equal(fmtRel(1e-7, NaN), "1.00e-7");
});

test("fmtTokens: K, M, B, T with trailing zeros dropped", () => {
  assert.deepEqual([null, NaN].map(fmtTokens), ["–", "–"]);
  assert.deepEqual([0, 999, -5].map(fmtTokens), ["0", "999", "-5"]);
  assert.deepEqual([1000, 1500, 12000, 12300, 123456].map(fmtTokens), ["1K", "1.5K", "12K", "12.3K", "123K"]);
  assert.deepEqual([2.1e6, 3e6, 2.5e6, 1e9, 1.25e12, 4.2e13].map(fmtTokens), ["2.1M", "3M", "2.5M", "1B", "1.25T", "42T"]);
});

test("sum: finite numbers only; 0 for an empty list", () => {
  assert.equal(sum([1, null, 2, NaN, "3", Infinity]), 3);
  assert.equal(sum([]), 0);
});

test("argmax: index of the largest finite number (first of ties), -1 when none", () => {
  assert.equal(argmax([1, 3, 2]), 1);
  assert.equal(argmax([2, 2]), 0);
  assert.equal(argmax([-1, -5]), 0);
  assert.equal(argmax([null, NaN, 4, Infinity]), 2);
  assert.equal(argmax([null, NaN]), -1);
  assert.equal(argmax([]), -1);
  assert.equal(argmax(null), -1);
});

test("maxAbs: largest magnitude, at least the floor", () => {
  assert.equal(maxAbs([1, -3, null, NaN], 0), 3);
  assert.equal(maxAbs([], 1e-12), 1e-12);
  assert.equal(maxAbs([-0.5], 1), 1);
});

test("tokenText: the vocabulary's string with visible newlines and tabs, else #id", () => {
  const vocab = { 5: "a\nb\tc", 6: " the" };
  assert.equal(tokenText(vocab, 5), "a\u21b5b\u21e5c");
  assert.equal(tokenText(vocab, "6"), " the");
  assert.equal(tokenText(vocab, 7), "#7");
  assert.equal(tokenText({}, 0), "#0");
});
