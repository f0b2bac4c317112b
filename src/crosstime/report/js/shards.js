/* shards.js: a large report's whole feature entries, loaded on demand: features/shard-KKKKK.js
   calls crosstimeShard(K, [entry, …]) (a script element with a src: it works from file://, where fetch does not). */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};
var Data = CT.data, P = CT.page;
var shardState = {};  // shard number -> "loading" | "loaded" | "failed"
var shardWaiters = {};

function loadScript(src, onerror) {
  var s = document.createElement("script");
  s.src = src;
  s.onerror = onerror;
  document.head.appendChild(s);
}
function shardOf(id) { return Data.shardOf(P.shards ? P.shards.starts : [], id); }
function withShard(k, done) {
  if (shardState[k] === "loaded" || shardState[k] === "failed") { done(); return; }
  (shardWaiters[k] = shardWaiters[k] || []).push(done);
  if (shardState[k] === "loading") return;
  shardState[k] = "loading";
  loadScript(Data.shardFile(P.shards.path, k), function () { shardDone(k, "failed"); });
}
function shardDone(k, how) {
  shardState[k] = how;
  var waiting = shardWaiters[k] || [];
  shardWaiters[k] = [];
  waiting.forEach(function (f) { f(); });
}
window.crosstimeShard = function (k, entries) {
  entries.forEach(function (f) { P.byId[f.id] = f; });
  shardDone(k, "loaded");
};
// the entry of feature id, loading its shard first when needed; then done(entry or null)
function withFeature(id, done) {
  if (id in P.byId || shardOf(id) < 0) { done(P.byId[id] || null); return; }
  withShard(shardOf(id), function () { done(P.byId[id] || null); });
}
// why feature id has no card
function absentText(id) {
  return Data.absentText(id, { total: P.D.n_features_total, shards: P.shards, failed: shardState[shardOf(id)] === "failed", listed: P.features.length });
}

CT.shards = { loadScript: loadScript, withFeature: withFeature, absentText: absentText };
