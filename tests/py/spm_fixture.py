"""spm_fixture.py: builds a Gemma 3 Hugging Face checkpoint directory whose vocabulary files
(tokenizer.model, tokenizer.json, tokenizer_config.json, added_tokens.json) are reconstructed
from the tokenizer.* keys of a real Gemma 3 GGUF (written by llama.cpp's converter), so that
converting the directory must give those keys back. Used by tests/py/test_convert_spm.py and
tools/check-convert-spm.py. No dependency beyond numpy.

How the GGUF vocabulary is turned back into HF files (llama.cpp's converter read in reverse):
  - NORMAL tokens: SentencePiece NORMAL pieces with their score.
  - BYTE tokens: BYTE pieces, score 0 (trainer_spec.byte_fallback on).
  - CONTROL tokens: CONTROL pieces (<unk>: UNKNOWN), score 0, listed in tokenizer_config.json's
    added_tokens_decoder (which gives them score -1000): <mask> and <unused0..19> with
    "special": false (they become CONTROL because their text looks special), the others
    "special": true; <unused6000> and up are NOT listed and instead carry score -1000 in the
    model itself.
  - USER_DEFINED tokens: USER_DEFINED pieces with spaces written as U+2581, score 0; the tab
    runs come from added_tokens.json, the rest from added_tokens_decoder ("special": false,
    content with U+2581, which the converter turns back into spaces).
  - tokenizer.json: only added_tokens (for the special-token ids) and a Gemma-style
    TemplateProcessing post-processor (<bos> $A / <bos> $A <bos> $B: add_bos, not add_sep).
  - config.json: the tiny Gemma 3 fixture's, with vocab_size = len(tokens),
    eos_token_id a list (ignored by the converter), and an embedding with 64 extra rows that
    the conversion must cut off.
"""
import json
import os
import struct

import numpy as np

# ---- minimal GGUF metadata reader (gguf-py's reader takes minutes on 262k strings) ----

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}
_NP = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32,
       6: np.float32, 7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}


def read_gguf(path, with_tensors=False):
    """Returns ({key: (type_name, value)}, {tensor: (ggml_type, ne)}); arrays as lists or numpy."""
    data = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        s = data[pos:pos + n]
        pos += n
        return s.decode("utf-8")

    def value(t):
        nonlocal pos
        if t == 8:
            return ("str", string())
        if t == 9:
            et = take("<I")
            n = take("<Q")
            if et == 8:
                return ("arr[str]", [string() for _ in range(n)])
            dt = np.dtype(_NP[et])
            arr = np.frombuffer(data, dtype=dt, count=n, offset=pos).copy()
            pos += n * dt.itemsize
            return ("arr[%d]" % et, arr)
        return ("t%d" % t, take(_SCALAR[t]))

    assert data[:4] == b"GGUF", path
    pos = 4
    take("<I")
    n_tensors = take("<Q")
    n_kv = take("<Q")
    kv = {}
    for _ in range(n_kv):
        k = string()
        kv[k] = value(take("<I"))
    tensors = {}
    if with_tensors:
        for _ in range(n_tensors):
            name = string()
            nd = take("<I")
            ne = [take("<Q") for _ in range(nd)]
            t = take("<I")
            take("<Q")
            tensors[name] = (t, ne)
    return kv, tensors


# ---- protobuf writer (just what sentencepiece's ModelProto needs) ----

def _varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field, wire):
    return _varint(field << 3 | wire)


def _len_field(field, payload):
    return _key(field, 2) + _varint(len(payload)) + payload


def _piece(text, score, typ):
    b = _len_field(1, text.encode("utf-8"))
    if struct.pack("<f", score) != b"\0\0\0\0":  # -0.0 is kept, as protobuf does
        b += _key(2, 5) + struct.pack("<f", score)
    if typ != 1:  # NORMAL is the default: leave it out, as protobuf does
        b += _key(3, 0) + _varint(typ)
    return b


def spm_model_bytes(pieces, unk_id, bos_id, eos_id, pad_id):
    """pieces: [(text, score, type)] with SentencePiece types (1 normal ... 6 byte)."""
    out = bytearray()
    for text, score, typ in pieces:
        out += _len_field(1, _piece(text, score, typ))
    trainer = (_key(3, 0) + _varint(2) +              # model_type BPE
               _key(4, 0) + _varint(len(pieces)) +     # vocab_size
               _key(35, 0) + _varint(1) +              # byte_fallback
               _key(40, 0) + _varint(unk_id) + _key(41, 0) + _varint(bos_id) +
               _key(42, 0) + _varint(eos_id) + _key(43, 0) + _varint(pad_id))
    normalizer = (_len_field(1, b"identity") + _key(3, 0) + _varint(0) +  # add_dummy_prefix
                  _key(4, 0) + _varint(0) + _key(5, 0) + _varint(1))
    out += _len_field(2, trainer) + _len_field(3, normalizer)
    return bytes(out)


# ---- safetensors ----

def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    hdr.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in hdr.items()}


def write_safetensors(path, tensors):
    hdr, blobs, off = {}, [], 0
    for k, (dtype, shape, raw) in tensors.items():
        hdr[k] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for raw in blobs:
            f.write(raw)


SPACE = "\u2581"
EXTRA_EMBED_ROWS = 64


def build(gguf_path, fixture_dir, out_dir):
    """Writes the checkpoint into out_dir; returns the GGUF's metadata dict."""
    kv, _ = read_gguf(gguf_path)
    toks = kv["tokenizer.ggml.tokens"][1]
    scores = kv["tokenizer.ggml.scores"][1]
    types = kv["tokenizer.ggml.token_type"][1]
    unk = int(kv["tokenizer.ggml.unknown_token_id"][1])
    bos = int(kv["tokenizer.ggml.bos_token_id"][1])
    eos = int(kv["tokenizer.ggml.eos_token_id"][1])
    pad = int(kv["tokenizer.ggml.padding_token_id"][1])
    n = len(toks)

    pieces, decoder, added_json = [], {}, {}
    for i, (t, s, ty) in enumerate(zip(toks, scores.tolist(), types.tolist())):
        if ty == 1:
            pieces.append((t, s, 1))
        elif ty == 6:
            pieces.append((t, 0.0, 6))
        elif ty == 3:
            late_unused = t.startswith("<unused") and int(t[7:-1]) >= 6000
            pieces.append((t, -1000.0 if late_unused else 0.0, 2 if i == unk else 3))
            if not late_unused:
                soft = t == "<mask>" or (t.startswith("<unused") and int(t[7:-1]) < 20)
                decoder[str(i)] = {"content": t, "lstrip": False, "normalized": False,
                                   "rstrip": False, "single_word": False, "special": not soft}
        elif ty == 4:
            pieces.append((t.replace(" ", SPACE), 0.0, 4))
            if t.startswith("\t"):
                added_json[t] = i
            else:
                decoder[str(i)] = {"content": t.replace(" ", SPACE), "lstrip": False,
                                   "normalized": False, "rstrip": False, "single_word": False,
                                   "special": False}
        else:
            raise ValueError("token %d: type %d not expected in a Gemma 3 vocab" % (i, ty))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.model"), "wb") as f:
        f.write(spm_model_bytes(pieces, unk, bos, eos, pad))
    with open(os.path.join(out_dir, "added_tokens.json"), "w") as f:
        json.dump(added_json, f, ensure_ascii=False)
    specials = {"bos": toks[bos], "eos": toks[eos], "unk": toks[unk], "pad": toks[pad]}
    tok_cfg = {
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": specials["bos"], "eos_token": specials["eos"], "unk_token": specials["unk"],
        "pad_token": {"content": specials["pad"], "lstrip": False, "normalized": False,
                      "rstrip": False, "single_word": False, "special": True},
        "added_tokens_decoder": decoder,
        "model_max_length": 1000000000000000019884624838656,
        "tokenizer_class": "GemmaTokenizer",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tok_cfg, f, ensure_ascii=False, indent=1)
    tok_json = {
        "version": "1.0",
        "added_tokens": [{"id": int(k), "content": v["content"], "special": v["special"]}
                         for k, v in decoder.items()],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": specials["bos"], "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": specials["bos"], "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": specials["bos"], "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {specials["bos"]: {"id": specials["bos"], "ids": [bos],
                                                 "tokens": [specials["bos"]]}},
        },
    }
    with open(os.path.join(out_dir, "tokenizer.json"), "w") as f:
        json.dump(tok_json, f, ensure_ascii=False)

    cfg = json.load(open(os.path.join(fixture_dir, "config.json")))
    cfg["vocab_size"] = n
    cfg["eos_token_id"] = [eos, 106]
    cfg["bos_token_id"] = bos
    cfg["pad_token_id"] = pad
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    tensors = read_safetensors(os.path.join(fixture_dir, "model.safetensors"))
    name = next(k for k in tensors if k.endswith("embed_tokens.weight"))
    d = tensors[name][1][1]
    rng = np.random.default_rng(3)
    emb = (rng.standard_normal((n + EXTRA_EMBED_ROWS, d)) * 0.02).astype(np.float32)
    bf16 = (emb.view(np.uint32) >> 16).astype(np.uint16)
    tensors[name] = ("BF16", [n + EXTRA_EMBED_ROWS, d], bf16.tobytes())
    write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors)
    return kv
