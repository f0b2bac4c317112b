/* page.js: the report's data (#crosstime-data) and the state every later file shares (CT.page),
   and which page (Overview or Features) is shown. A large report's features live beside the page in
   features/ (index.js: the list; shard-KKKKK.js: whole entries), loaded by <script> tags that call
   crosstimeIndex / crosstimeShard (works from file://, no server): see shards.js and main.js. */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};

var D = JSON.parse(document.getElementById("crosstime-data").textContent);
var P = CT.page = {
  D: D,
  CK: D.checkpoints || [],
  VOCAB: D.vocab || {},
  TASKS: D.tasks || [],
  features: D.features || [],  // what the list shows: whole entries, or a sharded report's summaries
  byId: {},  // whole entries, as loaded
  shards: D.feature_shards || null,  // {path, starts, count} when the features are not embedded
  LIST_MAX: 400,  // rows drawn at once; the search narrows the rest
  state: CT.data.initialState(D),
  visible: []  // the list's features, in its order (after the filters)
};
P.M = P.CK.length;
P.names = CT.data.checkpointNames(P.CK);
P.features.forEach(function (f) { P.byId[f.id] = f; });

P.showPage = function (name) {
  document.querySelectorAll(".page").forEach(function (p) { p.classList.toggle("active", p.id === name); });
  document.querySelectorAll("header nav button").forEach(function (b) { b.classList.toggle("active", b.getAttribute("data-page") === name); });
};
