/* dom.js: building the page's elements: el / sv (HTML / SVG with attributes and children), panels,
   sections, and tables of values in words (a field's label, name and description). */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};
var fmt = CT.format.fmt, P = CT.page;
var SVGNS = "http://www.w3.org/2000/svg";

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
// a missing value printed by a concatenation ("… (undefined)"): never shown, and said on the console, where the
// browser tests see it (raw: true exempts a text that is data, e.g. a token of the vocabulary or an annotation)
var UNSET = /\b(undefined|null|NaN)\b/g;
function printable(v, k, raw) {
  if (raw || typeof v !== "string" || !v.match(UNSET)) return v;
  console.error("dashboard: a missing value in a " + k + ": " + v);
  return v.replace(UNSET, "–");
}
// attrs: text (the text content), cls (class), onX (an X listener), raw (text and title are data: printed as
// they are), else an attribute; null, undefined or false: none
function setAttrs(node, attrs) {
  if (!attrs) return;
  Object.keys(attrs).forEach(function (k) {
    var v = attrs[k];
    if (v === null || v === undefined || v === false || k === "raw") return;
    if (k === "text" || k === "title") v = printable(String(v), k, attrs.raw);
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
    node.appendChild(typeof kid === "string" || typeof kid === "number" ? document.createTextNode(printable(String(kid), "text")) : kid);
  });
}
function missing(text) { return el("div", { cls: "missing", text: text }); }
function panel(title, body, wide) {
  return el("div", { cls: "panel" + (wide ? " wide" : "") }, [el("h2", { text: title }), body]);
}
// a titled section of the overview, collapsible (open: shown opened), named key (data-section); returns its grid of panels
function section(root, key, title, hint, open) {
  var grid = el("div", { cls: "grid" });
  root.appendChild(el("details", { cls: "section", "data-section": key, open: open ? "" : null }, [
    el("summary", null, [el("h2", { cls: "section", text: title }), hint ? el("span", { cls: "hint section-hint", text: hint }) : null]), grid]));
  return grid;
}
// a heading cell in words whose tooltip names the field: {label, name, description}
function wordCell(tag, w) {
  return el(tag, { text: w.label, title: w.name + (w.description ? " — " + w.description : ""), "data-field": w.name, scope: tag === "th" ? "col" : null });
}
// a cell: a value, or {text, title} (a value and what its tooltip says)
function cell(v) { return v && typeof v === "object" && "text" in v ? el("td", { text: fmt(v.text), title: v.title }) : el("td", { text: fmt(v) }); }
// columns [{label, name, description}], rows [[cell, …]] (see cell)
function table(columns, rows, opts) {
  opts = opts || {};
  var t = el("table", { cls: "data" });
  t.appendChild(el("thead", null, el("tr", null, columns.map(function (c) { return wordCell("th", c); }))));
  var tb = el("tbody");
  rows.forEach(function (r) {
    tb.appendChild(el("tr", null, columns.map(function (c, k) { return cell(r[k]); })));
  });
  t.appendChild(tb);
  return el("div", { cls: opts.noscroll ? "hscroll" : "scroll" }, t);
}
// Above this many checkpoints a table per checkpoint has them as rows (its fields as columns): it then fits
// a wide panel at any M (the fields are a dozen or so; the checkpoints may be 32).
var CHECKPOINTS_AS_COLUMNS = 10;
// fields ({label, name, description, values [M]}) by checkpoint: one row per field and a column per checkpoint,
// or transposed (class "by-row") when there are more than CHECKPOINTS_AS_COLUMNS checkpoints
function checkpointTable(rows, revisions, cls) {
  var across = revisions.length <= CHECKPOINTS_AS_COLUMNS;
  var t = el("table", { cls: "data by-checkpoint" + (across ? "" : " by-row") + (cls ? " " + cls : "") });
  function ck(r) { return el("th", { text: P.names.ofRevision(r), title: P.names.titleOfRevision(r), scope: across ? "col" : "row" }); }
  var tb = el("tbody");
  if (across) {
    t.appendChild(el("thead", null, el("tr", null, [el("th", { text: "" })].concat(revisions.map(ck)))));
    rows.forEach(function (w) { tb.appendChild(el("tr", null, [wordCell("th", w)].concat(w.values.map(function (v) { return el("td", { text: fmt(v) }); })))); });
  } else {
    t.appendChild(el("thead", null, el("tr", null, [el("th", { text: "checkpoint" })].concat(rows.map(function (w) { return wordCell("th", w); })))));
    revisions.forEach(function (r, m) { tb.appendChild(el("tr", null, [ck(r)].concat(rows.map(function (w) { return el("td", { text: fmt(w.values[m]) }); })))); });
  }
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

CT.dom = { el: el, sv: sv, missing: missing, panel: panel, section: section, wordCell: wordCell, table: table,
           checkpointTable: checkpointTable, kvWords: kvWords, valueView: valueView };
