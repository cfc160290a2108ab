#!/usr/bin/env python3
"""Hugging Face transformers' reference for bench/bench_llama.sh: LlamaForCausalLM of the
shape loom trains (smollm-135m's: 30 layers, 576 channels, 9 heads, 3 key/value heads,
FFN 1536, rope theta 1e5, tied head), fp32 on the CPU, AdamW (torch semantics, weight
decay on 2+-dim tensors) with the global grad-norm clip at 1.0, timed per optimizer step
on batches of the given token file. Prints the median tokens/s over the steps after the
first and MFU against a given peak with the FLOPs/token that loom uses:
6 * parameters (the tied embedding counted once) + 12 * n_layer * T * n_head * head_size.
The last line of output is one JSON object with the results.
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab-size", type=int, default=50257)
    ap.add_argument("--peak-gflops", type=float, required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=a.vocab_size, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                      rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).float().train()
    params = list(model.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    tok = np.fromfile(a.data, dtype="<u2").astype(np.int64) % a.vocab_size
    B, T = a.batch, a.seq_len
    times = []
    for s in range(a.steps):
        w = torch.tensor(np.stack([tok[(s * B + b) * T:(s * B + b) * T + T + 1] for b in range(B)]))
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(w[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), w[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
        print(f"step {s + 1}/{a.steps}: loss {loss.item():.4f}, {times[-1] * 1e3:.0f} ms", file=sys.stderr)
    n = sum(p.numel() for p in params)
    hs = cfg.hidden_size // cfg.num_attention_heads
    flops_tok = 6.0 * n + 12.0 * cfg.num_hidden_layers * T * cfg.num_attention_heads * hs
    tps = statistics.median(B * T / t for t in times[1:])
    print(json.dumps({"impl": "transformers", "torch": torch.__version__, "transformers": transformers.__version__,
                      "attn": model.config._attn_implementation, "params": n, "tokens_per_s": tps,
                      "mfu": flops_tok * tps / (a.peak_gflops * 1e9)}))


if __name__ == "__main__":
    sys.exit(main())
