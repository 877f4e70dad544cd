#!/usr/bin/env python3
"""Writes the transformers fixtures of `trainer/tests/hf_export.rs` (issue 18): for each architecture physlab
exports to, a tiny model built and saved by transformers itself, with its logits for fixed tokens.

    python3 bench/hf_fixture.py      # writes trainer/tests/fixtures/hf/<name>/{config.json, model.safetensors, logits.safetensors}

| fixture   | transformers class   | physlab family it imports as                  |
|-----------|----------------------|-----------------------------------------------|
| neox      | GPTNeoXForCausalLM   | gpt2 (intermediate 4d, half of each head rotated) |
| neox_mlp1 | GPTNeoXForCausalLM   | gpt2mlp1 (intermediate d)                     |
| gpt2      | GPT2LMHeadModel      | gpt2abs                                       |
| llama     | LlamaForCausalLM     | llama (whole heads rotated)                   |
| phi3      | Phi3ForCausalLM      | llama (half of each head rotated)             |

Every model: 2 layers, d = 16, 2 heads (head_dim 8), vocab 40, context 16; weights drawn N(0, 0.3²) (norm gains
1 + N(0, 0.1²)) from torch seed 0 so that every tensor moves the logits well above float32 noise; saved with
`save_pretrained` (float32 safetensors; tied output layers are not written, as transformers does).
`logits.safetensors` holds `input_ids` (int64 [2, 12], fixed) and `logits` (float32 [2, 12, 40]) from the model in
float32 on the CPU with eager attention. The Rust test imports each folder with physlab, checks physlab's logits
against these, and checks that exporting the imported weights gives back these very tensors (names, shapes, bits).

Written and run with torch 2.15.0 (CPU), transformers 5.24.0, safetensors 0.8.0, Python 3.11. About 80 KB in all.
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, Phi3Config, AutoModelForCausalLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "trainer", "tests", "fixtures", "hf")
D, H, L, V, T = 16, 2, 2, 40, 16
SWIGLU = (8 * D // 3 + 15) // 16 * 16  # physlab's llama hidden width for d = 16: 48

common = dict(vocab_size=V, bos_token_id=0, eos_token_id=0, pad_token_id=None)
neox = dict(
    hidden_size=D, num_hidden_layers=L, num_attention_heads=H, max_position_embeddings=T, hidden_act="gelu",
    use_parallel_residual=False, tie_word_embeddings=True, layer_norm_eps=1e-5, attention_bias=True,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}, **common,
)
llama = dict(
    hidden_size=D, num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=H, head_dim=D // H,
    intermediate_size=SWIGLU, max_position_embeddings=T, hidden_act="silu", rms_norm_eps=1e-5,
    tie_word_embeddings=False, attention_bias=False, **common,
)
FIXTURES = {
    "neox": GPTNeoXConfig(intermediate_size=4 * D, **neox),
    "neox_mlp1": GPTNeoXConfig(intermediate_size=D, **neox),
    "gpt2": GPT2Config(
        n_embd=D, n_layer=L, n_head=H, n_positions=T, n_inner=4 * D, activation_function="gelu",
        layer_norm_epsilon=1e-5, tie_word_embeddings=True, **common,
    ),
    "llama": LlamaConfig(mlp_bias=False, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **llama),
    "phi3": Phi3Config(
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        original_max_position_embeddings=T, sliding_window=None, **llama,
    ),
}


def main():
    ids = torch.tensor([[0, 5, 17, 3, 39, 22, 8, 1, 30, 12, 0, 7], [0, 38, 2, 2, 19, 25, 11, 4, 33, 6, 14, 9]])
    for name, cfg in FIXTURES.items():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager").eval()
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname or pname.split(".")[-2].startswith("ln_"):
                    p.copy_(1.0 + 0.1 * torch.randn_like(p) if pname.endswith("weight") else 0.1 * torch.randn_like(p))
                else:
                    p.normal_(0.0, 0.3)
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        d = os.path.join(OUT, name)
        model.save_pretrained(d)
        gen = os.path.join(d, "generation_config.json")  # not needed by the test
        if os.path.exists(gen):
            os.remove(gen)
        save_file({"input_ids": ids, "logits": logits.contiguous()}, os.path.join(d, "logits.safetensors"))
        print(f"{name}: {type(model).__name__}, {sum(p.numel() for p in model.parameters())} params, "
              f"max |logit| {logits.abs().max():.3f} → {d}")


if __name__ == "__main__":
    sys.exit(main())
