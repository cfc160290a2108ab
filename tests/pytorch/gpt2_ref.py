#!/usr/bin/python3
"""Independent PyTorch reference for loom's GPT-2 forward, backward and training step.

Run with Debian's PyTorch (no other packages are needed):

    /usr/bin/python3 tests/pytorch/gpt2_ref.py [--out tests/fixtures/gpt2_ref.safetensors]

The script builds a tiny GPT-2 in plain torch, runs everything in float64, and
writes ONE safetensors file that the C test suite loads and compares against.
The output is deterministic: running the script twice gives identical bytes.

Model (Hugging Face GPT-2 semantics, tensor names without the "transformer." prefix)
------------------------------------------------------------------------------------
    x = wte[tokens] + wpe[0:T]
    for each block i:
        a   = ln_1(x)                                   # LayerNorm, eps 1e-5
        qkv = a @ c_attn.weight + c_attn.bias           # Conv1D layout (C, 3C) = (in, out)
        q, k, v = split(qkv, C, dim=-1)                 # in that order
        heads: view(B, T, H, C/H) -> (B, H, T, C/H)
        att = softmax(causal_mask(q @ k^T / sqrt(C/H)))
        y   = (att @ v) merged back to (B, T, C)
        x   = x + y @ attn.c_proj.weight + attn.c_proj.bias
        h   = ln_2(x) @ mlp.c_fc.weight + mlp.c_fc.bias           # (C, 4C)
        h   = 0.5*h*(1 + tanh(sqrt(2/pi)*(h + 0.044715*h^3)))    # GELU, tanh approx.
        x   = x + h @ mlp.c_proj.weight + mlp.c_proj.bias         # (4C, C)
    logits = ln_f(x) @ wte^T                            # tied LM head, no bias
    loss   = mean cross-entropy over all B*T positions

Fixture contents (floats stored as F32, tokens as I32)
-----------------------------------------------------
    <name>                 initial weights (generated as float32, so the stored
                           F32 values are exactly the values used in float64)
    inputs, targets        (steps, accum, B, T) token ids
    ref.logits (B,T,V)     forward of step 0 / micro-batch 0 with the initial weights
    ref.loss   (1,)        mean CE of that micro-batch
    grad.<name>            d ref.loss / d <name> (single micro-batch, NOT divided by accum)
    train.losses (steps,)  per step: mean of the accum micro-batch losses (pre-update)
    train.grad_norms       per step: global L2 grad norm before clipping
    train.lrs (steps,)     learning rate used at each step
    final.<name>           parameters after `steps` AdamW steps
    final.m.<name>         AdamW exp_avg after training
    final.v.<name>         AdamW exp_avg_sq after training
    __metadata__           config and hyperparameters as strings

Training step (what the C trainer must reproduce)
-------------------------------------------------
    zero grads
    for m in range(accum): (CE(inputs[s,m], targets[s,m]) / accum).backward()
    norm = clip_grad_norm_(params, clip)    # torch: grads *= clip/(norm + 1e-6) if that is < 1
    lr_s = lr*(s+1)/warmup                                  if s < warmup
         = min_lr + 0.5*(1+cos(pi*(s-warmup)/(steps-1-warmup)))*(lr-min_lr)   otherwise
    torch.optim.AdamW(betas, eps, weight_decay) with decay only on tensors with dim >= 2.
    torch's AdamW update (per element, t = step count starting at 1):
        p  *= 1 - lr*wd                     (decay group only)
        m   = b1*m + (1-b1)*g
        v   = b2*v + (1-b2)*g^2
        p  -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)

The C test loads the initial weights and tokens, runs its own forward/backward
and training loop, and compares against the ref.*, grad.*, train.* and final.*
tensors with tolerances appropriate for float32 arithmetic.
"""

import argparse
import hashlib
import json
import math
import os
import struct
import sys
from collections import OrderedDict

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # CTest reads 77 as "skipped", never as passed
    print("gpt2_ref.py: torch is not installed (apt-get install python3-torch); skipping", file=sys.stderr)
    sys.exit(77)

# ----------------------------------------------------------------------------
# Configuration

CONFIG = OrderedDict(
    vocab_size=101,
    block_size=16,
    n_layer=2,
    n_embd=32,
    n_head=4,
    batch=3,
    seq_len=16,
    accum=2,
    steps=10,
)

HPARAMS = OrderedDict(
    lr=1e-2,
    min_lr=1e-3,
    warmup=3,
    weight_decay=0.1,
    clip=0.7,  # 1.0 never triggers (pre-clip norms 0.6-0.94); 0.7 clips some steps, not all
    beta1=0.9,
    beta2=0.95,
    eps=1e-8,
)

WEIGHT_SEED = 1234
TOKEN_SEED = 4321
LN_EPS = 1e-5

DEFAULT_OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "..", "fixtures", "gpt2_ref.safetensors"))


# ----------------------------------------------------------------------------
# Parameters

def param_shapes(cfg):
    """Ordered (name, shape) list of all GPT-2 parameters."""
    V, C, L, Tmax = cfg["vocab_size"], cfg["n_embd"], cfg["n_layer"], cfg["block_size"]
    shapes = [("wte.weight", (V, C)), ("wpe.weight", (Tmax, C))]
    for i in range(L):
        p = f"h.{i}."
        shapes += [
            (p + "ln_1.weight", (C,)),
            (p + "ln_1.bias", (C,)),
            (p + "attn.c_attn.weight", (C, 3 * C)),
            (p + "attn.c_attn.bias", (3 * C,)),
            (p + "attn.c_proj.weight", (C, C)),
            (p + "attn.c_proj.bias", (C,)),
            (p + "ln_2.weight", (C,)),
            (p + "ln_2.bias", (C,)),
            (p + "mlp.c_fc.weight", (C, 4 * C)),
            (p + "mlp.c_fc.bias", (4 * C,)),
            (p + "mlp.c_proj.weight", (4 * C, C)),
            (p + "mlp.c_proj.bias", (C,)),
        ]
    shapes += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    return shapes


def init_params(cfg, seed=WEIGHT_SEED):
    """Generate float32 initial weights (deterministic), returned as an OrderedDict."""
    torch.manual_seed(seed)
    proj_std = 0.02 / math.sqrt(2 * cfg["n_layer"])
    params = OrderedDict()
    for name, shape in param_shapes(cfg):
        r = torch.randn(shape, dtype=torch.float32)
        if ".ln_" in name or name.startswith("ln_f."):
            if name.endswith(".weight"):
                t = 1.0 + 0.1 * r
            else:
                t = 0.05 * r
        elif name.endswith("c_proj.weight"):
            t = proj_std * r
        else:  # wte, wpe, c_attn/c_fc weights and every linear bias
            t = 0.02 * r
        params[name] = t.contiguous()
    return params


def make_tokens(cfg, seed=TOKEN_SEED):
    g = torch.Generator().manual_seed(seed)
    shape = (cfg["steps"], cfg["accum"], cfg["batch"], cfg["seq_len"])
    inputs = torch.randint(0, cfg["vocab_size"], shape, generator=g, dtype=torch.int64)
    targets = torch.randint(0, cfg["vocab_size"], shape, generator=g, dtype=torch.int64)
    return inputs, targets


# ----------------------------------------------------------------------------
# Model (functional, dtype follows the parameters)

def layer_norm(x, w, b):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased variance
    return (x - mean) / torch.sqrt(var + LN_EPS) * w + b


def gelu_tanh(h):
    return 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h ** 3)))


def attention(x, p, prefix, n_head):
    B, T, C = x.shape
    hs = C // n_head
    qkv = x @ p[prefix + "attn.c_attn.weight"] + p[prefix + "attn.c_attn.bias"]
    q, k, v = qkv.split(C, dim=-1)
    q = q.view(B, T, n_head, hs).transpose(1, 2)  # (B, H, T, hs)
    k = k.view(B, T, n_head, hs).transpose(1, 2)
    v = v.view(B, T, n_head, hs).transpose(1, 2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    att = att.masked_fill(~causal, float("-inf"))
    att = torch.softmax(att, dim=-1)
    y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
    return y @ p[prefix + "attn.c_proj.weight"] + p[prefix + "attn.c_proj.bias"]


def mlp(x, p, prefix):
    h = x @ p[prefix + "mlp.c_fc.weight"] + p[prefix + "mlp.c_fc.bias"]
    h = gelu_tanh(h)
    return h @ p[prefix + "mlp.c_proj.weight"] + p[prefix + "mlp.c_proj.bias"]


def forward(p, tokens, cfg):
    """Return logits (B, T, V) for int64 tokens (B, T)."""
    B, T = tokens.shape
    x = p["wte.weight"][tokens] + p["wpe.weight"][:T]
    for i in range(cfg["n_layer"]):
        pre = f"h.{i}."
        x = x + attention(layer_norm(x, p[pre + "ln_1.weight"], p[pre + "ln_1.bias"]),
                          p, pre, cfg["n_head"])
        x = x + mlp(layer_norm(x, p[pre + "ln_2.weight"], p[pre + "ln_2.bias"]), p, pre)
    x = layer_norm(x, p["ln_f.weight"], p["ln_f.bias"])
    return x @ p["wte.weight"].t()


def loss_fn(logits, targets):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="mean")


# ----------------------------------------------------------------------------
# Training

def lr_at(step, hp, total_steps):
    lr, min_lr, warmup = hp["lr"], hp["min_lr"], hp["warmup"]
    if step < warmup:
        return lr * (step + 1) / warmup
    ratio = (step - warmup) / (total_steps - 1 - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def train(init, inputs, targets, cfg, hp, dtype=torch.float64):
    params = OrderedDict((n, t.to(dtype).clone().requires_grad_(True)) for n, t in init.items())
    decay = [t for t in params.values() if t.dim() >= 2]
    no_decay = [t for t in params.values() if t.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": hp["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])

    steps, accum = cfg["steps"], cfg["accum"]
    losses, norms, lrs = [], [], []
    for s in range(steps):
        opt.zero_grad(set_to_none=False)
        step_loss = 0.0
        for m in range(accum):
            loss = loss_fn(forward(params, inputs[s, m], cfg), targets[s, m])
            (loss / accum).backward()
            step_loss += loss.item()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm=hp["clip"])
        lr_s = lr_at(s, hp, steps)
        for group in opt.param_groups:
            group["lr"] = lr_s
        opt.step()
        losses.append(step_loss / accum)
        norms.append(norm.item())
        lrs.append(lr_s)

    m_state = OrderedDict((n, opt.state[t]["exp_avg"].detach()) for n, t in params.items())
    v_state = OrderedDict((n, opt.state[t]["exp_avg_sq"].detach()) for n, t in params.items())
    final = OrderedDict((n, t.detach()) for n, t in params.items())
    return losses, norms, lrs, final, m_state, v_state


# ----------------------------------------------------------------------------
# Minimal safetensors I/O

_DTYPES = {torch.float32: ("F32", "<f4"), torch.int32: ("I32", "<i4")}


def save_safetensors(path, tensors, metadata):
    """tensors: ordered dict name -> float32/int32 tensor; metadata: dict str -> str."""
    header = OrderedDict()
    chunks = []
    offset = 0
    for name, t in tensors.items():
        t = t.contiguous()
        dtype_name, _ = _DTYPES[t.dtype]
        data = t.numpy().tobytes() if sys.byteorder == "little" else \
            t.numpy().byteswap().tobytes()
        header[name] = {"dtype": dtype_name, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    header["__metadata__"] = OrderedDict(metadata)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - (8 + len(hbytes)) % 8) % 8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for c in chunks:
            f.write(c)


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = OrderedDict()
    for name, info in header.items():
        b, e = info["data_offsets"]
        dt = torch.float32 if info["dtype"] == "F32" else torch.int32
        t = torch.frombuffer(bytearray(raw[base + b:base + e]), dtype=dt)
        out[name] = t.reshape(info["shape"])
    return out, meta


# ----------------------------------------------------------------------------
# Sanity checks (printed, not stored)

def sanity_checks(init, tokens, targets, cfg):
    p64 = OrderedDict((n, t.double()) for n, t in init.items())
    p32 = OrderedDict((n, t.clone()) for n, t in init.items())
    with torch.no_grad():
        l64 = forward(p64, tokens, cfg)
        l32 = forward(p32, tokens, cfg).double()
    rel = ((l32 - l64).abs().max() / l64.abs().max()).item()
    loss64 = loss_fn(l64, targets).item()
    loss32 = loss_fn(l32, targets).item()
    print(f"[check] float32 vs float64 logits: max|diff|/max|ref| = {rel:.3e}")
    print(f"[check] loss float64 = {loss64:.10f}, float32 = {loss32:.10f}, "
          f"rel diff = {abs(loss32 - loss64) / loss64:.3e}")
    assert rel < 1e-5, "float32 forward disagrees with float64"

    # Finite-difference check of a few gradient entries in float64.
    pg = OrderedDict((n, t.clone().requires_grad_(True)) for n, t in p64.items())
    loss_fn(forward(pg, tokens, cfg), targets).backward()
    h = 1e-6
    for name, idx in [("h.0.attn.c_attn.weight", (3, 70)),
                      ("h.1.mlp.c_fc.bias", (17,)),
                      ("wpe.weight", (5, 9)),
                      ("h.0.ln_1.weight", (11,))]:
        plus = OrderedDict((n, t.clone()) for n, t in p64.items())
        minus = OrderedDict((n, t.clone()) for n, t in p64.items())
        plus[name][idx] += h
        minus[name][idx] -= h
        with torch.no_grad():
            fd = (loss_fn(forward(plus, tokens, cfg), targets)
                  - loss_fn(forward(minus, tokens, cfg), targets)).item() / (2 * h)
        ad = pg[name].grad[idx].item()
        err = abs(fd - ad) / max(abs(ad), 1e-12)
        print(f"[check] grad {name}{list(idx)}: autograd {ad:+.10e}, "
              f"finite-diff {fd:+.10e}, rel err {err:.2e}")
        assert err < 1e-5, "finite-difference gradient mismatch"


# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output safetensors path")
    args = ap.parse_args()

    torch.set_num_threads(1)  # deterministic reductions
    cfg, hp = CONFIG, HPARAMS
    init = init_params(cfg)
    inputs, targets = make_tokens(cfg)

    sanity_checks(init, inputs[0, 0], targets[0, 0], cfg)

    # Reference forward/backward for step 0, micro-batch 0.
    p = OrderedDict((n, t.double().clone().requires_grad_(True)) for n, t in init.items())
    logits = forward(p, inputs[0, 0], cfg)
    loss = loss_fn(logits, targets[0, 0])
    loss.backward()
    print(f"ref.loss (step 0, micro 0) = {loss.item():.10f}  (ln V = {math.log(cfg['vocab_size']):.4f})")

    losses, norms, lrs, final, m_state, v_state = train(init, inputs, targets, cfg, hp)
    n_clipped = sum(n > hp["clip"] for n in norms)
    print(f"{'step':>4} {'loss':>14} {'grad_norm':>12} {'lr':>12}  clipped")
    for s in range(cfg["steps"]):
        print(f"{s:4d} {losses[s]:14.10f} {norms[s]:12.6f} {lrs[s]:12.8f}  "
              f"{'yes' if norms[s] > hp['clip'] else 'no'}")
    print(f"clipping triggered on {n_clipped}/{cfg['steps']} steps (clip = {hp['clip']})")
    assert n_clipped > 0, "clipping never triggered; lower the clip threshold"

    # How far does the same training drift when run in float32? This is a
    # lower bound on what a float32 C implementation can achieve; note that the
    # attention key-bias slice c_attn.bias[C:2C] has an exactly-zero true
    # gradient (softmax is shift invariant), so in float32 it receives rounding
    # noise that Adam normalises into small but nonzero updates.
    l32, n32, _, fin32, _, _ = train(init, inputs, targets, cfg, hp, dtype=torch.float32)
    dl = max(abs(a - b) for a, b in zip(l32, losses))
    dn = max(abs(a - b) for a, b in zip(n32, norms))
    dp = max((fin32[n].double() - final[n]).abs().max().item() for n in final)
    print(f"[check] float32 training vs float64: max|loss diff| {dl:.2e}, "
          f"max|norm diff| {dn:.2e}, max|final param diff| {dp:.2e}")

    f32 = lambda t: t.detach().to(torch.float32).contiguous()
    out = OrderedDict()
    for n, t in init.items():
        out[n] = t
    out["inputs"] = inputs.to(torch.int32)
    out["targets"] = targets.to(torch.int32)
    out["ref.logits"] = f32(logits)
    out["ref.loss"] = f32(loss.reshape(1))
    for n, t in p.items():
        out["grad." + n] = f32(t.grad)
    out["train.losses"] = torch.tensor(losses, dtype=torch.float64).float()
    out["train.grad_norms"] = torch.tensor(norms, dtype=torch.float64).float()
    out["train.lrs"] = torch.tensor(lrs, dtype=torch.float64).float()
    for n, t in final.items():
        out["final." + n] = f32(t)
    for n, t in m_state.items():
        out["final.m." + n] = f32(t)
    for n, t in v_state.items():
        out["final.v." + n] = f32(t)

    meta = OrderedDict((k, str(v)) for k, v in cfg.items())
    meta.update((k, repr(v)) for k, v in hp.items())
    meta["weight_seed"] = str(WEIGHT_SEED)
    meta["token_seed"] = str(TOKEN_SEED)
    meta["ln_eps"] = repr(LN_EPS)
    meta["torch_version"] = torch.__version__
    meta["dtype"] = "float64"

    save_safetensors(args.out, out, meta)

    # Round-trip check of the written file.
    back, back_meta = load_safetensors(args.out)
    assert list(back) == list(out) and back_meta == meta
    for n, t in out.items():
        assert torch.equal(back[n], t), n
    with open(args.out, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    print(f"wrote {args.out}: {len(out)} tensors, {os.path.getsize(args.out)} bytes, "
          f"sha256 {digest}")


if __name__ == "__main__":
    main()
