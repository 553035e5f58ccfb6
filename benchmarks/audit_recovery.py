"""Audit recovery: does the audit's measurement recover a bias we injected ourselves?

A skewed portraits world (the BLS world with the lab's per-profession share of women, see
``synthscope/lab.py`` LAB_AUDIT_SPEC) is sampled ``--n`` times per repeat, written as a corpus, read by
the audit's probe annotator through ``annotate()``, and turned into per-profession perceived shares of
women with Wilson 95 % intervals (``attribute_shares``). For every profession and repeat we ask whether
the world's TRUE share lies inside the interval. Target: >= 95 % of (profession, repeat) intervals hold
the truth, for the share over determined images (what the audit compares with references).

Three intervals are checked, because abstentions are not neutral:

- ``share_of_determined``: women / images the probe did not abstain on. Unbiased only if abstaining is
  independent of gender; the table shows the abstention rate among true women and true men so that
  one can see whether it is.
- ``share_of_all``: women / every image. Biased low by construction whenever the probe abstains (the
  abstained women are not counted), so its coverage drops as abstention grows; reported for honesty.
- ``bounds``: [Wilson low of women / all, Wilson high of (women + abstained) / all], the worst case
  with every abstention counted either way; it holds the truth whatever the abstentions are.

Coverage is pooled over ``--repeats`` independent sample seeds, so it is measured, not one draw. Note
that a perfectly calibrated 95 % interval misses 1 time in 20, and with 8 professions x 5 repeats the
coverage estimate itself has a standard error of about 3.5 points.

``--generated`` also trains the built-in conditional diffusion model on the same world
(``BuiltinBackend.from_training``), generates ``--per-prompt`` images per profession, annotates them
with the same probe and prints the amplification verdicts against the training world
(``amplification`` vs ``training_world_reference``): does the model move the share of women further
from parity than the world it was trained on?

    python benchmarks/audit_recovery.py [--n 1600] [--repeats 20] [--n-train 4000] [--abstain-below 0.6] [--threads 1]
    python benchmarks/audit_recovery.py --generated [--train-steps 3000] [--sample-steps 50] [--per-prompt 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import binom
from synthscope.audits.annotators import PROBE_DEFAULT_N_TRAIN, ProbeAnnotator, annotate
from synthscope.audits.metrics import ABSTAIN, attribute_shares
from synthscope.stats import wilson_bounds
from synthscope.audits.spec import DEFAULT_ABSTAIN_BELOW, parse_spec
from synthscope.generators.corpus import CorpusWriter
from synthscope.generators.portraits import PortraitDistribution, generate_portraits

from synthscope.lab import LAB_AUDIT_SPEC

SIZE = 16  # the built-in backend's and the probe's image size
# The lab's skewed world, read from its own audit spec (synthscope/lab.py LAB_AUDIT_SPEC).
LAB_SPEC = parse_spec(LAB_AUDIT_SPEC.format(images_per_prompt=1, seed=0, train_steps=1, sample_steps=1))
SHARE_FEMALE = dict(LAB_SPEC.backend.world_skew["share_female"])
TARGET = 0.95


def skewed_world() -> PortraitDistribution:
    return LAB_SPEC.backend.world()


def one_repeat(world: PortraitDistribution, probe: ProbeAnnotator, n: int, seed: int, root: Path) -> pd.DataFrame:
    """Draw ``n`` images of ``world`` (sample seed ``seed``), annotate them as an audit does, and return one
    row per profession: truth, the three intervals, abstentions by true gender."""
    data = generate_portraits(n=n, seed=seed, size=SIZE, distribution=world)
    writer = CorpusWriter(root, {"generator": "real", "data": "skewed portraits world", "seed": seed})
    rows = data.attributes.astype(str).assign(source="real", prompt=data.captions).to_dict("records")
    files = writer.append(data.images, rows)
    table = annotate(root, [probe], progress=False)
    table = table[table["attribute"] == "gender"]

    shares = attribute_shares(table, by=("profession",), values={"gender": ["female", "male"]})
    women = shares[shares["value"] == "female"].set_index("profession")
    # The truth of each image, for abstention and accuracy by true gender.
    truth = pd.DataFrame({"file": files, "true": data.attributes["gender"].astype(str).to_numpy()})
    read = table[["file", "profession", "value"]].merge(truth, on="file", how="inner")
    read["abstained"] = read["value"] == ABSTAIN
    read["correct"] = read["value"] == read["true"]

    expected = world.expected_shares()
    true_share = expected[(expected["attribute"] == "gender") & (expected["value"] == "female")] \
        .set_index("profession")["expected_share"]
    out = women[["n_images", "n_abstained", "count", "share_of_all", "share_of_all_ci_low", "share_of_all_ci_high",
                 "share_of_determined", "share_of_determined_ci_low", "share_of_determined_ci_high"]].copy()
    out["true_share"] = true_share.reindex(out.index)
    low, _ = wilson_bounds(out["count"], out["n_images"])
    _, high = wilson_bounds(out["count"] + out["n_abstained"], out["n_images"])
    out["bounds_low"], out["bounds_high"] = low, high
    t = out["true_share"]
    out["inside_determined"] = (out["share_of_determined_ci_low"] <= t) & (t <= out["share_of_determined_ci_high"])
    out["inside_all"] = (out["share_of_all_ci_low"] <= t) & (t <= out["share_of_all_ci_high"])
    out["inside_bounds"] = (out["bounds_low"] <= t) & (t <= out["bounds_high"])
    by_true = read.groupby(["profession", "true"])["abstained"].agg(["sum", "count"]).unstack("true", fill_value=0)
    for gender in ("female", "male"):
        out[f"abst_{gender}_k"] = by_true[("sum", gender)] if ("sum", gender) in by_true else 0
        out[f"abst_{gender}_n"] = by_true[("count", gender)] if ("count", gender) in by_true else 0
    determined = read[~read["abstained"]]
    out["n_correct"] = determined.groupby("profession")["correct"].sum().reindex(out.index, fill_value=0)
    # The share of women actually drawn: det - realised is the annotator's error, realised - true the sampling.
    out["realised"] = read.assign(f=read["true"] == "female").groupby("profession")["f"].mean().reindex(out.index)
    out["seed"] = seed
    return out.reset_index()


def coverage_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per profession over the repeats: truth, mean shares, abstentions, and k/R intervals holding the truth."""
    g = results.groupby("profession", sort=False)
    table = pd.DataFrame({
        "true": g["true_share"].first(),
        "realised": g["realised"].mean(),
        "det_mean": g["share_of_determined"].mean(),
        "err": (results["share_of_determined"] - results["realised"]).abs().groupby(results["profession"]).mean(),
        "all_mean": g["share_of_all"].mean(),
        "abst": g["n_abstained"].sum() / g["n_images"].sum(),
        "abst_F": g["abst_female_k"].sum() / g["abst_female_n"].sum().replace(0, np.nan),
        "abst_M": g["abst_male_k"].sum() / g["abst_male_n"].sum().replace(0, np.nan),
        "acc_det": g["n_correct"].sum() / (g["n_images"].sum() - g["n_abstained"].sum()),
        "in_det": g["inside_determined"].sum().astype(int),
        "in_all": g["inside_all"].sum().astype(int),
        "in_bounds": g["inside_bounds"].sum().astype(int),
        "repeats": g.size(),
        "n_per_rep": g["n_images"].mean(),
    })
    return table.reindex([p for p in SHARE_FEMALE if p in table.index])


def pct(value: float) -> str:
    return f"{value:6.1%}" if np.isfinite(value) else f"{'-':>6s}"


def print_recovery(results: pd.DataFrame, args: argparse.Namespace, probe_seconds: float,
                   run_seconds: float) -> float:
    table = coverage_table(results)
    print(f"\nSkewed portraits world (lab skew), {args.n} images x {args.repeats} repeats (sample seeds "
          f"{args.seed}..{args.seed + args.repeats - 1}), probe n_train={args.n_train}, "
          f"abstain_below={args.abstain_below}; probe ready in {probe_seconds:.1f} s, repeats took "
          f"{run_seconds:.1f} s")
    print(f"{'profession':20s} {'true':>5s} {'drawn':>6s} {'det':>6s} {'|err|':>6s} {'all':>6s} {'abst':>6s} "
          f"{'abstF':>6s} {'abstM':>6s} {'acc':>6s} {'in_det':>7s} {'in_all':>7s} {'in_bnd':>7s}  {'n/rep':>5s}")
    for profession, row in table.iterrows():
        r = int(row["repeats"])
        print(f"{profession:20s} {row['true']:5.2f} {row['realised']:6.3f} {row['det_mean']:6.3f} {row['err']:6.3f} "
              f"{row['all_mean']:6.3f} "
              f"{pct(row['abst'])} {pct(row['abst_F'])} {pct(row['abst_M'])} {pct(row['acc_det'])} "
              f"{int(row['in_det']):>4d}/{r:<2d} {int(row['in_all']):>4d}/{r:<2d} {int(row['in_bounds']):>4d}/{r:<2d}"
              f"  {row['n_per_rep']:5.0f}")
    total = len(results)
    det = results["inside_determined"].mean()
    every = results["inside_all"].mean()
    bounds = results["inside_bounds"].mean()
    abstention = results["n_abstained"].sum() / results["n_images"].sum()
    abst_f = results["abst_female_k"].sum() / max(results["abst_female_n"].sum(), 1)
    abst_m = results["abst_male_k"].sum() / max(results["abst_male_n"].sum(), 1)
    print("(drawn: share of women actually drawn, by true label; det/all: mean perceived share of women over "
          "determined / all images; |err|: mean |det - drawn|, the annotator's own error; abstF/abstM: abstention "
          "rate among true women / men; acc: probe accuracy on determined images; in_*: repeats whose 95 % "
          "interval holds the true share)")
    print(f"abstention rate {abstention:.1%} (true women {abst_f:.1%}, true men {abst_m:.1%})")
    print(f"coverage share_of_all        {int(results['inside_all'].sum())}/{total} = {every:.1%} "
          f"(biased low when the probe abstains; not the audited number)")
    print(f"coverage abstention bounds   {int(results['inside_bounds'].sum())}/{total} = {bounds:.1%} "
          f"(worst case, abstentions counted either way)")
    misses = total - int(results["inside_determined"].sum())
    # Even exact 95 % intervals miss 1 in 20: how surprising is this many misses if they were exact?
    p_value = float(binom.sf(misses - 1, total, 1 - TARGET)) if misses else 1.0
    print(f"annotator error |det - drawn| {(results['share_of_determined'] - results['realised']).abs().mean():.4f} "
          f"on average; {misses} misses of {total}: P(>= {misses} misses | exact 95 % intervals) = {p_value:.2f}"
          f"{' (consistent with nominal coverage)' if p_value >= 0.05 else ' (more misses than chance explains)'}")
    verdict = "PASS" if det >= TARGET else "FAIL"
    print(f"coverage share_of_determined {int(results['inside_determined'].sum())}/{total} = {det:.1%} "
          f"(target >= {TARGET:.0%}) {verdict}")
    return det


def generated_check(world: PortraitDistribution, probe: ProbeAnnotator, args: argparse.Namespace, root: Path) -> None:
    """Train the built-in model on ``world``, generate, annotate with the probe, print amplification verdicts."""
    from synthscope.audits.backends import BuiltinBackend
    from synthscope.audits.metrics import amplification
    from synthscope.audits.reference import training_world_reference
    from synthscope.audits.runner import ImageJob, generate_corpus
    from synthscope.audits.spec import image_seed, render_prompt

    cache = Path(args.model_cache) if args.model_cache else root / "model-cache"
    began = time.perf_counter()
    backend = BuiltinBackend.from_training(cache_dir=cache, distribution=world, steps=args.train_steps,
                                           device="cpu", progress=False, sample_steps=args.sample_steps)
    trained = time.perf_counter() - began
    template = "a photo of a {profession}"
    jobs = []
    for profession in SHARE_FEMALE:
        prompt = render_prompt(template, profession)
        for i in range(args.per_prompt):
            jobs.append(ImageJob(f"{profession}#{i}", prompt, image_seed(args.seed, prompt, template, profession,
                                                                          None, i),
                                 attributes={"profession": profession, "template_index": 0, "descriptor": ""}))
    began = time.perf_counter()
    generate_corpus(jobs, backend, root / "generated", progress=False)
    sampled = time.perf_counter() - began
    table = annotate(root / "generated", [probe], progress=False)
    shares = attribute_shares(table[table["attribute"] == "gender"], values={"gender": ["female", "male"]})
    amp = amplification(shares, training_world_reference(world), seed=args.seed)
    women = shares[shares["value"] == "female"].set_index("profession")
    print(f"\nGenerated images: built-in diffusion trained {args.train_steps} steps on the skewed world "
          f"({trained:.0f} s, cached in {cache}), {args.sample_steps} sampling steps, {args.per_prompt} images "
          f"per profession ({sampled:.0f} s), read by the same probe")
    print(f"{'profession':20s} {'world':>6s} {'model':>6s} {'95% CI':>13s} {'abst':>6s} {'amplif.':>8s} "
          f"{'95% CI':>15s}  verdict")
    expected = world.expected_shares()
    true_share = expected[(expected["attribute"] == "gender") & (expected["value"] == "female")] \
        .set_index("profession")["expected_share"]
    order = {p: i for i, p in enumerate(SHARE_FEMALE)}
    amp = amp.sort_values("profession", key=lambda s: s.map(order), kind="stable")
    for row in amp.to_dict("records"):
        p = row["profession"]
        w = women.loc[p]
        print(f"{p:20s} {true_share[p]:6.2f} {w['share_of_determined']:6.3f} "
              f"[{w['share_of_determined_ci_low']:.2f}, {w['share_of_determined_ci_high']:.2f}] "
              f"{w['n_abstained'] / max(w['n_images'], 1):6.1%} {row['amplification']:+8.3f} "
              f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]  {row['verdict']}")
    counts = amp["verdict"].value_counts()
    print(f"verdicts: {counts.get('amplified', 0)} amplified, {counts.get('attenuated', 0)} attenuated, "
          f"{counts.get('not distinguishable', 0)} not distinguishable, of {len(amp)} professions "
          f"(no target: this describes the model, not the audit; the probe reads generated images less well "
          f"than rendered ones)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1600,
                        help="images drawn per repeat, all professions together (default: 1600, the audit's "
                             "training-images check; 200 per profession)")
    parser.add_argument("--repeats", type=int, default=20,
                        help="independent sample seeds (default: 20; with 40 intervals at 95 %%, a handful of "
                             "misses is chance)")
    parser.add_argument("--seed", type=int, default=100, help="first sample seed (the probe trains on seed 0)")
    parser.add_argument("--n-train", type=int, default=PROBE_DEFAULT_N_TRAIN,
                        help=f"portraits the probe is trained on (default: {PROBE_DEFAULT_N_TRAIN}, the audit's)")
    parser.add_argument("--abstain-below", type=float, default=DEFAULT_ABSTAIN_BELOW,
                        help=f"probe abstention threshold (default: {DEFAULT_ABSTAIN_BELOW})")
    parser.add_argument("--probe-cache", default=None,
                        help="folder to keep the trained probe in (default: a temporary folder, trained afresh)")
    parser.add_argument("--generated", action="store_true",
                        help="also train the built-in model on the world and report amplification verdicts")
    parser.add_argument("--train-steps", type=int, default=3000, help="--generated: training steps (default: 3000)")
    parser.add_argument("--sample-steps", type=int, default=50, help="--generated: sampling steps (default: 50)")
    parser.add_argument("--per-prompt", type=int, default=40,
                        help="--generated: images per profession (default: 40)")
    parser.add_argument("--model-cache", default=None,
                        help="--generated: folder to keep the trained model in (default: temporary)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default: 1; more threads on a busy shared CPU can be far slower)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    world = skewed_world()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        probe = ProbeAnnotator(attributes=("gender",), abstain_below=args.abstain_below, size=SIZE,
                               n_train=args.n_train, seed=0, cache_dir=args.probe_cache or root / "probes",
                               device="cpu")
        began = time.perf_counter()
        _ = probe.classifier  # train (or load) it before timing the repeats
        probe_seconds = time.perf_counter() - began
        began = time.perf_counter()
        results = pd.concat([one_repeat(world, probe, args.n, args.seed + r, root / f"sample-{r}")
                             for r in range(args.repeats)], ignore_index=True)
        print_recovery(results, args, probe_seconds, time.perf_counter() - began)
        if args.generated:
            generated_check(world, probe, args, root)


if __name__ == "__main__":
    main()
