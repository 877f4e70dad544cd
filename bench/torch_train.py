#!/usr/bin/env python3
"""PyTorch reference for `physlab bench train --torch`: the same GPT2-rotary model as physlab's `gpt2-ℓ-h`
(pre-LayerNorm blocks, qkv and out projections with biases, GELU MLP d→4d→d, rotary GPT-NeoX style on 1/4 of each
head's dims with base 10,000, tied embedding, no dropout) and the same training step (mean token cross-entropy,
backward, global-norm clipping to 1.0, AdamW with β = (0.9, 0.98), ε = 1e-6, weight decay 0.01 on ≥2-D weights
only), in eager mode on all CPU cores. Random tokens; median step time after warm-up. Prints one JSON line.

As a PyTorch user would write it: attention by `F.scaled_dot_product_attention(is_causal=True)` (`--attention
naive` keeps the explicit softmax(q·kᵀ)·v as a second column), AdamW `fused=True` on CUDA (`foreach` elsewhere),
and on the GPU f32 parameters under `torch.autocast(dtype=torch.bfloat16)` (`--autocast bf16`: the same
precision as physlab's `bf16-mixed`; `--dtype bfloat16` is pure-bf16 parameters instead).

Exit status 3 when PyTorch is not installed (the bench then skips this side). PyTorch is never needed by the
build or the tests."""
import argparse
import json
import math
import os
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # noqa: F841
    print(f"no PyTorch: {e}", file=sys.stderr)
    sys.exit(3)


class Rope:
    def __init__(self, dims, context, base=10000.0):
        half = dims // 2
        i = torch.arange(dims)
        inv = base ** (-2.0 * (i % max(half, 1)) / max(dims, 1))
        a = torch.arange(context)[:, None] * inv[None, :]
        self.cos, self.sin, self.dims = a.cos(), a.sin(), dims

    def apply(self, x):  # [b, h, t, hd]
        if self.dims == 0:
            return x
        t = x.shape[2]
        rot, rest = x[..., : self.dims], x[..., self.dims :]
        x1, x2 = rot[..., : self.dims // 2], rot[..., self.dims // 2 :]
        rotated = torch.cat([-x2, x1], dim=-1)
        out = rot * self.cos[:t] + rotated * self.sin[:t]
        return torch.cat([out, rest], dim=-1)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.fc_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.heads = heads
        self.sdpa = True

    def forward(self, x, rope, mask):
        b, t, d = x.shape
        hd = d // self.heads
        q, k, v = self.qkv(self.ln_1(x)).view(b, t, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k = rope.apply(q).to(v.dtype), rope.apply(k).to(v.dtype)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
            att = att.masked_fill(mask[:t, :t], float("-inf")).softmax(-1)
            y = att @ v
        y = y.transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.fc_proj(F.gelu(self.fc(self.ln_2(x))))


class Gpt(nn.Module):
    def __init__(self, layers, heads, d, vocab, context):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        hd = d // heads
        r = round(hd * 0.25)
        self.rope = Rope(r - r % 2, context)
        self.mask = torch.triu(torch.ones(context, context, dtype=torch.bool), 1)

    def forward(self, idx):
        x = self.wte(idx)
        for blk in self.blocks:
            x = blk(x, self.rope, self.mask)
        return self.ln_f(x) @ self.wte.weight.t()


def main():
    ap = argparse.ArgumentParser()
    for k in ["layers", "heads", "d-model", "vocab", "context", "batch", "steps", "warmup", "expect-params"]:
        ap.add_argument(f"--{k}", type=int, required=k != "expect-params", default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtype", default="float32", help="parameters' dtype: float32 or bfloat16 (pure bf16)")
    ap.add_argument("--autocast", default="none", help="none or bf16: torch.autocast(bfloat16) around the forward")
    ap.add_argument("--attention", default="sdpa", help="sdpa (scaled_dot_product_attention) or naive")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    device, dtype = torch.device(a.device), getattr(torch, a.dtype)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: PyTorch sees no CUDA device")
    model = Gpt(a.layers, a.heads, a.d_model, a.vocab, a.context)
    params = sum(p.numel() for p in model.parameters())
    if a.expect_params and params != a.expect_params:
        sys.exit(f"parameter count {params} differs from physlab's {a.expect_params}: not the same model")
    for blk in model.blocks:
        blk.sdpa = a.attention == "sdpa"
    model = model.to(device=device, dtype=dtype)
    model.rope.cos, model.rope.sin = model.rope.cos.to(device, dtype), model.rope.sin.to(device, dtype)
    model.mask = model.mask.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
        lr=1e-4, betas=(0.9, 0.98), eps=1e-6,
        **({"fused": True} if device.type == "cuda" else {"foreach": True}),
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.autocast == "bf16")
    times = []
    for i in range(a.warmup + a.steps):
        x = torch.randint(0, a.vocab, (a.batch, a.context), device=device)
        y = torch.randint(0, a.vocab, (a.batch, a.context), device=device)
        sync()
        t0 = time.perf_counter()
        with autocast:
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, a.vocab), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    print(json.dumps({
        "params": params,
        "ms_per_step": 1000 * s,
        "tokens_per_s": a.batch * a.context / s,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "dtype": a.dtype,
        "autocast": a.autocast,
        "attention": a.attention,
        "optimizer": "AdamW fused" if device.type == "cuda" else "AdamW foreach",
    }))


if __name__ == "__main__":
    main()
