#!/usr/bin/env python3
"""make-tok-corpus.py: writes the tokenizer test corpus (tests/golden/tok/corpus.txt).

Deterministic (seeded): the same script always writes the same file. Each line of the output
is one test entry, escaped so that any byte string fits on one line:
    \\\\ backslash, \\n newline, \\t tab, \\r carriage return, \\xHH any other byte < 0x20,
    0x7f, or a byte that is not part of valid UTF-8 (written as raw bytes it would break
    the file's encoding). Everything else is literal UTF-8.
tests/unit/test_tok_golden.c and tools/make-tok-golden.py read it back with the same rules.

Content: prose in ~25 languages and scripts, code (C, Python, JS, Rust, HTML, JSON, SQL,
shell, Markdown, LaTeX), emoji (ZWJ sequences, flags, skin tones), numbers and URLs, runs of
spaces, tabs and newlines (leading, trailing, CRLF), special-token text (<start_of_turn>,
<eos>, </s>, <|turn>, <|"|>, <unused5>, HTML tags, near misses), unusual code points
(combining marks, ZWJ, RTL marks, NBSP, U+2581 itself, BOM, astral plane), and invalid UTF-8
(stray continuation bytes, truncated sequences, overlongs, surrogates, F5..FF, NUL). A few
entries are several KB long.

usage: tools/make-tok-corpus.py [OUT] [--n N] [--seed S]
"""
import random
import sys

PROSE = [
    # English
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times.",
    "Tokenizers turn text into integers; models turn integers into text.",
    "Please don't hesitate to contact us at support@example.com if you have questions!",
    "She said, \"I'll be there at 5 o'clock\" -- but nobody believed her.",
    "In 1969, Apollo 11 landed on the Moon; 600 million people watched.",
    # German
    "Äpfel und Birnen sind gesund, aber Süßigkeiten schmecken besser.",
    "Die Straße war naß, und der Fußgänger überquerte sie vorsichtig.",
    # French
    "Où est la bibliothèque ? Elle est à côté de l'église.",
    "Les élèves ont été très attentifs pendant le cours d'histoire.",
    # Spanish / Portuguese / Italian
    "¿Dónde está el baño? ¡Necesito ayuda, por favor!",
    "A informação está disponível em português e em inglês.",
    "La città è bellissima, però il traffico è terribile.",
    # Polish / Czech / Turkish / Vietnamese
    "Zażółć gęślą jaźń — to zdanie zawiera wszystkie polskie litery.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Türkçe karakterler: ğüşıöç ĞÜŞİÖÇ ve noktalı i.",
    "Tiếng Việt có nhiều dấu thanh: à á ả ã ạ.",
    # Russian / Ukrainian / Greek
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Привіт, як справи? Усе добре, дякую!",
    "Καλημέρα σας, τι κάνετε σήμερα;",
    # Arabic / Hebrew / Persian
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "שלום עולם, מה שלומך?",
    "سلام دنیا، امروز هوا خوب است.",
    # Hindi / Bengali / Tamil / Thai
    "नमस्ते दुनिया, आप कैसे हैं?",
    "আমি বাংলায় গান গাই।",
    "வணக்கம் உலகம், நீங்கள் எப்படி இருக்கிறீர்கள்?",
    "สวัสดีชาวโลก วันนี้อากาศดีมาก",
    # Chinese / Japanese / Korean
    "我爱自然语言处理，分词是第一步。",
    "今日は良い天気ですね。カタカナとひらがなと漢字。",
    "안녕하세요, 세계! 오늘 날씨가 좋네요.",
    "繁體中文與简体中文不同。",
    # Georgian / Armenian / Amharic / Khmer / Mongolian
    "გამარჯობა მსოფლიო",
    "Բարեւ աշխարհ",
    "ሰላም ለዓለም",
    "សួស្តី​ពិភពលោក",
    "Сайн байна уу",
]

CODE = [
    "int main(int argc, char **argv) {\n    printf(\"%d\\n\", argc);\n    return 0;\n}",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "const xs = [1, 2, 3].map((x) => x * 2);\nconsole.log(`xs = ${xs}`);",
    "fn main() {\n\tlet v: Vec<u8> = vec![0xFF; 16];\n\tprintln!(\"{:?}\", v);\n}",
    "<!DOCTYPE html>\n<html>\n  <body>\n    <div class=\"x\"><span>hi</span></div>\n  </body>\n</html>",
    "{\"name\": \"gemma\", \"layers\": 18, \"tied\": true, \"eps\": 1e-6, \"tags\": [\"a\", null]}",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "for f in *.gguf; do\n  sha256sum \"$f\" | cut -d' ' -f1\ndone",
    "| col A | col B |\n|-------|-------|\n| 1     | **2** |",
    "\\begin{equation}\n  E = mc^2 \\quad \\sum_{i=0}^{n} x_i^2\n\\end{equation}",
    "    if (x != NULL && *x == '\\0') { goto fail; }",
    "#include <stdio.h>\r\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\r\n",
    "git commit -m \"fix: off-by-one in tokenizer\" && git push origin main",
    "<table><tr><td>1</td><td>2</td></tr></table>",
    "x = {'a': [1, 2, {'b': None}], \"c\": 3.14e-10}",
]

EMOJI = [
    "😀", "😂🤣", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇩🇪🇯🇵🇺🇸", "❤️", "✅", "🚀✨", "🧑🏿‍💻",
    "☕️", "🦄", "👩🏻‍🔬", "🤷‍♂️", "🫠", "🔥🔥🔥",
]

SPECIALS = [
    "<start_of_turn>", "<end_of_turn>", "<start_of_turn>user\n", "<start_of_turn>model\n",
    "<eos>", "<bos>", "<pad>", "<unk>", "<mask>", "</s>", "<s>", "[multimodal]",
    "<unused0>", "<unused5>", "<unused99>", "<|turn>", "<turn|>", "<|turn>user\n",
    "<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>", "<|tool_response>",
    "<tool_response|>", "<|\"|>", "<|think|>", "<|channel>", "<channel|>",
    "<|image|>", "<|audio|>", "<|image>", "<image|>", "<0x41>", "<0xFF>",
    "<start_of_tur", "start_of_turn>", "<<eos>>", "<eos><eos>", "</s></s>", "<bos><bos>",
    "<div>", "</div>", "<table>", "<h1>", "</code>", "<b>bold</b>", "<s>x</s>",
    "<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>}<tool_call|>",
    "<|channel>thought\nthinking...<channel|>",
]

WEIRD = [
    "\u0301", "e\u0301", "\u200b", "\u200d", "\u200e", "\u200f", "\u00a0", "\u3000",
    "\u2581", "\u2581\u2581", "\ufeff", "\ue000", "\U0001d11e", "\U00020000", "\U0010ffff",
    "\ufffd", "\u2028", "\u0000", "\u001b[31m", "\u007f", "ﬁ", "Å", "Å", "ǅ", "ß", "ẞ",
    "∑∫√∞≠≤≥", "½ ¾ ⅓", "①②③", "ℌ𝔢𝔩𝔩𝔬", "Ｆｕｌｌｗｉｄｔｈ", "…", "—–-", "«»‹›“”‘’",
]

INVALID = [
    b"\x80", b"\xbf", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x28\xa1", b"\xf0\x9f\x98",
    b"\xf0\x9f\x98A", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff", b"\xc0\xaf", b"\xc1\xbf",
    b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80", b"\x00", b"\xa0\xa1", b"\xc3\xa9\xa9", b"\xe4\xb8",
]

WORDS = ("the of and to in is was for on that with as by at from it an be this are or "
         "which have not had but were his her they one all been has there their can more "
         "will would about if up out what so when make like time no just him know take "
         "people into year your good some could them see other than then now look only come "
         "its over think also back after use two how our work first well way even new want "
         "because any these give day most us tokenizer model vocabulary merge byte token "
         "gemma llama context prompt sequence unicode character").split()

NUMBERS = ["0", "42", "3.14159", "-17", "1,000,000", "1e-9", "0xDEADBEEF", "2026-11-23",
           "12:34:56", "+49 30 1234567", "100%", "$19.99", "€5", "¥1000", "v1.2.3",
           "https://example.com/a/b?c=d&e=f#g", "user@mail.example.org", "192.168.0.1",
           "C:\\Users\\x\\file.txt", "/usr/local/bin", "#hashtag", "@mention"]

WS = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", " \n", "\n ",
      "\t\n", " \t ", "\u00a0", "\n\n\n\n\n\n", "        ", "\n" * 40, " " * 40, "\t" * 33]


def sentence(rng):
    n = rng.randint(3, 14)
    ws = [rng.choice(WORDS) for _ in range(n)]
    if rng.random() < 0.3:
        ws[0] = ws[0].capitalize()
    s = " ".join(ws)
    if rng.random() < 0.5:
        s += rng.choice([".", "!", "?", ",", ";", ":", "..."])
    return s


def fragment(rng):
    r = rng.random()
    if r < 0.25:
        return rng.choice(PROSE).encode()
    if r < 0.40:
        return sentence(rng).encode()
    if r < 0.48:
        return rng.choice(CODE).encode()
    if r < 0.55:
        return rng.choice(EMOJI).encode()
    if r < 0.65:
        return rng.choice(SPECIALS).encode()
    if r < 0.72:
        return rng.choice(WEIRD).encode()
    if r < 0.77:
        return rng.choice(INVALID)
    if r < 0.85:
        return rng.choice(NUMBERS).encode()
    if r < 0.95:
        return rng.choice(WS).encode()
    # a few random code points from anywhere in Unicode (no surrogates)
    cps = []
    for _ in range(rng.randint(1, 6)):
        c = rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x24f), rng.randint(0x370, 0x3ff),
                        rng.randint(0x400, 0x4ff), rng.randint(0x4e00, 0x9fff),
                        rng.randint(0xac00, 0xd7a3), rng.randint(0x1f300, 0x1faff),
                        rng.randint(0x10000, 0x10ffff)])
        if 0xd800 <= c <= 0xdfff:
            c = 0x41
        cps.append(chr(c))
    return "".join(cps).encode()


def entry(rng, i):
    kind = rng.random()
    if i < 64:
        # fixed edge cases first: whitespace only, single specials, empty-ish
        fixed = [b"", b" ", b"  ", b"\n", b"\n\n", b"\t", b" \n ", b"a", b" a", b"a ", b"  a  ",
                 b"<eos>", b"<bos>", b"<bos>hello", b"</s>", b"<start_of_turn>", b"<|turn>",
                 b"\xe2\x96\x81", b"\xff", b"\xc3", b"\xf0\x9f\x98", b"\x00", b"Hello world",
                 b" Hello world", b"Hello World!", b"\n" * 31, b"\n" * 32, b"\n" * 63,
                 b" " * 31, b" " * 32, b" " * 100, b"\t" * 40, b"<eos>" * 5, b"a\n\nb",
                 b"\r\n\r\n", b"<div></div>", b"<<<>>>", b"<start_of_turn><end_of_turn>",
                 b"<|\"|>text<|\"|>", "é".encode(), "e\u0301".encode(), "\u2581x".encode(),
                 "日本".encode(), "👨‍👩‍👧".encode(), b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80"]
        if i < len(fixed):
            return fixed[i]
    if kind < 0.006:
        # long entries (the heap and the partition on KBs of text)
        return b" ".join(fragment(rng) for _ in range(rng.randint(40, 160)))
    n = rng.randint(1, 4)
    parts = []
    for _ in range(n):
        parts.append(fragment(rng))
        if rng.random() < 0.6:
            parts.append(rng.choice([b" ", b"", b"\n", rng.choice(WS).encode()]))
    if rng.random() < 0.1:
        parts.insert(0, rng.choice(WS).encode())
    return b"".join(parts)


def escape(b):
    """Byte string -> one line (see the module docstring)."""
    out = []
    i = 0
    while i < len(b):
        c = b[i]
        if c == 0x5c:
            out.append("\\\\")
            i += 1
        elif c == 0x0a:
            out.append("\\n")
            i += 1
        elif c == 0x09:
            out.append("\\t")
            i += 1
        elif c == 0x0d:
            out.append("\\r")
            i += 1
        elif c < 0x20 or c == 0x7f:
            out.append("\\x%02x" % c)
            i += 1
        elif c < 0x80:
            out.append(chr(c))
            i += 1
        else:
            n = utf8_valid(b, i)
            if n:
                out.append(b[i:i + n].decode("utf-8"))
                i += n
            else:
                out.append("\\x%02x" % c)
                i += 1
    return "".join(out)


def unescape(s):
    """One corpus line (str, without the newline) -> the entry's bytes."""
    out = bytearray()
    raw = s.encode("utf-8")
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x5c and i + 1 < len(raw):
            d = raw[i + 1]
            if d == ord("n"):
                out.append(10)
                i += 2
            elif d == ord("t"):
                out.append(9)
                i += 2
            elif d == ord("r"):
                out.append(13)
                i += 2
            elif d == ord("x"):
                out.append(int(raw[i + 2:i + 4], 16))
                i += 4
            else:
                out.append(d)
                i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


def utf8_valid(b, i):
    """Length of the strictly valid UTF-8 character at b[i], or 0 (same rules as
    lg_tok_utf8_valid: no overlongs, no surrogates, nothing above U+10FFFF)."""
    c = b[i]
    if c < 0x80:
        return 1
    if 0xC2 <= c <= 0xDF:
        need, lo, hi = 2, 0x80, 0xBF
    elif 0xE0 <= c <= 0xEF:
        need, lo, hi = 3, 0xA0 if c == 0xE0 else 0x80, 0x9F if c == 0xED else 0xBF
    elif 0xF0 <= c <= 0xF4:
        need, lo, hi = 4, 0x90 if c == 0xF0 else 0x80, 0x8F if c == 0xF4 else 0xBF
    else:
        return 0
    if i + need > len(b):
        return 0
    if not (lo <= b[i + 1] <= hi):
        return 0
    for k in range(2, need):
        if not (0x80 <= b[i + k] <= 0xBF):
            return 0
    return need


def sanitize(b):
    """Bytes -> str with every byte that does not start a valid character replaced by U+FFFD
    (what our Gemma 4 encoder and llama.cpp's BPE path feed to the merges)."""
    out = []
    i = 0
    while i < len(b):
        n = utf8_valid(b, i)
        if n:
            out.append(b[i:i + n].decode("utf-8"))
            i += n
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)


def generate(n, seed):
    rng = random.Random(seed)
    return [entry(rng, i) for i in range(n)]


def main():
    out = "tests/golden/tok/corpus.txt"
    n, seed = 10000, 20261123
    args = sys.argv[1:]
    i = 0
    while i < len(args):
        if args[i] == "--n":
            n = int(args[i + 1])
            i += 2
        elif args[i] == "--seed":
            seed = int(args[i + 1])
            i += 2
        else:
            out = args[i]
            i += 1
    entries = generate(n, seed)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for e in entries:
            line = escape(e)
            assert unescape(line) == e
            f.write(line + "\n")
    print("%s: %d entries, %d bytes of text" % (out, len(entries), sum(len(e) for e in entries)))


if __name__ == "__main__":
    main()
