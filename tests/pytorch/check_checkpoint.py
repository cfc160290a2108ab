"""Reads a loom training checkpoint with PyTorch and an independent 20-line
safetensors reader, and checks it against what loom exported from the same run.

Checks: every tensor's CRC32C (computed here, in Python) equals the one in the
metadata; the model tensors equal `loom export`'s model.safetensors bit for bit;
optimizer moments exist for every parameter with its shape, are finite, and v >= 0;
the metadata carries the config and the step.

usage: /usr/bin/python3 tests/pytorch/check_checkpoint.py CHECKPOINT EXPORTED_MODEL
Exit 77 (skipped) when torch is not installed.
"""
import json
import struct
import sys

try:
    import torch
except ImportError:
    print("check_checkpoint.py: torch is not installed; skipping", file=sys.stderr)
    sys.exit(77)


def read_safetensors(path):
    """Returns ({name: torch tensor}, metadata) using nothing but the file format."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    dtypes = {"F32": torch.float32, "I32": torch.int32}
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        buf = bytearray(data[base + b:base + e])
        out[name] = (torch.frombuffer(buf, dtype=dtypes[t["dtype"]]).reshape(t["shape"]), bytes(buf))
    return out, meta


def crc32c(data, crc=0):
    table = crc32c.table
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


crc32c.table = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    crc32c.table.append(c)


def main():
    ckpt, meta = read_safetensors(sys.argv[1])
    model, _ = read_safetensors(sys.argv[2])
    failures = 0

    def check(ok, what):
        nonlocal failures
        if not ok:
            failures += 1
            print("FAIL:", what)

    crcs = json.loads(meta["crc32c"])
    check(set(crcs) == set(ckpt), "crc32c lists exactly the file's tensors")
    for name, (_, raw) in ckpt.items():
        check(int(crcs[name], 16) == crc32c(raw), f"CRC32C of {name}")
    for name, (t, _) in model.items():
        c = ckpt[name][0]
        check(c.shape == t.shape and torch.equal(c, t), f"model tensor {name} equals the export")
        m, v = ckpt["optim.m." + name][0], ckpt["optim.v." + name][0]
        check(m.shape == t.shape and v.shape == t.shape, f"moments of {name} have its shape")
        check(bool(torch.isfinite(m).all()) and bool(torch.isfinite(v).all()), f"moments of {name} are finite")
        check(bool((v >= 0).all()), f"second moment of {name} is non-negative")
    for key in ("n_layer", "n_embd", "n_head", "vocab_size", "block_size", "step", "cursor", "adam_t", "lr"):
        check(key in meta, f"metadata has {key}")
    n = len(model)
    print(f"check_checkpoint: torch {torch.__version__}; {len(ckpt)} tensors ({n} model + {2 * n} optimizer), "
          f"step {meta.get('step')}")
    print(f"check_checkpoint: {len(ckpt) * 2 + n * 4 + 10 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
