/* format.js: numbers, shares and tokens as the page prints them. Pure (no DOM): node's tests load it. */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};

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
// a token count with a unit: 2.5M, 12K, 1.5B (3 significant figures, trailing zeros dropped)
function fmtTokens(t) {
  if (!isNum(t)) return "–";
  var units = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
  for (var i = 0; i < units.length; i++) {
    if (t >= units[i][0]) { var v = t / units[i][0]; return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1).replace(/\.0$/, "") : v.toFixed(2).replace(/\.?0+$/, "")) + units[i][1]; }
  }
  return String(t);
}
function sum(xs) { var s = 0; xs.forEach(function (x) { if (isNum(x)) s += x; }); return s; }
function argmax(xs) { var b = -1, bv = -Infinity; (xs || []).forEach(function (x, i) { if (isNum(x) && x > bv) { bv = x; b = i; } }); return b; }
// the largest |x| over the numbers of xs, and floor (the scale of a row of bars or of "≈ 0")
function maxAbs(xs, floor) { return Math.max.apply(null, xs.filter(isNum).map(Math.abs).concat([floor])); }
// token id as text (vocab: id -> string; "#id" when absent), newlines and tabs made visible
function tokenText(vocab, id) {
  var s = vocab[id];
  if (s === undefined) s = "#" + id;
  return s.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
}

CT.format = { isNum: isNum, fmt: fmt, pct: pct, fmtRel: fmtRel, fmtTokens: fmtTokens, sum: sum, argmax: argmax, maxAbs: maxAbs, tokenText: tokenText };
