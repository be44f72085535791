/* test_cov_tok.c: tokenizer paths that test_tok.c and test_tok_golden.c leave unexercised
 * (hardening goal G22: branch coverage of src/tok; `make coverage`).
 *
 *  - vocab load: each malformed field built on purpose (keys of the wrong kind, arrays of the
 *    wrong element type or length, zero tokens, an over-long token, a lower-case byte token,
 *    a special id that is not an integer, add_bos without a BOS id, add_space_prefix true or
 *    of the wrong type, merges that are not strings / empty / repeated); every case must fail
 *    with the stated status and name the field, or load and behave;
 *  - duplicate token texts (the last id wins), "</s>" as eos (never an end of generation);
 *  - the detokenizer: NULL arguments, reset dropping held bytes, flush of a split character;
 *  - allocation failure (not under ASan, which owns malloc): a countdown allocator fails the
 *    Nth allocation call for N = 1, 2 ... over vocab load (SPM and Gemma 4 merges), encode of
 *    long texts with special tokens, encode_alloc, a streaming detokenizer and decode_alloc;
 *    each run must end in LG_OK with the unarmed run's ids and text, or LG_ERR_NOMEM, and
 *    leave no block allocated.
 * Vocab layout as in test_tok.c: 0 <pad>, 1 <eos>, 2 <bos>, 3 <unk> (control),
 * 4..259 <0x00>..<0xFF> (byte), then the case's own tokens. Files live in a private
 * temporary directory. */
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "test.h"
#include "tok/tok.h"

#include "alloc_countdown.h"

/* ---- vocab files -------------------------------------------------------------------------- */

enum { FIRST = 260, MAX_TOK = 300 };

/* What to break. Each field zero means "as in a good vocab". */
struct vspec {
    const char *model;          /* "llama" (default) or "gemma4" */
    const char *toks[24];       /* from id FIRST */
    int types[24];              /* 0 = normal */
    const char *merges[16];     /* gemma4 */
    int tokens_as_str;          /* tokenizer.ggml.tokens is a string, not an array */
    int no_types;               /* no tokenizer.ggml.token_type */
    int no_scores;              /* no tokenizer.ggml.scores */
    int scores_u32;             /* scores of the wrong element type */
    int scores_short;           /* one score fewer than tokens */
    int types_f32;              /* token_type as f32 */
    int types_str;              /* token_type as strings */
    int zero_tokens;            /* empty token list */
    int long_token;             /* token FIRST is 1025 bytes */
    int lower_byte;             /* <0x4a> instead of <0x4A> */
    int bos_as_str;             /* bos_token_id is a string */
    int no_bos;                 /* no bos_token_id */
    int add_bos;                /* 0 default true, 1 false, 2 stored as u32 */
    int asp;                    /* add_space_prefix: 0 false, 1 true, 2 stored as u32 */
    int merges_u32;             /* merges as an array of u32 */
    int merges_empty;           /* zero merges */
    int eos_id;                 /* eos id (1 unless set) */
};

static char g_dir[256];
static char g_path[512];

static enum lg_status write_vocab(const struct vspec *s, struct lg_err *err)
{
    static char bytes[256][8];
    static char longtok[1026];
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
        snprintf(bytes[b], sizeof bytes[b], s->lower_byte && b == 0x4a ? "<0x%02x>" : "<0x%02X>",
                 b);
        toks[n] = bytes[b];
        types[n] = 6;
        scores[n++] = 0;
    }
    for (int i = 0; i < 24 && s->toks[i]; i++) {
        toks[n] = s->toks[i];
        types[n] = s->types[i] ? s->types[i] : 1;
        scores[n] = -(float)i;
        n++;
    }
    if (s->long_token) {
        memset(longtok, 'x', 1025);
        longtok[1025] = '\0';
        toks[FIRST] = longtok;
    }
    struct lg_gguf_writer *w = lg_gguf_writer_create();
    if (!w)
        return lg_err_set(err, LG_ERR_NOMEM, "writer");
    lg_gguf_writer_add_str(w, "tokenizer.ggml.model", s->model ? s->model : "llama");
    if (s->tokens_as_str)
        lg_gguf_writer_add_str(w, "tokenizer.ggml.tokens", "abc");
    else
        lg_gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, s->zero_tokens ? 0 : n);
    if (!s->no_scores) {
        if (s->scores_u32)
            lg_gguf_writer_add_arr(w, "tokenizer.ggml.scores", LG_GGUF_TYPE_UINT32, types, n);
        else
            lg_gguf_writer_add_arr(w, "tokenizer.ggml.scores", LG_GGUF_TYPE_FLOAT32, scores,
                                   s->scores_short ? n - 1 : n);
    }
    if (s->types_f32)
        lg_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", LG_GGUF_TYPE_FLOAT32, scores, n);
    else if (s->types_str)
        lg_gguf_writer_add_str_arr(w, "tokenizer.ggml.token_type", toks, n);
    else if (!s->no_types)
        lg_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", LG_GGUF_TYPE_INT32, types, n);
    size_t n_m = 0;
    while (n_m < 16 && s->merges[n_m])
        n_m++;
    if (s->merges_u32)
        lg_gguf_writer_add_arr(w, "tokenizer.ggml.merges", LG_GGUF_TYPE_UINT32, types, 3);
    else if (s->merges_empty)
        lg_gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", s->merges, 0);
    else if (n_m)
        lg_gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", s->merges, n_m);
    if (s->bos_as_str)
        lg_gguf_writer_add_str(w, "tokenizer.ggml.bos_token_id", "2");
    else if (!s->no_bos)
        lg_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 2);
    lg_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", s->eos_id ? (uint32_t)s->eos_id : 1);
    lg_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 3);
    lg_gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", 0);
    if (s->add_bos == 2)
        lg_gguf_writer_add_u32(w, "tokenizer.ggml.add_bos_token", 1);
    else
        lg_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", s->add_bos != 1);
    if (s->asp == 2)
        lg_gguf_writer_add_u32(w, "tokenizer.ggml.add_space_prefix", 0);
    else
        lg_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", s->asp == 1);
    enum lg_status st = lg_gguf_writer_write(w, g_path, NULL, NULL, err);
    lg_gguf_writer_destroy(w);
    return st;
}

/* Writes, opens and loads; *g and *v are NULL unless they opened/loaded. */
static enum lg_status build(const struct vspec *s, struct lg_gguf **g, struct lg_vocab **v,
                            struct lg_err *err)
{
    *g = NULL;
    *v = NULL;
    enum lg_status st = write_vocab(s, err);
    if (st == LG_OK)
        st = lg_gguf_open(g_path, g, err);
    if (st == LG_OK)
        st = lg_vocab_load(*g, v, err);
    return st;
}

static void drop(struct lg_gguf *g, struct lg_vocab *v)
{
    lg_vocab_free(v);
    lg_gguf_close(g);
}

static bool has(const char *msg, const char *needle)
{
    return strstr(msg, needle) != NULL;
}

/* Builds s and expects status want with needle in the message (and no vocab). */
static void expect_fail(const struct vspec *s, enum lg_status want, const char *needle,
                        int line)
{
    struct lg_gguf *g;
    struct lg_vocab *v;
    struct lg_err err = {0};
    enum lg_status st = build(s, &g, &v, &err);
    CHECK_MSG(st == want && v == NULL && has(err.msg, needle),
              "case at line %d: status %s (want %s), message \"%s\" (want \"%s\")", line,
              lg_status_str(st), lg_status_str(want), err.msg, needle);
    drop(g, v);
}

#define EXPECT_FAIL(spec, want, needle) expect_fail(&(spec), want, needle, __LINE__)

static void test_bad_vocabs(void)
{
    struct vspec s;
#define RESET() (memset(&s, 0, sizeof s), s.toks[0] = "a")
    RESET();
    s.tokens_as_str = 1;
    EXPECT_FAIL(s, LG_ERR_FORMAT, "tokenizer.ggml.tokens is a string, expected an array");
    RESET();
    s.no_types = 1;
    EXPECT_FAIL(s, LG_ERR_NOT_FOUND, "missing key tokenizer.ggml.token_type");
    RESET();
    s.no_scores = 1; /* required for SPM */
    EXPECT_FAIL(s, LG_ERR_NOT_FOUND, "missing key tokenizer.ggml.scores");
    RESET();
    s.scores_u32 = 1;
    EXPECT_FAIL(s, LG_ERR_FORMAT, "scores must be 261 f32 (has 261 u32)");
    RESET();
    s.scores_short = 1;
    EXPECT_FAIL(s, LG_ERR_FORMAT, "scores must be 261 f32 (has 260 f32)");
    RESET();
    s.types_f32 = 1;
    EXPECT_FAIL(s, LG_ERR_FORMAT, "token_type must be 261 integers (has 261 f32)");
    RESET();
    s.types_str = 1;
    EXPECT_FAIL(s, LG_ERR_FORMAT, "token_type must be 261 integers (has 261 string)");
    RESET();
    s.zero_tokens = 1;
    EXPECT_FAIL(s, LG_ERR_RANGE, "0 tokens (allowed 1..");
    RESET();
    s.long_token = 1;
    EXPECT_FAIL(s, LG_ERR_RANGE, "token 260 is 1025 bytes (max 1024)");
    RESET();
    s.lower_byte = 1;
    EXPECT_FAIL(s, LG_ERR_FORMAT, "byte token <0x4A> is missing");
    RESET();
    s.bos_as_str = 1;
    EXPECT_FAIL(s, LG_ERR_FORMAT, "bos_token_id");
    RESET();
    s.no_bos = 1; /* add_bos true, no BOS id */
    EXPECT_FAIL(s, LG_ERR_NOT_FOUND, "add_bos is set but");
    RESET();
    s.add_bos = 2;
    EXPECT_FAIL(s, LG_ERR_FORMAT, "add_bos_token");
    RESET();
    s.asp = 1;
    EXPECT_FAIL(s, LG_ERR_UNSUPPORTED, "add_space_prefix = true");
    RESET();
    s.asp = 2;
    EXPECT_FAIL(s, LG_ERR_FORMAT, "add_space_prefix");
    RESET();
    s.model = "gemma4";
    s.toks[1] = "b";
    s.toks[2] = "ab";
    s.merges_u32 = 1;
    EXPECT_FAIL(s, LG_ERR_FORMAT, "merges is an array of u32, expected strings");
    s.merges_u32 = 0;
    s.merges_empty = 1;
    EXPECT_FAIL(s, LG_ERR_RANGE, "0 merges (allowed 1..");
    s.merges_empty = 0;
    s.merges[0] = "a b";
    s.merges[1] = "x";       /* shorter than "l r" */
    EXPECT_FAIL(s, LG_ERR_FORMAT, "merge 1 is not \"left right\"");
    s.merges[1] = "ab ";     /* nothing after the space */
    EXPECT_FAIL(s, LG_ERR_FORMAT, "merge 1 is not \"left right\"");
    s.merges[1] = "q b";
    EXPECT_FAIL(s, LG_ERR_FORMAT, "merge 1: its left part is not a token");
    s.merges[1] = "a q";
    EXPECT_FAIL(s, LG_ERR_FORMAT, "merge 1: its right part is not a token");
#undef RESET

    /* loads: no add_bos (SPM may go without BOS), a repeated merge keeps its first rank,
     * gemma4 without scores */
    struct lg_gguf *g;
    struct lg_vocab *v;
    struct lg_err err = {0};
    memset(&s, 0, sizeof s);
    s.toks[0] = "a";
    s.no_bos = 1;
    s.add_bos = 1;
    CHECK_MSG(build(&s, &g, &v, &err) == LG_OK, "%s", err.msg);
    if (v)
        CHECK(!v->add_bos && v->bos_id == -1 && v->unk_id == 3 && v->pad_id == 0 &&
              v->mask_id == -1);
    drop(g, v);

    memset(&s, 0, sizeof s);
    s.model = "gemma4";
    s.no_scores = 1;
    s.toks[0] = "a";
    s.toks[1] = "b";
    s.toks[2] = "ab";
    s.toks[3] = "abab";
    s.merges[0] = "a b";
    s.merges[1] = "ab ab";
    s.merges[2] = "a b"; /* repeated: ignored */
    CHECK_MSG(build(&s, &g, &v, &err) == LG_OK, "%s", err.msg);
    if (v) {
        CHECK(v->add_bos && v->n_merges == 3 && v->scores[FIRST] == -1000.0f);
        int32_t ids[8];
        size_t n = 0;
        CHECK(lg_tok_encode(v, "ababa", 5, 0, ids, 8, &n, &err) == LG_OK);
        CHECK(n == 2 && ids[0] == FIRST + 3 && ids[1] == FIRST);
    }
    drop(g, v);
}

/* Duplicate texts, "</s>" as the eos token, detokenizer edges. */
static void test_vocab_edges(void)
{
    struct vspec s;
    memset(&s, 0, sizeof s);
    s.toks[0] = "a";
    s.toks[1] = "a";               /* duplicate: id FIRST + 1 wins */
    s.toks[2] = "</s>";
    s.toks[3] = "<end_of_turn>";
    s.types[3] = 3;
    s.toks[4] = "<usr>";
    s.types[4] = 4;                 /* user-defined: always matched */
    s.toks[5] = "\xe2\x96\x81";     /* U+2581 */
    s.eos_id = FIRST + 2;
    struct lg_gguf *g;
    struct lg_vocab *v;
    struct lg_err err = {0};
    CHECK_MSG(build(&s, &g, &v, &err) == LG_OK, "%s", err.msg);
    if (!v) {
        drop(g, v);
        return;
    }
    CHECK(lg_tok_find(v, "a", 1) == FIRST + 1);
    CHECK(v->eos_id == FIRST + 2 && !lg_tok_is_eog(v, FIRST + 2)); /* </s> never ends */
    CHECK(lg_tok_is_eog(v, FIRST + 3) && lg_tok_is_eog(v, 1));
    CHECK(!lg_tok_is_eog(v, -1) && !lg_tok_is_eog(NULL, 1));
    CHECK(lg_tok_is_control(v, FIRST + 3) && !lg_tok_is_control(v, FIRST + 4));
    CHECK(!lg_tok_is_control(v, -1) && !lg_tok_is_control(v, 100000) && !lg_tok_is_control(NULL, 0));
    CHECK(lg_tok_piece(v, -1).len == 0 && lg_tok_piece(v, 100000).len == 0 &&
          lg_tok_piece(NULL, 0).len == 0);

    /* user-defined tokens split out without PARSE_SPECIAL, control ones only with it */
    int32_t ids[16];
    size_t n = 0;
    CHECK(lg_tok_encode(v, "a<usr>a", 7, 0, ids, 16, &n, &err) == LG_OK);
    CHECK(n == 3 && ids[0] == FIRST + 1 && ids[1] == FIRST + 4 && ids[2] == FIRST + 1);
    CHECK(lg_tok_encode(v, "<end_of_turn>", 13, LG_TOK_PARSE_SPECIAL | LG_TOK_ADD_BOS, ids, 16,
                        &n, &err) == LG_OK);
    CHECK(n == 2 && ids[0] == 2 && ids[1] == FIRST + 3);
    /* a buffer too small: RANGE with the full count */
    CHECK(lg_tok_encode(v, "a<usr>a", 7, 0, ids, 1, &n, &err) == LG_ERR_RANGE && n == 3);
    CHECK(lg_tok_encode(v, "a", 1, 0, NULL, 0, &n, &err) == LG_ERR_RANGE && n == 1);

    /* detokenizer */
    CHECK(lg_detok_create(NULL, 0) == NULL);
    const char *t;
    size_t tn;
    CHECK(lg_detok_feed(NULL, 0, &t, &tn, &err) == LG_ERR_INVALID_ARG);
    lg_detok_flush(NULL, &t, &tn);
    CHECK(tn == 0 && t && t[0] == '\0');
    lg_detok_reset(NULL);
    lg_detok_destroy(NULL);
    struct lg_detok *d = lg_detok_create(v, 0);
    CHECK(d != NULL);
    if (d) {
        /* "é" = C3 A9 in two byte tokens: held, then completed */
        CHECK(lg_detok_feed(d, 4 + 0xC3, &t, &tn, &err) == LG_OK && tn == 0);
        CHECK(lg_detok_feed(d, 4 + 0xA9, &t, &tn, &err) == LG_OK && tn == 2 &&
              memcmp(t, "\xc3\xa9", 2) == 0);
        /* a held first byte is dropped by reset */
        CHECK(lg_detok_feed(d, 4 + 0xC3, &t, &tn, &err) == LG_OK && tn == 0);
        lg_detok_reset(d);
        lg_detok_flush(d, &t, &tn);
        CHECK(tn == 0);
        /* ... and becomes U+FFFD at flush otherwise */
        CHECK(lg_detok_feed(d, 4 + 0xC3, &t, &tn, &err) == LG_OK && tn == 0);
        lg_detok_flush(d, &t, &tn);
        CHECK(tn == 3 && memcmp(t, "\xef\xbf\xbd", 3) == 0);
        CHECK(lg_detok_feed(d, FIRST + 5, &t, &tn, &err) == LG_OK && tn == 1 && t[0] == ' ');
        CHECK(lg_detok_feed(d, (int32_t)v->n_tokens, &t, &tn, &err) == LG_ERR_RANGE);
        CHECK(lg_detok_feed(d, -1, &t, &tn, &err) == LG_ERR_RANGE);
        lg_detok_destroy(d);
    }
    char *text = NULL;
    size_t len = 0;
    int32_t bad[2] = {FIRST, 99999};
    CHECK(lg_tok_decode_alloc(v, bad, 2, 0, &text, &len, &err) == LG_ERR_RANGE && text == NULL);
    CHECK(lg_tok_decode_alloc(NULL, bad, 1, 0, &text, &len, &err) != LG_OK && !text);
    drop(g, v);
}

/* ---- allocation failure ------------------------------------------------------------------- */

#ifndef COV_ASAN
struct oom_out {
    size_t n_a, n_b, len;
    int32_t ids_a[64];
    char text[4096];
};

static char g_long[6000]; /* the encode input: long enough to grow every buffer */

/* Load + encode + encode_alloc + streaming detok + decode_alloc; LG_OK or the first error. */
static enum lg_status oom_path(const struct lg_gguf *g, struct oom_out *o, struct lg_err *err)
{
    struct lg_vocab *v = NULL;
    struct lg_detok *d = NULL;
    int32_t *ids = NULL;
    char *text = NULL;
    enum lg_status st = lg_vocab_load(g, &v, err);
    if (st)
        goto done;
    size_t n = 0;
    static const char short_text[] = "ab<usr>\xc3\xa9 ab<end_of_turn>";
    st = lg_tok_encode(v, short_text, strlen(short_text), LG_TOK_PARSE_SPECIAL | LG_TOK_ADD_BOS,
                       o->ids_a, 64, &n, err);
    if (st)
        goto done;
    o->n_a = n;
    if ((st = lg_tok_encode_alloc(v, g_long, strlen(g_long), LG_TOK_PARSE_SPECIAL, &ids, &n,
                                  err)))
        goto done;
    o->n_b = n;
    if (!(d = lg_detok_create(v, LG_DETOK_SHOW_SPECIAL))) {
        st = lg_err_set(err, LG_ERR_NOMEM, "detok_create");
        goto done;
    }
    const char *t;
    size_t tn;
    for (size_t i = 0; i < 8 && i < n; i++)
        if ((st = lg_detok_feed(d, ids[i], &t, &tn, err)))
            goto done;
    size_t len = 0;
    if ((st = lg_tok_decode_alloc(v, ids, n, 0, &text, &len, err)))
        goto done;
    o->len = len;
    memcpy(o->text, text, len < sizeof o->text ? len : sizeof o->text);
done:
    free(text);
    free(ids);
    lg_detok_destroy(d);
    lg_vocab_free(v);
    return st;
}

static void oom_sweep(const char *what, const struct vspec *s)
{
    struct lg_err err = {0};
    struct lg_gguf *g = NULL;
    if (write_vocab(s, &err) != LG_OK || lg_gguf_open(g_path, &g, &err) != LG_OK) {
        CHECK_MSG(0, "%s: %s", what, err.msg);
        return;
    }
    static struct oom_out ref, got;
    memset(&ref, 0, sizeof ref);
    long base = atomic_load(&af_live);
    CHECK_MSG(oom_path(g, &ref, &err) == LG_OK, "%s unarmed: %s", what, err.msg);
    CHECK(atomic_load(&af_live) == base && ref.n_a > 3 && ref.n_b > 100 && ref.len > 1000);
    int n_runs = 0, n_nomem = 0, n_bad = 0;
    for (long k = 1; k < 100000; k++) {
        memset(&err, 0, sizeof err);
        memset(&got, 0, sizeof got);
        base = atomic_load(&af_live);
        atomic_store(&af_calls, 0);
        atomic_store(&af_hit, false);
        atomic_store(&af_fail_at, k);
        enum lg_status st = oom_path(g, &got, &err);
        atomic_store(&af_fail_at, 0);
        long live = atomic_load(&af_live);
        n_runs++;
        bool same = got.n_a == ref.n_a && got.n_b == ref.n_b && got.len == ref.len &&
                    memcmp(got.ids_a, ref.ids_a, sizeof ref.ids_a) == 0 &&
                    memcmp(got.text, ref.text, sizeof ref.text) == 0;
        if (st == LG_ERR_NOMEM)
            n_nomem++;
        if ((st != LG_OK && st != LG_ERR_NOMEM) || (st == LG_OK && !same) || live != base) {
            if (n_bad++ < 10)
                fprintf(stderr, "FAIL %s oom N=%ld: status %s (%s), same %d, %ld blocks leaked\n",
                        what, k, lg_status_str(st), err.msg, same, live - base);
        }
        if (!atomic_load(&af_hit))
            break;
    }
    CHECK_EQ_INT(n_bad, 0);
    CHECK_MSG(n_runs > 20 && n_nomem > 10, "%s: %d runs, %d NOMEM", what, n_runs, n_nomem);
    printf("test_cov_tok: %s: allocation failure at each of %d calls, %d ended in NOMEM\n", what,
           n_runs - 1, n_nomem);
    lg_gguf_close(g);
}

static void test_oom(void)
{
    /* varied text: words, spaces, UTF-8, invalid bytes, specials, newline runs */
    static const char *const parts[] = {"ab ", "abab", " a\n\n", "\xc3\xa9", "<usr>", "b ",
                                        "\xff", "<end_of_turn>", "  ", "\xe2\x82\xac"};
    size_t k = 0;
    for (unsigned i = 0; k + 16 < sizeof g_long; i++) {
        const char *p = parts[(i * 7 + i / 3) % 10];
        memcpy(g_long + k, p, strlen(p));
        k += strlen(p);
    }
    g_long[k] = '\0';
    struct vspec s;
    memset(&s, 0, sizeof s);
    s.toks[0] = "a";
    s.toks[1] = "b";
    s.toks[2] = "ab";
    s.toks[3] = "abab";
    s.toks[4] = "\xe2\x96\x81"
                "a";
    s.toks[5] = "<end_of_turn>";
    s.types[5] = 3;
    s.toks[6] = "<usr>";
    s.types[6] = 4;
    s.toks[7] = "\n\n";
    s.toks[8] = "\xe2\x96\x81"; /* U+2581 alone: the left part of the third merge */
    oom_sweep("spm", &s);
    s.model = "gemma4";
    s.merges[0] = "a b";
    s.merges[1] = "ab ab";
    s.merges[2] = "\xe2\x96\x81 a";
    oom_sweep("gemma4", &s);
}
#endif

int main(void)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/lg-cov-tok-XXXXXX", base);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(g_path, sizeof g_path, "%s/vocab.gguf", g_dir);
    test_bad_vocabs();
    test_vocab_edges();
#ifndef COV_ASAN
    test_oom();
#endif
    unlink(g_path);
    rmdir(g_dir);
    return lg_test_done("test_cov_tok");
}
