#!/usr/bin/env python3
"""make-gemma4-vocab.py: builds the small Gemma-4-style vocabulary used by the tokenizer tests.

No real Gemma 4 tokenizer.json can be downloaded here, so this trains one that exercises the
same algorithm and writes it out twice:
  - tests/golden/tok/gemma4-mini-tokenizer.json: a Hugging Face `tokenizers` file configured
    like Gemma 4's GemmaTokenizer (spec gemma4.md §4.1): BPE with byte_fallback and fuse_unk,
    normalizer Replace(' ' -> U+2581), pre-tokenizer Split(' ', merged_with_previous) (a no-op
    after the normalizer), decoder U+2581 -> ' ' + ByteFallback + Fuse.
  - tests/golden/tok/gemma4-mini-vocab.gguf: the same vocabulary written the way llama.cpp's
    converter (conversion/gemma.py Gemma4Model.set_vocab) writes it: tokenizer.ggml.model =
    "gemma4", tokens, scores all -1000, token_type (control for the HF special tokens,
    user-defined for the seven "visible" tool/channel tokens, byte for <0xHH>, normal for the
    rest), merges as "left right" strings in rank order, special ids, add_space_prefix false,
    add_bos true.

Layout: ids 0..237 copy the real Gemma 4 vocab (specials at their real ids: 0-4, 46-52, 98,
100, 101, 105, 106; newline runs 107-137, U+2581 runs 138-167, HTML tags 168-237), then the
256 byte tokens <0x00>..<0xFF> at 238..493 (as in the real vocab), then runs of tabs, then
the trained tokens; the image/audio/video specials (255999+ in the real vocab) go last. The
merges start like the real ones, with every split of the whitespace-run tokens (the real
file's first merge is "\\n"*30 + " \\n"), then the trained merges.
Trained tokens are left out when they contain NUL (llama.cpp reads token texts as C strings
and then aborts on the duplicate ""), when they are whitespace runs (the layout has 1..31;
a longer run no merge reaches is exactly where HF and llama.cpp's whole-run rule part ways,
and the real vocab has none), or when they spell a media special; merges that make or use a
byte or special token are dropped (the real file has none).

The real vocab's first 238 tokens, types, whitespace merges and gemma4.* hparam keys are
read from a real Gemma 4 vocab GGUF when one is given (--real PATH: llama.cpp's
models/ggml-vocab-gemma-4.gguf, found in the llama-cpp-python 0.3.36 sdist under
vendor/llama.cpp/models/). The committed files were made with it. Without --real the layout
and merge order are rebuilt from spec §4.2 and the real file's pattern (checked identical:
ids 0..237 and all 1395 whitespace merges in the same order); only the hparam keys become
placeholders (llama.cpp needs some to load the file vocab-only).

Training (tokenizers 0.23.3, BpeTrainer, 6000 tokens, limit_alphabet 600) takes ~1 CPU
minute; --cache FILE keeps the trained model so layout changes do not retrain.

Needs: pip install tokenizers gguf numpy. Training text: tools/make-tok-corpus.py with a
different seed than the test corpus, so test entries are not training entries.

usage: tools/make-gemma4-vocab.py [--real PATH] [--cache FILE] [--vocab-size N] [--outdir DIR]
"""
import importlib.util
import json
import os
import sys

import gguf
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers, Regex

HERE = os.path.dirname(os.path.abspath(__file__))

CONTROL = {0: "<pad>", 1: "<eos>", 2: "<bos>", 3: "<unk>", 4: "<mask>", 46: "<|tool>",
           47: "<tool|>", 98: "<|think|>", 105: "<|turn>", 106: "<turn|>"}
VISIBLE = {48: "<|tool_call>", 49: "<tool_call|>", 50: "<|tool_response>",
           51: "<tool_response|>", 52: "<|\"|>", 100: "<|channel>", 101: "<channel|>"}
MEDIA = ["<|image>", "<|audio>", "<|image|>", "<|audio|>", "<image|>", "<audio|>", "<|video|>"]
HTML = ["<table>", "<caption>", "<thead>", "<tbody>", "<tfoot>", "<tr>", "<th>", "<td>",
        "</table>", "</caption>", "</thead>", "</tbody>", "</tfoot>", "</tr>", "</th>", "</td>",
        "<h1>", "<h2>", "<h3>", "<h4>", "<h5>", "<h6>", "<blockquote>", "</h1>", "</h2>",
        "</h3>", "</h4>", "</h5>", "</h6>", "</blockquote>", "<strong>", "<em>", "<b>", "<i>",
        "<u>", "<s>", "<sub>", "<sup>", "<code>", "</strong>", "</em>", "</b>", "</i>", "</u>",
        "</s>", "</sub>", "</sup>", "</code>", "<a>", "<html>", "<body>", "<img>", "<span>",
        "<bbox>", "<ul>", "<li>", "<div>", "<iframe>", "<footer>", "</a>", "</html>",
        "</body>", "</img>", "</span>", "</bbox>", "</ul>", "</li>", "</div>", "</iframe>",
        "</footer>"]
RUN_CHARS = ["\n", "\u2581", "\t"]
MAX_RUN = 31


def load_corpus_module():
    spec = importlib.util.spec_from_file_location("corpus", os.path.join(HERE, "make-tok-corpus.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def first_tokens_from_spec():
    """Ids 0..237 as in the real Gemma 4 vocab (spec §4.2 and the real file's layout)."""
    toks = [None] * 238
    types = [gguf.TokenType.NORMAL] * 238
    for i, t in CONTROL.items():
        toks[i], types[i] = t, gguf.TokenType.CONTROL
    for i, t in VISIBLE.items():
        toks[i], types[i] = t, gguf.TokenType.USER_DEFINED
    toks[5] = "[multimodal]"
    unused = 0
    for i in range(6, 107):
        if toks[i] is None:  # numbered over the free slots only, as in the real vocab
            toks[i] = "<unused%d>" % unused
            unused += 1
    for k in range(1, MAX_RUN + 1):
        toks[106 + k] = "\n" * k
    for k in range(2, MAX_RUN + 1):
        toks[136 + k] = "\u2581" * k
    for j, t in enumerate(HTML):
        toks[168 + j] = t
    return toks, types


def whitespace_merges():
    """Every split of every whitespace-run token, ordered like the real file: left length
    from long to short, then right length from long to short, then \\n, U+2581, \\t."""
    out = []
    for left in range(MAX_RUN - 1, 0, -1):
        for right in range(MAX_RUN - left, 0, -1):
            for ch in RUN_CHARS:
                out.append((ch * left, ch * right))
    return out


def main():
    real = None
    cache = None  # --cache FILE: keep the trained tokenizer there and reuse it
    vocab_size = 6000
    outdir = os.path.join(HERE, "..", "tests", "golden", "tok")
    args = sys.argv[1:]
    while args:
        a = args.pop(0)
        if a == "--real":
            real = args.pop(0)
        elif a == "--vocab-size":
            vocab_size = int(args.pop(0))
        elif a == "--outdir":
            outdir = args.pop(0)
        elif a == "--cache":
            cache = args.pop(0)
        else:
            sys.exit(__doc__)

    base_toks, base_types = first_tokens_from_spec()
    ws_merges = whitespace_merges()
    extra_kv = {}
    if real:
        r = gguf.GGUFReader(real)
        rt = r.fields["tokenizer.ggml.tokens"].contents()
        rty = r.fields["tokenizer.ggml.token_type"].contents()
        rm = r.fields["tokenizer.ggml.merges"].contents()
        for i in range(238):
            if rt[i] != base_toks[i] or rty[i] != int(base_types[i]):
                print("note: id %d differs from the spec layout: real %r/%d, spec %r/%d"
                      % (i, rt[i], rty[i], base_toks[i], int(base_types[i])))
        base_toks = list(rt[:238])
        base_types = [gguf.TokenType(t) for t in rty[:238]]
        wsset = set(ws_merges)
        real_ws = []
        for m in rm:
            a, b = m.split(" ", 1)
            if (a, b) in wsset:
                real_ws.append((a, b))
        if set(real_ws) == wsset:
            ws_merges = real_ws  # exactly the real order
        else:
            print("note: real whitespace merges differ from the rebuilt list; using rebuilt")
        for k, f in r.fields.items():
            if k.startswith("gemma4."):
                extra_kv[k] = (f.types, f.contents())

    # ---- train ------------------------------------------------------------------------------
    corpus = load_corpus_module()
    train_entries = corpus.generate(30000, 777)
    texts = []
    for e in train_entries:
        # train on whole entries; newline runs are isolated by the training pre-tokenizer so
        # that no merge joins a newline to another character (true of the real merges too)
        texts.append(corpus.sanitize(e))
    if cache and os.path.exists(cache):
        trained = json.load(open(cache, encoding="utf-8"))["model"]
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
        tok.normalizer = normalizers.Replace(" ", "\u2581")
        tok.pre_tokenizer = pre_tokenizers.Split(Regex("\n+|\t+|\u2581{2,}"),
                                                 behavior="isolated")
        specials = [t for t in base_toks if t is not None] + MEDIA
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                      limit_alphabet=600, show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        if cache:
            tok.save(cache)
        trained = json.loads(tok.to_str())["model"]
    t_vocab = sorted(trained["vocab"].items(), key=lambda kv: kv[1])
    t_merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in trained["merges"]]

    # ---- final layout ------------------------------------------------------------------------
    toks = list(base_toks)
    types = list(base_types)
    for b in range(256):
        toks.append("<0x%02X>" % b)
        types.append(gguf.TokenType.BYTE)
    for k in range(1, MAX_RUN + 1):
        toks.append("\t" * k)
        types.append(gguf.TokenType.NORMAL)
    seen = set(toks)
    for t, _ in t_vocab:
        # no NUL inside a token: llama.cpp reads token texts as C strings (it would see "")
        # and no whitespace run beyond the layout's 1..31 (the real vocab has none either:
        # a run token that merges cannot build from the left is where HF and llama.cpp's
        # "newline run that is a token is taken whole" rule part ways, see src/tok/README.md)
        if len(t) > 1 and len(set(t)) == 1 and t[0] in RUN_CHARS:
            continue
        if t not in seen and t not in MEDIA and "\x00" not in t:
            seen.add(t)
            toks.append(t)
            types.append(gguf.TokenType.NORMAL)
    for t in MEDIA:
        toks.append(t)
        types.append(gguf.TokenType.CONTROL)
    ids = {t: i for i, t in enumerate(toks)}
    if len(ids) != len(toks):
        import collections
        sys.exit("duplicate tokens: %r" % [t for t, c in collections.Counter(toks).items() if c > 1][:20])

    merges = []
    mseen = set()
    for a, b in ws_merges + t_merges:
        if (a, b) in mseen:
            continue
        if a not in ids or b not in ids or (a + b) not in ids:
            continue  # a trained merge into a token the layout dropped (none expected)
        if types[ids[a + b]] != gguf.TokenType.NORMAL or types[ids[a]] != gguf.TokenType.NORMAL \
                or types[ids[b]] != gguf.TokenType.NORMAL:
            continue  # like the real file: no merge makes or uses a byte or special token
        mseen.add((a, b))
        merges.append((a, b))

    # ---- HF tokenizer.json -------------------------------------------------------------------
    added = []
    for i, (t, ty) in enumerate(zip(toks, types)):
        if ty in (gguf.TokenType.CONTROL, gguf.TokenType.USER_DEFINED):
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False,
                          "special": ty == gguf.TokenType.CONTROL})
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                          "behavior": "MergedWithPrevious", "invert": False},
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": ids, "merges": [[a, b] for a, b in merges]},
    }
    os.makedirs(outdir, exist_ok=True)
    tj_path = os.path.join(outdir, "gemma4-mini-tokenizer.json")
    with open(tj_path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    Tokenizer.from_file(tj_path)  # must load

    # ---- GGUF (as llama.cpp's converter writes it) -------------------------------------------
    path = os.path.join(outdir, "gemma4-mini-vocab.gguf")
    w = gguf.GGUFWriter(path, "gemma4")
    w.add_name("gemma4-mini-vocab (tools/make-gemma4-vocab.py)")
    for k, (t, v) in extra_kv.items():
        if t[0] == gguf.GGUFValueType.ARRAY:
            w.add_key_value(k, list(v), gguf.GGUFValueType.ARRAY, sub_type=t[1])
        else:
            w.add_key_value(k, v, t[0])
    if not extra_kv:
        # enough hparams for llama.cpp to load the file vocab-only
        w.add_block_count(1)
        w.add_context_length(4096)
        w.add_embedding_length(64)
        w.add_feed_forward_length(128)
        w.add_head_count(1)
    w.add_tokenizer_model("gemma4")
    w.add_token_list(toks)
    w.add_token_scores([-1000.0] * len(toks))
    w.add_token_types([int(t) for t in types])
    w.add_token_merges(["%s %s" % (a, b) for a, b in merges])
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_mask_token_id(4)
    w.add_add_space_prefix(False)
    w.add_add_bos_token(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("%s: %d tokens, %d merges; %s" % (path, len(toks), len(merges), tj_path))


if __name__ == "__main__":
    main()
