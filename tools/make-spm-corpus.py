#!/usr/bin/env python3
"""make-spm-corpus.py: writes the seed corpus of tests/fuzz/fuzz_spm.c (tests/fuzz/corpus/spm/):
small SentencePiece tokenizer.model files, valid and broken on purpose, built with the
protobuf writer of tests/py/spm_fixture.py. Run from the repository root; no dependencies.
Which of them the real `sentencepiece` library accepts (developer check, 0.2.x):
valid_bytefallback and valid_small load; duplicate, truncated, huge_length, long_varint and
no_unk are refused; bad_utf8 loads there but is refused here (a piece must be UTF-8 for the
reference converter, which decodes it), group is refused by both."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import spm_fixture as f  # noqa: E402

D = "tests/fuzz/corpus/spm/"


def pieces_bytes(pieces):
    out = bytearray()
    for t, s, ty in pieces:
        out += f._len_field(1, f._piece(t, s, ty))
    return bytes(out)


def main():
    os.makedirs(D, exist_ok=True)
    byte_pieces = [("<0x%02X>" % b, 0.0, 6) for b in range(256)]
    base = [("<pad>", 0.0, 3), ("<eos>", 0.0, 3), ("<bos>", 0.0, 3), ("<unk>", 0.0, 2),
            ("\u2581\u2581", 0.0, 4), ("\n", 0.0, 4), ("[multimodal]", 0.0, 4)]
    normal = [("\u2581the", -1.0, 1), ("in", -2.0, 1), ("\u2581a", -3.5, 1), ("日本", -4.0, 1),
              ("😀", -5.0, 1), ("<unused0>", 0.0, 5), ("er", -0.0, 1)]
    valid = f.spm_model_bytes(base + byte_pieces + normal, 3, 2, 1, 0)
    files = {"valid_bytefallback.model": valid}
    # no byte fallback; unigram; self_test_data; an extension field (skipped)
    small = bytearray(pieces_bytes(base + normal))
    small += f._len_field(2, f._key(3, 0) + f._varint(1))
    small += f._len_field(3, f._key(3, 0) + f._varint(1))
    small += f._len_field(4, f._len_field(1, f._len_field(1, b"hello") +
                                          f._len_field(2, "\u2581hello".encode())))
    small += f._key(200, 0) + f._varint(7) + f._key(201, 1) + b"\0" * 8
    files["valid_small.model"] = bytes(small)
    files["truncated.model"] = valid[:len(valid) // 2]
    files["no_unk.model"] = pieces_bytes([("a", 0.0, 1), ("b", 0.0, 3)])
    files["duplicate.model"] = pieces_bytes([("<unk>", 0.0, 2), ("a", 0.0, 1), ("a", -1.0, 4)])
    unk = pieces_bytes([("<unk>", 0.0, 2)])
    files["bad_utf8.model"] = unk + f._len_field(1, f._len_field(1, b"\xc0\xaf"))
    files["group.model"] = unk + f._key(7, 3) + f._key(7, 4)
    files["long_varint.model"] = unk + f._key(9, 0) + b"\xff" * 10 + b"\x01"
    files["huge_length.model"] = f._key(1, 2) + b"\xff" * 9 + b"\x01"
    for name, data in files.items():
        with open(D + name, "wb") as fp:
            fp.write(data)
    print("wrote %d files to %s" % (len(files), D))


if __name__ == "__main__":
    main()
