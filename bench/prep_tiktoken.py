"""The reference for bench_prep.sh: the same preprocessing as `loom prep` done the
usual Python way (tiktoken's encode_ordinary_batch over documents, <|endoftext|>
before each, llm.c shards), from the local rank file, so nothing is downloaded.
usage: python prep_tiktoken.py RANKS OUT_DIR THREADS INPUT.jsonl"""
import json
import sys
import time

import numpy as np
import tiktoken
from tiktoken.load import load_tiktoken_bpe

PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def main():
    ranks, out, threads, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    t0 = time.perf_counter()
    enc = tiktoken.Encoding(name="gpt2_local", pat_str=PAT, mergeable_ranks=load_tiktoken_bpe(ranks),
                            special_tokens={"<|endoftext|>": 50256})
    with open(path, "rb") as f:
        raw = f.read()
    docs = [json.loads(line)["text"] for line in raw.splitlines() if line.strip()]
    toks = enc.encode_ordinary_batch(docs, num_threads=threads)
    flat = np.empty(sum(len(t) + 1 for t in toks), dtype=np.uint16)
    i = 0
    for t in toks:
        flat[i] = 50256
        flat[i + 1:i + 1 + len(t)] = t
        i += len(t) + 1
    header = np.zeros(256, dtype=np.int32)
    header[:3] = (20240520, 1, len(flat))
    with open(f"{out}/train_000000.bin", "wb") as f:
        f.write(header.tobytes())
        f.write(flat.tobytes())
    dt = time.perf_counter() - t0
    print(f"tiktoken {tiktoken.__version__}: {len(docs)} documents, {len(raw) / 1e6:.1f} MB in {dt:.2f} s "
          f"({len(raw) / 1e6 / dt:.1f} MB/s), {len(flat)} tokens")


if __name__ == "__main__":
    main()
