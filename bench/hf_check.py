#!/usr/bin/env python3
"""Checks a `physlab export-model <run> --format hf --out DIR` folder with Hugging Face transformers (issue 18).

    python3 bench/hf_check.py DIR [DIR ...] [--resave OUT]

For each DIR: loads the model with `AutoModelForCausalLM.from_pretrained(DIR)` (float32, CPU, eager attention) and
the tokenizer with `AutoTokenizer.from_pretrained(DIR)`, then
1. runs the fixed batch of `physlab_logits.safetensors` (`input_ids` in its metadata) and compares the logits with
   physlab's own: max |Δ| and max |Δ| / max |logit|, which must stay below the tolerance written there (1e-4);
2. checks the tokenizer: each prompt's text, encoded by `AutoTokenizer`, gives physlab's token ids (with the
   leading `<eot>`), and decoding them gives the text back;
3. reproduces physlab's greedy answers (`model.generate`, greedy, stopping at `<eot>`) to the same tokens, and says
   whether each is the true answer.
Prints one line of figures per folder and exits 1 if any check fails. `--resave OUT` also writes the model as
transformers saves it (`save_pretrained`), for `physlab import-model OUT` (the round trip through Python).

Written and run with torch 2.15.0 (CPU), transformers 5.24.0, tokenizers, safetensors 0.8.0, Python 3.11.
"""
import argparse
import json
import os
import sys

try:
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer
except ImportError as e:
    print(f"needs torch, transformers, safetensors: {e}", file=sys.stderr)
    sys.exit(3)


def check(folder, resave=None):
    with safe_open(os.path.join(folder, "physlab_logits.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["physlab"])
        want = f.get_tensor("logits")
    tol = meta["tolerance"]["max_abs_diff_over_max_abs_logit"]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    tok = AutoTokenizer.from_pretrained(folder)
    cfg = model.config

    ids = torch.tensor(meta["input_ids"], dtype=torch.long)
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    diff = (got - want).abs().max().item()
    scale = want.abs().max().item()
    rel = diff / scale
    same_argmax = (got.argmax(-1) == want.argmax(-1)).float().mean().item()

    ok = rel < tol
    tok_ok = True
    answers = []
    for a in meta["answers"]:
        enc = tok(a["prompt"], return_tensors="pt")
        if enc["input_ids"][0].tolist() != a["prompt_ids"]:
            tok_ok = False
            print(f"  tokenizer: {a['prompt']!r} → {enc['input_ids'][0].tolist()} ≠ physlab {a['prompt_ids']}")
        if tok.decode(a["prompt_ids"], skip_special_tokens=True) != a["prompt"]:
            tok_ok = False
            print(f"  tokenizer: decode gives {tok.decode(a['prompt_ids'], skip_special_tokens=True)!r}")
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=a["new_tokens"],
                do_sample=False,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.eos_token_id,
            )
        new = out[0, enc["input_ids"].shape[1]:].tolist()
        # physlab's generate stops before <eot>; transformers keeps the eos it stopped at.
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        text = tok.decode(new, skip_special_tokens=True)
        answers.append((new == a["physlab_ids"], text == a["true_answer"], a, text))
    reproduced = sum(r for r, _, _, _ in answers)
    correct = sum(c for _, c, _, _ in answers)
    ok = ok and tok_ok and reproduced == len(answers)
    print(
        f"{folder}: {type(model).__name__} ({cfg.model_type}), logits {tuple(want.shape)}: "
        f"max |Δ| {diff:.3g}, max |Δ|/max|logit| {rel:.3g} (tolerance {tol:g}), same argmax {same_argmax:.1%}; "
        f"tokenizer {'ok' if tok_ok else 'DIFFERS'}; greedy answers reproduced {reproduced}/{len(answers)} "
        f"({meta['answers_from']}; true answer {correct}/{len(answers)}) — {'OK' if ok else 'FAILED'}"
    )
    r, c, a, text = answers[0]
    print(f"  e.g. {a['prompt']!r} → {text!r} (true: {a['true_answer']!r})")
    if resave:
        model.save_pretrained(resave)
        tok.save_pretrained(resave)
        print(f"  saved by transformers to {resave}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--resave", help="also save_pretrained the (single) model into this folder")
    args = ap.parse_args()
    torch.manual_seed(0)
    oks = [check(d, args.resave if len(args.dirs) == 1 else None) for d in args.dirs]
    sys.exit(0 if all(oks) else 1)


if __name__ == "__main__":
    main()
