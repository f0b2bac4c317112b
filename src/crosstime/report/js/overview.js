/* overview.js: the Overview page: the model across training (scan/), the crosscoder (its settings,
   reconstruction, feature classes), evolution figures, one panel per task (attribution/), figures. */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};
var F = CT.format, isNum = F.isNum, fmt = F.fmt, pct = F.pct, Data = CT.data;
var Dm = CT.dom, el = Dm.el, missing = Dm.missing, panel = Dm.panel, section = Dm.section, table = Dm.table, kvWords = Dm.kvWords, checkpointTable = Dm.checkpointTable;
var C = CT.charts, lineChart = C.lineChart, legend = C.legend, refLegend = C.refLegend, heatmap = C.heatmap, countBars = C.countBars, smallMultiples = C.smallMultiples;
var P = CT.page, D = P.D, CK = P.CK, M = P.M, TASKS = P.TASKS, labelOfRev = P.names.ofRevision;
var TOP_COLOR = "#c44e52", RANDOM_COLOR = "#4c72b0";

// a revision as its tooltip says it: with its tokens seen, from the crosscoder's checkpoints or the scan's
function revisionHover(O) {
  var tokens = {};
  Object.keys(O.accuracy || {}).forEach(function (t) { O.accuracy[t].forEach(function (p) { tokens[p.revision] = p.tokens; }); });
  CK.forEach(function (c) { tokens[c.revision] = c.tokens; });
  return function (rev) { return Data.revisionTitle(rev, tokens[rev]); };
}

function suggestionView(sg) {
  var picks = el("div", null, table([{ label: "checkpoint", name: "revision", description: "hover a checkpoint for its tokens seen" }, { label: "role", name: "role", description: "before / after / late / last / extra" }, { label: "why", name: "reason" }],
    sg.checkpoints.map(function (p) { return [{ text: p.revision, title: Data.revisionTitle(p.revision, p.tokens) }, p.role, p.reason]; }), { noscroll: true }));
  var box = el("div");
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
  return el("div", { cls: "suggestion" }, [picks, box]);
}
// the second paper's figures (two phases, dimensionality, direction turn, typed emergence), each captioned
// with its one-line reading (findings.evolution_readings); what the run lacks for them is in D.missing
function evolutionSection(root, O) {
  var figs = (O.figures || []).filter(function (f) { return f.evolution; });
  var grid = section(root, "evolution", "Evolution", "the order in which the model learns: n-gram statistics, then features (report/two_phase.png, evaluation/)");
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
// crosstime interpret: the reading, complexity against emergence onset and RelIE peak, the scores per view
function interpretSection(root, I) {
  var a = I.analysis;
  // closed as the other sections but the first; its one-line reading is in its heading
  var grid = section(root, "interpret", "Explanations", a.reading);
  var box = el("div", { cls: "interpret" });
  box.appendChild(el("p", { cls: "reading", id: "interpret-reading", text: "From interpret/: " + fmt(a.n_explained) + " of " + fmt(a.n_features) + " features explained (" + Data.explainerText(a) + "); each feature's card shows its own." }));
  var rows = [["complexity vs emergence onset", Data.correlationText(a.onset)]];
  rows.push(["complexity vs RelIE peak", a.relie_peak ? Data.correlationText(a.relie_peak) : "no attribution in this run"]);
  box.appendChild(table([{ label: "against", name: "against" }, { label: "correlation (95% bootstrap CI)", name: "correlation" }], rows, { noscroll: true }));
  box.appendChild(el("h3", { text: "Scores per view (balanced accuracy on held-out contexts; shuffled: chance)" }));
  box.appendChild(table([{ label: "view", name: "view" }, { label: "explained", name: "n" }, { label: "detection", name: "detection_mean" }, { label: "fuzzing", name: "fuzzing_mean" }],
    a.views.map(function (v) { return [v.view === "all" ? "all (joint)" : labelOfRev(v.view), v.n, Data.scoreText(v.detection_mean, v.detection_shuffled_mean), Data.scoreText(v.fuzzing_mean, v.fuzzing_shuffled_mean)]; }), { noscroll: true }));
  grid.appendChild(el("div", { cls: "panel wide" }, [el("h2", { text: "Complexity against emergence" }), box]));
  if (I.figure) grid.appendChild(el("div", { cls: "panel wide" }, el("figure", { cls: "png", "data-figure": I.figure.name }, [el("img", { src: I.figure.src, alt: I.figure.name, loading: "lazy" }), el("figcaption", { text: I.figure.name })])));
}
function accuracyPanel(acc) {
  var a = Data.accuracySeries(acc, CK), refs = [[0.5, "chance (0.5)"]];
  return panel("Task accuracy over training", el("div", null, [
    lineChart({ series: a.series, logx: true, ymin: 0, ymax: 1, width: 440, height: 240, xticks: a.ticks, markers: a.markers, hlines: refs, xlabel: a.useTok ? "checkpoint (spaced by tokens seen, log)" : "step (log)", ylabel: "accuracy", cls: "accuracy-chart" }),
    legend(a.tasks), refLegend(refs), M ? el("div", { cls: "hint", text: "dashed vertical lines, named above the plot: the crosscoder's checkpoints; hover a checkpoint for its tokens seen" }) : null]));
}
// scan/dynamics.csv: the curves, and the constant series (n-gram references) as labelled horizontal lines
function dynamicsPanel(dyn) {
  var curves = dyn.series.filter(function (s) { return !Data.isConstant(s.points); });
  var refs = dyn.series.filter(function (s) { return Data.isConstant(s.points); });
  var hlines = refs.map(function (s) { return [s.points[0][1], s.label + " (" + fmt(s.points[0][1]) + ")"]; });
  return panel("Held-out loss and distance to n-gram statistics", el("div", null, [
    lineChart({ series: curves, logx: true, width: 440, height: 230, xticks: Data.dynamicsTicks(dyn), xlabel: "checkpoint (spaced by tokens seen, log)", ylabel: "nats", cls: "dynamics-chart",
      hlinesInRange: true, hlines: hlines }),
    legend(curves.map(function (s) { return s.label; })), refLegend(hlines)]));
}
function scanSection(root, O) {
  var grid = section(root, "scan", "The model across training", "from scan/: task accuracy, loss and representation similarity at every checkpoint of the series", true);
  if (O.accuracy && Object.keys(O.accuracy).length) grid.appendChild(accuracyPanel(O.accuracy));
  else grid.appendChild(panel("Task accuracy over training", missing("scan/accuracy.csv not found — run `crosstime scan`")));
  if (O.dynamics && O.dynamics.series && O.dynamics.series.length) grid.appendChild(dynamicsPanel(O.dynamics));
  grid.appendChild(panel("Checkpoints the scan suggests", O.suggestion ? suggestionView(O.suggestion) : missing("scan/suggestion.json not found"), !!O.suggestion));
  var sims = O.similarity || [];
  var simTitle = { cosine: "Mean per-token cosine between checkpoints", cka: "Linear CKA between checkpoints" };
  sims.forEach(function (sm) {
    grid.appendChild(panel(simTitle[sm.name] || sm.name, el("div", null, [heatmap(sm.matrix, sm.labels, { cell: 30, left: 62, bottom: 52, cls: "similarity", hover: revisionHover(O), format: function (v) { return v.toFixed(2); } }),
      el("div", { cls: "hint", text: "rows and columns: the scanned checkpoints (hover for tokens seen); darker = more similar" })])));
  });
  if (!sims.length) grid.appendChild(panel("Activation similarity", missing("scan/similarity.npz not found")));
}
function crosscoderSection(root, O) {
  var grid = section(root, "crosscoder", "The crosscoder", "from crosscoder/ and evaluate: its settings, how well it reconstructs each checkpoint, and how its features are spread over the checkpoints");
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
    var flags = (O.class_counts || {})["latent scaling flag"] || {};
    grid.appendChild(panel("Reconstruction per checkpoint", el("div", { cls: "evaluation" }, [
      el("div", null, [checkpointTable(ev.rows, ev.checkpoints, "evaluation-table"), el("div", { cls: "hint", text: "hover a row name for its field and definition, a checkpoint for its tokens seen" })]),
      el("div", null, [el("h3", { text: "over all checkpoints" }), kvWords(ev.overall), Object.keys(flags).length ? disputedView(flags, ev.overall) : null])]), true));
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
      var hl = [[accClean ? accClean[m] : null, "accuracy, clean"], [accAll ? accAll[m] : null, "accuracy, every feature ablated (error kept)"]];
      line.appendChild(el("figure", { "data-checkpoint": rev, "data-mode": mode[0] }, [lineChart({
        series: [{ name: "random k active", color: RANDOM_COLOR, points: j.rand.map(function (r) { return [r.k, r.accuracy, "k = " + r.k]; }) },
                 { name: "top k by signed IE", color: TOP_COLOR, points: j.top.map(function (r) { return [r.k, r.accuracy, "k = " + r.k]; }) }],
        bands: [{ color: RANDOM_COLOR, points: j.rand.map(function (r) { return [r.k, r.accuracy_lo, r.accuracy_hi]; }) }],
        logx: true, ymin: 0, ymax: 1, width: 250, height: 150, xticks: j.ticks, hlines: hl, xlabel: "k (log)", ylabel: "accuracy", cls: "joint-chart" }),
        el("figcaption", { text: labelOfRev(rev), title: P.names.titleOfRevision(rev) })]));
    });
    box.appendChild(el("h3", { text: "Accuracy after " + mode[1] }));
    box.appendChild(line);
  });
  box.appendChild(legend(["random k active features (band: 95% of draws)", "top k by signed IE"], [RANDOM_COLOR, TOP_COLOR]));
  box.appendChild(refLegend([[0, "accuracy, clean"], [0, "accuracy, every feature ablated (error kept)"]]));
  box.appendChild(el("div", { cls: "hint", text: "one chart per checkpoint" }));
  return box;
}
// room (px) for a heatmap's labels: at least ``least``, else ``perChar`` px per character of the longest
// (class names grow with the checkpoints: "step640+step768+step1000 shared"); rotated column labels need less
function labelRoom(labels, least, perChar) {
  var longest = (labels || []).reduce(function (n, l) { return Math.max(n, String(l).length); }, 0);
  return Math.max(least, Math.ceil(longest * perChar) + 12);
}
function disputedView(counts, overall) {
  var judged = (overall || []).filter(function (w) { return w.name === "scaling_judged"; })[0];
  var box = el("div", { cls: "disputed-summary" }, [el("h3", { text: "Features flagged by latent scaling" + (judged ? " (of " + fmt(judged.value) + " features judged)" : "") }), countBars(counts)]);
  box.appendChild(el("div", { cls: "hint", text: "shrinkage: the reconstruction error carries the decoder direction where the decoder norm is weak or absent (below half its peak); decoupling: only the activations carry it (another latent does). Filter them in the Features tab." }));
  return box;
}
// one task's panel, collapsible (closed: the Tasks section lists the tasks): its numbers per checkpoint (the
// width of the panel), then side by side the pooled numbers, the RelIE shares and the class confusion, then
// the joint ablation curves and the single-feature ablations
function taskPanel(t, a, abl, O) {
  var dist = O.distributions || {}, cc = O.class_counts || {};
  var cols = el("div", { cls: "task-grid" });
  var left = el("div");
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
      heatmap(c.counts, c.relie_classes, { colLabels: c.reldec_classes, cell: 36, left: labelRoom(c.relie_classes, 150, 7), bottom: labelRoom(c.reldec_classes, 120, 5.5), min: 0, cls: "confusion", format: function (v) { return String(v); } })]));
  }
  var body = el("div", { cls: "task-body" });
  if (a.per_checkpoint) { body.appendChild(el("h3", { text: "per checkpoint" })); body.appendChild(checkpointTable(a.per_checkpoint, a.revisions, "attribution-table")); }
  body.appendChild(cols);
  if (a.joint && a.joint.length) body.appendChild(jointCurves(a.joint, a));
  if (abl) body.appendChild(el("details", { cls: "ablation" }, [el("summary", { text: "exact single-feature ablation (" + abl.rows.length + " rows)" }), table(abl.columns, abl.rows)]));
  return el("details", { cls: "panel wide task-panel", "data-task": t }, [el("summary", null, el("h2", { text: "Task: " + t })), body]);
}
// buttons that open or close every section and task of the overview at once
function openAll(root) {
  function set(open) { root.querySelectorAll("details.section, details.task-panel").forEach(function (d) { d.open = open; }); }
  return el("div", { cls: "overview-tools" }, [el("button", { id: "open-all", text: "open every section", onclick: function () { set(true); } }),
    el("button", { id: "close-all", text: "close every section", onclick: function () { set(false); } }),
    el("span", { cls: "hint", text: "click a section's title to open or close it" })]);
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
  root.appendChild(openAll(root));
  scanSection(root, O);
  crosscoderSection(root, O);
  evolutionSection(root, O);
  if (O.interpret) interpretSection(root, O.interpret);
  var att = O.attribution || {}, abl = O.ablation || {};
  var tgrid = section(root, "tasks", "Tasks" + (TASKS.length ? " (" + TASKS.length + ")" : ""), "from attribution/TASK/: what the crosscoder's features do for each task, per checkpoint; click a task to open it");
  if (!TASKS.length) tgrid.appendChild(panel("Attribution", missing("attribution/TASK/features.csv not found — run `crosstime attribute`")));
  TASKS.forEach(function (t) { tgrid.appendChild(taskPanel(t, att[t] || {}, abl[t], O)); });
  var figs = (O.figures || []).filter(function (f) { return !f.evolution; });  // the Evolution ones are above
  if (figs.length) {
    var fgrid = section(root, "figures", "Figures the stages wrote", figs.length + " figures");
    var fbox = el("div", { cls: "figs" });
    figs.forEach(function (f) { fbox.appendChild(el("figure", { cls: "png" }, [el("img", { src: f.src, alt: f.name, loading: "lazy" }), el("figcaption", { text: f.name })])); });
    fgrid.appendChild(el("div", { cls: "panel wide" }, fbox));
  }
}

CT.overview = { render: renderOverview };
