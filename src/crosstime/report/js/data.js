/* data.js: the report's data shaped for display: checkpoint names, the feature list's columns,
   filters, order and class counts, shard lookup, the texts built from numbers, chart series.
   Pure (no DOM): node's tests load it. */
"use strict";
var CT = globalThis.CT = globalThis.CT || {};
var F = CT.format, isNum = F.isNum, fmt = F.fmt, pct = F.pct, fmtRel = F.fmtRel, fmtTokens = F.fmtTokens;

var NO_EFFECT = "no effect";

// "revision · 1.0M tokens seen" (the revision alone when its tokens are unknown): a checkpoint on hover
function revisionTitle(revision, tokens) { return revision + (isNum(tokens) ? " · " + fmtTokens(tokens) + " tokens seen" : ""); }
// the names of checkpoints CK ([{revision, tokens}]), as the findings and the CLI name them (their revisions),
// tokens seen on hover (title): by index m, by revision, and of a view ("all" or a revision)
function checkpointNames(CK) {
  function label(m) { return CK[m] ? CK[m].revision : String(m); }
  function title(m) { return CK[m] ? revisionTitle(CK[m].revision, CK[m].tokens) : String(m); }
  function ofRevision(rev) { for (var m = 0; m < CK.length; m++) if (CK[m].revision === rev) return label(m); return rev; }
  function titleOfRevision(rev) { for (var m = 0; m < CK.length; m++) if (CK[m].revision === rev) return title(m); return rev; }
  function view(v) {
    if (v === "all") return "all checkpoints (joint)";
    for (var m = 0; m < CK.length; m++) if (CK[m].revision === v) return label(m) + " alone";
    return v;
  }
  return { label: label, title: title, ofRevision: ofRevision, titleOfRevision: titleOfRevision, view: view };
}
// x coordinate of checkpoint m on a tokens-seen axis; falls back to the index.
function tokenAxis(CK) {
  var ok = CK.length && CK.every(function (c) { return isNum(c.tokens); });
  return { logx: ok, x: function (m) { return ok ? CK[m].tokens : m; }, ticks: CK.map(function (c, m) { return [ok ? c.tokens : m, c.revision, revisionTitle(c.revision, c.tokens)]; }) };
}

// ---------------------------------------------------------------- one feature in one task
function taskData(f, task) { return task && f.tasks ? f.tasks[task] || null : null; }
function ieTotal(t) { return t && t.ie ? F.sum(t.ie.map(Math.abs)) : null; }
function reliePeak(t) { return t && t.relie ? F.argmax(t.relie) : -1; }
function relieMax(t) { return t && t.relie ? Math.max.apply(null, t.relie.filter(isNum)) : null; }
// a task's RelIE class, marked where its bootstrap interval reaches a cut-off of the class rule
function relieClassText(t) { return !t || !t.relie_class ? "" : t.relie_class + (t.relie_class_uncertain ? " (uncertain)" : ""); }
function hasEffect(t) { return !!(t && t.relie_class && t.relie_class !== NO_EFFECT); }

// ---------------------------------------------------------------- the feature list
// default task: the report's main task (largest total |IE| over the reported features)
// the list is sorted by the selected task's Σ|IE| (its columns show that task); features without an attribution in it come last
function initialState(D) {
  var tasks = D.tasks || [];
  return { task: D.main_task && tasks.indexOf(D.main_task) >= 0 ? D.main_task : tasks[0] || null, sort: tasks.length ? "ie" : "rank", dir: -1,
    cls: "", peak: "", onset: "", minIE: "", text: "", selected: null, view: "all" };
}
// the list's columns: value(f) sorts (and is printed by fmt unless show(f) says otherwise); they read state.task when called
function columns(tasks, state, names) {
  function t(f) { return taskData(f, state.task); }
  return [
    { key: "id", label: "feature", field: "feature", tip: "feature id", value: function (f) { return f.id; } },
    { key: "rank", label: "rank", field: "rank", tip: "rank in the report: largest Σ_m |IE_m| over all tasks (else decoder norm)", value: function (f) { return isNum(f.rank) ? f.rank : null; } },
    { key: "cls", label: tasks.length ? "RelIE class" : "RelDec class", field: tasks.length ? "relie_class" : "reldec_class", tip: tasks.length ? "class from the RelIE shares of the selected task" : "class from the RelDec shares", value: function (f) { return tasks.length ? relieClassText(t(f)) : f.reldec_class || ""; }, cls: "cls" },
    { key: "relie", label: "largest RelIE", field: "relie", tip: "largest RelIE share |IE_m| / Σ_k |IE_k| of the selected task, and where", value: function (f) { return relieMax(t(f)); }, show: function (f) { var v = relieMax(t(f)); var p = reliePeak(t(f)); return v === null || !hasEffect(t(f)) ? "–" : pct(v) + (p >= 0 ? " @" + names.label(p) : ""); } },
    { key: "ie", label: "Σ|IE|", field: "ie", tip: "Σ_m |IE_m| of the selected task (signed IE: mean change of the metric, per checkpoint)", value: function (f) { return ieTotal(t(f)); } },
    { key: "onset", label: "onset", field: "onset", tip: "first checkpoint where the decoder norm is present", value: function (f) { return isNum(f.onset) && f.onset >= 0 ? f.onset : null; }, show: function (f) { return isNum(f.onset) && f.onset >= 0 ? names.label(f.onset) : "–"; } },
    { key: "desc", label: "annotation", field: "description", tip: "your description (crosstime annotate)", value: function (f) { return f.description || ""; }, cls: "desc" }
  ].filter(function (c) { return tasks.length || (c.key !== "relie" && c.key !== "ie"); });
}
// the direction a column sorts in when first clicked: ids, ranks, onsets and words ascending, numbers descending
function firstDir(key) { return key === "id" || key === "rank" || key === "onset" || key === "desc" || key === "cls" ? 1 : -1; }
// latent scaling flagged the feature (scaling_flag "shrinkage" or "decoupling"; "none" and empty are not flags)
function flagged(f) { return !!f.scaling_flag && f.scaling_flag !== "none"; }
// the class filter's choices: [{label, options: [{value "kind:class", text "class (count)"}]}], groups with a class only
function classGroups(features, task) {
  var relie = {}, reldec = {}, traj = {}, disputed = {};
  features.forEach(function (f) {
    var t = taskData(f, task);
    if (t && t.relie_class) relie[t.relie_class] = (relie[t.relie_class] || 0) + 1;
    if (f.reldec_class) reldec[f.reldec_class] = (reldec[f.reldec_class] || 0) + 1;
    if (f.trajectory) traj[f.trajectory] = (traj[f.trajectory] || 0) + 1;
    if (flagged(f)) disputed[f.scaling_flag] = (disputed[f.scaling_flag] || 0) + 1;
  });
  return [["RelIE class", "relie:", relie], ["RelDec class", "reldec:", reldec], ["trajectory", "traj:", traj], ["latent scaling flag", "disp:", disputed]]
    .filter(function (g) { return Object.keys(g[2]).length; })
    .map(function (g) { return { label: g[0], options: Object.keys(g[2]).map(function (k) { return { value: g[1] + k, text: k + " (" + g[2][k] + ")" }; }) }; });
}
// whether feature f passes the filters of state (class "kind:value", RelIE peak, onset, min Σ|IE|, text in id or annotation)
function passes(f, state) {
  var t = taskData(f, state.task);
  if (state.cls) {
    var i = state.cls.indexOf(":"), kind = state.cls.slice(0, i), val = state.cls.slice(i + 1);
    if (kind === "relie" && !(t && t.relie_class === val)) return false;
    if (kind === "reldec" && f.reldec_class !== val) return false;
    if (kind === "traj" && f.trajectory !== val) return false;
    if (kind === "disp" && !(flagged(f) && f.scaling_flag === val)) return false;
  }
  if (state.peak !== "" && reliePeak(t) !== Number(state.peak)) return false;
  if (state.onset !== "" && f.onset !== Number(state.onset)) return false;
  if (state.minIE !== "" && isNum(Number(state.minIE))) { var ie = ieTotal(t); if (!(ie !== null && ie >= Number(state.minIE))) return false; }
  if (state.text) {
    var hay = (String(f.id) + " " + (f.description || "") + " " + explanationsText(f)).toLowerCase();
    if (hay.indexOf(state.text) < 0) return false;
  }
  return true;
}
// order {f, v} by v (the sort column's value) in direction dir; blanks last; ties by id
function compareBy(dir) {
  return function (a, b) {
    var x = a.v, y = b.v;
    a = a.f; b = b.f;
    var xn = x === null || x === undefined || x === "", yn = y === null || y === undefined || y === "";
    if (xn && yn) return a.id - b.id;
    if (xn) return 1;
    if (yn) return -1;
    if (typeof x === "string" || typeof y === "string") return dir * String(x).localeCompare(String(y)) || a.id - b.id;
    return dir * (x - y) || a.id - b.id;
  };
}
// the features that pass state's filters: those attributed in the selected task (inTask), then the others,
// each sorted by column (the column's value computed once per feature: a large report lists thousands)
function listOrder(features, state, column) {
  function sorted(fs) {
    return fs.map(function (f) { return { f: f, v: column ? column.value(f) : 0 }; }).sort(compareBy(state.dir)).map(function (x) { return x.f; });
  }
  var shown = features.filter(function (f) { return passes(f, state); });
  return { inTask: sorted(shown.filter(function (f) { return !state.task || taskData(f, state.task); })),
           others: sorted(shown.filter(function (f) { return state.task && !taskData(f, state.task); })) };
}
// the line under the filters: n = {shown, listed, drawn, total (the crosscoder's F), sharded, task}
function listCountText(n) {
  return (n.sharded && !n.listed ? "loading the feature list… " : "") +
    fmt(n.shown) + " of " + fmt(n.listed) + (n.sharded ? " live features" : " reported features") + (n.total ? " (crosscoder has " + fmt(n.total) + ")" : "") +
    (n.drawn < n.shown ? "; the first " + fmt(n.drawn) + " shown, search by id or annotation for the others" : "") +
    (n.task ? "; sorted within " + n.task : "");
}
function metaText(M, count, generated) { return M + " checkpoints · " + fmt(count) + " features · generated " + (generated || ""); }

// ---------------------------------------------------------------- shards (a large report)
// the shard that holds id if any: shard k holds ids from starts[k] up to starts[k + 1]
function shardOf(starts, id) {
  var lo = 0, hi = starts.length - 1;
  if (!starts.length || id < starts[0]) return -1;
  while (lo < hi) { var mid = (lo + hi + 1) >> 1; if (starts[mid] <= id) lo = mid; else hi = mid - 1; }
  return lo;
}
function shardFile(path, k) { return path + "/shard-" + ("0000" + k).slice(-5) + ".js"; }
// why feature id has no card: not a feature of the crosscoder, or not in this report's data.
// r = {total (F), shards ({path, starts, count} or null), failed (its shard failed to load), listed (features listed)}
function absentText(id, r) {
  var F = r.total;
  if (isNum(F) && (id < 0 || id >= F)) return "Feature " + id + " does not exist: the crosscoder has " + fmt(F) + " features (ids 0–" + fmt(F - 1) + ").";
  if (r.shards && r.failed) return "Feature " + id + ": its data file " + shardFile(r.shards.path, shardOf(r.shards.starts, id)) + " could not be loaded (open the report where it was written, or through `crosstime serve RUN`).";
  return "Feature " + id + " is not in this report's data (" + (r.shards ? "the report holds " + fmt(r.shards.count) + " live features; it is dead or was left out" : "it reports " + fmt(r.listed) + " features; `crosstime report RUN --features " + id + "` adds it") + ").";
}

// ---------------------------------------------------------------- a feature's card
// the RelIE bar of checkpoint m (t: the feature in a task): the share, and the IE ± half its 95% CI next to ieScale
function relieText(t, m, ieScale) {
  if (!t.ie) return pct(t.relie[m]);
  var half = t.ie_lo && t.ie_hi && isNum(t.ie_lo[m]) ? (t.ie_hi[m] - t.ie_lo[m]) / 2 : null;
  var ie = fmtRel(t.ie[m], ieScale);
  return pct(t.relie[m]) + " · IE " + (ie === "≈ 0" ? ie : (t.ie[m] > 0 ? "+" : "") + ie + (isNum(half) ? " ± " + fmtRel(half, ieScale) : ""));
}
function relieTitle(t, m) { return t.ie ? "share " + fmt(t.relie[m]) + "; IE = " + fmt(t.ie[m]) + (t.ie_lo && t.ie_hi ? ", 95% CI [" + fmt(t.ie_lo[m]) + ", " + fmt(t.ie_hi[m]) + "]" : "") : null; }
function hasBeta(f) { return !!(f.beta_share && f.beta_share.some(isNum)); }
// the RelDec bar of checkpoint m of feature f: its share, decoder norm and latent-scaling share
function reldecText(f, m) { return pct(f.reldec[m]) + (f.norm ? " · ‖d‖ " + fmt(f.norm[m]) : "") + (hasBeta(f) ? " · β " + pct(f.beta_share[m]) : ""); }
function reldecTitle(f, m) {
  return "RelDec share " + fmt(f.reldec[m]) + (f.norm ? "; ‖W_dec‖ = " + fmt(f.norm[m]) : "") +
    (hasBeta(f) ? "; β share " + fmt(f.beta_share[m]) + ", β " + fmt(f.beta[m]) + ", β_error share " + fmt(f.beta_error_share[m]) : "");
}
function ablationText(deltas, names) {
  var scale = F.maxAbs(deltas, 0);
  return "exact single-feature ablation, ΔLPD: " + deltas.map(function (v, m) { return names.label(m) + " " + fmtRel(v, scale); }).join(" · ");
}
// a context's token background for activation a (outlined max aside): none at or below 0, else opacity by a / scale
function actStyle(a, scale) {
  var alpha = isNum(a) && scale > 0 ? Math.max(0, Math.min(1, a / scale)) : 0;
  return alpha > 0 ? "background:rgba(var(--act)," + (0.08 + 0.82 * alpha).toFixed(3) + ")" : null;
}

// ---------------------------------------------------------------- overview series
// scan/accuracy.csv per task ({task: [{tokens, step, accuracy, revision}]}) as line-chart series against
// tokens seen (steps when no tokens are known), ticks at every point, markers at the crosscoder's checkpoints CK,
// each named by its revision (tokens seen in the title)
function accuracySeries(acc, CK) {
  var tasks = Object.keys(acc), allTok = [];
  tasks.forEach(function (t) { acc[t].forEach(function (p) { if (isNum(p.tokens)) allTok.push(p.tokens); }); });
  var useTok = allTok.length > 0;
  var series = tasks.map(function (t) { return { name: t, points: acc[t].map(function (p) { return [useTok ? p.tokens : p.step, p.accuracy, revisionTitle(p.revision, p.tokens)]; }) }; });
  var tickSet = {};
  tasks.forEach(function (t) { acc[t].forEach(function (p) { var x = useTok ? p.tokens : p.step; if (isNum(x)) tickSet[x] = p; }); });
  var ticks = Object.keys(tickSet).map(Number).sort(function (a, b) { return a - b; }).map(function (x) { return [x, tickSet[x].revision, revisionTitle(tickSet[x].revision, tickSet[x].tokens)]; });
  var markers = CK.map(function (c) { return [useTok ? c.tokens : c.step, "the crosscoder's checkpoint " + revisionTitle(c.revision, c.tokens), c.revision]; });
  return { tasks: tasks, useTok: useTok, series: series, ticks: ticks, markers: markers };
}
// scan/dynamics.csv's ticks [[tokens, text]] named by the revision of the series' point at those tokens
// (points [[tokens, value, revision]]), tokens seen in the title
function dynamicsTicks(dyn) {
  var rev = {};
  dyn.series.forEach(function (s) { s.points.forEach(function (q) { rev[q[0]] = q[2]; }); });
  return dyn.ticks.map(function (t) { return rev[t[0]] ? [t[0], rev[t[0]], revisionTitle(rev[t[0]], t[0])] : t; });
}
function isConstant(points) { return points.length > 1 && points.every(function (p) { return p[1] === points[0][1]; }); }
// evaluation's live features by onset: {"present at c0": n, "c0 → c1": n, …}
function onsetCounts(countsLive, names) {
  var counts = {};
  countsLive.forEach(function (n, m) { counts[m === 0 ? "present at " + names.label(0) : names.label(m - 1) + " → " + names.label(m)] = n; });
  return counts;
}
// counts {name: n} as bars: [{name, width (percent of the largest, 1 decimal), text "n (share)"}]
function countRows(counts) {
  var entries = Object.keys(counts).map(function (c) { return [c, counts[c]]; });
  var mx = Math.max.apply(null, entries.map(function (e) { return e[1]; }).concat([1]));
  var total = F.sum(entries.map(function (e) { return e[1]; }));
  return entries.map(function (e) { return { name: e[0], width: (e[1] / mx * 100).toFixed(1), text: e[1] + " (" + pct(e[1] / total) + ")" }; });
}
// a block of similar checkpoints (their names) in a few words
function blockText(b) { return (b.length > 1 ? b[0] + " … " + b[b.length - 1] : b[0]) + " (" + b.length + " checkpoint" + (b.length > 1 ? "s" : "") + ")"; }
function rowValues(rows, name) { var r = (rows || []).filter(function (w) { return w.name === name; })[0]; return r ? r.values : null; }
// attribution/TASK/joint.csv at checkpoint rev in mode ("ablate" | "restore"): the top-k (by signed IE) and the
// random-k rows, each by k, and the distinct ks as ticks [[k, "k"]]
function jointRuns(rows, rev, mode) {
  var here = rows.filter(function (r) { return r.checkpoint === rev && r.mode === mode; });
  var top = here.filter(function (r) { return r.ranking === "signed_ie"; }).sort(function (x, y) { return x.k - y.k; });
  var rand = here.filter(function (r) { return r.ranking === "random"; }).sort(function (x, y) { return x.k - y.k; });
  var ticks = top.concat(rand).map(function (r) { return r.k; }).filter(function (k, i, all) { return all.indexOf(k) === i; }).sort(function (x, y) { return x - y; }).map(function (k) { return [k, String(k)]; });
  return { top: top, rand: rand, ticks: ticks };
}

// ---------------------------------------------------------------- interpret (crosstime interpret)
// every explanation of a feature (joint view and per checkpoint), for the list's search
function explanationsText(f) {
  var views = f.interpret || {};
  return Object.keys(views).map(function (v) { return views[v].explanation || ""; }).join(" ");
}
// what the explanations rest on: the rule-based explainer or the LLM's model (as the endpoint named it)
function explainerText(analysis) {
  if (!analysis) return "";
  if (analysis.explainer === "rules") return "rule-based from the toy world's types";
  var llm = analysis.llm;
  if (!llm) return "an LLM";
  var served = (llm.served_by || []).filter(function (m) { return m && m !== llm.model; });
  return "LLM " + llm.model + (served.length ? " (served as " + served.join(", ") + ")" : "");
}
// a balanced accuracy and its shuffled-explanation baseline: "0.91 (shuffled 0.51)"; "–" without a score
function scoreText(own, shuffled) {
  if (!isNum(own)) return "–";
  return fmt(own) + (isNum(shuffled) ? " (shuffled " + fmt(shuffled) + ")" : "");
}
// the per-checkpoint views of a feature's explanations, in the report's checkpoint order: [{revision, m, e}]
function explanationDrift(f, CK) {
  var views = f.interpret || {};
  var out = [];
  CK.forEach(function (c, m) { if (views[c.revision]) out.push({ revision: c.revision, m: m, e: views[c.revision] }); });
  return out;
}
// a correlation of interpret/analysis.json as one line: "Pearson r 0.48 [0.36, 0.59] (p 1e-35) · Spearman ρ …, n"
function correlationText(c) {
  if (!c || !isNum(c.pearson_r)) return "not defined over " + fmt(c ? c.n : 0) + " features (fewer than 3, or constant)";
  function ci(v) { return v && v.length === 2 ? " [" + fmt(v[0]) + ", " + fmt(v[1]) + "]" : ""; }
  return "Pearson r " + fmt(c.pearson_r) + ci(c.pearson_ci) + " (p " + fmt(c.pearson_p) + ") · Spearman ρ " + fmt(c.spearman_rho) +
    ci(c.spearman_ci) + " (p " + fmt(c.spearman_p) + ") · " + fmt(c.n) + " features";
}

CT.data = {
  NO_EFFECT: NO_EFFECT, revisionTitle: revisionTitle, checkpointNames: checkpointNames, tokenAxis: tokenAxis,
  taskData: taskData, relieClassText: relieClassText, ieTotal: ieTotal, reliePeak: reliePeak, relieMax: relieMax, hasEffect: hasEffect,
  initialState: initialState, columns: columns, firstDir: firstDir, flagged: flagged, classGroups: classGroups, passes: passes, compareBy: compareBy,
  listOrder: listOrder, listCountText: listCountText, metaText: metaText, shardOf: shardOf, shardFile: shardFile, absentText: absentText,
  relieText: relieText, relieTitle: relieTitle, hasBeta: hasBeta, reldecText: reldecText, reldecTitle: reldecTitle, ablationText: ablationText,
  actStyle: actStyle, accuracySeries: accuracySeries, dynamicsTicks: dynamicsTicks, isConstant: isConstant, onsetCounts: onsetCounts, countRows: countRows,
  blockText: blockText, rowValues: rowValues, jointRuns: jointRuns,
  explanationsText: explanationsText, explainerText: explainerText, scoreText: scoreText, explanationDrift: explanationDrift,
  correlationText: correlationText
};
