#!/usr/bin/env python3
"""make-spm-golden.py: the small Gemma 3 SentencePiece checkpoint of test_convert.c and
llama.cpp's vocabulary for it (developer tool, not run by CI).

Writes tests/golden/model/gemma3_spm.hf/ (everything but the weights, which the test links
from gemma3.hf: config.json, tokenizer.model, tokenizer.json, tokenizer_config.json,
added_tokens.json, chat_template.jinja, additional_chat_templates/tool_use.jinja), runs
llama.cpp's convert_hf_to_gguf.py on it (with the weights) and stores every tokenizer.* key of
the result in tests/golden/model/gemma3_spm.vocab.gguf (metadata only).

The directory is built to reach the converter's corner cases: config vocab_size (300) above
the tokenizer's 270 pieces ([PADi] fill), added tokens past vocab_size (ignored), an unlisted
USER_DEFINED piece (written NORMAL), UNUSED pieces, non-special added tokens that look special
(CONTROL) or contain U+2581 (spaces), a TemplateProcessing with a trailing <eos> (add_eos),
a Lowercase normalizer, an eos_token_id list in config.json (ignored), mask_token_id from
config.json, and the chat template from chat_template.jinja plus a named extra template.

usage: tools/make-spm-golden.py LLAMA_CPP_DIR   (e.g. the llama-cpp-python 0.3.36 sdist's
       vendor/llama.cpp; needs torch, transformers, sentencepiece)
Made with llama-cpp-python 0.3.36's converter, transformers 5.23.0, sentencepiece 0.2.1.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import spm_fixture as f  # noqa: E402

OUT = "tests/golden/model/gemma3_spm.hf"
GOLDEN = "tests/golden/model/gemma3_spm.vocab.gguf"
SP = "\u2581"


def build(out):
    os.makedirs(os.path.join(out, "additional_chat_templates"), exist_ok=True)
    pieces = [("<pad>", 0.0, 3), ("<eos>", 0.0, 3), ("<bos>", 0.0, 3), ("<unk>", 0.0, 2),
              ("<mask>", 0.0, 3), ("[multimodal]", 0.0, 4), (SP + SP, 0.0, 4),
              (SP + SP + SP, 0.0, 4), ("<start_of_turn>", 0.0, 3), ("<end_of_turn>", 0.0, 3),
              ("<unused0>", 0.0, 5), ("<unused1>", 0.0, 3)]
    pieces += [("<0x%02X>" % b, 0.0, 6) for b in range(256)]
    pieces += [(SP + "hello", -1.5, 1), ("lo", -2.25, 1)]
    assert len(pieces) == 270
    with open(os.path.join(out, "tokenizer.model"), "wb") as fp:
        fp.write(f.spm_model_bytes(pieces, 3, 2, 1, 0))
    with open(os.path.join(out, "added_tokens.json"), "w") as fp:
        json.dump({"<extra>": 290, "<far>": 5000, "\t\t": 12}, fp)
    dec = {"0": ("<pad>", True), "1": ("<eos>", True), "2": ("<bos>", True),
           "3": ("<unk>", True), "4": ("<mask>", False), "5": ("[multimodal]", False),
           "7": (SP + SP + SP, False), "8": ("<start_of_turn>", True),
           "9": ("<end_of_turn>", True), "11": ("<unused1>", False),
           "280": ("<image_soft_token>", True), "400": ("<beyond>", True)}
    tc = {"add_bos_token": True, "add_eos_token": False,
          "bos_token": {"content": "<bos>", "special": True}, "eos_token": "<eos>",
          "unk_token": "<unk>", "pad_token": "<pad>",
          "added_tokens_decoder": {k: {"content": c, "special": s} for k, (c, s) in dec.items()}}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as fp:
        json.dump(tc, fp, ensure_ascii=False, indent=1)
    tj = {"added_tokens": [{"id": int(k), "content": c, "special": s} for k, (c, s) in dec.items()],
          "normalizer": {"type": "Sequence", "normalizers": [
              {"type": "Replace", "pattern": {"String": " "}, "content": SP},
              {"type": "Lowercase"}]},
          "post_processor": {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}},
                                        {"SpecialToken": {"id": "<eos>", "type_id": 0}}],
                             "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "<eos>", "type_id": 0}},
                                      {"SpecialToken": {"id": "<bos>", "type_id": 1}},
                                      {"Sequence": {"id": "B", "type_id": 1}},
                                      {"SpecialToken": {"id": "<eos>", "type_id": 1}}]}}
    with open(os.path.join(out, "tokenizer.json"), "w") as fp:
        json.dump(tj, fp, ensure_ascii=False)
    with open(os.path.join(out, "chat_template.jinja"), "w") as fp:
        fp.write("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
                 "{{ m['content'] }}<end_of_turn>\n{% endfor %}")
    with open(os.path.join(out, "additional_chat_templates", "tool_use.jinja"), "w") as fp:
        fp.write("{{ bos_token }}tools: {{ tools | tojson }}")
    cfg = json.load(open("tests/golden/model/gemma3.hf/config.json"))
    cfg.update(vocab_size=300, eos_token_id=[1, 106], mask_token_id=4)
    with open(os.path.join(out, "config.json"), "w") as fp:
        json.dump(cfg, fp, indent=1)


def main():
    llama = sys.argv[1]
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    build(OUT)
    tmp = tempfile.mkdtemp()
    try:
        hf = os.path.join(tmp, "hf")
        shutil.copytree(OUT, hf)
        shutil.copy("tests/golden/model/gemma3.hf/model.safetensors", hf)
        ref = os.path.join(tmp, "ref.gguf")
        env = dict(os.environ, PYTHONPATH=os.path.join(llama, "gguf-py"))
        subprocess.run([sys.executable, os.path.join(llama, "convert_hf_to_gguf.py"), hf,
                        "--outfile", ref, "--outtype", "f32"], check=True, env=env)
        sys.path.insert(0, os.path.join(llama, "gguf-py"))
        import gguf
        r = gguf.GGUFReader(ref)
        w = gguf.GGUFWriter(GOLDEN, "gemma3")
        for k, fld in r.fields.items():
            if not k.startswith("tokenizer."):
                continue
            vt = fld.types[0]
            if vt == gguf.GGUFValueType.ARRAY:
                w.add_key_value(k, fld.contents(), vt, sub_type=fld.types[-1])
            else:
                w.add_key_value(k, fld.contents(), vt)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.close()
        print("wrote %s and %s" % (OUT, GOLDEN))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
