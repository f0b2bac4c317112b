/* overview.js: the Overview page: the model across training (scan/), the crosscoder (its settings,
   reconstruction, feature classes), evolution figures, one panel per task (attribution/), figures. */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};
var F = CT.format, isNum = F.isNum, fmt = F.fmt, pct = F.pct, Data = CT.data;
var Dm = CT.dom, el = Dm.el, missing = Dm.missing, panel = Dm.panel, section = Dm.section, table = Dm.table, kvWords = Dm.kvWords, checkpointTable = Dm.checkpointTable;
var C = CT.charts, lineChart = C.lineChart, legend = C.legend, heatmap = C.heatmap, countBars = C.countBars, smallMultiples = C.smallMultiples;
var P = CT.page, D = P.D, CK = P.CK, M = P.M, TASKS = P.TASKS, labelOfRev = P.names.ofRevision;
var TOP_COLOR = "#c44e52", RANDOM_COLOR = "#4c72b0";

function suggestionView(sg) {
  var box = el("div", { cls: "suggestion" });
  box.appendChild(table([{ label: "checkpoint", name: "revision" }, { label: "tokens seen", name: "label" }, { label: "role", name: "role", description: "before / after / late / last / extra" }, { label: "why", name: "reason" }],
    sg.checkpoints.map(function (p) { return [p.revision, p.label, p.role, p.reason]; }), { noscroll: true }));
  var jump = sg.jump;
  if (jump) {
    box.appendChild(el("h3", { text: "Accuracy jump: from " + jump.before + " to " + jump.after }));
    var tasks = jump.tasks || {};
    box.appendChild(table([{ label: "task", name: "task" }, { label: "rise starts", name: "starts" }, { label: "rise ends", name: "ends" }, { label: "fitted low", name: "low" }, { label: "fitted high", name: "high" }, { label: "rise", name: "rise" }],
      Object.keys(tasks).map(function (t) { var j = tasks[t]; return [t, j.starts, j.ends, j.low, j.high, j.rise]; }), { noscroll: true }));
    if ((jump.no_jump || []).length) box.appendChild(el("div", { cls: "hint", text: "no jump: " + jump.no_jump.join(", ") }));
  } else box.appendChild(el("div", { cls: "hint", text: "no accuracy jump found" }));
  if ((sg.blocks || []).length) {
    box.appendChild(el("h3", { text: "Blocks of similar checkpoints (CKA)" }));
    box.appendChild(el("ol", { cls: "blocks" }, sg.blocks.map(function (b) { return el("li", { text: Data.blockText(b), title: b.join(", ") }); })));
  }
  box.appendChild(el("details", null, [el("summary", { text: "how the checkpoints were chosen" }), el("p", { cls: "hint", text: sg.method })]));
  return box;
}
// the second paper's figures (two phases, dimensionality, direction turn, typed emergence), each captioned
// with its one-line reading (findings.evolution_readings); what the run lacks for them is in D.missing
function evolutionSection(root, O) {
  var figs = (O.figures || []).filter(function (f) { return f.evolution; });
  var grid = section(root, "Evolution", "the order in which the model learns: n-gram statistics, then features (report/two_phase.png, evaluation/)");
  if (!figs.length) {
    grid.appendChild(panel("Evolution", missing("no evolution figures: the run lacks scan/dynamics.csv and the evaluation's decoder analyses (see “Not in this run”)"), true));
    return;
  }
  var box = el("div", { cls: "figs evolution" });
  figs.forEach(function (f) {
    box.appendChild(el("figure", { cls: "png", "data-figure": f.name }, [el("img", { src: f.src, alt: f.name, loading: "lazy" }),
      el("figcaption", null, [el("span", { cls: "reading", text: f.caption || "no reading: its inputs are not in this run" }),
        el("span", { cls: "figname", text: " (" + f.name + ")" })])]));
  });
  grid.appendChild(el("div", { cls: "panel wide" }, box));
}
function accuracyPanel(acc) {
  var a = Data.accuracySeries(acc, CK);
  return panel("Task accuracy over training", el("div", null, [
    lineChart({ series: a.series, logx: true, ymin: 0, ymax: 1, width: 440, height: 230, top: 16, xticks: a.ticks, markers: a.markers, hlines: [[0.5, "chance"]], xlabel: a.useTok ? "tokens seen (log)" : "step (log)", ylabel: "accuracy", cls: "accuracy-chart" }),
    legend(a.tasks), M ? el("div", { cls: "hint", text: "dashed vertical lines: the crosscoder's checkpoints" }) : null]));
}
// scan/dynamics.csv: the curves, and the constant series (n-gram references) as labelled horizontal lines
function dynamicsPanel(dyn) {
  var curves = dyn.series.filter(function (s) { return !Data.isConstant(s.points); });
  var refs = dyn.series.filter(function (s) { return Data.isConstant(s.points); });
  return panel("Held-out loss and distance to n-gram statistics", el("div", null, [
    lineChart({ series: curves, logx: true, width: 440, height: 230, xticks: dyn.ticks, xlabel: dyn.xlabel, ylabel: "nats", cls: "dynamics-chart",
      hlinesInRange: true, hlines: refs.map(function (s) { return [s.points[0][1], s.label + " " + fmt(s.points[0][1])]; }) }),
    legend(curves.map(function (s) { return s.label; })), refs.length ? el("div", { cls: "hint", text: "dotted horizontal lines: " + refs.map(function (s) { return s.label; }).join("; ") }) : null]));
}
function scanSection(root, O) {
  var grid = section(root, "The model across training", "from scan/: task accuracy, loss and representation similarity at every checkpoint of the series");
  if (O.accuracy && Object.keys(O.accuracy).length) grid.appendChild(accuracyPanel(O.accuracy));
  else grid.appendChild(panel("Task accuracy over training", missing("scan/accuracy.csv not found — run `crosstime scan`")));
  if (O.dynamics && O.dynamics.series && O.dynamics.series.length) grid.appendChild(dynamicsPanel(O.dynamics));
  grid.appendChild(panel("Checkpoints the scan suggests", O.suggestion ? suggestionView(O.suggestion) : missing("scan/suggestion.json not found")));
  var sims = O.similarity || [];
  var simTitle = { cosine: "Mean per-token cosine between checkpoints", cka: "Linear CKA between checkpoints" };
  sims.forEach(function (sm) {
    grid.appendChild(panel(simTitle[sm.name] || sm.name, el("div", null, [heatmap(sm.matrix, sm.labels, { cell: 30, cls: "similarity", format: function (v) { return v.toFixed(2); } }),
      el("div", { cls: "hint", text: "rows and columns: checkpoints by tokens seen; darker = more similar" })])));
  });
  if (!sims.length) grid.appendChild(panel("Activation similarity", missing("scan/similarity.npz not found")));
}
function crosscoderSection(root, O) {
  var grid = section(root, "The crosscoder", "from crosscoder/ and evaluate: its settings, how well it reconstructs each checkpoint, and how its features are spread over the checkpoints");
  var CC = D.crosscoder;
  if (CC) {
    var arch = (CC.settings || []).filter(function (w) { return w.group === "architecture"; });
    var train = (CC.settings || []).filter(function (w) { return w.group === "training"; });
    grid.appendChild(panel("Crosscoder settings", el("div", { cls: "crosscoder-settings" }, [
      el("p", { cls: "inference-rule" + (CC.inference_depends_on_batch ? " warn" : ""), text: "Features fire by: " + CC.inference_rule }),
      kvWords(arch), train.length ? el("h3", { text: "training" }) : null, train.length ? kvWords(train) : null,
      el("div", { cls: "hint", text: "only the settings that apply to the " + CC.config.variant + " variant" })])));
  } else grid.appendChild(panel("Crosscoder settings", missing("no crosscoder opened (needs crosscoder/ and activations/)")));
  var ev = O.evaluation;
  if (ev && ev.rows) {
    grid.appendChild(panel("Reconstruction per checkpoint", el("div", { cls: "evaluation" }, [checkpointTable(ev.rows, ev.checkpoints, "evaluation-table"),
      el("h3", { text: "over all checkpoints" }), kvWords(ev.overall), (O.class_counts || {})["latent scaling flag"] ? disputedView(O.class_counts["latent scaling flag"], ev.overall) : null,
      el("div", { cls: "hint", text: "hover a row name for its field and definition" })])));
  } else grid.appendChild(panel("Reconstruction per checkpoint", missing("evaluation.json not found — run `crosstime evaluate`")));
  var em = O.emergence;
  if (em && em.counts_live) {
    grid.appendChild(panel("When features' decoders appear", el("div", { cls: "emergence" }, [countBars(Data.onsetCounts(em.counts_live, P.names)),
      el("div", { cls: "hint", text: "live features (fired during evaluation) by onset: the first checkpoint where the decoder norm reaches " + pct(em.presence_fraction) + " of its maximum (as evaluation/emergence.png)" })])));
  }
  var cc = O.class_counts || {};
  ["decoder-norm trajectory", "RelDec class"].forEach(function (k) { if (cc[k]) grid.appendChild(panel("Features per " + (k === "decoder-norm trajectory" ? "presence class" : k), countBars(cc[k]))); });
  var dist = O.distributions || {};
  if (dist.reldec) grid.appendChild(panel("RelDec share per checkpoint (" + dist.n_reldec + " features)", el("div", null, [smallMultiples(dist.reldec, "#2f6fde"),
    el("div", { cls: "hint", text: "histogram of ‖W_dec[i, m]‖ / Σ_k ‖W_dec[i, k]‖ over the features, one per checkpoint" })]), true));
}
// attribution/TASK/joint.csv: accuracy after moving the top-k features (by signed IE) together, against k random active ones
function jointCurves(rows, a) {
  var box = el("div", { cls: "joint" });
  var revs = a.revisions || [];
  var accClean = Data.rowValues(a.per_checkpoint, "accuracy_clean"), accAll = Data.rowValues(a.per_checkpoint, "accuracy_all_ablated");
  [["ablate", "ablating the top k features together (the rest clean)"], ["restore", "restoring the top k features (the rest ablated)"]].forEach(function (mode) {
    var line = el("div", { cls: "small-multiples" });
    revs.forEach(function (rev, m) {
      var j = Data.jointRuns(rows, rev, mode[0]);
      if (!j.top.length && !j.rand.length) return;
      var hl = [];
      if (accClean && isNum(accClean[m])) hl.push([accClean[m], "clean"]);
      if (accAll && isNum(accAll[m])) hl.push([accAll[m], "all ablated"]);
      line.appendChild(el("figure", { "data-checkpoint": rev, "data-mode": mode[0] }, [lineChart({
        series: [{ name: "random k active", color: RANDOM_COLOR, points: j.rand.map(function (r) { return [r.k, r.accuracy, "k = " + r.k]; }) },
                 { name: "top k by signed IE", color: TOP_COLOR, points: j.top.map(function (r) { return [r.k, r.accuracy, "k = " + r.k]; }) }],
        bands: [{ color: RANDOM_COLOR, points: j.rand.map(function (r) { return [r.k, r.accuracy_lo, r.accuracy_hi]; }) }],
        logx: true, ymin: 0, ymax: 1, width: 250, height: 150, xticks: j.ticks, hlines: hl, xlabel: "k (log)", ylabel: "accuracy", cls: "joint-chart" }),
        el("figcaption", { text: labelOfRev(rev) })]));
    });
    box.appendChild(el("h3", { text: "Accuracy after " + mode[1] }));
    box.appendChild(line);
  });
  box.appendChild(legend(["random k active features (band: 95% of draws)", "top k by signed IE"], [RANDOM_COLOR, TOP_COLOR]));
  box.appendChild(el("div", { cls: "hint", text: "one chart per checkpoint; dashed lines: accuracy clean and with every feature ablated (error kept)" }));
  return box;
}
function disputedView(counts, overall) {
  var judged = (overall || []).filter(function (w) { return w.name === "scaling_judged"; })[0];
  var box = el("div", { cls: "disputed-summary" }, [el("h3", { text: "Features flagged by latent scaling" + (judged ? " (of " + fmt(judged.value) + " features judged)" : "") }), countBars(counts)]);
  box.appendChild(el("div", { cls: "hint", text: "shrinkage: the reconstruction error carries the decoder direction where the decoder norm is weak or absent (below half its peak); decoupling: only the activations carry it (another latent does). Filter them in the Features tab." }));
  return box;
}
function taskPanel(t, a, abl, O) {
  var dist = O.distributions || {}, cc = O.class_counts || {};
  var cols = el("div", { cls: "task-grid" });
  var left = el("div");
  if (a.per_checkpoint) { left.appendChild(el("h3", { text: "per checkpoint" })); left.appendChild(checkpointTable(a.per_checkpoint, a.revisions, "attribution-table")); }
  if ((a.agreement || []).length) { left.appendChild(el("h3", { text: "pooled over checkpoints" })); left.appendChild(kvWords(a.agreement)); }
  if (a.summary) left.appendChild(el("details", null, [el("summary", { text: "settings of the attribution" }), kvWords(a.summary)]));
  cols.appendChild(left);
  var mid = el("div");
  if (dist.relie && dist.relie[t]) { mid.appendChild(el("h3", { text: "RelIE share per checkpoint (" + dist.n_relie[t] + " features)" })); mid.appendChild(smallMultiples(dist.relie[t], "#d9480f")); }
  if (cc["RelIE class (" + t + ")"]) { mid.appendChild(el("h3", { text: "features per RelIE class" })); mid.appendChild(countBars(cc["RelIE class (" + t + ")"])); }
  cols.appendChild(mid);
  if (a.confusion) {
    var c = a.confusion;
    cols.appendChild(el("div", null, [el("h3", { text: "RelIE class (rows) × RelDec class (columns), reported features" }),
      heatmap(c.counts, c.relie_classes, { colLabels: c.reldec_classes, cell: 36, left: 150, bottom: 120, min: 0, cls: "confusion", format: function (v) { return String(v); } })]));
  }
  var body = el("div", null, [cols]);
  if (a.joint && a.joint.length) body.appendChild(jointCurves(a.joint, a));
  if (abl) body.appendChild(el("details", { cls: "ablation" }, [el("summary", { text: "exact single-feature ablation (" + abl.rows.length + " rows)" }), table(abl.columns, abl.rows)]));
  return el("div", { cls: "panel wide task-panel", "data-task": t }, [el("h2", { text: "Task: " + t }), body]);
}
function renderOverview() {
  var root = document.getElementById("overview");
  var O = D.overview || {};
  if ((D.missing || []).length) {
    root.appendChild(el("div", { cls: "notice" }, [el("strong", { text: "Not in this run (yet): " }),
      el("ul", null, D.missing.map(function (m) { return el("li", { text: m }); }))]));
  }
  if ((D.findings || []).length) {
    root.appendChild(el("div", { cls: "panel findings" }, [el("h2", { text: "Findings" }),
      el("ul", null, D.findings.map(function (t) { return el("li", { text: t }); }))]));
  }
  scanSection(root, O);
  crosscoderSection(root, O);
  evolutionSection(root, O);
  var att = O.attribution || {}, abl = O.ablation || {};
  var tgrid = section(root, "Tasks", "from attribution/TASK/: what the crosscoder's features do for each task, per checkpoint");
  if (!TASKS.length) tgrid.appendChild(panel("Attribution", missing("attribution/TASK/features.csv not found — run `crosstime attribute`")));
  TASKS.forEach(function (t) { tgrid.appendChild(taskPanel(t, att[t] || {}, abl[t], O)); });
  var figs = (O.figures || []).filter(function (f) { return !f.evolution; });  // the Evolution ones are above
  if (figs.length) {
    var fgrid = section(root, "Figures the stages wrote");
    var fbox = el("div", { cls: "figs" });
    figs.forEach(function (f) { fbox.appendChild(el("figure", { cls: "png" }, [el("img", { src: f.src, alt: f.name, loading: "lazy" }), el("figcaption", { text: f.name })])); });
    fgrid.appendChild(el("div", { cls: "panel wide" }, fbox));
  }
}

CT.overview = { render: renderOverview };
