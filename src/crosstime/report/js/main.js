/* main.js: wiring: the feature list of a large report (features/index.js calls crosstimeIndex),
   deep links (#feature=ID, #overview, #features), keys (j/k or arrows, o, f), the tabs; then draws the page. */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};
var P = CT.page, D = P.D, state = P.state, Fe = CT.features;

function metaText() { return CT.data.metaText(P.M, P.shards ? P.shards.count : P.features.length, D.generated); }
window.crosstimeIndex = function (summaries) {
  P.features = summaries;
  document.getElementById("meta").textContent = metaText();
  Fe.refreshClassOptions();
  Fe.renderList();
  if (state.selected === null && P.visible.length) Fe.select(P.visible[0].id, false, true);
};
function fromHash() {
  var m = /feature=(-?\d+)/.exec(location.hash);
  if (m) { Fe.select(Number(m[1]), true); return true; }
  if (/overview/.test(location.hash)) { P.showPage("overview"); return true; }
  if (/features/.test(location.hash)) { P.showPage("features"); return true; }
  return false;
}
document.addEventListener("keydown", function (e) {
  var tag = (e.target && e.target.tagName) || "";
  if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || e.altKey || e.ctrlKey || e.metaKey) return;
  if (e.key === "j" || e.key === "ArrowDown") { Fe.move(1); e.preventDefault(); }
  else if (e.key === "k" || e.key === "ArrowUp") { Fe.move(-1); e.preventDefault(); }
  else if (e.key === "o") P.showPage("overview");
  else if (e.key === "f") P.showPage("features");
});
window.addEventListener("hashchange", fromHash);
document.querySelectorAll("header nav button").forEach(function (b) {
  b.addEventListener("click", function () { var p = b.getAttribute("data-page"); P.showPage(p); if (p === "overview") history.replaceState(null, "", "#overview"); });
});

document.getElementById("title").textContent = D.title || "crosstime report";
document.getElementById("meta").textContent = metaText();
CT.overview.render();
Fe.renderFilters();
Fe.renderList();
if (!fromHash()) P.showPage("overview");
if (state.selected === null && P.visible.length) Fe.select(P.visible[0].id, false, true);  // a card is ready when Features opens
if (P.shards) CT.shards.loadScript(P.shards.path + "/index.js", function () {
  document.getElementById("list-count").textContent = "the feature list " + P.shards.path + "/index.js could not be loaded (open the report where it was written, or through `crosstime serve RUN`)";
});
