#!/usr/bin/env python3
"""Writes test cases encoded by tiktoken itself, for `test_tokenizer --tiktoken-cases`.
tiktoken's "gpt2" encoding is rebuilt from the repository's data/gpt2/r50k_base.tiktoken
(nothing is downloaded). Cases: random mixed-script text (every kind of whitespace,
apostrophes, digits of other scripts, combining marks, emoji, special tokens), every
pair of whitespace characters before each kind of character, and every code point in a
few contexts; then two long texts joined from those. Output records (little-endian): u32 length, UTF-8 text, u32 n, n ids of
encode_ordinary(text), u32 m, m ids of encode(text, allowed_special="all").
usage: tiktoken_cases.py OUT [--seed N]; exits 77 when tiktoken is not importable."""
import random
import struct
import sys

try:
    import tiktoken
    import tiktoken.load
except ImportError:
    print("tiktoken_cases: tiktoken not importable; skipped")
    sys.exit(77)

PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SPACES = [9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0x1680] + list(range(0x2000, 0x200B)) + [0x2028, 0x2029, 0x202F,
                                                                                      0x205F, 0x3000]
NOT_SPACES = [0x1C, 0x1D, 0x1E, 0x1F, 0x180E, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0]
LETTERS = [0x61, 0x5A, 0xE9, 0xDF, 0x3B1, 0x416, 0x5D0, 0x627, 0x905, 0xE01, 0x3042, 0x30AB, 0x4E00, 0xAC00, 0x1C89,
           0x2EBF0, 0x10D50, 0x1D400, 0x2B0, 0x1E9E, 0x01C5]
NUMBERS = [0x30, 0x37, 0xB2, 0xBD, 0x660, 0x669, 0x966, 0xFF11, 0x216B, 0x2460, 0x3007, 0x10D40, 0x1D7CE, 0x1F100,
           0xF1C, 0x2189]
OTHERS = [0x21, 0x2E, 0x2C, 0x2D, 0x22, 0x27, 0x3C, 0x7C, 0x301, 0x308, 0x20DD, 0x2019, 0x1F600, 0x1F3FD, 0xFE0F,
          0xE000, 0x378, 0x10FFFF, 0xFFFD, 0x7F, 0x1, 0x2014, 0x323B0]
BITS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'x", "''", "'", " '", "don't", " the", "  ", "   ", "\n",
        "\r\n", "\t", " \n ", "123", " 45", "a1", "1a", "<|endoftext|>", "<|endoftext", "|>", "?!", " .", "ll", "re"]


def random_cp(r):
    while True:
        cp = r.randrange([0x80, 0x800, 0x10000, 0x110000][r.randrange(4)])
        if not 0xD800 <= cp <= 0xDFFF:
            return cp


def random_text(r, n):
    out = []
    while len(out) < n:
        k = r.randrange(9)
        if k == 8:
            out.extend(r.choice(BITS))
            continue
        pick = [SPACES, NOT_SPACES, LETTERS, NUMBERS, OTHERS][k] if k < 5 else None
        if pick:
            out.append(chr(r.choice(pick)))
        elif k == 5:
            out.append(chr(random_cp(r)))
        elif k == 6:
            out.append(" " if r.randrange(2) else chr(0x61 + r.randrange(26)))
        else:
            out.append(r.choice("aeiou tns'\n"))
    return "".join(out)


def main():
    out = sys.argv[1]
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 1
    ranks = tiktoken.load.load_tiktoken_bpe("data/gpt2/r50k_base.tiktoken")
    enc = tiktoken.Encoding(name="gpt2_local", pat_str=PAT, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 50256})
    r = random.Random(seed)
    texts = [random_text(r, r.randrange(1, 300)) for _ in range(3000)]
    texts += [random_text(r, 3000) for _ in range(20)]
    follow = ["b", "1", ".", "", "'s", " b", "\u3000", "\u0301"]
    for w1 in SPACES:
        texts.append("".join("a" + chr(w1) + chr(w2) + f + "|" + chr(w1) + f for w2 in SPACES for f in follow))
    for base in range(0, 0x110000, 256):
        parts = []
        for cp in range(base, base + 256):
            if not 0xD800 <= cp <= 0xDFFF:
                c = chr(cp)
                parts.append(" " + c + c + "'s" + c + "1")
        texts.append("".join(parts))
    # long texts, so that loom's per-call piece cache (texts >= 16 KB) is exercised too
    texts.append("".join(texts[:3020]))
    texts.append("".join(texts[3020:3020 + 25 + 200]))
    with open(out, "wb") as f:
        for t in texts:
            b = t.encode("utf-8")
            f.write(struct.pack("<I", len(b)) + b)
            for ids in (enc.encode_ordinary(t), enc.encode(t, allowed_special="all")):
                f.write(struct.pack("<I%dI" % len(ids), len(ids), *ids))
    print("tiktoken_cases: %d cases from tiktoken %s written to %s" % (len(texts), tiktoken.__version__, out))


if __name__ == "__main__":
    main()
