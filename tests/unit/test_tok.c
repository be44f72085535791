/* test_tok.c: the tokenizer on small vocabularies built here, with hand-worked answers.
 *
 * Each vocab is written as a GGUF with the project's writer and loaded through the reader,
 * so this also covers lg_vocab_load's meaning checks (each malformed vocab must fail with the
 * right status). Layout of every test vocab: 0 <pad>, 1 <eos>, 2 <bos>, 3 <unk> (control),
 * 4..259 <0x00>..<0xFF> (byte), then the test's own tokens from id 260.
 */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "test.h"
#include "tok/tok.h"

enum { FIRST = 260, MAX_TOK = 400 };

struct spec {
    const char *model;          /* "llama" or "gemma4" */
    const char *toks[32];       /* from id FIRST */
    int types[32];              /* 0 = normal */
    float scores[32];
    const char *merges[32];     /* gemma4 */
    const char *bad_byte_tok;   /* replaces <0x41> */
    int drop_byte;              /* drop <0x41> (makes it a normal "X41") */
    int bad_type;               /* type of token FIRST when nonzero */
    uint32_t bos;               /* bos id (2 unless set) */
    int nan_score;
    int empty_token;
};

static char tmp_path[64];

static enum lg_status build(const struct spec *s, struct lg_gguf **g, struct lg_vocab **v,
                            struct lg_err *err)
{
    static char bytes[256][8];
    const char *toks[MAX_TOK];
    int32_t types[MAX_TOK];
    float scores[MAX_TOK];
    uint32_t n = 0;
    const char *head[4] = {"<pad>", "<eos>", "<bos>", "<unk>"};
    for (int i = 0; i < 4; i++) {
        toks[n] = head[i];
        types[n] = 3;
        scores[n++] = -1000;
    }
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[n] = bytes[b];
        types[n] = 6;
        scores[n++] = 0;
    }
    if (s->bad_byte_tok)
        toks[4 + 0x41] = s->bad_byte_tok;
    if (s->drop_byte) {
        toks[4 + 0x41] = "X41";
        types[4 + 0x41] = 1;
    }
    for (int i = 0; i < 32 && s->toks[i]; i++) {
        toks[n] = s->toks[i];
        types[n] = s->types[i] ? s->types[i] : 1;
        scores[n++] = s->scores[i];
    }
    if (s->bad_type)
        types[FIRST] = s->bad_type;
    if (s->nan_score)
        scores[FIRST] = 0.0f / 0.0f;
    if (s->empty_token)
        toks[FIRST] = "";
    struct lg_gguf_writer *w = lg_gguf_writer_create();
    lg_gguf_writer_add_str(w, "general.architecture", "test");
    lg_gguf_writer_add_str(w, "tokenizer.ggml.model", s->model);
    lg_gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, n);
    lg_gguf_writer_add_arr(w, "tokenizer.ggml.scores", LG_GGUF_TYPE_FLOAT32, scores, n);
    lg_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", LG_GGUF_TYPE_INT32, types, n);
    size_t n_m = 0;
    while (n_m < 32 && s->merges[n_m])
        n_m++;
    if (n_m)
        lg_gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", s->merges, n_m);
    lg_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", s->bos ? s->bos : 2);
    lg_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 1);
    lg_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true);
    lg_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", false);
    enum lg_status st = lg_gguf_writer_write(w, tmp_path, NULL, NULL, err);
    lg_gguf_writer_destroy(w);
    *g = NULL;
    *v = NULL;
    if (st)
        return st;
    if ((st = lg_gguf_open(tmp_path, g, err)))
        return st;
    return lg_vocab_load(*g, v, err);
}

static void drop(struct lg_gguf *g, struct lg_vocab *v)
{
    lg_vocab_free(v);
    lg_gguf_close(g);
}

/* Encodes text and compares with the expected ids (terminated by -1). */
static void expect_ids(const struct lg_vocab *v, const char *text, size_t len, unsigned flags,
                       const int32_t *want, int line)
{
    int32_t got[256];
    size_t n = 0;
    struct lg_err err = {0};
    enum lg_status st = lg_tok_encode(v, text, len, flags, got, 256, &n, &err);
    size_t nw = 0;
    while (want[nw] >= 0)
        nw++;
    bool same = st == LG_OK && n == nw;
    for (size_t i = 0; same && i < n; i++)
        same = got[i] == want[i];
    char buf[1024];
    size_t k = 0;
    for (size_t i = 0; i < n && i < 64 && k < 900; i++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%d ", got[i]);
    buf[k] = 0;
    CHECK_MSG(same, "line %d: text \"%.*s\": got [%s] (status %d)", line, (int)len, text, buf,
              (int)st);
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__, -1})
#define EXPECT(v, text, flags, ...) expect_ids(v, text, strlen(text), flags, IDS(__VA_ARGS__), __LINE__)
#define B(c) (4 + (c)) /* byte token of byte c */

static void test_spm(void)
{
    /* 260 a, 261 b, 262 c, 263 ▁, 264 ab, 265 bc, 266 abc, 267 ▁a, 268 \n (user-defined),
     * 269 <start_of_turn> (control), 270 "  " (user), 271 XY (user), 272 YZW (user), 273 é */
    struct spec s = {.model = "llama",
                     .toks = {"a", "b", "c", "\xE2\x96\x81", "ab", "bc", "abc", "\xE2\x96\x81" "a",
                              "\n", "<start_of_turn>", "  ", "XY", "YZW", "\xC3\xA9"},
                     .types = {0, 0, 0, 0, 0, 0, 0, 0, 4, 3, 4, 4, 4, 0},
                     .scores = {-1, -2, -3, -4, -5, -0.5f, -6, -7, -1000, -1000, -1000, -1000,
                                -1000, -8}};
    struct lg_gguf *g;
    struct lg_vocab *v;
    struct lg_err err = {0};
    CHECK_EQ_INT(build(&s, &g, &v, &err), LG_OK);
    if (!v) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_EQ_INT(v->model, LG_TOK_MODEL_SPM);
    CHECK_EQ_INT(v->n_tokens, FIRST + 14);
    /* "abc": bc (-0.5) beats ab (-5); then a+bc = abc (-6) */
    EXPECT(v, "abc", 0, 266);
    EXPECT(v, "ab", 0, 264);
    EXPECT(v, "abc", LG_TOK_ADD_BOS, 2, 266);
    EXPECT(v, "", LG_TOK_ADD_BOS, 2);
    EXPECT(v, " a", 0, 267);
    EXPECT(v, "a a", 0, 260, 267);
    /* not in the vocab: bytes; é is a token, ü is not */
    EXPECT(v, "x", 0, B('x'));
    EXPECT(v, "\xC3\xA9", 0, 273);
    EXPECT(v, "\xC3\xBC", 0, B(0xC3), B(0xBC));
    /* invalid UTF-8 goes through as bytes (llama.cpp's SPM path); a symbol is as long as
     * its lead byte says, so 0xFF swallows the "a" after it */
    EXPECT(v, "\xFF" "a", 0, B(0xFF), B('a'));
    EXPECT(v, "\xFF" "aaaa", 0, B(0xFF), B('a'), B('a'), B('a'), 260);
    /* user-defined always atomic; control only with PARSE_SPECIAL */
    EXPECT(v, "a\nb", 0, 260, 268, 261);
    EXPECT(v, "<start_of_turn>", LG_TOK_PARSE_SPECIAL, 269);
    /* "  " is a user-defined token matched before spaces become ▁; "   " = "  " + ▁ */
    EXPECT(v, "a  b", 0, 260, 270, 261);
    EXPECT(v, "a   b", 0, 260, 270, 263, 261);
    /* longest special first over the whole text: YZW (3) wins over the earlier XY (2) */
    EXPECT(v, "XYZW", 0, B('X'), 272);
    EXPECT(v, "XYXY", 0, 271, 271);
    /* BOS: exactly one, also when the text starts with <bos> and specials are parsed */
    EXPECT(v, "<bos>a", LG_TOK_ADD_BOS | LG_TOK_PARSE_SPECIAL, 2, 260);
    EXPECT(v, "a<bos>", LG_TOK_ADD_BOS | LG_TOK_PARSE_SPECIAL, 2, 260, 2);
    EXPECT(v, "<eos>", LG_TOK_PARSE_SPECIAL, 1);
    /* NUL is an ordinary byte */
    expect_ids(v, "a\0b", 3, 0, IDS(260, B(0), 261), __LINE__);

    /* the caller's buffer too small: RANGE, full count, prefix written */
    int32_t two[2];
    size_t n = 0;
    CHECK_EQ_INT(lg_tok_encode(v, "a\nb\nc", 5, 0, two, 2, &n, &err), LG_ERR_RANGE);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_INT(two[0], 260);
    CHECK_EQ_INT(two[1], 268);
    /* over the size cap: refused before the text is read */
    CHECK_EQ_INT(lg_tok_encode(v, "x", (size_t)LG_TOK_MAX_TEXT_BYTES + 1, 0, two, 2, &n, &err),
                 LG_ERR_RANGE);
    CHECK_EQ_INT(lg_tok_encode(v, NULL, 0, LG_TOK_ADD_BOS, two, 2, &n, &err), LG_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(lg_tok_encode(NULL, "a", 1, 0, two, 2, &n, &err), LG_ERR_INVALID_ARG);

    /* pieces, lookups, EOG */
    struct lg_str p = lg_tok_piece(v, 267);
    CHECK(p.len == 4 && memcmp(p.ptr, "\xE2\x96\x81" "a", 4) == 0);
    CHECK_EQ_INT(lg_tok_piece(v, -1).len, 0);
    CHECK_EQ_INT(lg_tok_piece(v, 1 << 30).len, 0);
    CHECK_EQ_INT(lg_tok_find(v, "bc", 2), 265);
    CHECK_EQ_INT(lg_tok_find(v, "zz", 2), -1);
    CHECK(lg_tok_is_eog(v, 1));
    CHECK(!lg_tok_is_eog(v, 2));
    CHECK(lg_tok_is_control(v, 269));
    CHECK(!lg_tok_is_control(v, 268));

    /* detokenizer */
    char *text;
    size_t len;
    CHECK_EQ_INT(lg_tok_decode_alloc(v, IDS(2, 260, 267, 268, 269), 5, 0, &text, &len, &err),
                 LG_OK);
    CHECK_EQ_STR(text, "a a\n");
    free(text);
    CHECK_EQ_INT(lg_tok_decode_alloc(v, IDS(2, 260, 269), 3, LG_DETOK_SHOW_SPECIAL, &text, &len,
                                     &err), LG_OK);
    CHECK_EQ_STR(text, "<bos>a<start_of_turn>");
    free(text);
    CHECK_EQ_INT(lg_tok_decode_alloc(v, IDS(999999), 1, 0, &text, &len, &err), LG_ERR_RANGE);

    struct lg_detok *d = lg_detok_create(v, 0);
    const char *out;
    size_t on;
    /* "€" = E2 82 AC arrives one byte token at a time: nothing until complete */
    CHECK_EQ_INT(lg_detok_feed(d, B(0xE2), &out, &on, &err), LG_OK);
    CHECK_EQ_INT(on, 0);
    CHECK_EQ_INT(lg_detok_feed(d, B(0x82), &out, &on, &err), LG_OK);
    CHECK_EQ_INT(on, 0);
    CHECK_EQ_INT(lg_detok_feed(d, B(0xAC), &out, &on, &err), LG_OK);
    CHECK(on == 3 && memcmp(out, "\xE2\x82\xAC", 3) == 0);
    /* a held prefix broken by an ASCII token: U+FFFD for the stray byte, then the text */
    lg_detok_feed(d, B(0xE2), &out, &on, &err);
    CHECK_EQ_INT(lg_detok_feed(d, 260, &out, &on, &err), LG_OK);
    CHECK(on == 4 && memcmp(out, "\xEF\xBF\xBD" "a", 4) == 0);
    /* unfinished at the end: flush gives U+FFFD per held byte */
    lg_detok_feed(d, B(0xF0), &out, &on, &err);
    lg_detok_feed(d, B(0x9F), &out, &on, &err);
    lg_detok_flush(d, &out, &on);
    CHECK(on == 6 && memcmp(out, "\xEF\xBF\xBD\xEF\xBF\xBD", 6) == 0);
    lg_detok_flush(d, &out, &on);
    CHECK_EQ_INT(on, 0);
    /* a byte that can never start a character */
    CHECK_EQ_INT(lg_detok_feed(d, B(0xFF), &out, &on, &err), LG_OK);
    CHECK(on == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    CHECK_EQ_INT(lg_detok_feed(d, -5, &out, &on, &err), LG_ERR_RANGE);
    lg_detok_destroy(d);
    d = lg_detok_create(v, LG_DETOK_RAW_BYTES);
    lg_detok_feed(d, B(0xFF), &out, &on, &err);
    CHECK(on == 1 && (unsigned char)out[0] == 0xFF);
    lg_detok_feed(d, B(0xC3), &out, &on, &err);
    CHECK_EQ_INT(on, 0);
    lg_detok_flush(d, &out, &on);
    CHECK(on == 1 && (unsigned char)out[0] == 0xC3);
    lg_detok_destroy(d);
    drop(g, v);
}

static void test_gemma4(void)
{
    /* 260 a, 261 b, 262 c, 263 ▁, 264 ab, 265 bc, 266 abc, 267 \n, 268 \n\n, 269 \n\n\n,
     * 270 <|turn> (control), 271 <|"|> (user), 272 �, 273 ▁a */
    struct spec s = {.model = "gemma4",
                     .toks = {"a", "b", "c", "\xE2\x96\x81", "ab", "bc", "abc", "\n", "\n\n",
                              "\n\n\n", "<|turn>", "<|\"|>", "\xEF\xBF\xBD",
                              "\xE2\x96\x81" "a"},
                     .types = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 4, 0, 0},
                     .merges = {"a b", "b c", "ab c", "\n \n", "\xE2\x96\x81 a"}};
    struct lg_gguf *g;
    struct lg_vocab *v;
    struct lg_err err = {0};
    CHECK_EQ_INT(build(&s, &g, &v, &err), LG_OK);
    if (!v) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_EQ_INT(v->model, LG_TOK_MODEL_GEMMA4);
    CHECK_EQ_INT(v->n_merges, 5);
    /* rank decides: "a b" (0) before "b c" (1); then "ab c" */
    EXPECT(v, "abc", 0, 266);
    EXPECT(v, "bc", 0, 265);
    EXPECT(v, "abc", LG_TOK_ADD_BOS, 2, 266);
    EXPECT(v, " a", 0, 273);
    /* newline runs: a run that is a token is taken whole ("\n\n\n" has no merge path from
     * "\n\n" + "\n"); longer runs go through BPE ("\n \n" pairs, leftmost first) */
    EXPECT(v, "a\n\n\nb", 0, 260, 269, 261);
    EXPECT(v, "\n\n\n\n", 0, 268, 268);
    EXPECT(v, "\n\n\n\n\n", 0, 268, 268, 267);
    /* no merge across a newline, even where one would apply */
    EXPECT(v, "a\nb", 0, 260, 267, 261);
    /* invalid UTF-8 becomes U+FFFD (a token here), one per bad byte; bytes otherwise */
    EXPECT(v, "\xFF" "a", 0, 272, 260);
    EXPECT(v, "\xE2\x82" "a", 0, 272, 272, 260);
    EXPECT(v, "\xC0\xAF", 0, 272, 272);     /* overlong "/" is not decoded */
    EXPECT(v, "\xED\xA0\x80", 0, 272, 272, 272); /* surrogate */
    EXPECT(v, "\xC3\xBC", 0, B(0xC3), B(0xBC));
    /* specials */
    EXPECT(v, "<|turn>", 0, B('<'), B('|'), B('t'), B('u'), B('r'), B('n'), B('>'));
    EXPECT(v, "<|turn>", LG_TOK_PARSE_SPECIAL, 270);
    EXPECT(v, "a<|\"|>b", 0, 260, 271, 261);
    /* Gemma 4 adds BOS even though the flag is asked per call: flag off, no BOS */
    EXPECT(v, "a", 0, 260);
    EXPECT(v, "<bos>", LG_TOK_ADD_BOS | LG_TOK_PARSE_SPECIAL, 2);
    CHECK(lg_tok_is_eog(v, 1));
    drop(g, v);
}

static void test_bad_vocabs(void)
{
    struct lg_gguf *g;
    struct lg_vocab *v;
    struct lg_err err = {0};
    struct spec s = {.model = "llama", .toks = {"a"}};

    s.bad_byte_tok = "<0xZZ>";
    CHECK_EQ_INT(build(&s, &g, &v, &err), LG_ERR_FORMAT);
    CHECK(strstr(err.msg, "byte token") != NULL);
    CHECK(v == NULL);
    drop(g, v);
    s.bad_byte_tok = NULL;

    s.drop_byte = 1;
    CHECK_EQ_INT(build(&s, &g, &v, &err), LG_ERR_FORMAT);
    CHECK(strstr(err.msg, "<0x41>") != NULL);
    drop(g, v);
    s.drop_byte = 0;

    s.bad_type = 9;
    CHECK_EQ_INT(build(&s, &g, &v, &err), LG_ERR_RANGE);
    drop(g, v);
    s.bad_type = 0;

    s.bos = 5000;
    CHECK_EQ_INT(build(&s, &g, &v, &err), LG_ERR_RANGE);
    CHECK(strstr(err.msg, "bos_token_id") != NULL);
    drop(g, v);
    s.bos = 0;

    s.nan_score = 1;
    CHECK_EQ_INT(build(&s, &g, &v, &err), LG_ERR_FORMAT);
    drop(g, v);
    s.nan_score = 0;

    s.empty_token = 1;
    CHECK_EQ_INT(build(&s, &g, &v, &err), LG_ERR_FORMAT);
    drop(g, v);
    s.empty_token = 0;

    s.model = "bert";
    CHECK_EQ_INT(build(&s, &g, &v, &err), LG_ERR_UNSUPPORTED);
    drop(g, v);

    /* gemma4: merges required, and their parts and results must be tokens */
    struct spec m = {.model = "gemma4", .toks = {"a", "b", "ab"}};
    CHECK_EQ_INT(build(&m, &g, &v, &err), LG_ERR_NOT_FOUND);
    drop(g, v);
    m.merges[0] = "a q";
    CHECK_EQ_INT(build(&m, &g, &v, &err), LG_ERR_FORMAT);
    CHECK(strstr(err.msg, "merge 0") != NULL);
    drop(g, v);
    m.merges[0] = "b a"; /* "ba" is not a token */
    CHECK_EQ_INT(build(&m, &g, &v, &err), LG_ERR_FORMAT);
    drop(g, v);
    m.merges[0] = "ab";
    CHECK_EQ_INT(build(&m, &g, &v, &err), LG_ERR_FORMAT);
    drop(g, v);
    m.merges[0] = "a b";
    CHECK_EQ_INT(build(&m, &g, &v, &err), LG_OK);
    drop(g, v);

    /* wrong array types */
    struct lg_gguf_writer *w = lg_gguf_writer_create();
    lg_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    int32_t ints[3] = {1, 2, 3};
    lg_gguf_writer_add_arr(w, "tokenizer.ggml.tokens", LG_GGUF_TYPE_INT32, ints, 3);
    CHECK_EQ_INT(lg_gguf_writer_write(w, tmp_path, NULL, NULL, &err), LG_OK);
    lg_gguf_writer_destroy(w);
    CHECK_EQ_INT(lg_gguf_open(tmp_path, &g, &err), LG_OK);
    CHECK_EQ_INT(lg_vocab_load(g, &v, &err), LG_ERR_FORMAT);
    CHECK(v == NULL);
    lg_gguf_close(g);
    CHECK_EQ_INT(lg_vocab_load(NULL, &v, &err), LG_ERR_INVALID_ARG);
}

int main(void)
{
    snprintf(tmp_path, sizeof tmp_path, "/tmp/lg_test_tok_%ld.gguf", (long)getpid());
    test_spm();
    test_gemma4();
    test_bad_vocabs();
    unlink(tmp_path);
    return lg_test_done("test_tok");
}
