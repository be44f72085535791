#!/usr/bin/env python3
"""make-tok-golden.py: records reference token ids for tests/golden/tok/corpus.txt.

  --gemma3 GGUF      llama.cpp (llama-cpp-python, vocab-only load) on the Gemma 3 vocab
                     -> tests/golden/tok/gemma3-270m.ids
  --gemma4-mini      Hugging Face `tokenizers` on tests/golden/tok/gemma4-mini-tokenizer.json
                     -> tests/golden/tok/gemma4-mini.ids; llama.cpp on the mini GGUF is
                     compared with it and the differences are listed (not used as golden)
  --gemma4-real GGUF llama.cpp on a real Gemma 4 vocab GGUF -> OUT (a developer check, not
                     committed: the real vocab is 15 MB)
  --out PATH         output file for the mode given

Both modes record two id lists per entry: "plain" (special-token parsing off: only
user-defined tokens are atomic) and "special" (on: control tokens too), each with BOS.

How invalid UTF-8 reaches each side:
  - llama.cpp gets the raw bytes (llama_tokenize takes a byte string). Its SPM path (Gemma 3)
    splits by lead byte and falls back to <0xHH> bytes; its BPE path (Gemma 4) turns every
    undecodable byte into U+FFFD first.
  - HF takes only str: the entry is decoded with one U+FFFD per byte that does not start a
    strictly valid character (make-tok-corpus.py sanitize(), the same rule as our encoder).

Adjustments, where we deliberately differ from llama.cpp (src/tok/README.md):
  A1 exactly one BOS: with special parsing, text starting with "<bos>" gets no second BOS.
  A3 (Gemma 4) llama.cpp's BPE path decodes overlong sequences, surrogates and values above
     U+10FFFF instead of treating them as invalid (the last make it throw, which aborts the
     process); we replace them by U+FFFD per byte like every invalid byte, so llama.cpp is
     given the text after that replacement.
  A2 llama.cpp forces every end-of-generation token to control type, so "</s>" (Gemma 3,
     user-defined in the file) and "<|tool_response>" (Gemma 4, user-defined) are not
     matched with special parsing off; we follow the file's type: they are always atomic.
     The expected ids are llama.cpp's ids of the pieces around them, joined by that token.
Entries whose expected ids were adjusted carry a flag, so the test can report how many.

HF plain mode: a second tokenizer whose added tokens are only the user-defined ones.

File format (little-endian): "LGTOKIDS1\\n", u32 n_entries, then per entry: u8 flags,
varint n_plain, n_plain varint ids, varint k (0: special ids equal plain ids, else k-1 ids
follow). flags: 1 plain adjusted, 2 special adjusted, 4 llama.cpp differs from HF (plain),
8 llama.cpp differs from HF (special), 16 no reference for this entry (unused so far).

usage: tools/make-tok-golden.py --gemma3 PATH | --gemma4-mini | --gemma4-real PATH --out OUT
"""
import importlib.util
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GOLD = os.path.join(HERE, "..", "tests", "golden", "tok")


def corpus_module():
    spec = importlib.util.spec_from_file_location("corpus", os.path.join(HERE, "make-tok-corpus.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def read_corpus(cm):
    with open(os.path.join(GOLD, "corpus.txt"), encoding="utf-8", newline="\n") as f:
        return [cm.unescape(line.rstrip("\n")) for line in f]


def varint(x):
    out = bytearray()
    while True:
        b = x & 0x7F
        x >>= 7
        if x:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def write_ids(path, rows):
    with open(path, "wb") as f:
        f.write(b"LGTOKIDS1\n")
        f.write(struct.pack("<I", len(rows)))
        for flags, plain, special in rows:
            f.write(bytes([flags]))
            f.write(varint(len(plain)))
            for t in plain:
                f.write(varint(t))
            if special == plain:
                f.write(varint(0))
            else:
                f.write(varint(len(special) + 1))
                for t in special:
                    f.write(varint(t))
    print("%s: %d entries, %d bytes" % (path, len(rows), os.path.getsize(path)))


def llama_vocab(path):
    import llama_cpp
    return llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)


def lenient_cps(b):
    """Code points as llama.cpp's BPE path decodes b (unicode_cpts_from_utf8): any lead byte
    with the right number of continuation bytes is accepted (overlongs, surrogates, values
    above U+10FFFF), anything else is one U+FFFD per byte."""
    out = []
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        need = 1 if c < 0x80 else 0 if not c & 0x40 else 2 if not c & 0x20 else \
            3 if not c & 0x10 else 4 if not c & 0x08 else 0
        if need == 1:
            out.append(c)
            i += 1
            continue
        if need == 0 or i + need > n or any((x & 0xC0) != 0x80 for x in b[i + 1:i + need]):
            out.append(0xFFFD)
            i += 1
            continue
        cp = c & (0x7F >> need)
        for x in b[i + 1:i + need]:
            cp = (cp << 6) | (x & 0x3F)
        out.append(cp)
        i += need
    return out


def strict_cps(cm, b):
    return [ord(ch) for ch in cm.sanitize(b)]


def llama_ids(llm, b, special, forced, forced_id, bos):
    """llama.cpp ids for b; with forced (A2) set and special parsing off, the forced token
    text is cut out first. Returns (ids, adjusted)."""
    adjusted = False
    if not special and forced in b:
        ids = [bos]
        pieces = b.split(forced)
        for i, p in enumerate(pieces):
            if i:
                ids.append(forced_id)
            if p:
                ids.extend(llm.tokenize(p, add_bos=False, special=False))
        adjusted = True
    else:
        ids = llm.tokenize(b, add_bos=True, special=special)
    if special and len(ids) >= 2 and ids[0] == bos and ids[1] == bos and b.startswith(b"<bos>"):
        ids = ids[1:]  # A1
        adjusted = True
    return ids, adjusted


def mode_llama(path, out, forced, bpe):
    cm = corpus_module()
    entries = read_corpus(cm)
    llm = llama_vocab(path)
    forced_id = llm.tokenize(forced, add_bos=False, special=True)
    assert len(forced_id) == 1, forced_id
    forced_id = forced_id[0]
    bos = llm.token_bos()
    rows = []
    n_adj = n_a3 = 0
    for b in entries:
        a3 = False
        if bpe:
            # A3: llama.cpp's BPE path decodes overlongs, surrogates and values above
            # U+10FFFF (the last make it throw and abort the process); we replace them
            # like any invalid byte. llama.cpp gets the text with that replacement done.
            a3 = lenient_cps(b) != strict_cps(cm, b)
            b = cm.sanitize(b).encode("utf-8")
        plain, a1 = llama_ids(llm, b, False, forced, forced_id, bos)
        spec, a2 = llama_ids(llm, b, True, forced, forced_id, bos)
        flags = (1 if a1 or a3 else 0) | (2 if a2 or a3 else 0)
        n_adj += flags != 0
        n_a3 += a3
        rows.append((flags, plain, spec))
    write_ids(out, rows)
    print("entries adjusted: %d (of which A3, lenient UTF-8 decoding: %d)" % (n_adj, n_a3))


def hf_pair():
    from tokenizers import Tokenizer
    path = os.path.join(GOLD, "gemma4-mini-tokenizer.json")
    full = Tokenizer.from_file(path)
    tj = json.load(open(path, encoding="utf-8"))
    tj["added_tokens"] = [a for a in tj["added_tokens"] if not a["special"]]
    plain = Tokenizer.from_str(json.dumps(tj))
    return plain, full


def mode_gemma4_mini(out):
    cm = corpus_module()
    entries = read_corpus(cm)
    hf_plain, hf_full = hf_pair()
    try:
        llm = llama_vocab(os.path.join(GOLD, "gemma4-mini-vocab.gguf"))
    except Exception as e:  # noqa: BLE001 - report and go on without llama.cpp
        print("llama.cpp could not load the mini vocab: %s" % e)
        llm = None
    rows = []
    diffs = []
    n_cmp = 0
    for i, b in enumerate(entries):
        s = cm.sanitize(b)
        plain = [2] + hf_plain.encode(s, add_special_tokens=False).ids
        special = hf_full.encode(s, add_special_tokens=False).ids
        if special[:1] != [2]:
            special = [2] + special
        flags = 0
        if llm is not None:
            n_cmp += 1
            # llama.cpp gets the strictly sanitized text (A3, see mode_llama)
            lp = llm.tokenize(s.encode("utf-8"), add_bos=True, special=False)
            ls = llm.tokenize(s.encode("utf-8"), add_bos=True, special=True)
            if ls[:2] == [2, 2] and b.startswith(b"<bos>"):
                ls = ls[1:]
            if lp != plain:
                flags |= 4
            if ls != special:
                flags |= 8
            if flags:
                diffs.append((i, b, plain, lp, special, ls))
        else:
            flags |= 16
        rows.append((flags, plain, special))
    write_ids(out, rows)
    print("llama.cpp vs HF on the mini vocab: %d entries compared, %d differ (plain %d, "
          "special %d)" % (n_cmp, len(diffs), sum(1 for r in rows if r[0] & 4),
                           sum(1 for r in rows if r[0] & 8)))
    with open("/tmp/gemma4-mini-llamacpp-vs-hf.txt", "w", encoding="utf-8") as f:
        for i, b, p, lp, s, ls in diffs:
            f.write("entry %d %r\n  hf plain %s\n  ll plain %s\n  hf spec  %s\n  ll spec  %s\n"
                    % (i, b[:200], p[:40], lp[:40], s[:40], ls[:40]))
    print("details: /tmp/gemma4-mini-llamacpp-vs-hf.txt")


def main():
    a = sys.argv[1:]
    if len(a) >= 2 and a[0] == "--gemma3":
        out = a[3] if len(a) >= 4 and a[2] == "--out" else os.path.join(GOLD, "gemma3-270m.ids")
        mode_llama(a[1], out, b"</s>", False)
    elif a[:1] == ["--gemma4-mini"]:
        mode_gemma4_mini(os.path.join(GOLD, "gemma4-mini.ids"))
    elif len(a) >= 4 and a[0] == "--gemma4-real" and a[2] == "--out":
        mode_llama(a[1], a[3], b"<|tool_response>", True)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
