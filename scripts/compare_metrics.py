#!/usr/bin/env python3
"""Compares the loss curves of two physlab runs (metrics.jsonl, last line per step) and prints throughput and
MFU of each. Exit status 1 when a logged loss differs by more than the relative tolerance.

MFU = tokens/s × training FLOPs per token (the run manifest's model shape, as `GptShape::flops_per_token`:
6 × matmul parameters + 12·ℓ·T·d) / peak FLOP/s. Standard library only."""
import argparse
import json
import sys
from pathlib import Path


def metrics(run):
    by_step = {}
    for line in (Path(run) / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        by_step[m["step"]] = m
    return [by_step[k] for k in sorted(by_step)]


def flops_per_token(run):
    shape = json.loads((Path(run) / "manifest.json").read_text())["model_shape"]
    d, layers, vocab, ctx = shape["d_model"], shape["n_layer"], shape["vocab_size"], shape["context"]
    ffn = shape["arch"]["ffn"]
    if ffn == "none":
        f = 0
    else:
        (kind, p), = ffn.items()
        f = {"gelu": 2 * d * p["hidden"], "swi_glu": 3 * d * p["hidden"]}.get(kind)
        if f is None:  # moe: one expert and the router
            f = 2 * d * p["hidden"] + d * p["experts"]
    return 6 * (layers * (4 * d * d + f) + vocab * d) + 12 * layers * ctx * d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("reference")
    ap.add_argument("other")
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    a = ap.parse_args()
    ref, oth = metrics(a.reference), metrics(a.other)
    worst = 0.0
    for r, o in zip(ref, oth):
        if r["step"] != o["step"]:
            sys.exit(f"steps differ: {r['step']} vs {o['step']}")
        rel = abs(r["loss"] - o["loss"]) / r["loss"]
        worst = max(worst, rel)
        print(f"step {r['step']:>6}  loss {r['loss']:.4f}  vs {o['loss']:.4f}  ({100 * rel:.2f}%)")
    for name, run, m in (("reference", a.reference, ref), ("other", a.other, oth)):
        tps = m[-1]["tokens_per_s"]
        mfu = tps * flops_per_token(run) / (a.peak_tflops * 1e12)
        print(f"{name}: {tps:,.0f} tokens/s, MFU {100 * mfu:.2f}% of {a.peak_tflops} TFLOP/s ({run})")
    print(f"largest relative loss difference {100 * worst:.2f}% (tolerance {100 * a.tolerance:.1f}%)")
    sys.exit(0 if worst <= a.tolerance else 1)


if __name__ == "__main__":
    main()
