/* features.js: the Features page: the filters, the feature list (sorted, filtered; at most LIST_MAX
   rows drawn) and the selected feature's card (bars per checkpoint, trajectory, histogram, top
   contexts per view, logit lens). */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};
var F = CT.format, isNum = F.isNum, fmt = F.fmt, pct = F.pct, Data = CT.data;
var Dm = CT.dom, el = Dm.el, missing = Dm.missing, panel = Dm.panel;
var C = CT.charts;
var P = CT.page, D = P.D, CK = P.CK, M = P.M, TASKS = P.TASKS, state = P.state;
var ckLabel = P.names.label, labelOfRev = P.names.ofRevision, viewName = P.names.view;
var NO_EFFECT = Data.NO_EFFECT;
var COLUMNS = Data.columns(TASKS, state, P.names);

function taskData(f) { return Data.taskData(f, state.task); }
function tokenText(id) { return F.tokenText(P.VOCAB, id); }

// ---------------------------------------------------------------- filters and list
function renderFilters() {
  var box = document.getElementById("filters");
  box.innerHTML = "";
  var taskSel = el("select", { id: "filter-task", onchange: function () { state.task = this.value || null; refreshClassOptions(); renderList(); renderCard(); } },
    TASKS.length ? TASKS.map(function (t) { return el("option", { value: t, text: t, selected: t === state.task ? "selected" : null }); }) : [el("option", { value: "", text: "(no attribution)" })]);
  box.appendChild(el("label", null, ["task", taskSel]));
  box.appendChild(el("label", null, ["class", el("select", { id: "filter-class", onchange: function () { state.cls = this.value; renderList(); } })]));
  function checkpointSelect(key) {  // "any" or a checkpoint's index, into state[key]
    return el("select", { id: "filter-" + key, onchange: function () { state[key] = this.value; renderList(); } }, [el("option", { value: "", text: "any" })].concat(CK.map(function (c, m) { return el("option", { value: String(m), text: ckLabel(m), title: P.names.title(m) }); })));
  }
  box.appendChild(el("label", null, ["RelIE peaks at", checkpointSelect("peak")]));
  box.appendChild(el("label", null, ["onset (decoder norm)", checkpointSelect("onset")]));
  box.appendChild(el("label", null, ["min Σ|IE|", el("input", { id: "filter-ie", type: "number", step: "any", min: "0", oninput: function () { state.minIE = this.value; renderList(); } })]));
  box.appendChild(el("label", null, ["search id / annotation" + (D.overview.interpret ? " / explanation" : ""), el("input", { id: "filter-text", type: "search", oninput: function () { state.text = this.value.toLowerCase(); renderList(); } })]));
  box.appendChild(el("div", { cls: "count", id: "list-count" }));
  refreshClassOptions();
}
function refreshClassOptions() {
  var sel = document.getElementById("filter-class");
  sel.innerHTML = "";
  sel.appendChild(el("option", { value: "", text: "any" }));
  Data.classGroups(P.features, state.task).forEach(function (g) {
    sel.appendChild(el("optgroup", { label: g.label }, g.options.map(function (o) { return el("option", { value: o.value, text: o.text }); })));
  });
  if (state.cls && !Array.prototype.some.call(sel.options, function (o) { return o.value === state.cls; })) state.cls = "";
  sel.value = state.cls;
}
function renderListHead() {
  var thead = document.querySelector("#feature-table thead");
  thead.innerHTML = "";
  thead.appendChild(el("tr", null, COLUMNS.map(function (c) {
    return el("th", { "data-key": c.key, "data-field": c.field, cls: state.sort === c.key ? "sorted" + (state.dir > 0 ? " asc" : "") : null, title: c.field + " — " + c.tip + " (click to sort)",
      onclick: function () { if (state.sort === c.key) state.dir = -state.dir; else { state.sort = c.key; state.dir = Data.firstDir(c.key); } renderList(); } }, c.label);
  })));
}
function listRow(f) {
  return el("tr", { cls: "feature-row" + (f.id === state.selected ? " selected" : "") + (state.task && !taskData(f) ? " unattributed" : ""), "data-feature": f.id, onclick: function () { select(f.id); } },
    COLUMNS.map(function (c) { var v = c.value(f); return el("td", { cls: c.cls || null, text: c.show ? c.show(f) : (v === "" ? "–" : fmt(v)), title: c.key === "desc" || c.key === "cls" ? String(v || "") : null, raw: c.key === "desc" }); }));
}
// features attributed in the selected task first (in the sort's order), then the others (reported for another task)
function renderList() {
  var order = Data.listOrder(P.features, state, COLUMNS.filter(function (c) { return c.key === state.sort; })[0]);
  var others = order.others;
  P.visible = order.inTask.concat(others);
  var drawn = P.visible.length > P.LIST_MAX ? P.visible.slice(0, P.LIST_MAX) : P.visible;
  var drawnIn = Math.min(order.inTask.length, drawn.length);
  renderListHead();
  var tbody = document.querySelector("#feature-table tbody");
  tbody.innerHTML = "";
  var rows = document.createDocumentFragment();
  drawn.slice(0, drawnIn).forEach(function (f) { rows.appendChild(listRow(f)); });
  if (others.length && drawn.length > drawnIn) rows.appendChild(el("tr", { cls: "divider" }, el("td", { colspan: COLUMNS.length, text: fmt(others.length) + " " + (P.shards ? "listed" : "reported") + " without an attribution in " + state.task })));
  drawn.slice(drawnIn).forEach(function (f) { rows.appendChild(listRow(f)); });
  tbody.appendChild(rows);
  document.getElementById("list-count").textContent = Data.listCountText({ shown: P.visible.length, listed: P.features.length, drawn: drawn.length,
    total: D.n_features_total, sharded: !!P.shards, task: state.task });
}
function select(id, fromHash, quiet) {
  state.selected = id;
  document.querySelectorAll("#feature-table tr.feature-row").forEach(function (tr) {
    var on = Number(tr.getAttribute("data-feature")) === id;
    tr.classList.toggle("selected", on);
    if (on) tr.scrollIntoView({ block: "nearest" });
  });
  if (!fromHash && !quiet) {
    var target = "#feature=" + id;
    if (location.hash !== target) history.replaceState(null, "", target);
  }
  if (!quiet) P.showPage("features");
  if (id in P.byId) { renderCard(); return; }
  renderCard(true);
  CT.shards.withFeature(id, function () { if (state.selected === id) renderCard(); });
}
// select the feature delta rows away in the list (the first when none is selected)
function move(delta) {
  var visible = P.visible;
  if (!visible.length) return;
  var i = -1;
  for (var k = 0; k < visible.length; k++) if (visible[k].id === state.selected) i = k;
  var j = i < 0 ? 0 : Math.max(0, Math.min(visible.length - 1, i + delta));
  select(visible[j].id);
}

// ---------------------------------------------------------------- the card
function renderCard(loading) {
  var pane = document.getElementById("card-pane");
  var f = P.byId[state.selected];
  pane.innerHTML = "";
  if (!f && state.selected !== null) {
    pane.appendChild(loading ? el("div", { cls: "empty loading", text: "Loading feature " + state.selected + "…" })
      : el("div", { cls: "empty", id: "feature-absent", "data-feature": state.selected, text: CT.shards.absentText(state.selected) }));
    return;
  }
  if (!f) { pane.appendChild(el("div", { cls: "empty", text: "Select a feature (j/k or arrows to move)." })); return; }
  var card = el("div", { cls: "feature-card", id: "feature-card", "data-feature": f.id });
  card.appendChild(cardHead(f, taskData(f)));
  card.appendChild(el("div", { cls: "annotation" + (f.description ? "" : " none"), raw: !!f.description, text: f.description || "No annotation yet — `crosstime annotate RUN --export annotations.csv`, fill in `description`, then `--import`." }));
  if (D.overview.interpret) card.appendChild(explanationPanel(f, D.overview.interpret.analysis));
  var grid = el("div", { cls: "card-grid" });
  grid.appendChild(reliePanel(taskData(f)));
  grid.appendChild(reldecPanel(f));
  grid.appendChild(trajectoryPanel(f));
  grid.appendChild(histogramPanel(f));
  card.appendChild(grid);
  card.appendChild(renderContexts(f));
  card.appendChild(renderLens(f));
  pane.appendChild(card);
}
function cardHead(f, t) {
  var head = el("div", { cls: "card-head" }, [el("h2", { text: "Feature " + f.id })]);
  if (t && t.relie_class) head.appendChild(el("span", { cls: "badge relie" + (t.relie_class === NO_EFFECT ? " none" : ""), title: "relie_class (" + state.task + ")" + (t.relie_class_uncertain ? ": uncertain, the 95% bootstrap interval of a share the class rule compares reaches its cut-off" : ""), text: t.relie_class === NO_EFFECT ? "no effect on " + state.task : "RelIE: " + Data.relieClassText(t) }));
  if (f.reldec_class) head.appendChild(el("span", { cls: "badge reldec", title: "RelDec class", text: "RelDec: " + f.reldec_class }));
  if (f.trajectory) head.appendChild(el("span", { cls: "badge", title: "presence class: from the checkpoints where the decoder norm is at least half its peak", text: f.trajectory }));
  if (isNum(f.frequency)) head.appendChild(el("span", { cls: "badge", title: "frequency: share of tokens on which it fires", text: "fires on " + pct(f.frequency) + " of tokens" }));
  if (Data.flagged(f)) head.appendChild(el("span", { cls: "badge disputed", title: "scaling_flag: latent scaling says present where the decoder is weak or absent", text: f.scaling_flag }));
  return head;
}
// the feature's explanation (crosstime interpret): joint view, its complexity and scores beside the shuffled
// baseline, what it rests on; then the checkpoints' own explanations where it was explained alone (drift)
var SCORE_TIP = "balanced accuracy of the judge, given only the explanation, on held-out contexts the explainer did not see (delphi's definition); shuffled: another feature's explanation of the same view, the chance baseline";
function explanationLine(e, tag) {
  var text = e.explanation ? e.explanation : "no explanation" + (e.source === "rules" ? " (the toy world gives this feature no type)" : "");
  return el("div", { cls: "explain-line" + (e.explanation ? "" : " none") }, [
    tag ? el("span", { cls: "v", text: tag }) : null,
    el("span", { cls: "explain-text", text: text, raw: !!e.explanation }),
    isNum(e.complexity) ? el("span", { cls: "badge complexity", title: "complexity 1–5 (docs/interpret.md)", text: "complexity " + e.complexity }) : null,
    isNum(e.detection) ? el("span", { cls: "badge", title: "detection: " + SCORE_TIP, text: "detection " + Data.scoreText(e.detection, e.detection_shuffled) }) : null,
    isNum(e.fuzzing) ? el("span", { cls: "badge", title: "fuzzing: " + SCORE_TIP, text: "fuzzing " + Data.scoreText(e.fuzzing, e.fuzzing_shuffled) }) : null]);
}
function explanationPanel(f, analysis) {
  var views = f.interpret || {};
  if (!views.all) return panel("Explanation", missing("not interpreted (crosstime interpret --features …)"));
  var box = el("div", { cls: "explanation", id: "explanation" }, [explanationLine(views.all)]);
  var drift = Data.explanationDrift(f, CK);
  if (drift.some(function (d) { return d.e.explanation; })) {  // none explained alone: one line says it
    box.appendChild(el("h3", { text: "Per checkpoint (where it is present), explained alone" }));
    drift.forEach(function (d) { box.appendChild(explanationLine(d.e, ckLabel(d.m))); });
  }
  box.appendChild(el("div", { cls: "hint", text: "Explanations: " + Data.explainerText(analysis) + ". Detection and fuzzing: balanced accuracy on held-out contexts the explainer did not see; in brackets the same for a shuffled explanation (chance)." }));
  return panel("Explanation", box, true);
}
// t: the feature in the selected task (null when not attributed in it)
function reliePanel(t) {
  var relieBox;
  if (t && t.relie) {
    var ieScale = t.ie ? F.maxAbs(t.ie, 0) : null;
    relieBox = C.barList("relie", t.relie, { uniform: 1 / M, title: function (m) { return Data.relieTitle(t, m); }, show: function (m) { return Data.relieText(t, m, ieScale); } });
    if (t.relie_class === NO_EFFECT) relieBox = el("div", null, [el("div", { cls: "no-effect", text: "No effect on " + state.task + ": Σ|IE| is below the effect floor, so no RelIE class." }), relieBox]);
  } else relieBox = missing(TASKS.length ? "no attribution for this feature in task " + state.task : "no attribution in this run");
  var ablation = t && t.ablation && t.ablation.delta_lpd ? el("div", { cls: "hint ablation", text: Data.ablationText(t.ablation.delta_lpd, P.names) }) : null;
  return panel("RelIE per checkpoint" + (state.task ? " — " + state.task : ""), el("div", null, [relieBox,
    el("div", { cls: "hint", text: "share of the feature's |IE| at each checkpoint (bars scaled to the largest; tick: uniform 1/M)" + (t && t.ie ? "; IE ± half the 95% CI, “≈ 0” below a thousandth of the largest" : "") }), ablation]));
}
function reldecPanel(f) {
  if (!f.reldec) return panel("RelDec per checkpoint", missing("no RelDec (evaluation/features.csv or the crosscoder) for this feature"));
  var beta = Data.hasBeta(f);
  return panel("RelDec per checkpoint", el("div", null, [C.barList("reldec", f.reldec, { uniform: 1 / M,
    title: function (m) { return Data.reldecTitle(f, m); }, show: function (m) { return Data.reldecText(f, m); } }),
    beta ? el("div", { cls: "hint beta", text: "β: latent-scaling share (the decoder direction's least-squares scale in each checkpoint's activations, over the held-out rows where it fires" + (isNum(f.beta_tokens) ? ": " + fmt(f.beta_tokens) + " rows" : "") + ")" }) : null,
    Data.flagged(f) ? el("div", { cls: "disputed", text: flagText(f) }) : null]));
}
// what latent scaling flags at which checkpoints, in the fields the data has
function flagText(f) {
  var shrinkage = f.scaling_flag === "shrinkage";
  var at = (shrinkage ? f.shrinkage_at : f.decoupling_at) || "";
  var where = at ? " at " + at.split(";").map(labelOfRev).join(", ") : "";
  return f.scaling_flag + where + ": the decoder norm is weak or absent there, latent scaling (" + (shrinkage ? "β_error" : "β") + ") says present";
}
function trajectoryPanel(f) {
  if (!f.norm) return panel("Decoder norm over training", missing("no decoder norms for this feature"));
  var ax = Data.tokenAxis(CK);
  return panel("Decoder norm over training", C.lineChart({ series: [{ name: "‖W_dec[" + f.id + ", m]‖", points: f.norm.map(function (v, m) { return [ax.x(m), v, P.names.title(m)]; }) }], logx: ax.logx, ymin: 0, width: 380, height: 170, xticks: ax.ticks, xlabel: ax.logx ? "checkpoint (spaced by tokens seen, log)" : "checkpoint", cls: "trajectory" }));
}
function histogramPanel(f) {
  var ev = f.evidence;
  if (!(ev && ev.histogram)) return panel("Activation histogram", missing("no feature evidence (needs activations/ and crosscoder/)"));
  var views = Object.keys(ev.histogram);
  var hv = ev.histogram[state.view] ? state.view : "all";
  var h = ev.histogram[hv] || { counts: [], upper: 0, n_bins: 1 };
  var width = h.upper / (h.n_bins || 1);
  return panel("Activation histogram (non-zero)", el("div", null, [C.histogram(h.counts, width * h.counts.length, { width: 360, height: 110, color: "#f08c00", log: false,
    binLabel: function (b) { return fmt(b * width) + "–" + fmt((b + 1) * width); } }),
    el("div", { cls: "hint", text: "view " + viewName(hv) + ": fires on " + pct(ev.density[hv] || 0) + " of " + fmt(D.evidence_meta ? D.evidence_meta.n_rows : null) + " tokens" + (views.length > 1 ? " (pick a view below)" : "") })]));
}
function renderContexts(f) {
  var ev = f.evidence;
  if (!ev || !ev.top) return panel("Top activating contexts", missing("no feature evidence (needs activations/ and crosscoder/)"));
  var views = D.views || Object.keys(ev.top);
  if (views.indexOf(state.view) < 0) state.view = "all";
  var box = el("div");
  var bar = el("div", { cls: "views", id: "view-buttons" });
  views.forEach(function (v) {
    var n = (ev.top[v] || []).length;
    bar.appendChild(el("button", { cls: (v === state.view ? "active" : "") + (n ? "" : " dim"), "data-view": v, title: viewName(v) + " — " + n + " contexts",
      onclick: function () { state.view = v; renderCard(); }, text: v === "all" ? "all (joint)" : labelOfRev(v) }));
  });
  box.appendChild(bar);
  var ids = D.evidence_meta && D.evidence_meta.token_text === false;
  box.appendChild(el("div", { cls: "hint", text: "“all”: the crosscoder's activation (reads every checkpoint). A checkpoint: encode that checkpoint's activations alone (others zero). Colour: activation at each token; outlined: the maximum. Position 0 is not stored (grey)." + (ids ? " Tokens are shown as ids (#id): this report was made with --no-token-text." : "") }));
  var list = ev.top[state.view] || [];
  var scale = list.length ? list[0].value : 1;
  if (!list.length) box.appendChild(missing("never fires in this view on the streamed tokens"));
  list.forEach(function (w) { box.appendChild(contextLine(w, scale)); });
  if (state.view === "all" && ev.quantiles && ev.quantiles.length) {
    box.appendChild(el("h3", { text: "Examples across the activation distribution (quantiles of non-zero activations)" }));
    ev.quantiles.forEach(function (w) { box.appendChild(contextLine(w, scale, "q" + Math.round(w.quantile * 100))); });
  }
  return panel("Top activating contexts", box, true);
}
function contextLine(w, scale, tag) {
  var toks = el("span", { cls: "toks" });
  w.tokens.forEach(function (id, k) {
    var a = w.acts[k];
    var pos = w.start + k;
    toks.appendChild(el("span", { cls: "tok" + (pos === w.position ? " max" : "") + (a === null ? " na" : ""), style: Data.actStyle(a, scale),
      title: "pos " + pos + " · token " + id + " · act " + (a === null ? "not stored" : fmt(a)), text: tokenText(id), raw: true }));
  });
  return el("div", { cls: "ctx", "data-context": w.context, "data-position": w.position }, [
    el("span", { cls: "v", title: "context " + w.context + ", position " + w.position, text: (tag ? tag + " " : "") + fmt(w.value) }), toks]);
}
function renderLens(f) {
  var ev = f.evidence;
  var off = D.evidence_meta && D.evidence_meta.logit_lens_method === "none";
  if (!ev || !ev.logit_lens || !Object.keys(ev.logit_lens).length) return panel("Logit lens", missing(off ? "no logit lens: this report was made with --logit-lens none" : "no logit lens (needs the series' checkpoints to load the final norm and unembedding)"));
  var tbl = el("table", { cls: "lens" });
  tbl.appendChild(el("tr", null, [el("th", { text: "checkpoint" }), el("th", { text: "promoted" }), el("th", { text: "suppressed" })]));
  function toks(list, cls) { return el("td", { cls: cls }, el("div", { cls: "chips" }, list.slice(0, 8).map(function (p) { return el("code", { title: "Δlogit " + fmt(p[1]), text: tokenText(p[0]), raw: true }); }))); }
  CK.forEach(function (c, m) {
    var e = ev.logit_lens[c.revision];
    if (e) tbl.appendChild(el("tr", { "data-checkpoint": c.revision }, [el("td", { text: ckLabel(m), title: P.names.title(m) }), toks(e.promoted, "up"), toks(e.suppressed, "down")]));
  });
  var method = D.evidence_meta ? D.evidence_meta.logit_lens_method : "";
  var note = method === "mean_activation" ? "Δlogits of adding the feature's decoder direction (at its typical activation) to the checkpoint's mean site activation, through that checkpoint's final norm and unembedding." :
    method === "norm_weight" ? "Decoder direction through the final norm's weight (linear part) and the unembedding." : "";
  var excluded = (D.evidence_meta && D.evidence_meta.excluded_tokens) || [];
  if (excluded.length) note += " Special tokens left out: " + excluded.map(tokenText).join(" ") + ".";
  return panel("Logit lens per checkpoint", el("div", null, [tbl, el("div", { cls: "hint", text: note })]), true);
}

CT.features = { renderFilters: renderFilters, refreshClassOptions: refreshClassOptions, renderList: renderList, select: select, move: move };
