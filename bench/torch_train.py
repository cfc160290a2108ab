#!/usr/bin/env python3
"""PyTorch reference for bench/bench_train.sh: the same GPT-2 that `loom train` trains
(pre-LN, fused QKV with bias, GELU tanh, tied LM head, learned positions of block_size
rows, AdamW with torch semantics, weight decay on 2+-dim tensors, global grad-norm clip 1.0),
fp32 eager on the CPU, timed per optimizer step; prints the median tokens/s over the steps
after the first, and MFU against a given peak with the FLOPs/token that loom uses:
6 * (parameters without wpe) + 12 * n_layer * T * n_embd.

Runs with any torch from 1.13 on (Debian's python3-torch) to the newest PyPI wheel.
The last line of output is one JSON object with the results (bench_train.sh reads it).
"""
import argparse
import inspect
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {  # name: (n_layer, n_embd, n_head, vocab_size, block_size), as loom's presets
    "tiny": (2, 128, 4, 50257, 256),
    "small": (6, 384, 6, 50257, 1024),
    "gpt2": (12, 768, 12, 50257, 1024),
}

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def attn(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        hd = C // self.H
        q = q.view(B, T, self.H, hd).transpose(1, 2)
        k = k.view(B, T, self.H, hd).transpose(1, 2)
        v = v.view(B, T, self.H, hd).transpose(1, 2)
        if HAS_SDPA:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
            y = att @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L, C, H, V, block_size):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(block_size, C)
        self.h = nn.ModuleList([Block(C, H) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        g = torch.Generator().manual_seed(1337)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                with torch.no_grad():
                    p.normal_(0.0, std, generator=g)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.h:
            x = blk(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied LM head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def blas_info():
    cfg = torch.__config__.show()
    for key in ("BLAS_INFO=",):
        i = cfg.find(key)
        if i >= 0:
            return cfg[i + len(key):].split(",")[0]
    return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default="", help="headerless uint16 tokens (.u16); random tokens if empty")
    ap.add_argument("--peak-gflops", type=float, default=0.0, help="MFU denominator (GFLOP/s)")
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--label", default="")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(1337)
    L, C, H, V, Tmax = PRESETS[a.model]
    B, T = a.batch, a.seq_len
    assert T <= Tmax
    model = GPT(L, C, H, V, Tmax)
    model.train()

    n_params = sum(p.numel() for p in model.parameters())
    n_no_wpe = n_params - model.wpe.weight.numel()
    flops_tok = 6.0 * n_no_wpe + 12.0 * L * T * C

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    kw = dict(lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    if "fused" in inspect.signature(torch.optim.AdamW).parameters:
        kw["fused"] = False
    if "foreach" in inspect.signature(torch.optim.AdamW).parameters:
        kw["foreach"] = False  # per-tensor loop, as loom's AdamW
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], **kw)

    if a.data:
        with open(a.data, "rb") as f:
            raw = bytearray(f.read())
        tokens = torch.frombuffer(raw, dtype=torch.int16).to(torch.int64) & 0xFFFF
        src = "data " + os.path.basename(a.data)
    else:
        tokens = None
        src = "random tokens"
    gen = torch.Generator().manual_seed(1337)

    def batch():
        if tokens is None:
            x = torch.randint(0, V, (B, T + 1), generator=gen)
        else:
            starts = torch.randint(0, tokens.numel() - T - 1, (B,), generator=gen)
            x = torch.stack([tokens[s:s + T + 1] for s in starts.tolist()])
        return x[:, :-1].contiguous(), x[:, 1:].contiguous()

    print(f"torch {torch.__version__} (BLAS {blas_info()}, mkldnn {torch.backends.mkldnn.is_available()}), "
          f"{torch.get_num_threads()} threads, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(not set)')}; "
          f"attention: {'F.scaled_dot_product_attention' if HAS_SDPA else 'manual masked softmax'}; "
          f"AdamW {kw}", flush=True)
    print(f"model {a.model}: L={L} C={C} H={H} V={V}; {n_params} params ({n_no_wpe} without wpe); "
          f"B={B} T={T}; {src}; {flops_tok / 1e9:.3f} GFLOP/token", flush=True)

    times, losses = [], []
    for step in range(a.steps):
        x, y = batch()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = loss.item()
        dt = time.perf_counter() - t0
        times.append(dt)
        losses.append(lv)
        tok_s = B * T / dt
        mfu = flops_tok * tok_s / (a.peak_gflops * 1e9) if a.peak_gflops > 0 else float("nan")
        print(f"step {step + 1}/{a.steps} | loss {lv:.4f} | {dt * 1e3:.0f} ms | {tok_s:.0f} tok/s | "
              f"MFU {100 * mfu:.1f}%", flush=True)

    timed = times[1:] if len(times) > 1 else times
    med_tok_s = statistics.median(B * T / t for t in timed)
    res = {
        "impl": a.label or f"torch {torch.__version__}",
        "torch": torch.__version__,
        "blas": blas_info(),
        "model": a.model, "batch": B, "seq_len": T, "threads": torch.get_num_threads(),
        "steps": a.steps, "n_params": n_params, "n_params_no_wpe": n_no_wpe,
        "flops_per_token": flops_tok,
        "ms": [round(t * 1e3, 1) for t in times],
        "tokens_per_s": med_tok_s,
        "mfu": flops_tok * med_tok_s / (a.peak_gflops * 1e9) if a.peak_gflops > 0 else None,
        "loss_first": losses[0], "loss_last": losses[-1],
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    sys.exit(main())
