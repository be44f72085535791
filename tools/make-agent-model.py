#!/usr/bin/env python3
"""make-agent-model.py: a tiny random-weight Gemma 4 model with a real-shaped vocabulary and
Google's Gemma 4 chat template, for end-to-end tests of tool calling, thinking and structured
output through `localgemma serve` (tests/py/test_agent_clients.py).

Usage: make-agent-model.py OUT.gguf [--seed N]

What it writes (deterministic for a seed; about 4 MB, so tests generate it at run time
instead of committing it; needs only numpy and gguf, runs in well under a second):
  - the architecture, hyperparameters and every block tensor of the E2B-shaped fixture
    tests/golden/model/gemma4_e2b.f32.gguf (tools/make-fixtures: PLE, KV sharing, sliding and
    global layers), copied as they are;
  - the vocabulary of tests/golden/tok/gemma4-mini-vocab.gguf (tools/make-gemma4-vocab.py:
    6254-token Gemma 4 BPE with every Gemma 4 special token, <|tool_call>, <|channel>, <|"|>,
    <turn|> ..., at its real id), every tokenizer.* key copied;
  - token_embd (tied output) and per_layer_token_embd, the two vocabulary-sized tensors,
    drawn fresh from N(0, 0.5) and N(0, 0.1) with numpy's seeded generator, sized to that
    vocabulary;
  - tokenizer.chat_template = the canonical Gemma 4 small-model template
    (/work/shared/spec/templates/gemma4-small.jinja, or tests/golden/chat/ if present there).
The engine picks its renderer from the architecture (gemma4 + per-layer input = "small"),
which is exactly the model family the template belongs to.
"""
import argparse
import os
import sys

import numpy as np
import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "tests", "golden", "model", "gemma4_e2b.f32.gguf")
VOCAB = os.path.join(ROOT, "tests", "golden", "tok", "gemma4-mini-vocab.gguf")
TEMPLATES = [os.path.join(ROOT, "tests", "golden", "chat", "gemma4-small.jinja"),
             "/work/shared/spec/templates/gemma4-small.jinja"]

# Arrays whose element type the writer must be told (it would guess INT32 / FLOAT32 wrongly
# for some), by GGUF element type of the source field.
_SCALAR_ADDERS = {
    gguf.GGUFValueType.UINT8: "add_uint8", gguf.GGUFValueType.INT8: "add_int8",
    gguf.GGUFValueType.UINT16: "add_uint16", gguf.GGUFValueType.INT16: "add_int16",
    gguf.GGUFValueType.UINT32: "add_uint32", gguf.GGUFValueType.INT32: "add_int32",
    gguf.GGUFValueType.UINT64: "add_uint64", gguf.GGUFValueType.INT64: "add_int64",
    gguf.GGUFValueType.FLOAT32: "add_float32", gguf.GGUFValueType.FLOAT64: "add_float64",
    gguf.GGUFValueType.BOOL: "add_bool", gguf.GGUFValueType.STRING: "add_string",
}


def copy_field(w, key, field):
    t = field.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        sub = field.types[1] if len(field.types) > 1 else None
        vals = field.contents()
        w.add_key_value(key, list(vals), gguf.GGUFValueType.ARRAY, sub_type=sub)
    else:
        getattr(w, _SCALAR_ADDERS[t])(key, field.contents())


def template_text():
    for p in TEMPLATES:
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                return f.read()
    raise SystemExit("make-agent-model: no Gemma 4 template found in %r" % TEMPLATES)


def build(out, seed=1234):
    base = gguf.GGUFReader(BASE)
    voc = gguf.GGUFReader(VOCAB)
    n_vocab = len(voc.fields["tokenizer.ggml.tokens"].data)
    rng = np.random.default_rng(seed)

    w = gguf.GGUFWriter(out, "gemma4")
    for key, field in base.fields.items():
        if key.startswith("GGUF.") or key.startswith("tokenizer.") or \
           key == "general.architecture":
            continue
        if key == "general.name":
            w.add_string(key, "localgemma agent fixture (tools/make-agent-model.py)")
            continue
        copy_field(w, key, field)
    for key, field in voc.fields.items():
        if key.startswith("tokenizer."):
            copy_field(w, key, field)
    w.add_string("tokenizer.chat_template", template_text())

    for t in base.tensors:
        shape = [int(x) for x in t.shape]  # ggml order: ne0 first
        data = np.array(t.data, dtype=np.float32).reshape(list(reversed(shape)))
        if t.name == "token_embd.weight":
            data = rng.normal(0.0, 0.5, size=(n_vocab, shape[0])).astype(np.float32)
        elif t.name == "per_layer_token_embd.weight":
            data = rng.normal(0.0, 0.1, size=(n_vocab, shape[0])).astype(np.float32)
        w.add_tensor(t.name, data)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n_vocab


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    n = build(a.out, a.seed)
    print("make-agent-model: wrote %s (%d-token vocab)" % (a.out, n), file=sys.stderr)


if __name__ == "__main__":
    main()
