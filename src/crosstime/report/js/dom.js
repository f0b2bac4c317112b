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
// attrs: text (the text content), cls (class), onX (an X listener), else an attribute; null, undefined or false: none
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
function missing(text) { return el("div", { cls: "missing", text: text }); }
function panel(title, body, wide) {
  return el("div", { cls: "panel" + (wide ? " wide" : "") }, [el("h2", { text: title }), body]);
}
// a titled section of the overview; returns its grid of panels
function section(root, title, hint) {
  root.appendChild(el("h2", { cls: "section", text: title }));
  if (hint) root.appendChild(el("div", { cls: "hint section-hint", text: hint }));
  var grid = el("div", { cls: "grid" });
  root.appendChild(grid);
  return grid;
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
    return el("th", { text: P.names.ofRevision(r), title: "checkpoint " + r });
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

CT.dom = { el: el, sv: sv, missing: missing, panel: panel, section: section, wordCell: wordCell, table: table,
           checkpointTable: checkpointTable, kvWords: kvWords, valueView: valueView };
