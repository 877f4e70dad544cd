#!/usr/bin/env python3
"""Reads what scripts/gpu-check.sh produced in OUT and writes OUT/gpu-check.json: each comparison with its
measured difference and its tolerance, the GPU bench (tokens/s, MFU, the PyTorch ratio), and each step's exit
status. Exit status 1 when a comparison is outside its tolerance or a run is missing. Standard library only.

The tolerances, fixed before the first GPU run (issue 15), relative to the reference's value:
- the same CPU-trained f32 weights evaluated on CUDA and on CPU: bits, p1 and p2 within 1e-4 (only the order of
  f32 sums differs; a bf16 logit would move p2 by ~1e-2);
- training in f32 on CUDA against f32 on CPU: bits within 2%, every logged loss within 1% (two f32 runs drift
  apart only through the order of sums over 300 steps);
- bf16-mixed on CUDA against bf16-mixed on CPU (the same arithmetic: bf16 products, f32 everything else): bits
  within 2%, every logged loss within 1%;
- bf16-mixed on CUDA against f32 on CPU: bits within 3%, every logged loss within 2%;
- bf16-mixed on CUDA with burn-cuda's fusion (a `--features cuda-fusion` build) against bf16-mixed on CPU: as
  without fusion.
Loss curves must have the same logged steps: a shorter curve is a failure, never truncated."""
import argparse
import glob
import json
import os
import sys


def run_dir(out, name):
    hits = sorted(glob.glob(os.path.join(out, name, "gpu-check", "*", "s0")))
    return hits[0] if hits else None


def load_run(out, name):
    d = run_dir(out, name)
    if d is None or not os.path.exists(os.path.join(d, "eval.json")):
        return None
    ev = json.load(open(os.path.join(d, "eval.json")))
    by_step = {}
    path = os.path.join(d, "metrics.jsonl")
    if os.path.exists(path):
        for line in open(path):
            m = json.loads(line)
            by_step[m["step"]] = m
    curve = [by_step[k] for k in sorted(by_step)]
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    b = ev["bios"]
    return {
        "dir": d,
        "backend": manifest.get("backend"),
        "precision": manifest.get("precision"),
        "bits": b["bits"],
        "p1": b["loss_name"],
        "p2": b["loss_value"],
        "curve": [(m["step"], m["loss"]) for m in curve],
        "tokens_per_s": curve[-1]["tokens_per_s"] if curve else None,
        "train_wall_s": ev.get("train", {}).get("wall_s"),
    }


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def compare(name, other, ref, bits_tol, loss_tol=None, eval_only=False):
    c = {"comparison": name, "tolerance_bits": bits_tol, "ok": False}
    if other is None or ref is None:
        c["error"] = "a run is missing (see steps.jsonl and the logs)"
        return c
    c["bits"] = [other["bits"], ref["bits"]]
    c["rel_bits"] = rel(other["bits"], ref["bits"])
    ok = c["rel_bits"] <= bits_tol
    if eval_only:
        c["p1"], c["p2"] = [other["p1"], ref["p1"]], [other["p2"], ref["p2"]]
        c["rel_p1"], c["rel_p2"] = rel(other["p1"], ref["p1"]), rel(other["p2"], ref["p2"])
        ok = ok and c["rel_p1"] <= bits_tol and c["rel_p2"] <= bits_tol
    if loss_tol is not None:
        c["tolerance_loss"] = loss_tol
        steps_o = [s for s, _ in other["curve"]]
        steps_r = [s for s, _ in ref["curve"]]
        if steps_o != steps_r:
            c["error"] = f"logged steps differ: {len(steps_o)} vs {len(steps_r)} lines"
            ok = False
        else:
            diffs = [rel(lo, lr) for (_, lo), (_, lr) in zip(other["curve"], ref["curve"])]
            c["max_rel_loss"] = max(diffs) if diffs else None
            c["final_loss"] = [other["curve"][-1][1], ref["curve"][-1][1]]
            ok = ok and bool(diffs) and max(diffs) <= loss_tol
    c["ok"] = ok
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    a = ap.parse_args()
    runs = {n: load_run(a.out, n) for n in ["cpu-f32", "cpu-bf16", "cuda-f32", "cuda-bf16", "cuda-eval",
                                            "fusion-bf16"]}
    comps = [
        compare("eval of the CPU-trained f32 weights: CUDA vs CPU", runs["cuda-eval"], runs["cpu-f32"], 1e-4,
                eval_only=True),
        compare("training in f32: CUDA vs CPU", runs["cuda-f32"], runs["cpu-f32"], 0.02, 0.01),
        compare("training in bf16-mixed: CUDA vs CPU", runs["cuda-bf16"], runs["cpu-bf16"], 0.02, 0.01),
        compare("bf16-mixed on CUDA vs f32 on CPU", runs["cuda-bf16"], runs["cpu-f32"], 0.03, 0.02),
    ]
    if runs["fusion-bf16"] is not None:
        comps.append(compare("bf16-mixed on CUDA with burn's fusion vs CPU bf16-mixed", runs["fusion-bf16"],
                             runs["cpu-bf16"], 0.02, 0.01))
    steps = []
    if os.path.exists(os.path.join(a.out, "steps.jsonl")):
        steps = [json.loads(l) for l in open(os.path.join(a.out, "steps.jsonl"))]
    bench = {}
    for name in ["bench", "bench-fusion"]:
        if os.path.exists(os.path.join(a.out, name + ".json")):
            for k, v in json.load(open(os.path.join(a.out, name + ".json"))).items():
                bench[k if name == "bench" else "fusion_" + k] = v
    gpu = open(os.path.join(a.out, "nvidia-smi.txt")).read().strip() if os.path.exists(
        os.path.join(a.out, "nvidia-smi.txt")) else None
    result = {
        "gpu": gpu,
        "steps": steps,
        "runs": {k: ({kk: vv for kk, vv in v.items() if kk != "curve"} if v else None) for k, v in runs.items()},
        "curves": {k: v["curve"] for k, v in runs.items() if v},
        "comparisons": comps,
        "bench": bench,
        "all_ok": all(c["ok"] for c in comps),
    }
    with open(os.path.join(a.out, "gpu-check.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"GPU: {gpu}")
    for c in comps:
        detail = f"bits {c.get('rel_bits', float('nan')):.2e} (tol {c['tolerance_bits']:.0e})"
        if "max_rel_loss" in c:
            detail += f", loss max {c['max_rel_loss']:.2e} (tol {c['tolerance_loss']:.0e})"
        if "rel_p2" in c:
            detail += f", p1 {c['rel_p1']:.2e}, p2 {c['rel_p2']:.2e}"
        if "error" in c:
            detail += f" [{c['error']}]"
        print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['comparison']}: {detail}")
    for k, v in runs.items():
        if v:
            print(f"run {k}: bits {v['bits']:.1f}, p1 {v['p1']:.4f}, p2 {v['p2']:.4f}, {v['tokens_per_s'] or 0:,.0f} tok/s")
    if bench:
        for k, v in bench.items():
            if isinstance(v, dict) and "mfu_percent" in v:
                r = v["result"]
                print(f"bench {k}: {r['tokens_per_s']:,.0f} tok/s, {r['ms_per_step']:.1f} ms/step, MFU {v['mfu_percent']:.1f}%"
                      + (f", burn/torch {v['ratio']:.2f}" if "ratio" in v else ""))
    print(f"wrote {os.path.join(a.out, 'gpu-check.json')}")
    sys.exit(0 if result["all_ok"] else 1)


if __name__ == "__main__":
    main()
