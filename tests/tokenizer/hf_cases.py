#!/usr/bin/env python3
"""Writes tokenizer.json files and the ids Hugging Face `tokenizers` gives for a set of
texts, for `test_tokenizer --hf-cases DIR`. Nothing is downloaded: every tokenizer is
trained here with tokenizers itself, on data/tinyshakespeare.txt plus random
mixed-script text, or built from the bundled data/gpt2 files:
  bytelevel         GPT-2 style: ByteLevel(use_regex) pre-tokenizer; special and
                    non-special added tokens (lstrip, rstrip, normalized or not,
                    overlapping); merges as [A, B] pairs
  bytelevel_legacy  the same file with merges as "A B" strings
  llama3            Sequence[Split(Llama 3's pattern, Isolated), ByteLevel(use_regex
                    false)], ignore_merges true, Llama 3's special tokens; every
                    fifth merge after the first 1000 is dropped (so that ignore_merges
                    makes a difference) and merges 500-2999 are in reverse order (so
                    that merge order is not id order)
  llama3_merges     the same with ignore_merges false
  smollm            Sequence[Digits(individual_digits), ByteLevel], SmolLM's specials
  digits_runs       the same with individual_digits false
  gpt2              GPT-2 itself: ByteLevelBPETokenizer(data/gpt2/encoder.json,
                    data/gpt2/vocab.bpe) with <|endoftext|>
Texts: the corpus, random texts of atoms that stress the patterns (every kind of
whitespace, CR LF, tabs, contractions in any case and U+017F, digit runs, letters,
numbers and marks of many scripts, emoji, the added tokens and parts of them), every
pair of whitespace characters before each kind of character, every code point of
planes 0-3 and 14 (and a sample of the others) in a few contexts, two long texts.
Output in DIR: NAME.json, texts.bin (records: u32 length, UTF-8 text), NAME.ids (per
text: u32 n, n ids of encode(text, add_special_tokens=False); u32 m, m ids of the same
with encode_special_tokens=True; u32 k, k byte offsets where the pre-tokenizer's
pieces end (k = 0 for bytelevel_legacy, llama3_merges); u32 d, d bytes of decode(the first ids) in UTF-8), corpus.NAME.u16 (<|endoftext|>-style eot id, then the corpus' ids, as
uint16 when they fit: what `loom prep` writes), list.txt (NAME vocab_size eot_id
texts: the variants cover only the texts before the code points).
All little-endian. usage: hf_cases.py DIR [--seed N]; exits 77 when tokenizers is not
importable."""
import json
import os
import random
import struct
import sys

try:
    import numpy
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.implementations import ByteLevelBPETokenizer
except ImportError:
    print("hf_cases: tokenizers (or numpy) not importable; skipped")
    sys.exit(77)

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")
SPACES = [9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0x1680] + list(range(0x2000, 0x200B)) + [0x2028, 0x2029, 0x202F,
                                                                                      0x205F, 0x3000]
NOT_SPACES = [0x1C, 0x1D, 0x1E, 0x1F, 0x180E, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0]
LETTERS = [0x61, 0x5A, 0xE9, 0xDF, 0x3B1, 0x416, 0x5D0, 0x627, 0x905, 0xE01, 0x3042, 0x30AB, 0x4E00, 0xAC00, 0x1C89,
           0x2EBF0, 0x10D50, 0x1D400, 0x2B0, 0x1E9E, 0x01C5, 0x17F, 0x31350, 0x11F04, 0xA7CB]
NUMBERS = [0x30, 0x37, 0xB2, 0xBD, 0x660, 0x669, 0x966, 0xFF11, 0x216B, 0x2460, 0x3007, 0x10D40, 0x1D7CE, 0x1F100,
           0xF1C, 0x2189, 0x11F50, 0x1D2C0, 0x1E4F0, 0x1E5F1, 0x116D0]
OTHERS = [0x21, 0x2E, 0x2C, 0x2D, 0x22, 0x27, 0x3C, 0x7C, 0x301, 0x308, 0x20DD, 0x2019, 0x1F600, 0x1F3FD, 0xFE0F,
          0xE000, 0x378, 0x10FFFF, 0xFFFD, 0x7F, 0x1, 0x2014, 0x323B0, 0x200D, 0x1F468]
BITS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'rE", "'Ve", "'M", "'LL", "'lL", "'D",
        "'\u017f", "\u017f", "'x", "''", "'", " '", "don't", "DON'T", " the", "  ", "   ", "\n", "\r\n", "\r",
        "\n\n", "\r\n\r\n", "\t", "\t\t", " \t", "\t ", " \n ", " \r\n", ".\n", "!\r\n\r\n", ";\n\n", "  \n  ",
        "123", " 45", "1234567", "12345678901", "a1", "1a", "\u0661\u0662\u0663\u0664", "\U00011f50\U00011f51",
        "?!", " .", "ll", "re", "\U0001F468\u200D\U0001F469\u200D\U0001F467", "\U0001F1FA\U0001F1F8",
        "e\u0301", " \u0301", "<|endoftext|>", "<|endoftext", "|>", "endoftext", "<|im_start|>", "<|im_end|>",
        "<|im", "<think>", "[MASK]", " [MASK]", "  [MASK]", "<br>", "<br>  ", "<br>\n", "hello world",
        "hello world<x>", "world<x>", "[SEP]", "<|im_start|>_", "<|im_end",
        "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|reserved_special_token_3|>",
        "<repo_name>", "<file_sep>", "<fim_prefix>"]


def random_cp(r):
    while True:
        cp = r.randrange([0x80, 0x800, 0x10000, 0x110000][r.randrange(4)])
        if not 0xD800 <= cp <= 0xDFFF:
            return cp


def random_text(r, n):
    out = []
    while len(out) < n:
        k = r.randrange(10)
        if k >= 8:
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
            out.append(r.choice("aeiou tns'\n0123456789"))
    return "".join(out)


# code points whose class in loom's tables (Unicode 16) differs from tokenizers' (14 and 15)
NEWER = [(0x1C89, 0x1C8A), (0xA7CB, 0xA7DC), (0x105C0, 0x105F3), (0x10D40, 0x10D85), (0x10EC2, 0x10EC4),
         (0x1123F, 0x11240), (0x11380, 0x113D3), (0x116D0, 0x116E3), (0x11BC0, 0x11BF9), (0x11F02, 0x11F59),
         (0x1342F, 0x143FA), (0x16100, 0x16139), (0x16D40, 0x16D79), (0x18CFF, 0x18CFF), (0x1B132, 0x1B155),
         (0x1CCF0, 0x1CCF9), (0x1D2C0, 0x1D2D3), (0x1DF25, 0x1DF2A), (0x1E030, 0x1E06D), (0x1E4D0, 0x1E4F9),
         (0x1E5D0, 0x1E5FA), (0x2B739, 0x2B739), (0x2EBF0, 0x2EE5D), (0x31350, 0x323AF)]


def code_point_texts():
    """Every code point of planes 0 and 1, those of NEWER, and a sample of the rest."""
    cps = set(range(0, 0x10000)) | set(range(0x10000, 0x20000, 3)) | set(range(0x20000, 0x110000, 61))
    cps |= set(range(0xE0000, 0xE0200))
    for a, b in NEWER:
        cps |= set(range(a - 2, b + 3))
    cps = [cp for cp in sorted(cps) if not 0xD800 <= cp <= 0xDFFF and cp <= 0x10FFFF]
    texts = []
    for i in range(0, len(cps), 256):
        parts = []
        for cp in cps[i:i + 256]:
            c = chr(cp)
            parts.append(" " + c + c + "'" + c + "1" + c + "\n")
        texts.append("".join(parts))
    return texts


def train(pre, decoder, specials, corpus, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    tok.decoder = decoder
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def edit(tok, fn):
    """The tokenizer with its JSON changed by fn (a dict -> None)."""
    d = json.loads(tok.to_str())
    fn(d)
    return Tokenizer.from_str(json.dumps(d, ensure_ascii=False))


def legacy_merges(d):
    d["model"]["merges"] = [a + " " + b for a, b in d["model"]["merges"]]


def build(corpus_text, r):
    toks = {}
    extra = [random_text(r, 2000) for _ in range(600)]
    corpus = corpus_text.split("\n\n") + extra
    bl = train(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), decoders.ByteLevel(),
               ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], corpus, 6000)
    bl.add_tokens([AddedToken("<think>", special=False, normalized=False),
                   AddedToken("<|im", special=False, normalized=False),
                   AddedToken("endoftext", special=False, normalized=True),
                   AddedToken("hello world", special=False, normalized=True),
                   AddedToken("<br>", special=False, normalized=True, rstrip=True),
                   AddedToken("world<x>", special=False, normalized=False),
                   AddedToken("m_end", special=False, normalized=False)])
    bl.add_special_tokens([AddedToken("[MASK]", special=True, normalized=False, lstrip=True),
                           AddedToken("[SEP]", special=True, normalized=True)])
    toks["bytelevel"] = bl
    toks["bytelevel_legacy"] = edit(bl, legacy_merges)
    l3_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
                   "<|reserved_special_token_3|>"]
    l3 = train(pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True,
                                                                 use_regex=False)]),
               decoders.ByteLevel(), [], corpus, 6000)
    l3.add_special_tokens(l3_specials)  # after the vocab, as Llama 3's ids 128000...
    # some merges dropped, so that tokens exist that merges cannot make, but ignore_merges can;
    # some reversed, so that merge order is not id order
    def reorder(d):
        m = [m for i, m in enumerate(d["model"]["merges"]) if i < 1000 or i % 5]
        d["model"]["merges"] = m[:500] + m[500:3000][::-1] + m[3000:]
    l3 = edit(l3, reorder)
    toks["llama3_merges"] = l3
    toks["llama3"] = edit(l3, lambda d: d["model"].__setitem__("ignore_merges", True))
    sm_specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>",
                   "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>",
                   "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<jupyter_script>",
                   "<empty_output>"]
    sm = train(pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
               decoders.ByteLevel(), sm_specials, corpus, 6000)
    toks["smollm"] = sm
    toks["digits_runs"] = edit(sm, lambda d: d["pre_tokenizer"]["pretokenizers"][0].__setitem__(
        "individual_digits", False))
    g2 = ByteLevelBPETokenizer("data/gpt2/encoder.json", "data/gpt2/vocab.bpe")
    g2.add_special_tokens(["<|endoftext|>"])
    toks["gpt2"] = Tokenizer.from_str(g2.to_str())
    return toks


EOT_NAMES = ["<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"]


def main():
    out = sys.argv[1]
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 1
    os.makedirs(out, exist_ok=True)
    r = random.Random(seed)
    corpus_text = open("data/tinyshakespeare.txt", encoding="utf-8").read()
    toks = build(corpus_text, r)
    texts = [corpus_text]
    texts += [random_text(r, r.randrange(1, 300)) for _ in range(3000)]
    texts += [random_text(r, 3000) for _ in range(20)]
    follow = ["b", "1", ".", "", "'s", " b", "\u3000", "\u0301", "\n", "\r\n", "\t"]
    for w1 in SPACES:
        texts.append("".join("a" + chr(w1) + chr(w2) + f + "|" + chr(w1) + f for w2 in SPACES for f in follow))
    big = texts[1:3000]
    texts.append("".join(big))
    texts.append("\n".join(big[::-1]) + "x\n")
    n_core = len(texts)
    texts += code_point_texts()
    with open(os.path.join(out, "texts.bin"), "wb") as f:
        for t in texts:
            b = t.encode("utf-8")
            f.write(struct.pack("<I", len(b)) + b)
    char_to_byte = []  # per text: byte offset of each character offset
    for t in texts:
        cp = numpy.frombuffer(t.encode("utf-32-le"), dtype="<u4")
        n = 1 + (cp >= 0x80).astype(numpy.int64) + (cp >= 0x800) + (cp >= 0x10000)
        char_to_byte.append(numpy.concatenate([[0], numpy.cumsum(n)]))
    lst = []
    total = 0
    for name, tok in toks.items():
        # the variants of a file (merges spelled otherwise, ignore_merges, Digits runs) skip the code points
        n = n_core if name in ("bytelevel_legacy", "llama3_merges", "digits_runs") else len(texts)
        with open(os.path.join(out, name + ".json"), "w", encoding="utf-8") as f:
            f.write(tok.to_str(pretty=True))
        vocab = tok.get_vocab(with_added_tokens=True)
        eot = next(vocab[e] for e in EOT_NAMES if e in vocab)
        lst.append("%s %d %d %d\n" % (name, max(vocab.values()) + 1, eot, n))
        tok.encode_special_tokens = False
        allows = [e.ids for e in tok.encode_batch(texts[:n], add_special_tokens=False)]
        # encode_special_tokens only matters where a special token's text is there
        specials = [a.content for a in tok.get_added_tokens_decoder().values() if a.special]
        with_special = [i for i in range(n) if any(sp in texts[i] for sp in specials)]
        tok.encode_special_tokens = True
        ordinaries = list(allows)
        for i, e in zip(with_special, tok.encode_batch([texts[i] for i in with_special], add_special_tokens=False)):
            ordinaries[i] = e.ids
        tok.encode_special_tokens = False
        decs = tok.decode_batch(allows, skip_special_tokens=False)
        with open(os.path.join(out, name + ".ids"), "wb") as f:
            for i, t in enumerate(texts[:n]):
                allow, ordinary, dec = allows[i], ordinaries[i], decs[i].encode("utf-8")
                ends = numpy.zeros(0, dtype="<u4")  # the same pre-tokenizer as bytelevel's, llama3's
                if name not in ("bytelevel_legacy", "llama3_merges"):
                    ends = char_to_byte[i][[e for _, (_, e) in tok.pre_tokenizer.pre_tokenize_str(t)]]
                for ids in (allow, ordinary):
                    f.write(struct.pack("<I", len(ids)) + numpy.asarray(ids, dtype="<u4").tobytes())
                f.write(struct.pack("<I", len(ends)) + ends.astype("<u4").tobytes())
                f.write(struct.pack("<I", len(dec)) + dec)
                total += len(allow) + len(ordinary)
                if i == 0:
                    with open(os.path.join(out, "corpus.%s.u16" % name), "wb") as g:
                        ids = [eot] + ordinary
                        if max(ids) < 65536:
                            g.write(numpy.asarray(ids, dtype="<u2").tobytes())
    with open(os.path.join(out, "list.txt"), "w") as f:
        f.writelines(lst)
    print("hf_cases: %d tokenizers, %d texts (%d bytes), %d ids from tokenizers %s" %
          (len(toks), len(texts), sum(len(t.encode()) for t in texts), total, __import__("tokenizers").__version__))


if __name__ == "__main__":
    main()
