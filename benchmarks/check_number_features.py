"""Independent check: are the agreement tasks' top features number features? (issue #24, item 8)

Given a run folder whose attribution is done, this takes, for every agreement task and every
post-transition checkpoint, the top-k features by |IE| (``attribution/TASK/effects.safetensors``,
key ``ie`` [M, F]) and asks of each, on fresh sentences of the toy grammar, whether it fires
selectively for the subject's number at the subject's head noun. It reuses none of
crosstime's evaluation, typing or attribution code: the features are computed here with plain
torch from the crosscoder's saved encoder and the toy checkpoints' block outputs.

Definitions (exact):

- *post-transition checkpoints* of a task: the crosscoder's checkpoints from the first one at
  which the task's clean accuracy (``summary.json`` accuracy_clean, the attribution's own pairs)
  is ≥ 0.9 and stays ≥ 0.9 at every later checkpoint.
- *activations*: f = ReLU(Σ_m s_m·x_m W_enc[m] + b_enc) with x_m the raw output of decoder block
  ``layer`` of checkpoint m (a forward hook), s_m the crosscoder's recorded scales (weights
  saved in normalised space; a folded file is unfolded by its ``fold`` buffer). Sentences are
  packed as the harvest does: each line ``<bos> words .``, lines concatenated, contexts of
  ≤ 128 tokens starting with ``<bos>`` (whole lines only).
- *subject head nouns*: the single controller noun of every finite verb the generator records
  (:attr:`Sentence.agreements`; clause subjects and relative-clause subjects; conjoined
  subjects are left out), numbered by the lexicon.
- a feature is *selective for number N* (N' the other) when
    (a) it fires (> 0) on at least half of the occurrences of the N-form of ≥ 5 distinct noun
        lemmas (counting lemmas with ≥ 3 N-form subject-head occurrences), and
    (b) its mean activation over all N' subject head nouns is < 1/5 of its mean over all N ones.
  A *number feature* is selective for singular or for plural.
- *controls* of a task: features not in any of the task's top-k lists that are *task-active*
  (fire on ≥ 1% of the tokens of the task's good sentences, ``pairs/TASK.jsonl``, after the
  packing above), drawn at random (``--seed``), as many as the task has distinct top features.

The rate is counted over distinct features (a feature in several tasks' or checkpoints' top
lists counts once), and also per task.

    python benchmarks/check_number_features.py RUN [--out RUN/number_features.json]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from crosstime.toy.grammar import NOUN_NUMBER, NOUNS, PL, SG, Grammar

AGREEMENT_TASKS = ("simple_agreement", "pp_attractor", "rc_attractor", "irregular_plural")
ACCURACY = 0.9  # post-transition: clean accuracy at least this from here on
MIN_LEMMAS = 5  # (a): distinct noun lemmas the feature fires on
FIRE_SHARE = 0.5  # (a): share of a lemma-form's occurrences it must fire on
MIN_OCCURRENCES = 3  # (a): lemma-forms with fewer occurrences are not counted
OTHER_RATIO = 0.2  # (b): the other number's mean below this share of the number's mean
TASK_ACTIVE = 0.01  # controls: fire on at least this share of the task sentences' tokens
CONTEXT = 128
LEMMA = {form: pair[0] for pair in NOUNS for form in pair}


def read_crosscoder(run: Path) -> dict:
    """The crosscoder's encoder in normalised space and how its inputs are made.
    -> W_enc [M, d, F], b_enc [F], scales [M], revisions, layer, series folder."""
    config = json.loads((run / "crosscoder" / "config.json").read_text())
    if config["variant"] != "relu":
        raise SystemExit(f"this check encodes ReLU crosscoders only (got {config['variant']!r})")
    weights = load_file(str(run / "crosscoder" / "model.safetensors"))
    fold = weights["fold"].double()
    manifest = json.loads((run / "activations" / "manifest.json").read_text())  # the site the crosscoder reads
    scales = torch.tensor(config["scales"] if config["normalised"] else [1.0] * len(fold), dtype=torch.float64)
    return {"W_enc": (weights["W_enc"].double() / fold.view(-1, 1, 1)), "b_enc": weights["b_enc"].double(),
            "scales": scales, "revisions": config["revisions"], "layer": manifest["site"]["layer"],
            "series": Path(manifest["series"]["source"])}


def pack(lines: list[list[int]], bos: int) -> tuple[list[list[int]], list[tuple[int, int, int]]]:
    """Token lines (without <bos>) -> contexts ``<bos> line <bos> line …`` of ≤ CONTEXT tokens, and
    for every line (context index, offset of its first word) so word i sits at offset + i."""
    contexts: list[list[int]] = []
    where = []
    for ids in lines:
        if not contexts or len(contexts[-1]) + 1 + len(ids) > CONTEXT:
            contexts.append([])
        contexts[-1].append(bos)
        where.append((len(contexts) - 1, len(contexts[-1])))
        contexts[-1].extend(ids)
    return contexts, where


@torch.no_grad()
def features(cc: dict, contexts: list[list[int]]) -> list[torch.Tensor]:
    """Per context, the crosscoder's features of every token: [T_c, F] (float32). Contexts are
    right-padded into batches (causal attention: padding never reaches the real tokens)."""
    T = max(map(len, contexts))
    ids = torch.tensor([c + [0] * (T - len(c)) for c in contexts])  # [C, T]
    pre = cc["b_enc"].expand(len(contexts), T, -1).clone()  # [C, T, F]
    for m, model in enumerate(models(cc)):
        site: list[torch.Tensor] = []
        hook = model.gpt_neox.layers[cc["layer"]].register_forward_hook(
            lambda _m, _i, out, site=site: site.append(out[0] if isinstance(out, tuple) else out))
        for start in range(0, len(contexts), 64):
            model(ids[start:start + 64])
        hook.remove()
        x = torch.cat(site).double() * cc["scales"][m]  # [C, T, d] normalised
        pre += x @ cc["W_enc"][m]
    acts = torch.relu(pre).float()
    return [acts[i, :len(c)] for i, c in enumerate(contexts)]


_MODELS: dict[Path, torch.nn.Module] = {}


def models(cc: dict) -> list[torch.nn.Module]:
    """The crosscoder's checkpoints as causal LMs (loaded once)."""
    for revision in cc["revisions"]:
        path = cc["series"] / revision
        if path not in _MODELS:
            _MODELS[path] = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return [_MODELS[cc["series"] / r] for r in cc["revisions"]]


def head_nouns(n_sentences: int, seed: int, tokenizer) -> tuple[list[list[int]], list[list[tuple[int, str, str]]]]:
    """Grammar sentences as token lines, and per line its subject head nouns (word index, lemma, number)."""
    lines, heads = [], []
    for s in Grammar(seed=seed).sentences(n_sentences):
        ids = tokenizer(" ".join(s.words), add_special_tokens=False).input_ids
        if len(ids) != len(s.words):
            raise SystemExit(f"the toy tokenizer split {s.words} into {len(ids)} tokens; expected one per word")
        controllers = sorted({a.controllers[0] for a in s.agreements if len(a.controllers) == 1})
        lines.append(ids)
        heads.append([(i, LEMMA[s.words[i]], NOUN_NUMBER[s.words[i]]) for i in controllers])
    return lines, heads


def noun_table(acts: list[torch.Tensor], where, heads) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """Activations at every subject head noun: [H, F], and each row's (lemma, number)."""
    rows, keys = [], []
    for (c, offset), line_heads in zip(where, heads):
        for i, lemma, number in line_heads:
            rows.append(acts[c][offset + i])
            keys.append((lemma, number))
    return torch.stack(rows), keys


def selectivity(table: torch.Tensor, keys: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Per feature [F]: lemmas fired on per number, the numbers' means, and the verdict (see the docstring)."""
    out: dict[str, torch.Tensor] = {}
    for number in (SG, PL):
        rows = torch.tensor([k[1] == number for k in keys])
        out[f"mean_{number}"] = table[rows].mean(0)
        by_lemma = defaultdict(list)
        for r, (lemma, n) in enumerate(keys):
            if n == number:
                by_lemma[lemma].append(r)
        fired = [(table[idx] > 0).float().mean(0) >= FIRE_SHARE
                 for idx in by_lemma.values() if len(idx) >= MIN_OCCURRENCES]
        out[f"lemmas_{number}"] = torch.stack(fired).sum(0)
    for number, other in ((SG, PL), (PL, SG)):
        out[f"selective_{number}"] = ((out[f"lemmas_{number}"] >= MIN_LEMMAS) & (out[f"mean_{number}"] > 0)
                                      & (out[f"mean_{other}"] < OTHER_RATIO * out[f"mean_{number}"]))
    out["number_feature"] = out[f"selective_{SG}"] | out[f"selective_{PL}"]
    return out


def post_transition(summary: dict) -> list[str]:
    revisions, accuracy = summary["revisions"], summary["accuracy_clean"]
    for i, _ in enumerate(revisions):
        if all(accuracy[r] >= ACCURACY for r in revisions[i:]):
            return revisions[i:]
    return []


def top_features(run: Path, task: str, k: int) -> dict[str, list[int]]:
    """Per post-transition checkpoint, the task's top-k features by |IE| (mean over pairs)."""
    summary = json.loads((run / "attribution" / task / "summary.json").read_text())
    ie = load_file(str(run / "attribution" / task / "effects.safetensors"))["ie"]  # [M, F]
    return {r: ie[summary["revisions"].index(r)].abs().topk(k).indices.tolist() for r in post_transition(summary)}


def task_active(cc: dict, task: str, tokenizer) -> torch.Tensor:
    """[F] bool: fires on ≥ TASK_ACTIVE of the tokens of the task's good sentences (no <bos>)."""
    pairs = [json.loads(line) for line in (cc["series"] / "pairs" / f"{task}.jsonl").read_text().splitlines()]
    lines = [tokenizer(p["sentence_good"], add_special_tokens=False).input_ids for p in pairs]
    contexts, where = pack(lines, tokenizer.bos_token_id)
    acts = features(cc, contexts)
    tokens = torch.cat([acts[c][o:o + len(ids)] for (c, o), ids in zip(where, lines)])
    return (tokens > 0).float().mean(0) >= TASK_ACTIVE


def verdicts(sel: dict[str, torch.Tensor], feats: list[int]) -> dict[int, dict]:
    """Per feature, its numbers: lemmas fired on and mean activation per number, and the verdict."""
    return {f: {"number_feature": bool(sel["number_feature"][f]),
                "selective_for": [n for n in (SG, PL) if bool(sel[f"selective_{n}"][f])],
                **{f"lemmas_{n}": int(sel[f"lemmas_{n}"][f]) for n in (SG, PL)},
                **{f"mean_{n}": round(float(sel[f"mean_{n}"][f]), 4) for n in (SG, PL)}} for f in feats}


def rate(features_: set[int], verdict: dict[int, dict]) -> dict:
    hits = sum(verdict[f]["number_feature"] for f in features_)
    return {"number_features": hits, "features": len(features_), "rate": round(hits / max(len(features_), 1), 3)}


def check(run: Path, k: int, n_sentences: int, seed: int) -> dict:
    cc = read_crosscoder(run)
    tokenizer = AutoTokenizer.from_pretrained(cc["series"] / cc["revisions"][-1])
    lines, heads = head_nouns(n_sentences, seed, tokenizer)
    contexts, where = pack(lines, tokenizer.bos_token_id)
    acts = features(cc, contexts)
    l0 = float(torch.cat([(a[1:] > 0).sum(1) for a in acts]).float().mean())  # the training's L0 is comparable
    table, keys = noun_table(acts, where, heads)
    sel = selectivity(table, keys)
    rng = random.Random(seed)
    tasks, all_top, all_controls = {}, set(), set()
    for task in AGREEMENT_TASKS:
        if not (run / "attribution" / task / "effects.safetensors").is_file():
            continue
        tops = top_features(run, task, k)
        top = {f for fs in tops.values() for f in fs}
        pool = sorted(set(torch.nonzero(task_active(cc, task, tokenizer)).flatten().tolist()) - top)
        controls = set(rng.sample(pool, min(len(top), len(pool))))
        tasks[task] = {"checkpoints": list(tops), "top": tops, "controls": sorted(controls)}
        all_top |= top
        all_controls |= controls
    verdict = verdicts(sel, sorted(all_top | all_controls))
    for entry in tasks.values():
        top = {f for fs in entry["top"].values() for f in fs}
        entry["rate_top"], entry["rate_controls"] = rate(top, verdict), rate(set(entry["controls"]), verdict)
    return {"run": str(run), "layer": cc["layer"], "revisions": cc["revisions"], "n_features": int(cc["b_enc"].numel()),
            "top_k": k, "sentences": n_sentences, "seed": seed, "subject_head_nouns": len(keys), "l0_grammar": round(l0, 2),
            "rule": {"min_lemmas": MIN_LEMMAS, "fire_share": FIRE_SHARE, "min_occurrences": MIN_OCCURRENCES,
                     "other_ratio": OTHER_RATIO, "task_active": TASK_ACTIVE, "accuracy": ACCURACY},
            "rate_top": rate(all_top, verdict), "rate_controls": rate(all_controls - all_top, verdict),
            "number_features_overall": int(sel["number_feature"].sum()),
            "tasks": tasks, "features": {str(f): v for f, v in verdict.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run folder with crosscoder/ and attribution/TASK/")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--sentences", type=int, default=3000, help="toy grammar sentences to test on")
    parser.add_argument("--seed", type=int, default=12345, help="grammar seed (not the corpus's 0) and controls' draw")
    parser.add_argument("--out", type=Path, help="write the full result as JSON here")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    hf_logging.disable_progress_bar()
    result = check(args.run, args.top_k, args.sentences, args.seed)
    for task, entry in result["tasks"].items():
        print(f"{task} ({', '.join(entry['checkpoints']) or 'no post-transition checkpoint'}): "
              f"top {entry['rate_top']['number_features']}/{entry['rate_top']['features']}, "
              f"controls {entry['rate_controls']['number_features']}/{entry['rate_controls']['features']}")
    top, controls = result["rate_top"], result["rate_controls"]
    print(f"distinct top features: {top['number_features']}/{top['features']} number features ({top['rate']:.0%}); "
          f"task-active controls: {controls['number_features']}/{controls['features']} ({controls['rate']:.0%}); "
          f"number features in the whole dictionary: {result['number_features_overall']}/{result['n_features']}; "
          f"L0 on the grammar's tokens {result['l0_grammar']}")
    ok = top["rate"] >= 0.5 and top["rate"] >= 2 * controls["rate"]
    print("PASS" if ok else "FAIL", "(at least half of the top features, and at least twice the controls' rate)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
