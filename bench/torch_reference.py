#!/usr/bin/env python3
"""Independent PyTorch reference for the mathematics of physlab's model zoo (as llm.c checks its C model against
PyTorch): for a tiny model of each family — gpt2, gpt2abs, gpt2mlp1, gpt2mlp0, llama, moe — fixed seeded weights
and tokens, it writes the weights (in physlab's parameter names and burn's layouts), the tokens and targets, the
logits, the mean loss and the gradient of the loss with respect to every parameter into
`trainer/tests/fixtures/reference/<family>.safetensors`, which `trainer/tests/reference.rs` checks physlab against
(PyTorch is not needed to run that test).

Regenerate (from the repository root):

    pip install torch safetensors numpy
    python3 bench/torch_reference.py                 # writes trainer/tests/fixtures/reference/*.safetensors
    python3 bench/torch_reference.py --sensitivity   # how far plausible mistakes move the outputs (writes nothing)

Written and run with torch 2.15.0 (the PyPI wheel, run on the CPU), numpy 2.4, safetensors 0.8.0 (only to check the
files written; the script writes the format itself, so that regenerating gives byte-identical files), Python 3.11;
the torch version that wrote a file is in its metadata (`torch`).

Precision: the weights are drawn in float64 and rounded to bfloat16 values (exact in float32: physlab loads them
without rounding; stored as BF16 the six files take 0.9 MB instead of 1.2), then everything is computed in
**float64** from them, so the reference carries no float32 rounding of its own; the logits and gradients are stored
as float32 (a relative rounding of 6e-8, far below the test's tolerances), the losses as float64.

The models are written from the mathematics of physlab's `trainer/src/model.rs`, `layers.rs` and `moe.rs`, not
ported from them:
- Pre-norm decoder blocks x += attn(norm₁(x)); x += ffn(norm₂(x)); a final norm; the output layer is the token
  embedding transposed (tied, no bias) except for llama (a separate bias-free Linear d→V).
- LayerNorm with ε = 1e-5 (gain and bias); llama: RMSNorm x/√(mean x² + 1e-5)·g, no bias.
- Attention: one qkv Linear d→3d (columns: q, k, v, each heads × head_dim), causal softmax(q·kᵀ/√head_dim), an
  output Linear d→d. Rotary position embedding GPT-NeoX style ("rotate half") on the first
  r = round(head_dim · rotary_fraction) (made even) dims of each head of q and k, frequencies
  base^(−2j/r), j < r/2, base 10 000; gpt2abs instead adds a learned position embedding [context, d] to the token
  embedding and has no rotary.
- Feed-forward: GELU (erf form) MLP d→4d→d (gpt2, gpt2abs), d→d→d (gpt2mlp1), none and no second norm
  (gpt2mlp0), SwiGLU down(silu(gate x) ⊙ up x) with hidden ⌈(8d/3)/16⌉·16 and no biases (llama).
- GPT-2 families use biases in every Linear; llama uses none.
- moe: top-1 (Switch) mixture of `experts` GELU MLPs d→d→d behind a bias-free router Linear d→E; a token goes to
  its argmax expert, whose output is scaled by that expert's softmax probability; an expert takes at most
  capacity = ⌈capacity_factor · (batch·T) / E⌉ tokens, the first ones in batch-major order, and a token beyond
  capacity skips the feed-forward part (its residual carries it). Load-balancing loss per layer
  E · Σ_e f_e · P_e, f_e the share of tokens whose argmax is e (dropped ones included; a constant) and P_e the mean
  router probability; the trained loss is mean cross-entropy + router_aux_weight · Σ_layers aux. The fixture is
  chosen so that some tokens are dropped (the capacity rule is exercised), every expert keeps at least one token in
  every layer (every parameter has a gradient), and every token's top-1 probability beats its second by a margin
  far above float32 error (the routing cannot flip between float64 and physlab's float32).

Each file's tensors: the parameters under physlab's names (burn's module paths, as physlab's own
`model.safetensors` checkpoints name them, e.g. `blocks.0.ln_1.Layer.gamma`, `blocks.1.ffn.Moe.experts.2.fc.weight`;
Linear weights [in, out], embeddings [rows, d]; BF16), `grad.<name>` for each (float32), `tokens` and `targets` (int64 [B, T]),
`logits` (float32 [B, T, V]), `loss` (float64 [1], the differentiated loss), and for moe `lm_loss` and `aux_loss`.
The metadata holds the model config (`preset`, `n_layer`, `n_head`, `d_model`, `vocab_size`, `context`,
`rotary_fraction`, `rope_base`, `experts`, `capacity_factor`, `router_aux_weight`) and what the fixture exercises.
"""
import argparse
import json
import math
import os
import struct
import sys

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    print(f"needs torch (pip install torch safetensors numpy): {e}", file=sys.stderr)
    sys.exit(3)

torch.set_default_dtype(torch.float64)

LAYER_NORM_EPS = 1e-5
RMS_NORM_EPS = 1e-5

# Plausible mistakes, for `--sensitivity`: how far each moves the logits and gradients from the fixtures, i.e. whether
# the test's tolerances would see it. None is ever active when the fixtures are written.
MUTATIONS = {
    "norm_eps_1e-6": "LayerNorm/RMSNorm ε 1e-6 instead of 1e-5",
    "gelu_tanh": "tanh-approximate GELU instead of erf",
    "rope_base_x2": "rotary base 20 000 instead of 10 000",
    "rope_interleaved": "GPT-J interleaved rotary pairs instead of GPT-NeoX rotate-half",
    "rope_whole_head": "rotary on every dim of the head instead of the fraction",
    "attn_scale_1/d": "attention scores scaled by 1/d_model instead of 1/√head_dim",
    "no_qkv_bias": "qkv projection without its bias",
    "moe_no_capacity": "mixture of experts without the capacity limit (no token dropped)",
    "moe_gate_1": "expert output not scaled by its router probability",
    "moe_f_kept_only": "load-balancing f_e counting only the tokens an expert kept",
}
MUT = set()

# Tiny configs: 2 layers, d = 32, vocab 50, context 16, batch 2. The head counts and rotary fractions vary so that
# the rotary part covers several frequencies (r = 4) and both a partial head (gpt2: 4 of 16 dims) and half a head
# (gpt2mlp1: 4 of 8 dims with 4 heads).
COMMON = dict(n_layer=2, d_model=32, vocab_size=50, context=16, batch=2, rope_base=10000.0)
FAMILIES = {
    "gpt2": dict(n_head=2, rotary_fraction=0.25, seed=1),
    "gpt2abs": dict(n_head=2, rotary_fraction=0.25, seed=2),
    "gpt2mlp1": dict(n_head=4, rotary_fraction=0.5, seed=3),
    "gpt2mlp0": dict(n_head=2, rotary_fraction=0.25, seed=4),
    "llama": dict(n_head=2, rotary_fraction=0.25, seed=5),
    "moe": dict(n_head=2, rotary_fraction=0.25, seed=6, experts=4, capacity_factor=1.25, router_aux_weight=0.1),
}


def rotary_dims(head_dim, fraction):
    if "rope_whole_head" in MUT:
        return head_dim
    r = int(math.floor(head_dim * fraction + 0.5))
    return r - r % 2


# ---------------------------------------------------------------------------------------------------------------
# The model


def make_norm(family, d):
    scale = 0.1 if "norm_eps_1e-6" in MUT else 1.0
    if family == "llama":
        return nn.RMSNorm(d, eps=RMS_NORM_EPS * scale)
    return nn.LayerNorm(d, eps=LAYER_NORM_EPS * scale)


class Rotary(nn.Module):
    """GPT-NeoX rotary embedding on the first `dims` dims of each head (rotate half)."""

    def __init__(self, dims, base, context):
        super().__init__()
        self.dims = dims
        if dims:
            base = 2 * base if "rope_base_x2" in MUT else base
            inv_freq = base ** (-torch.arange(0, dims, 2, dtype=torch.float64) / dims)  # [dims/2]
            angles = torch.outer(torch.arange(context, dtype=torch.float64), inv_freq)  # [T, dims/2]
            angles = torch.cat([angles, angles], dim=-1)  # [T, dims]
            self.register_buffer("cos", angles.cos(), persistent=False)
            self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x):  # [B, heads, T, head_dim]
        if not self.dims:
            return x
        t = x.shape[-2]
        rot, rest = x[..., : self.dims], x[..., self.dims :]
        a, b = rot.chunk(2, dim=-1)
        rotated = torch.cat([-b, a], dim=-1)
        if "rope_interleaved" in MUT:  # pairs (0,1), (2,3)… rotated by the same frequencies
            cos = self.cos[:t, : self.dims // 2].repeat_interleave(2, dim=-1)
            sin = self.sin[:t, : self.dims // 2].repeat_interleave(2, dim=-1)
            pairs = torch.stack([-rot[..., 1::2], rot[..., ::2]], dim=-1).flatten(-2)
            return torch.cat([rot * cos + pairs * sin, rest], dim=-1)
        rot = rot * self.cos[:t] + rotated * self.sin[:t]
        return torch.cat([rot, rest], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, d, n_head, bias, rotary):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(d, 3 * d, bias=bias)
        self.proj = nn.Linear(d, d, bias=bias)
        self.rotary = rotary

    def forward(self, x):
        B, T, d = x.shape
        bias = None if "no_qkv_bias" in MUT else self.qkv.bias
        q, k, v = F.linear(x, self.qkv.weight, bias).split(d, dim=-1)
        heads = lambda z: z.view(B, T, self.n_head, d // self.n_head).transpose(1, 2)  # noqa: E731
        q, k, v = heads(q), heads(k), heads(v)
        q, k = self.rotary(q), self.rotary(k)
        scale = 1.0 / d if "attn_scale_1/d" in MUT else None  # None: 1/√head_dim
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        return self.proj(y.transpose(1, 2).reshape(B, T, d))


class GeluMlp(nn.Module):
    def __init__(self, d, hidden, bias=True):
        super().__init__()
        self.fc = nn.Linear(d, hidden, bias=bias)
        self.proj = nn.Linear(hidden, d, bias=bias)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh" if "gelu_tanh" in MUT else "none"))  # erf GELU


class SwiGlu(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.gate = nn.Linear(d, hidden, bias=False)
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class SwitchMoe(nn.Module):
    """Top-1 mixture of experts with a capacity per expert (Switch Transformer)."""

    def __init__(self, d, hidden, experts, capacity_factor):
        super().__init__()
        self.router = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(GeluMlp(d, hidden) for _ in range(experts))
        self.capacity_factor = capacity_factor
        self.stats = None

    def forward(self, x):
        B, T, d = x.shape
        E = len(self.experts)
        tokens = x.reshape(B * T, d)
        n = tokens.shape[0]
        probs = F.softmax(self.router(tokens), dim=-1)  # [n, E]
        gate, choice = probs.max(dim=-1)
        onehot = F.one_hot(choice, E).to(x.dtype)  # [n, E]
        capacity = math.ceil(self.capacity_factor * n / E)
        # 0-based place of each token in its expert's queue (batch-major order); the first `capacity` are kept.
        place = ((onehot.cumsum(dim=0) - 1.0) * onehot).sum(dim=-1)
        kept = place < capacity if "moe_no_capacity" not in MUT else torch.ones_like(place, dtype=torch.bool)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            sel = (choice == e) & kept
            if sel.any():
                out[sel] = expert(tokens[sel]) * (1.0 if "moe_gate_1" in MUT else gate[sel, None])
        if "moe_f_kept_only" in MUT:
            onehot = onehot * kept[:, None]
        f = onehot.mean(dim=0)  # share of tokens routed (argmax) to each expert, dropped ones included
        P = probs.mean(dim=0)
        aux = E * (f * P).sum()
        top2 = probs.detach().topk(2, dim=-1).values
        self.stats = dict(
            routed=onehot.sum(0).long().tolist(),
            kept=[int(((choice == e) & kept).sum()) for e in range(E)],
            dropped=int((~kept).sum()),
            capacity=capacity,
            margin=float((top2[:, 0] - top2[:, 1]).min()),
        )
        return out.view(B, T, d), aux


class Block(nn.Module):
    def __init__(self, cfg, family, rotary):
        super().__init__()
        d = cfg["d_model"]
        norm = lambda: make_norm(family, d)  # noqa: E731
        self.ln_1 = norm()
        self.attn = CausalSelfAttention(d, cfg["n_head"], bias=family != "llama", rotary=rotary)
        if family in ("gpt2", "gpt2abs"):
            self.ffn = GeluMlp(d, 4 * d)
        elif family == "gpt2mlp1":
            self.ffn = GeluMlp(d, d)
        elif family == "llama":
            self.ffn = SwiGlu(d, -(-(8 * d // 3) // 16) * 16)
        elif family == "moe":
            self.ffn = SwitchMoe(d, d, cfg["experts"], cfg["capacity_factor"])
        else:  # gpt2mlp0: attention only
            self.ffn = None
        self.ln_2 = norm() if self.ffn is not None else None

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        aux = None
        if self.ffn is not None:
            y = self.ffn(self.ln_2(x))
            if isinstance(y, tuple):
                y, aux = y
            x = x + y
        return x, aux


class Gpt(nn.Module):
    def __init__(self, cfg, family):
        super().__init__()
        d, V, T = cfg["d_model"], cfg["vocab_size"], cfg["context"]
        self.wte = nn.Embedding(V, d)
        self.wpe = nn.Embedding(T, d) if family == "gpt2abs" else None
        rot = 0 if family == "gpt2abs" else rotary_dims(d // cfg["n_head"], cfg["rotary_fraction"])
        rotary = Rotary(rot, cfg["rope_base"], T)
        self.blocks = nn.ModuleList(Block(cfg, family, rotary) for _ in range(cfg["n_layer"]))
        self.ln_f = make_norm(family, d)
        self.lm_head = nn.Linear(d, V, bias=False) if family == "llama" else None  # else tied to wte

    def forward(self, tokens):
        x = self.wte(tokens)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(tokens.shape[1]))
        aux = []
        for block in self.blocks:
            x, a = block(x)
            if a is not None:
                aux.append(a)
        x = self.ln_f(x)
        logits = self.lm_head(x) if self.lm_head is not None else x @ self.wte.weight.T
        return logits, (torch.stack(aux).sum() if aux else None)


# ---------------------------------------------------------------------------------------------------------------
# Weights, names and layouts


def init_weights(model, gen):
    """Seeded weights of a non-trivial scale (attention far from uniform, norms' gains and biases away from 1 and
    0), rounded to bfloat16 values: stored as BF16 they take half the room of float32, and physlab widens them to
    float32 exactly."""
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        owner = model.get_submodule(name.rsplit(".", 1)[0])
        z = torch.randn(p.shape, generator=gen)
        if isinstance(owner, (nn.LayerNorm, nn.RMSNorm)):
            v = 1.0 + 0.2 * z if leaf == "weight" else 0.1 * z
        elif isinstance(owner, nn.Embedding):
            v = 0.1 * z  # small: the first LayerNorm input has variance 0.01, so its ε = 1e-5 shows (5e-4)
        elif leaf == "bias":
            v = 0.1 * z
        else:  # Linear weight [out, in]
            fan_in = p.shape[1]
            gain = 1.5 if name.endswith("qkv.weight") else 2.0 if name.endswith("router.weight") else 1.0
            v = gain / math.sqrt(fan_in) * z
        with torch.no_grad():
            p.copy_(v.bfloat16().double())  # exactly representable in bfloat16 (and so in float32)


def physlab_name(name, family):
    """burn's module path of a PyTorch parameter: enum variants appear in the path (`Layer`, `Rms` for the norms;
    `Gelu`, `SwiGlu`, `Moe` for the feed-forward part); LayerNorm's weight/bias are gamma/beta."""
    parts = name.split(".")
    leaf, path = parts[-1], parts[:-1]
    if path[-1] in ("ln_1", "ln_2", "ln_f"):
        variant = "Rms" if family == "llama" else "Layer"
        return ".".join(path + [variant, {"weight": "gamma", "bias": "beta"}[leaf]])
    if "ffn" in path:
        i = path.index("ffn")
        variant = {"llama": "SwiGlu", "moe": "Moe"}.get(family, "Gelu")
        path = path[: i + 1] + [variant] + path[i + 1 :]
    return ".".join(path + [leaf])


def burn_layout(name, t):
    """burn's Linear weight is [in, out] (PyTorch's transposed); embeddings, biases and gains are unchanged."""
    return t.T.contiguous() if name.endswith(".weight") and t.dim() == 2 and not name.startswith(("wte", "wpe")) else t


def compute(family):
    """The family's model with its seeded weights, tokens and targets, after forward and backward."""
    cfg = dict(COMMON, **FAMILIES[family])
    gen = torch.Generator().manual_seed(cfg["seed"])
    model = Gpt(cfg, family)
    init_weights(model, gen)
    B, T, V = cfg["batch"], cfg["context"], cfg["vocab_size"]
    seq = torch.randint(V, (B, T + 1), generator=gen)
    tokens, targets = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()

    logits, aux = model(tokens)
    lm_loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss = lm_loss + cfg["router_aux_weight"] * aux if aux is not None else lm_loss
    loss.backward()
    return cfg, model, tokens, targets, logits, lm_loss, aux, loss


SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.bfloat16: "BF16"}


def save_safetensors(path, tensors, metadata):
    """Writes the safetensors format (8-byte little-endian header length, JSON header, raw little-endian data) with
    the names and metadata in sorted order, so that regenerating gives byte-identical files (the `safetensors`
    package writes its metadata in hash order). Checked against `safetensors` when it is installed."""
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        dtype = SAFETENSORS_DTYPES[t.dtype]
        # Raw bytes (numpy has no bfloat16); this machine and the format are little-endian.
        assert sys.byteorder == "little"
        blob = t.view(torch.uint8).numpy().tobytes() if t.dim() else t.reshape(1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    try:
        from safetensors.torch import load_file
    except ImportError:
        return
    back = load_file(path)
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k].detach()) for k in tensors), path


def build(family, out_dir, check_only=False):
    cfg, model, tokens, targets, logits, lm_loss, aux, loss = compute(family)
    B, T, V = cfg["batch"], cfg["context"], cfg["vocab_size"]
    meta = {
        "family": family,
        "preset": f"{family}-{cfg['n_layer']}-{cfg['n_head']}",
        "n_layer": str(cfg["n_layer"]),
        "n_head": str(cfg["n_head"]),
        "d_model": str(cfg["d_model"]),
        "vocab_size": str(V),
        "context": str(T),
        "batch": str(B),
        "rotary_fraction": repr(cfg["rotary_fraction"]),
        "rope_base": repr(cfg["rope_base"]),
        "rotary_dims": str(0 if family == "gpt2abs" else rotary_dims(cfg["d_model"] // cfg["n_head"],
                                                                       cfg["rotary_fraction"])),
        "experts": str(cfg.get("experts", 0)),
        "capacity_factor": repr(cfg.get("capacity_factor", 0.0)),
        "router_aux_weight": repr(cfg.get("router_aux_weight", 0.0)),
        "compute_dtype": "float64",
        "mutations": ",".join(sorted(MUT)),
        "torch": torch.__version__,
        "seed": str(cfg["seed"]),
    }
    if family == "moe":
        stats = [blk.ffn.stats for blk in model.blocks]
        for i, s in enumerate(stats):
            meta[f"moe.layer{i}"] = (f"routed {s['routed']} kept {s['kept']} dropped {s['dropped']} "
                                     f"capacity {s['capacity']} min top1-top2 margin {s['margin']:.3g}")
        assert sum(s["dropped"] for s in stats) > 0, "the moe fixture should drop some tokens"
        assert all(min(s["kept"]) > 0 for s in stats), "every expert should keep a token in every layer"
        assert min(s["margin"] for s in stats) > 1e-3, "routing too close to a tie for a float32 comparison"

    tensors = {}
    for name, p in model.named_parameters():
        pn = physlab_name(name, family)
        assert p.grad is not None, name
        tensors[pn] = burn_layout(name, p.detach()).bfloat16()
        tensors["grad." + pn] = burn_layout(name, p.grad).float()
    tensors["tokens"] = tokens
    tensors["targets"] = targets
    tensors["logits"] = logits.detach().float()
    tensors["loss"] = loss.detach().reshape(1)
    if aux is not None:
        tensors["lm_loss"] = lm_loss.detach().reshape(1)
        tensors["aux_loss"] = aux.detach().reshape(1)
    path = os.path.join(out_dir, f"{family}.safetensors")
    if not check_only:
        save_safetensors(path, tensors, meta)
    n_params = sum(p.numel() for p in model.parameters())
    extra = "  " + "; ".join(v for k, v in meta.items() if k.startswith("moe.")) if family == "moe" else ""
    print(f"{family:9} params {n_params:6}  loss {loss.item():.6f}  -> {path}{extra}")


def rel_change(a, b):
    return float((a - b).abs().max() / b.abs().max())


def sensitivity(families):
    """How far each mutation moves the logits, the loss and the gradients (the largest relative change over the
    parameter tensors), in the test's metric (max|Δ| / max|reference|)."""
    print(f"{'family':9} {'mutation':18} {'logits':>9} {'loss':>9} {'grads':>9}")
    for family in families:
        assert not MUT
        _, model, _, _, logits, _, _, loss = compute(family)
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        for m in MUTATIONS:
            if m.startswith("moe") and family != "moe":
                continue
            MUT.add(m)
            try:
                _, model_m, _, _, logits_m, _, _, loss_m = compute(family)
            finally:
                MUT.discard(m)
            g = max(rel_change(p.grad if p.grad is not None else torch.zeros_like(p), grads[n])
                    for n, p in model_m.named_parameters())
            dl = abs(loss_m.item() - loss.item()) / abs(loss.item())
            dx = rel_change(logits_m.detach(), logits.detach())
            if dx == dl == g == 0.0:
                print(f"{family:9} {m:18} {'(does not apply)':>29}")
            else:
                print(f"{family:9} {m:18} {dx:9.2e} {dl:9.2e} {g:9.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "trainer", "tests", "fixtures", "reference"))
    ap.add_argument("--family", action="append", choices=list(FAMILIES), help="only these (default: all)")
    ap.add_argument("--check", action="store_true", help="compute and print, write nothing")
    ap.add_argument("--sensitivity", action="store_true",
                    help="write nothing; print how far each of MUTATIONS (plausible mistakes) moves the logits, loss "
                    "and gradients, in the test's metric")
    ap.add_argument("--mutate", choices=list(MUTATIONS), action="append", default=[],
                    help="write fixtures with this mistake, to see the Rust test fail (never commit them)")
    args = ap.parse_args()
    MUT.update(args.mutate)
    if args.sensitivity:
        sensitivity(args.family or list(FAMILIES))
        return
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)  # nothing draws from the global generator; set anyway
    for family in args.family or list(FAMILIES):
        build(family, args.out, check_only=args.check)


if __name__ == "__main__":
    main()
