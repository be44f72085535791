/* fuzz_tok.c: libFuzzer target for the tokenizer (encode, then decode) on both algorithms.
 *
 * Input: byte 0 picks the vocab (bit 0: SentencePiece-style / Gemma 4 BPE) and the flags
 * (bit 1 add BOS, bit 2 parse special, bit 3 decode with specials shown); the rest is the
 * text. Vocabs: an SPM vocab built in memory as a GGUF buffer (the real 262k-token files are
 * too big for a fuzz loop), and the committed Gemma-4-style mini vocab
 * ($LG_TOK_FUZZ_GEMMA4 or tests/golden/tok/gemma4-mini-vocab.gguf from the repo root; when
 * neither opens, a small BPE vocab built in memory).
 * Properties (a violation traps): encoding never fails, every id is inside the vocab, the
 * ids start with BOS when asked, the bounded encoder agrees, decoding never fails, and with special parsing off,
 * valid UTF-8 without U+2581 decodes back to itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tok/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- a tiny GGUF writer into memory ------------------------------------------------------ */

struct mbuf {
    uint8_t *p;
    size_t n, cap;
};

static void put(struct mbuf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(struct mbuf *b, uint32_t x)
{
    put(b, &x, 4);
}

static void put_u64(struct mbuf *b, uint64_t x)
{
    put(b, &x, 8);
}

static void put_str(struct mbuf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void kv_str(struct mbuf *b, const char *k, const char *v)
{
    put_str(b, k);
    put_u32(b, LG_GGUF_TYPE_STRING);
    put_str(b, v);
}

static void kv_u32(struct mbuf *b, const char *k, uint32_t v)
{
    put_str(b, k);
    put_u32(b, LG_GGUF_TYPE_UINT32);
    put_u32(b, v);
}

static void kv_strs(struct mbuf *b, const char *k, const char *const *v, size_t n)
{
    put_str(b, k);
    put_u32(b, LG_GGUF_TYPE_ARRAY);
    put_u32(b, LG_GGUF_TYPE_STRING);
    put_u64(b, n);
    for (size_t i = 0; i < n; i++)
        put_str(b, v[i]);
}

static void kv_arr32(struct mbuf *b, const char *k, enum lg_gguf_type t, const void *v, size_t n)
{
    put_str(b, k);
    put_u32(b, LG_GGUF_TYPE_ARRAY);
    put_u32(b, t);
    put_u64(b, n);
    put(b, v, 4 * n);
}

/* Vocab: <pad> <eos> <bos> <unk>, 256 byte tokens, then extra[] (types, scores given). */
static struct lg_vocab *build(const char *model, const char *const *extra, const int32_t *etype,
                              const float *escore, size_t n_extra, const char *const *merges,
                              size_t n_merges, struct mbuf *b, struct lg_gguf **g)
{
    static char bytes[256][8];
    const char *toks[600];
    int32_t types[600];
    float scores[600];
    size_t n = 0;
    const char *head[4] = {"<pad>", "<eos>", "<bos>", "<unk>"};
    for (int i = 0; i < 4; i++) {
        toks[n] = head[i];
        types[n] = 3;
        scores[n++] = -1000;
    }
    for (int c = 0; c < 256; c++) {
        snprintf(bytes[c], sizeof bytes[c], "<0x%02X>", c);
        toks[n] = bytes[c];
        types[n] = 6;
        scores[n++] = 0;
    }
    for (size_t i = 0; i < n_extra; i++) {
        toks[n] = extra[i];
        types[n] = etype[i];
        scores[n++] = escore[i];
    }
    b->n = 0;
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, 0);
    put_u64(b, n_merges ? 7 : 6);
    kv_str(b, "tokenizer.ggml.model", model);
    kv_strs(b, "tokenizer.ggml.tokens", toks, n);
    kv_arr32(b, "tokenizer.ggml.scores", LG_GGUF_TYPE_FLOAT32, scores, n);
    kv_arr32(b, "tokenizer.ggml.token_type", LG_GGUF_TYPE_INT32, types, n);
    kv_u32(b, "tokenizer.ggml.bos_token_id", 2);
    kv_u32(b, "tokenizer.ggml.eos_token_id", 1);
    if (n_merges)
        kv_strs(b, "tokenizer.ggml.merges", merges, n_merges);
    struct lg_err err = {0};
    struct lg_vocab *v = NULL;
    if (lg_gguf_open_buffer(b->p, b->n, g, &err) != LG_OK || lg_vocab_load(*g, &v, &err) != LG_OK) {
        fprintf(stderr, "fuzz_tok: cannot build the %s vocab: %s\n", model, err.msg);
        abort();
    }
    return v;
}

static struct lg_vocab *spm_vocab(void)
{
    static struct mbuf b;
    static struct lg_gguf *g;
    static const char *const t[] = {
        "\xE2\x96\x81", "a", "b", "c", "e", "h", "t", "ab", "bc", "abc", "th", "he", "the",
        "\xE2\x96\x81t", "\xE2\x96\x81the", "\xE2\x96\x81" "a", "\n", "\n\n", "  ", "   ",
        "<start_of_turn>", "<end_of_turn>", "</s>", "\xC3\xA9", "<", ">", "<0", "<0x"};
    static const int32_t ty[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                 4, 4, 4, 4, 3, 3, 4, 1, 1, 1, 1, 1};
    static const float sc[] = {-1, -2, -3, -4, -5, -6, -7, -8, -1.5f, -9, -10, -11, -12, -13,
                               -14, -15, -1000, -1000, -1000, -1000, -1000, -1000, -1000, -16,
                               -17, -18, -19, -20};
    return build("llama", t, ty, sc, sizeof t / sizeof t[0], NULL, 0, &b, &g);
}

static struct lg_vocab *gemma4_vocab(void)
{
    static struct mbuf b;
    static struct lg_gguf *g;
    const char *path = getenv("LG_TOK_FUZZ_GEMMA4");
    struct lg_err err = {0};
    struct lg_vocab *v = NULL;
    if (lg_gguf_open(path ? path : "tests/golden/tok/gemma4-mini-vocab.gguf", &g, &err) == LG_OK &&
        lg_vocab_load(g, &v, &err) == LG_OK)
        return v;
    lg_gguf_close(g);
    g = NULL;
    static const char *const t[] = {"\xE2\x96\x81", "a", "b", "c", "ab", "bc", "abc", "\n",
                                    "\n\n", "\n\n\n", "<|turn>", "<|\"|>", "\xEF\xBF\xBD",
                                    "\xE2\x96\x81" "a"};
    static const int32_t ty[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 4, 1, 1};
    static const float sc[] = {-1000, -1000, -1000, -1000, -1000, -1000, -1000,
                               -1000, -1000, -1000, -1000, -1000, -1000, -1000};
    static const char *const m[] = {"a b", "b c", "ab c", "\n \n", "\n\n \n",
                                    "\xE2\x96\x81 a"};
    return build("gemma4", t, ty, sc, sizeof t / sizeof t[0], m, sizeof m / sizeof m[0], &b, &g);
}

static bool valid_utf8_plain(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t l = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!l || i + l > n)
            return false;
        for (size_t k = 1; k < l; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F) ||
            (c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F) ||
            (l == 3 && c == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81))
            return false;
        i += l;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct lg_vocab *vocabs[2];
    if (!vocabs[0]) {
        vocabs[0] = spm_vocab();
        vocabs[1] = gemma4_vocab();
    }
    if (size == 0)
        return 0;
    unsigned sel = data[0];
    const struct lg_vocab *v = vocabs[sel & 1];
    unsigned flags = ((sel & 2) ? LG_TOK_ADD_BOS : 0) | ((sel & 4) ? LG_TOK_PARSE_SPECIAL : 0);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    struct lg_err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (lg_tok_encode_alloc(v, text, len, flags, &ids, &n, &err) != LG_OK)
        __builtin_trap();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= v->n_tokens)
            __builtin_trap();
    if ((flags & LG_TOK_ADD_BOS) && (n == 0 || ids[0] != v->bos_id))
        __builtin_trap();
    /* the bounded variant agrees with the allocating one */
    int32_t few[8];
    size_t n2 = 0;
    enum lg_status st = lg_tok_encode(v, text, len, flags, few, 8, &n2, &err);
    if (n2 != n || (n <= 8 && st != LG_OK) || (n > 8 && st != LG_ERR_RANGE) ||
        memcmp(few, ids, (n < 8 ? n : 8) * sizeof *ids) != 0)
        __builtin_trap();

    char *out = NULL;
    size_t out_len = 0;
    unsigned dflags = (sel & 8) ? LG_DETOK_SHOW_SPECIAL : 0;
    if (lg_tok_decode_alloc(v, ids, n, dflags, &out, &out_len, &err) != LG_OK)
        __builtin_trap();
    if (!(flags & LG_TOK_PARSE_SPECIAL) && !(sel & 8) &&
        valid_utf8_plain((const uint8_t *)text, len) &&
        (out_len != len || memcmp(out, text, len) != 0))
        __builtin_trap();
    /* decoding arbitrary ids (the input's bytes as ids) never fails inside the vocab */
    struct lg_detok *d = lg_detok_create(v, LG_DETOK_RAW_BYTES);
    if (!d)
        __builtin_trap();
    for (size_t i = 0; i + 1 < len; i += 2) {
        const char *piece;
        size_t pn;
        int32_t id = (int32_t)(((unsigned)data[1 + i] << 8 | data[2 + i]) % v->n_tokens);
        if (lg_detok_feed(d, id, &piece, &pn, &err) != LG_OK)
            __builtin_trap();
    }
    lg_detok_destroy(d);
    free(out);
    free(ids);
    return 0;
}
