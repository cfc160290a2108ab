"""Hugging Face transformers' LlamaForCausalLM as the reference for loom's Llama.

Builds a random LlamaForCausalLM from a LlamaConfig (grouped-query attention, tied or
untied head, optionally llama3 rope scaling), saves it with save_pretrained (float32
safetensors + config.json) into OUT/model, then computes in float64 with transformers
itself, on fixed random batches:

    ref.logits, ref.loss      micro-batch 0 of step 0
    grad.<name>               every gradient of that micro-batch's mean loss
    train.losses/grad_norms/lrs, final.<name>, final.m.<name>, final.v.<name>
                              10 steps of torch.optim.AdamW (decay on 2+ dim tensors),
                              warmup + cosine as loom's schedule, clip_grad_norm_,
                              2 micro-batches accumulated per step

into OUT/ref.safetensors, with the batch and optimizer settings in its metadata; the
test (test_gpt_parity OUT/ref.safetensors OUT/model/model.safetensors) runs loom on the
same and compares. Usage: llama_ref.py OUT [--untied] [--rope-scaling]."""
import argparse
import math
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

HP = dict(lr=1e-2, min_lr=1e-3, warmup=3, weight_decay=0.1, clip=0.7, beta1=0.9, beta2=0.95, eps=1e-8)
SHAPE = dict(batch=2, seq_len=16, accum=2, steps=10)


def lr_at(step, total):
    if step < HP["warmup"]:
        return HP["lr"] * (step + 1) / HP["warmup"]
    ratio = (step - HP["warmup"]) / (total - 1 - HP["warmup"])
    return HP["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (HP["lr"] - HP["min_lr"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--untied", action="store_true")
    ap.add_argument("--rope-scaling", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(1234)
    scaling = None
    if a.rope_scaling:  # wavelengths on both sides of the band, and inside it
        scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 16}
    cfg = LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=32,
                      rms_norm_eps=1e-5, rope_theta=500000.0 if a.rope_scaling else 10000.0,
                      tie_word_embeddings=not a.untied, rope_scaling=scaling, attention_bias=False,
                      attn_implementation="eager")
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger weights than the 0.02 init, and norms away from 1, for stronger signals
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.2)
    model.save_pretrained(os.path.join(a.out, "model"), safe_serialization=True)

    B, T, accum, steps = SHAPE["batch"], SHAPE["seq_len"], SHAPE["accum"], SHAPE["steps"]
    g = torch.Generator().manual_seed(4321)
    inputs = torch.randint(0, cfg.vocab_size, (steps, accum, B, T), generator=g, dtype=torch.int64)
    targets = torch.randint(0, cfg.vocab_size, (steps, accum, B, T), generator=g, dtype=torch.int64)

    model = model.double()
    params = dict(model.named_parameters())  # a tied head appears once, as the embedding
    lossf = torch.nn.functional.cross_entropy
    out = {"inputs": inputs.to(torch.int32).contiguous(), "targets": targets.to(torch.int32).contiguous()}
    logits = model(inputs[0, 0]).logits
    loss = lossf(logits.reshape(-1, cfg.vocab_size), targets[0, 0].reshape(-1))
    loss.backward()
    out["ref.logits"] = logits.detach().float().contiguous()
    out["ref.loss"] = loss.detach().float().reshape(1)
    for n, p in params.items():
        out["grad." + n] = p.grad.detach().float().contiguous()
    model.zero_grad()

    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": HP["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"])
    losses, norms, lrs = [], [], []
    for s in range(steps):
        opt.zero_grad(set_to_none=False)
        step_loss = 0.0
        for m in range(accum):
            lg = model(inputs[s, m]).logits
            l = lossf(lg.reshape(-1, cfg.vocab_size), targets[s, m].reshape(-1))
            (l / accum).backward()
            step_loss += l.item()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm=HP["clip"])
        for group in opt.param_groups:
            group["lr"] = lr_at(s, steps)
        lrs.append(lr_at(s, steps))
        opt.step()
        losses.append(step_loss / accum)
        norms.append(norm.item())
    out["train.losses"] = torch.tensor(losses, dtype=torch.float32)
    out["train.grad_norms"] = torch.tensor(norms, dtype=torch.float32)
    out["train.lrs"] = torch.tensor(lrs, dtype=torch.float32)
    for n, p in params.items():
        out["final." + n] = p.detach().float().contiguous()
        out["final.m." + n] = opt.state[p]["exp_avg"].float().contiguous()
        out["final.v." + n] = opt.state[p]["exp_avg_sq"].float().contiguous()
    meta = {k: str(v) for k, v in {**SHAPE, **HP}.items()}
    meta["torch_version"] = torch.__version__
    meta["dtype"] = "float64 reference, transformers " + __import__("transformers").__version__
    save_file(out, os.path.join(a.out, "ref.safetensors"), metadata=meta)
    print("wrote", os.path.join(a.out, "ref.safetensors"))


if __name__ == "__main__":
    sys.exit(main())
