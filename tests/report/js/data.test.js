// js/data.js: the report's data shaped for display (checkpoint names, the feature list, shards, texts, series).
"use strict";
const { test } = require("node:test");
const assert = require("node:assert/strict");
require("../../../src/crosstime/report/js/format.js");
require("../../../src/crosstime/report/js/data.js");
const D = globalThis.CT.data;

const CK = [{ revision: "step1", label: "1K", tokens: 1000, step: 1 }, { revision: "step2", label: "2K", tokens: 2000, step: 2 },
            { revision: "step3", tokens: 4000, step: 3 }];
const names = D.checkpointNames(CK);

test("checkpointNames: the revision by index, by revision, per view; tokens seen in the title", () => {
  assert.deepEqual([0, 1, 2, 5].map(names.label), ["step1", "step2", "step3", "5"]);  // the label (tokens) is not the name
  assert.deepEqual([0, 2, 5].map(names.title), ["step1 · 1K tokens seen", "step3 · 4K tokens seen", "5"]);
  assert.deepEqual(["step2", "step3", "other"].map((r) => names.ofRevision(r)), ["step2", "step3", "other"]);
  assert.deepEqual(["step2", "other"].map((r) => names.titleOfRevision(r)), ["step2 · 2K tokens seen", "other"]);
  assert.equal(D.revisionTitle("main", null), "main");
  assert.equal(names.view("all"), "all checkpoints (joint)");
  assert.equal(names.view("step1"), "step1 alone");
  assert.equal(names.view("gone"), "gone");
  assert.equal(D.checkpointNames([]).label(0), "0");
});

test("tokenAxis: tokens seen when every checkpoint has them, else the index", () => {
  const ax = D.tokenAxis(CK);
  assert.equal(ax.logx, true);
  assert.deepEqual([0, 2].map(ax.x), [1000, 4000]);
  assert.deepEqual(ax.ticks.map((t) => t.slice(0, 2)), [[1000, "step1"], [2000, "step2"], [4000, "step3"]]);
  assert.equal(ax.ticks[2][2], "step3 · 4K tokens seen");
  const partial = D.tokenAxis([CK[0], { revision: "main" }]);
  assert.equal(partial.logx, false);
  assert.deepEqual([0, 1].map(partial.x), [0, 1]);
  assert.deepEqual(partial.ticks, [[0, "step1", "step1 · 1K tokens seen"], [1, "main", "main"]]);
  const none = D.tokenAxis([]);
  assert.ok(!none.logx);
  assert.deepEqual(none.ticks, []);
});

test("a feature in a task: its entry, Σ|IE|, RelIE peak and maximum, whether it has an effect", () => {
  const t = { relie: [0.2, 0.5, 0.3], ie: [1, -2, null], relie_class: "late" };
  const f = { id: 1, tasks: { a: t } };
  assert.equal(D.taskData(f, "a"), t);
  assert.equal(D.taskData(f, "b"), null);
  assert.equal(D.taskData(f, null), null);
  assert.equal(D.taskData({ id: 2 }, "a"), null);
  assert.equal(D.ieTotal(t), 3);
  assert.equal(D.ieTotal(null), null);
  assert.equal(D.ieTotal({ relie: [1] }), null);
  assert.equal(D.reliePeak(t), 1);
  assert.equal(D.reliePeak(null), -1);
  assert.equal(D.relieMax(t), 0.5);
  assert.equal(D.relieMax({ relie: [null, NaN] }), -Infinity);
  assert.equal(D.relieMax(null), null);
  assert.equal(D.hasEffect(t), true);
  assert.equal(D.hasEffect({ relie_class: "no effect" }), false);
  assert.equal(D.hasEffect({}), false);
  assert.equal(D.hasEffect(null), false);
});

test("initialState: the main task if it is one of the tasks, else the first; by Σ|IE| with tasks, else by rank", () => {
  const blank = { dir: -1, cls: "", peak: "", onset: "", minIE: "", text: "", selected: null, view: "all" };
  assert.deepEqual(D.initialState({ tasks: ["a", "b"], main_task: "b" }), { task: "b", sort: "ie", ...blank });
  assert.deepEqual(D.initialState({ tasks: ["a", "b"], main_task: "z" }), { task: "a", sort: "ie", ...blank });
  assert.deepEqual(D.initialState({}), { task: null, sort: "rank", ...blank });
});

const A = { id: 3, rank: 2, onset: 1, reldec_class: "late", trajectory: "rises", description: "Plural Subject",
            tasks: { a: { relie: [0.1, 0.9, 0], ie: [1, -2, 0], relie_class: "late" } } };
const B = { id: 1, rank: 1, onset: 0, reldec_class: "early", scaling_flag: "shrinkage",
            tasks: { a: { relie: [0.6, 0.2, 0.2], ie: [5, 1, 1], relie_class: "early" }, b: { relie: [0, 0, 1], ie: [0, 0, 1e-9], relie_class: "no effect" } } };
const C = { id: 2, rank: NaN, onset: -1, reldec_class: "late", scaling_flag: "none", tasks: {} };  // judged, not flagged

test("columns: with tasks, values and printed cells follow the selected task", () => {
  const state = { task: "a" };
  const cols = D.columns(["a", "b"], state, names);
  assert.deepEqual(cols.map((c) => c.key), ["id", "rank", "cls", "relie", "ie", "onset", "desc"]);
  const col = Object.fromEntries(cols.map((c) => [c.key, c]));
  assert.equal(col.cls.label, "RelIE class");
  assert.deepEqual([A, B, C].map(col.id.value), [3, 1, 2]);
  assert.deepEqual([A, B, C].map(col.rank.value), [2, 1, null]);
  assert.deepEqual([A, B, C].map(col.cls.value), ["late", "early", ""]);
  assert.deepEqual([A, B, C].map(col.relie.value), [0.9, 0.6, null]);
  assert.deepEqual([A, B, C].map(col.relie.show), ["90.0% @step2", "60.0% @step1", "–"]);
  assert.deepEqual([A, B, C].map(col.ie.value), [3, 7, null]);
  assert.deepEqual([A, B, C].map(col.onset.value), [1, 0, null]);
  assert.deepEqual([A, B, C].map(col.onset.show), ["step2", "step1", "–"]);
  assert.deepEqual([A, B, C].map(col.desc.value), ["Plural Subject", "", ""]);
  state.task = "b";  // read when called: B has no effect on b, A is not attributed in it
  assert.deepEqual([A, B].map(col.cls.value), ["", "no effect"]);
  assert.deepEqual([A, B].map(col.relie.show), ["–", "–"]);
  assert.deepEqual([A, B].map(col.ie.value), [null, 1e-9]);
});

test("columns: without tasks, no RelIE or Σ|IE| column and the class is RelDec's", () => {
  const cols = D.columns([], { task: null }, names);
  assert.deepEqual(cols.map((c) => c.key), ["id", "rank", "cls", "onset", "desc"]);
  assert.equal(cols[2].label, "RelDec class");
  assert.equal(cols[2].field, "reldec_class");
  assert.deepEqual([A, B, { id: 9 }].map(cols[2].value), ["late", "early", ""]);
});

test("firstDir: ids, ranks, onsets, annotations and classes ascending; numbers descending", () => {
  assert.deepEqual(["id", "rank", "onset", "desc", "cls", "relie", "ie"].map(D.firstDir), [1, 1, 1, 1, 1, -1, -1]);
});

test("classGroups: counts per class, in the selected task; empty groups left out", () => {
  assert.deepEqual(D.classGroups([A, B, C], "a"), [
    { label: "RelIE class", options: [{ value: "relie:late", text: "late (1)" }, { value: "relie:early", text: "early (1)" }] },
    { label: "RelDec class", options: [{ value: "reldec:late", text: "late (2)" }, { value: "reldec:early", text: "early (1)" }] },
    { label: "trajectory", options: [{ value: "traj:rises", text: "rises (1)" }] },
    { label: "latent scaling flag", options: [{ value: "disp:shrinkage", text: "shrinkage (1)" }] }]);
  assert.deepEqual(D.classGroups([A, B, C], "b")[0], { label: "RelIE class", options: [{ value: "relie:no effect", text: "no effect (1)" }] });
  assert.deepEqual(D.classGroups([C], null), [{ label: "RelDec class", options: [{ value: "reldec:late", text: "late (1)" }] }]);
  assert.deepEqual(D.classGroups([], "a"), []);
});

test("classGroups and passes: only a shrinkage or decoupling flag counts; none, empty and a missing flag do not", () => {
  const E = { id: 5, scaling_flag: "decoupling", tasks: {} }, G = { id: 6, scaling_flag: "", tasks: {} }, H = { id: 7, tasks: {} };
  assert.deepEqual(D.classGroups([E, G, H, B, C], null).slice(-1)[0], { label: "latent scaling flag",
    options: [{ value: "disp:decoupling", text: "decoupling (1)" }, { value: "disp:shrinkage", text: "shrinkage (1)" }] });
  const state = { ...D.initialState({}), cls: "disp:decoupling" };
  assert.deepEqual([E, G, H, B, C].filter((f) => D.passes(f, state)).map((f) => f.id), [5]);
  assert.deepEqual([E, G, H, B, C].map(D.flagged), [true, false, false, true, false]);
});

function filters(over) { return { task: "a", cls: "", peak: "", onset: "", minIE: "", text: "", ...over }; }
function ids(fs) { return fs.map((f) => f.id); }

test("passes: each filter on its own", () => {
  const all = [A, B, C];
  const pass = (over) => ids(all.filter((f) => D.passes(f, filters(over))));
  assert.deepEqual(pass({}), [3, 1, 2]);
  assert.deepEqual(pass({ cls: "relie:late" }), [3]);
  assert.deepEqual(pass({ cls: "reldec:late" }), [3, 2]);
  assert.deepEqual(pass({ cls: "traj:rises" }), [3]);
  assert.deepEqual(pass({ cls: "disp:shrinkage" }), [1]);
  assert.deepEqual(pass({ cls: "disp:decoupling" }), []);
  assert.deepEqual(pass({ peak: "1" }), [3]);
  assert.deepEqual(pass({ peak: "0" }), [1]);
  assert.deepEqual(pass({ onset: "0" }), [1]);
  assert.deepEqual(pass({ minIE: "3" }), [3, 1]);  // Σ|IE| >= 3; C has none
  assert.deepEqual(pass({ minIE: "3.5" }), [1]);
  assert.deepEqual(pass({ minIE: "-" }), [3, 1, 2]);  // not a number: no filter
  assert.deepEqual(pass({ text: "2" }), [2]);  // by id
  assert.deepEqual(pass({ text: "plural" }), [3]);  // the annotation, lower-cased
  assert.deepEqual(pass({ cls: "reldec:late", text: "3" }), [3]);
});

test("compareBy: by value in the direction, blanks last, ties and blanks by id, words by localeCompare", () => {
  const rows = [{ f: { id: 4 }, v: 2 }, { f: { id: 2 }, v: null }, { f: { id: 1 }, v: 2 }, { f: { id: 3 }, v: 5 }, { f: { id: 0 }, v: "" }];
  assert.deepEqual(rows.slice().sort(D.compareBy(-1)).map((r) => r.f.id), [3, 1, 4, 0, 2]);
  assert.deepEqual(rows.slice().sort(D.compareBy(1)).map((r) => r.f.id), [1, 4, 3, 0, 2]);
  const words = [{ f: { id: 1 }, v: "b" }, { f: { id: 2 }, v: "a" }, { f: { id: 3 }, v: "b" }, { f: { id: 4 }, v: undefined }];
  assert.deepEqual(words.slice().sort(D.compareBy(1)).map((r) => r.f.id), [2, 1, 3, 4]);
  assert.deepEqual(words.slice().sort(D.compareBy(-1)).map((r) => r.f.id), [1, 3, 2, 4]);
});

test("listOrder: attributed in the task first, then the others, each sorted; filtered", () => {
  const D4 = { id: 0, rank: 4, tasks: { a: { relie: [1, 0, 0], ie: [3, 0, 0] } } };
  const all = [A, B, C, D4];
  const cols = Object.fromEntries(D.columns(["a"], { task: "a" }, names).map((c) => [c.key, c]));
  const order = (state, col) => { const o = D.listOrder(all, filters(state), col); return [ids(o.inTask), ids(o.others)]; };
  assert.deepEqual(order({ dir: -1 }, cols.ie), [[1, 0, 3], [2]]);  // Σ|IE| 7, 3, 3 (tie by id)
  assert.deepEqual(order({ dir: 1 }, cols.id), [[0, 1, 3], [2]]);
  assert.deepEqual(order({ dir: 1 }, cols.rank), [[1, 3, 0], [2]]);
  assert.deepEqual(order({ dir: 1, task: null }, cols.id), [[0, 1, 2, 3], []]);  // no task: every feature "in"
  assert.deepEqual(order({ dir: 1, minIE: "3.5" }, cols.id), [[1], []]);
  assert.deepEqual(order({ dir: 1 }, undefined), [[0, 1, 3], [2]]);  // no column: by id
  assert.deepEqual(D.listOrder([], filters({ dir: 1 }), cols.id), { inTask: [], others: [] });
});

test("listCountText: shown of listed, the crosscoder's total, the rows drawn, the task", () => {
  assert.equal(D.listCountText({ shown: 12, listed: 12, drawn: 12, total: 48, sharded: false, task: "agreement" }),
    "12 of 12 reported features (crosscoder has 48); sorted within agreement");
  assert.equal(D.listCountText({ shown: 0, listed: 5, drawn: 0, total: null, sharded: false, task: null }), "0 of 5 reported features");
  assert.equal(D.listCountText({ shown: 31000, listed: 32000, drawn: 400, total: 32768, sharded: true, task: "a" }),
    "31,000 of 32,000 live features (crosscoder has 32,768); the first 400 shown, search by id or annotation for the others; sorted within a");
  assert.equal(D.listCountText({ shown: 0, listed: 0, drawn: 0, total: 32768, sharded: true, task: null }),
    "loading the feature list… 0 of 0 live features (crosscoder has 32,768)");
});

test("metaText", () => {
  assert.equal(D.metaText(3, 12, "2024-01-01 10:00 UTC"), "3 checkpoints · 12 features · generated 2024-01-01 10:00 UTC");
  assert.equal(D.metaText(0, 32768, undefined), "0 checkpoints · 32,768 features · generated ");
});

test("shardOf: the shard whose first id is the largest at or below id; -1 before the first or without shards", () => {
  const starts = [0, 10, 25];
  assert.deepEqual([0, 9, 10, 24, 25, 1000].map((id) => D.shardOf(starts, id)), [0, 0, 1, 1, 2, 2]);
  assert.equal(D.shardOf(starts, -1), -1);
  assert.equal(D.shardOf([5], 3), -1);
  assert.equal(D.shardOf([5], 5), 0);
  assert.equal(D.shardOf([], 0), -1);
});

test("shardFile: five-digit shard numbers, as the report writes them", () => {
  assert.equal(D.shardFile("features", 0), "features/shard-00000.js");
  assert.equal(D.shardFile("features", 127), "features/shard-00127.js");
});

test("absentText: does not exist, its shard failed, or not in the report", () => {
  assert.equal(D.absentText(150, { total: 100, shards: null, failed: false, listed: 12 }),
    "Feature 150 does not exist: the crosscoder has 100 features (ids 0–99).");
  assert.equal(D.absentText(-1, { total: 20000, shards: null, failed: false, listed: 12 }),
    "Feature -1 does not exist: the crosscoder has 20,000 features (ids 0–19,999).");
  const shards = { path: "features", starts: [0, 100], count: 12345 };
  assert.equal(D.absentText(150, { total: 200, shards, failed: true, listed: 1234 }),
    "Feature 150: its data file features/shard-00001.js could not be loaded (open the report where it was written, or through `crosstime serve RUN`).");
  assert.equal(D.absentText(96, { total: 200, shards, failed: false, listed: 1234 }),
    "Feature 96 is not in this report's data (the report holds 12,345 live features; it is dead or was left out).");
  assert.equal(D.absentText(7, { total: null, shards: null, failed: false, listed: 12 }),
    "Feature 7 is not in this report's data (it reports 12 features; `crosstime report RUN --features 7` adds it).");
});

test("relieText and relieTitle: the share, the signed IE ± half its CI, ≈ 0 beside the largest", () => {
  const t = { relie: [0.25, 0.75], ie: [-0.5, 1.5], ie_lo: [-0.75, 1.25], ie_hi: [-0.25, 1.75] };
  assert.equal(D.relieText(t, 1, 1.5), "75.0% · IE +1.50 ± 0.250");
  assert.equal(D.relieText(t, 0, 1.5), "25.0% · IE -0.500 ± 0.250");
  assert.equal(D.relieText({ relie: [0.25, 0.75] }, 0, null), "25.0%");
  assert.equal(D.relieText({ relie: [1, 0], ie: [1.6, 1e-7] }, 1, 1.6), "0.00% · IE ≈ 0");
  assert.equal(D.relieText({ relie: [1], ie: [1.5] }, 0, 1.5), "100% · IE +1.50");
  assert.equal(D.relieText({ relie: [1], ie: [1.5], ie_lo: [null], ie_hi: [null] }, 0, 1.5), "100% · IE +1.50");
  assert.equal(D.relieTitle(t, 1), "share 0.750; IE = 1.50, 95% CI [1.25, 1.75]");
  assert.equal(D.relieTitle({ relie: [0.5], ie: [0.25] }, 0), "share 0.500; IE = 0.250");
  assert.equal(D.relieTitle({ relie: [0.5] }, 0), null);
});

test("reldecText and reldecTitle: share, decoder norm, latent-scaling share when any", () => {
  const f = { reldec: [0.4, 0.6], norm: [0.5, 1.25] };
  assert.equal(D.hasBeta(f), false);
  assert.equal(D.reldecText(f, 1), "60.0% · ‖d‖ 1.25");
  assert.equal(D.reldecTitle(f, 1), "RelDec share 0.600; ‖W_dec‖ = 1.25");
  assert.equal(D.reldecText({ reldec: [0.4, 0.6] }, 0), "40.0%");
  const g = { ...f, beta_share: [null, 0.8], beta: [null, 1.1], beta_error_share: [null, 0.1] };
  assert.equal(D.hasBeta(g), true);
  assert.equal(D.hasBeta({ beta_share: [null] }), false);
  assert.equal(D.reldecText(g, 1), "60.0% · ‖d‖ 1.25 · β 80.0%");
  assert.equal(D.reldecTitle(g, 1), "RelDec share 0.600; ‖W_dec‖ = 1.25; β share 0.800, β 1.10, β_error share 0.100");
  assert.equal(D.reldecText(g, 0), "40.0% · ‖d‖ 0.500 · β –");
});

test("ablationText: ΔLPD per checkpoint, ≈ 0 beside the largest", () => {
  assert.equal(D.ablationText([0.5, -1e-6, null], names), "exact single-feature ablation, ΔLPD: step1 0.500 · step2 ≈ 0 · step3 –");
  assert.equal(D.ablationText([], names), "exact single-feature ablation, ΔLPD: ");
});

test("actStyle: no background at or below zero or without a scale; opacity 0.08 + 0.82 × a / scale, at most 0.9", () => {
  assert.equal(D.actStyle(0.5, 1), "background:rgba(var(--act),0.490)");
  assert.equal(D.actStyle(2, 1), "background:rgba(var(--act),0.900)");
  assert.deepEqual([D.actStyle(0, 1), D.actStyle(-1, 1), D.actStyle(null, 1), D.actStyle(NaN, 1), D.actStyle(0.5, 0)], [null, null, null, null, null]);
});

test("accuracySeries: tokens when known (else steps), a tick per distinct x, a marker per checkpoint", () => {
  const acc = { a: [{ tokens: 2000, step: 2, accuracy: 0.7, revision: "r2" }, { tokens: 1000, step: 1, accuracy: 0.5, revision: "r1", label: "1K" }],
                b: [{ tokens: 1000, step: 1, accuracy: 0.6, revision: "r1", label: "one K" }] };
  const s = D.accuracySeries(acc, CK.slice(0, 2));
  assert.equal(s.useTok, true);
  assert.deepEqual(s.tasks, ["a", "b"]);
  assert.deepEqual(s.series, [{ name: "a", points: [[2000, 0.7, "r2 · 2K tokens seen"], [1000, 0.5, "r1 · 1K tokens seen"]] },
                              { name: "b", points: [[1000, 0.6, "r1 · 1K tokens seen"]] }]);
  assert.deepEqual(s.ticks, [[1000, "r1", "r1 · 1K tokens seen"], [2000, "r2", "r2 · 2K tokens seen"]]);  // named by revision
  assert.deepEqual(s.markers, [[1000, "the crosscoder's checkpoint step1 · 1K tokens seen", "step1"],
                               [2000, "the crosscoder's checkpoint step2 · 2K tokens seen", "step2"]]);
  const steps = D.accuracySeries({ a: [{ step: 10, accuracy: 0.5, revision: "r" }] }, [{ step: 10, revision: "r" }]);
  assert.equal(steps.useTok, false);
  assert.deepEqual(steps.series[0].points, [[10, 0.5, "r"]]);
  assert.deepEqual(steps.ticks, [[10, "r", "r"]]);
  assert.deepEqual(steps.markers, [[10, "the crosscoder's checkpoint r", "r"]]);
  assert.deepEqual(D.accuracySeries({}, []), { tasks: [], useTok: false, series: [], ticks: [], markers: [] });
});

test("isConstant: two or more points, all at the first's y", () => {
  assert.equal(D.isConstant([[0, 1], [1, 1]]), true);
  assert.equal(D.isConstant([[0, 1], [1, 2]]), false);
  assert.equal(D.isConstant([[0, 1]]), false);
  assert.equal(D.isConstant([]), false);
});

test("onsetCounts, countRows, blockText, rowValues", () => {
  assert.deepEqual(D.onsetCounts([3, 2, 1], names), { "present at step1": 3, "step1 → step2": 2, "step2 → step3": 1 });
  assert.deepEqual(D.onsetCounts([], names), {});
  assert.deepEqual(D.countRows({ a: 3, b: 1 }), [{ name: "a", width: "100.0", text: "3 (75.0%)" }, { name: "b", width: "33.3", text: "1 (25.0%)" }]);
  assert.deepEqual(D.countRows({ a: 0 }), [{ name: "a", width: "0.0", text: "0 (–)" }]);
  assert.deepEqual(D.countRows({}), []);
  assert.equal(D.blockText(["1K"]), "1K (1 checkpoint)");
  assert.equal(D.blockText(["1K", "2K", "4K"]), "1K … 4K (3 checkpoints)");
  const rows = [{ name: "accuracy_clean", values: [0.9, 0.8] }, { name: "accuracy_clean", values: [0] }];
  assert.deepEqual(D.rowValues(rows, "accuracy_clean"), [0.9, 0.8]);
  assert.equal(D.rowValues(rows, "other"), null);
  assert.equal(D.rowValues(null, "accuracy_clean"), null);
});

test("jointRuns: one checkpoint's rows of one mode, top-k and random by k, distinct ks as ticks", () => {
  const row = (checkpoint, mode, ranking, k) => ({ checkpoint, mode, ranking, k });
  const rows = [row("r1", "ablate", "signed_ie", 4), row("r1", "ablate", "random", 2), row("r1", "ablate", "signed_ie", 1),
                row("r1", "ablate", "random", 4), row("r1", "restore", "signed_ie", 8), row("r2", "ablate", "signed_ie", 16)];
  const j = D.jointRuns(rows, "r1", "ablate");
  assert.deepEqual(j.top.map((r) => r.k), [1, 4]);
  assert.deepEqual(j.rand.map((r) => r.k), [2, 4]);
  assert.deepEqual(j.ticks, [[1, "1"], [2, "2"], [4, "4"]]);
  assert.deepEqual(D.jointRuns(rows, "r3", "ablate"), { top: [], rand: [], ticks: [] });
});

test("relieClassText: the class, marked where its bootstrap interval reaches a cut-off; nothing without a class", () => {
  assert.equal(D.relieClassText({ relie_class: "step512-dominant", relie_class_uncertain: true }), "step512-dominant (uncertain)");
  assert.equal(D.relieClassText({ relie_class: "step512-dominant", relie_class_uncertain: false }), "step512-dominant");
  assert.equal(D.relieClassText({ relie_class: "step512-dominant" }), "step512-dominant");
  assert.equal(D.relieClassText({}), "");
  assert.equal(D.relieClassText(undefined), "");
});

test("interpret: explanations searchable, the explainer named, scores beside the shuffled baseline, drift in checkpoint order", () => {
  const f = { id: 7, description: "a note", interpret: { all: { explanation: "The Previous Token" }, step3: { explanation: "nouns" }, step1: { explanation: null } } };
  assert.equal(D.explanationsText(f), "The Previous Token nouns ");
  assert.equal(D.explanationsText({ id: 1 }), "");
  const state = Object.assign(D.initialState({ tasks: [] }), { text: "previous token" });
  assert.equal(D.passes(f, state), true);
  assert.equal(D.passes({ id: 8, interpret: { all: { explanation: "induction" } } }, state), false);
  assert.equal(D.explainerText({ explainer: "rules" }), "rule-based from the toy world's types");
  assert.equal(D.explainerText({ explainer: "llm", llm: { model: "gpt-x", served_by: ["gpt-x", "gpt-x-0301"] } }), "LLM gpt-x (served as gpt-x-0301)");
  assert.equal(D.explainerText({ explainer: "llm", llm: { model: "m", served_by: [] } }), "LLM m");
  assert.equal(D.scoreText(0.9062, 0.5071), "0.906 (shuffled 0.507)");  // fmt: 3 significant digits
  assert.equal(D.scoreText(0.75, null), "0.750");
  assert.equal(D.scoreText(null, 0.5), "–");
  assert.deepEqual(D.explanationDrift(f, CK).map((d) => [d.revision, d.m]), [["step1", 0], ["step3", 2]]);
  const c = { n: 607, pearson_r: 0.4764, pearson_p: 1e-35, pearson_ci: [0.3573, 0.586], spearman_rho: 0.4271, spearman_p: 2.6e-28, spearman_ci: null };
  const line = D.correlationText(c);
  assert.ok(line.startsWith("Pearson r 0.476 [0.357, 0.586] (p ") && line.includes("Spearman ρ 0.427 (p ") && line.endsWith("607 features"), line);
  assert.equal(D.correlationText({ n: 2, pearson_r: null }), "not defined over 2 features (fewer than 3, or constant)");
  assert.ok(!/undefined|null|NaN/.test(D.correlationText({ n: 0 }) + D.scoreText(undefined, undefined)));
});
