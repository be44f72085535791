/* tok_vocab.c: builds struct lg_vocab from GGUF tokenizer keys and checks their meaning.
 *
 * A GGUF that parses is not yet a usable vocabulary (llama.cpp CVE-2025-49847 came from
 * trusting it): every size, id, type and byte-token spelling is checked here once, so the
 * encoder and decoder can index without further checks. Invariants after a successful load:
 * n_tokens in [1, LG_TOK_MAX_VOCAB]; every token non-empty and <= LG_TOK_MAX_TOKEN_BYTES;
 * types in 1..6; byte_tok[b] valid for all 256 bytes; special ids < n_tokens or -1; every
 * merge's parts and result are tokens.
 */
#include "tok/tok_priv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

enum { LG_TOK_MAX_EOG = 8 };

uint64_t lg_tok_hash_bytes(const void *p, size_t n)
{
    /* 8 bytes per step, multiply-xorshift mixing: tokens are short, inputs are spans. */
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)s[i] << (8 * i);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

int32_t lg_tok_lookup(const struct lg_vocab *v, const char *text, size_t n)
{
    const struct lg_vocab_priv *p = v->priv;
    if (n == 0 || n > v->max_token_bytes)
        return -1;
    uint64_t h = lg_tok_hash_bytes(text, n);
    uint32_t tag = (uint32_t)(h >> 32);
    uint32_t fb = tag & (LG_TOK_FILTER_BITS - 1);
    if (!(p->filter[fb >> 6] >> (fb & 63) & 1))
        return -1;
    for (uint32_t i = (uint32_t)h & p->hash_mask;; i = (i + 1) & p->hash_mask) {
        const struct lg_tok_slot *sl = &p->hash[i];
        if (sl->id < 0)
            return -1;
        if (sl->tag != tag)
            continue;
        size_t tn;
        const char *t = lg_tok_text(v, sl->id, &tn);
        if (tn == n && memcmp(t, text, n) == 0)
            return sl->id;
    }
}

int32_t lg_tok_find(const struct lg_vocab *v, const char *text, size_t len)
{
    return v && text ? lg_tok_lookup(v, text, len) : -1;
}

static uint32_t merge_slot(uint64_t key, uint32_t mask)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32) & mask;
}

bool lg_tok_merge_lookup(const struct lg_vocab *v, int32_t left, int32_t right, uint32_t *rank,
                         int32_t *res)
{
    const struct lg_vocab_priv *p = v->priv;
    if (!p->merge_key || left < 0 || right < 0)
        return false;
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint32_t i = merge_slot(key, p->merge_mask);; i = (i + 1) & p->merge_mask) {
        if (p->merge_key[i] == UINT64_MAX)
            return false;
        if (p->merge_key[i] == key) {
            *rank = p->merge_rank[i];
            *res = p->merge_res[i];
            return true;
        }
    }
}

enum lg_status lg_tok_buf_push(struct lg_tok_buf *b, int32_t id)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        int32_t *ids = realloc(b->ids, cap * sizeof *ids);
        if (!ids)
            return LG_ERR_NOMEM;
        b->ids = ids;
        b->cap = cap;
    }
    b->ids[b->n++] = id;
    return LG_OK;
}

size_t lg_tok_utf8_valid(const unsigned char *s, size_t n, bool *incomplete)
{
    *incomplete = false;
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        if (c == 0xF4)
            hi = 0x8F; /* > U+10FFFF */
    } else {
        return 0;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n) {
            *incomplete = true;
            return 0;
        }
        unsigned b = s[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h)
            return 0;
    }
    return need;
}

/* ---- loading -------------------------------------------------------------------------- */

static enum lg_status get_arr_kv(const struct lg_gguf *g, const char *key, bool required,
                                 const struct lg_gguf_value **out, struct lg_err *err)
{
    const struct lg_gguf_kv *kv = lg_gguf_find_kv(g, key);
    *out = NULL;
    if (!kv) {
        if (required)
            return lg_err_set(err, LG_ERR_NOT_FOUND, "vocab: missing key %s", key);
        return LG_OK;
    }
    if (kv->val.type != LG_GGUF_TYPE_ARRAY)
        return lg_err_set(err, LG_ERR_FORMAT, "vocab: %s is a %s, expected an array", key,
                          lg_gguf_type_name(kv->val.type));
    *out = &kv->val;
    return LG_OK;
}

/* Optional special id: -1 when absent; an error when present but out of range. */
static enum lg_status get_special_id(const struct lg_gguf *g, const char *key, uint32_t n_tokens,
                                     int32_t *out, struct lg_err *err)
{
    *out = -1;
    if (!lg_gguf_find_kv(g, key))
        return LG_OK;
    uint32_t id;
    enum lg_status st = lg_gguf_get_u32(g, key, &id, err);
    if (st)
        return st;
    if (id >= n_tokens)
        return lg_err_set(err, LG_ERR_RANGE, "vocab: %s = %u is outside the vocab (%u tokens)",
                          key, id, n_tokens);
    *out = (int32_t)id;
    return LG_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static enum lg_status build_hash(struct lg_vocab *v, struct lg_err *err)
{
    struct lg_vocab_priv *p = v->priv;
    uint32_t cap = 1;
    while (cap < 3u * v->n_tokens) /* load <= 1/2, usually ~1/3 */
        cap <<= 1;
    p->hash = malloc((size_t)cap * sizeof *p->hash);
    p->filter = calloc(LG_TOK_FILTER_BITS / 64, sizeof *p->filter);
    if (!p->hash || !p->filter)
        return lg_err_set(err, LG_ERR_NOMEM, "vocab: out of memory (token hash)");
    for (uint32_t i = 0; i < cap; i++)
        p->hash[i] = (struct lg_tok_slot){0, -1};
    p->hash_mask = cap - 1;
    for (uint32_t id = 0; id < v->n_tokens; id++) {
        size_t n;
        const char *t = lg_tok_text(v, (int32_t)id, &n);
        uint64_t h = lg_tok_hash_bytes(t, n);
        uint32_t tag = (uint32_t)(h >> 32);
        uint32_t fb = tag & (LG_TOK_FILTER_BITS - 1);
        p->filter[fb >> 6] |= 1ull << (fb & 63);
        for (uint32_t i = (uint32_t)h & p->hash_mask;; i = (i + 1) & p->hash_mask) {
            struct lg_tok_slot *sl = &p->hash[i];
            if (sl->id < 0) {
                *sl = (struct lg_tok_slot){tag, (int32_t)id};
                break;
            }
            size_t on;
            const char *ot = lg_tok_text(v, sl->id, &on);
            if (sl->tag == tag && on == n && memcmp(ot, t, n) == 0) {
                sl->id = (int32_t)id; /* duplicate text: the last id wins (llama.cpp) */
                break;
            }
        }
    }
    return LG_OK;
}

static enum lg_status load_merges(struct lg_vocab *v, const struct lg_gguf_value *arr,
                                  struct lg_err *err)
{
    struct lg_vocab_priv *p = v->priv;
    if (arr->v.arr.elem_type != LG_GGUF_TYPE_STRING)
        return lg_err_set(err, LG_ERR_FORMAT, "vocab: tokenizer.ggml.merges is an array of %s, "
                          "expected strings", lg_gguf_type_name(arr->v.arr.elem_type));
    if (arr->v.arr.n == 0 || arr->v.arr.n > LG_TOK_MAX_MERGES)
        return lg_err_set(err, LG_ERR_RANGE, "vocab: %llu merges (allowed 1..%u)",
                          (unsigned long long)arr->v.arr.n, (unsigned)LG_TOK_MAX_MERGES);
    uint32_t n = (uint32_t)arr->v.arr.n;
    uint32_t cap = 1;
    while (cap < 2u * n)
        cap <<= 1;
    p->merge_key = malloc((size_t)cap * sizeof *p->merge_key);
    p->merge_rank = malloc((size_t)cap * sizeof *p->merge_rank);
    p->merge_res = malloc((size_t)cap * sizeof *p->merge_res);
    char *tmp = malloc(2 * (size_t)LG_TOK_MAX_TOKEN_BYTES + 2);
    if (!p->merge_key || !p->merge_rank || !p->merge_res || !tmp) {
        free(tmp);
        return lg_err_set(err, LG_ERR_NOMEM, "vocab: out of memory (merges)");
    }
    memset(p->merge_key, 0xff, (size_t)cap * sizeof *p->merge_key);
    p->merge_mask = cap - 1;
    for (uint32_t r = 0; r < n; r++) {
        struct lg_str s = arr->v.arr.strs[r];
        /* "left right": split at the first space after the first byte (a part may be a
         * space itself in vocabs that keep raw spaces). */
        uint64_t sp = 1;
        while (sp < s.len && s.ptr[sp] != ' ')
            sp++;
        if (s.len < 3 || sp >= s.len - 1) {
            free(tmp);
            return lg_err_set(err, LG_ERR_FORMAT, "vocab: merge %u is not \"left right\"", r);
        }
        int32_t l = lg_tok_lookup(v, s.ptr, (size_t)sp);
        int32_t rt = lg_tok_lookup(v, s.ptr + sp + 1, (size_t)(s.len - sp - 1));
        int32_t res = -1;
        if (l >= 0 && rt >= 0 && s.len - 1 <= 2 * (uint64_t)LG_TOK_MAX_TOKEN_BYTES) {
            memcpy(tmp, s.ptr, (size_t)sp);
            memcpy(tmp + sp, s.ptr + sp + 1, (size_t)(s.len - sp - 1));
            res = lg_tok_lookup(v, tmp, (size_t)(s.len - 1));
        }
        if (l < 0 || rt < 0 || res < 0) {
            free(tmp);
            return lg_err_set(err, LG_ERR_FORMAT, "vocab: merge %u: %s is not a token", r,
                              l < 0 ? "its left part" : rt < 0 ? "its right part"
                                                              : "the merged text");
        }
        uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)rt;
        uint32_t i = merge_slot(key, p->merge_mask);
        while (p->merge_key[i] != UINT64_MAX && p->merge_key[i] != key)
            i = (i + 1) & p->merge_mask;
        if (p->merge_key[i] == key)
            continue; /* a repeated merge keeps its first (lowest) rank */
        p->merge_key[i] = key;
        p->merge_rank[i] = r;
        p->merge_res[i] = res;
    }
    free(tmp);
    v->n_merges = n;
    return LG_OK;
}

static bool is_special_type(uint8_t t)
{
    return t == LG_TOK_TYPE_CONTROL || t == LG_TOK_TYPE_USER_DEFINED ||
           t == LG_TOK_TYPE_UNKNOWN;
}

static int cmp_u16_desc(const void *a, const void *b)
{
    uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
    return (x < y) - (x > y);
}

static enum lg_status build_trie(struct lg_vocab *v, struct lg_err *err)
{
    struct lg_vocab_priv *p = v->priv;
    size_t cap = 1;
    for (uint32_t id = 0; id < v->n_tokens; id++)
        if (is_special_type(p->types[id]))
            cap += p->off[id + 1] - p->off[id];
    p->trie = malloc(cap * sizeof *p->trie);
    bool *len_all = calloc(LG_TOK_MAX_TOKEN_BYTES + 1, sizeof(bool));
    bool *len_user = calloc(LG_TOK_MAX_TOKEN_BYTES + 1, sizeof(bool));
    enum lg_status st = LG_OK;
    if (!p->trie || !len_all || !len_user) {
        st = lg_err_set(err, LG_ERR_NOMEM, "vocab: out of memory (special tokens)");
        goto done;
    }
    p->trie[0] = (struct lg_tok_trie_node){-1, -1, -1, -1, -1, 0, 0, 0};
    p->n_trie = 1;
    for (int b = 0; b < 256; b++)
        p->root_child[b] = -1;

    for (uint32_t id = 0; id < v->n_tokens; id++) {
        if (!is_special_type(p->types[id]))
            continue;
        size_t n;
        const unsigned char *t = (const unsigned char *)lg_tok_text(v, (int32_t)id, &n);
        int32_t node = 0;
        for (size_t i = 0; i < n; i++) {
            int32_t c = node == 0 ? p->root_child[t[i]] : p->trie[node].first_child;
            if (node != 0)
                while (c >= 0 && p->trie[c].byte != t[i])
                    c = p->trie[c].next_sibling;
            if (c < 0) {
                c = (int32_t)p->n_trie++;
                p->trie[c] = (struct lg_tok_trie_node){-1, -1, -1, -1, -1, (uint16_t)(i + 1),
                                                       t[i], 0};
                if (node == 0) {
                    p->root_child[t[i]] = c;
                } else {
                    p->trie[c].next_sibling = p->trie[node].first_child;
                    p->trie[node].first_child = c;
                }
            }
            node = c;
        }
        /* the last id wins for duplicate texts, as in the text hash */
        p->trie[node].tok = lg_tok_lookup(v, (const char *)t, n);
        p->trie[node].user = p->types[p->trie[node].tok] == LG_TOK_TYPE_USER_DEFINED;
        len_all[n] = true;
        if (p->trie[node].user)
            len_user[n] = true;
    }
    /* Ancestor links, in creation order: a parent is always created before its children,
     * but we only have child links, so walk depth-first with an explicit stack. */
    {
        int32_t *stack = malloc((size_t)p->n_trie * sizeof *stack);
        if (!stack) {
            st = lg_err_set(err, LG_ERR_NOMEM, "vocab: out of memory (special tokens)");
            goto done;
        }
        size_t sp = 0;
        for (int b = 0; b < 256; b++)
            if (p->root_child[b] >= 0) {
                struct lg_tok_trie_node *c = &p->trie[p->root_child[b]];
                c->up_all = c->up_user = -1;
                stack[sp++] = p->root_child[b];
            }
        while (sp > 0) {
            int32_t node = stack[--sp];
            const struct lg_tok_trie_node *nd = &p->trie[node];
            int32_t ua = nd->tok >= 0 ? node : nd->up_all;
            int32_t uu = nd->tok >= 0 && nd->user ? node : nd->up_user;
            for (int32_t c = nd->first_child; c >= 0; c = p->trie[c].next_sibling) {
                p->trie[c].up_all = ua;
                p->trie[c].up_user = uu;
                stack[sp++] = c;
            }
        }
        free(stack);
    }
    {
        uint32_t na = 0, nu = 0;
        for (size_t i = 1; i <= LG_TOK_MAX_TOKEN_BYTES; i++) {
            na += len_all[i];
            nu += len_user[i];
        }
        p->spec_len_all = malloc((na + 1) * sizeof(uint16_t));
        p->spec_len_user = malloc((nu + 1) * sizeof(uint16_t));
        if (!p->spec_len_all || !p->spec_len_user) {
            st = lg_err_set(err, LG_ERR_NOMEM, "vocab: out of memory (special tokens)");
            goto done;
        }
        for (size_t i = 1; i <= LG_TOK_MAX_TOKEN_BYTES; i++) {
            if (len_all[i])
                p->spec_len_all[p->n_spec_len_all++] = (uint16_t)i;
            if (len_user[i])
                p->spec_len_user[p->n_spec_len_user++] = (uint16_t)i;
        }
        qsort(p->spec_len_all, p->n_spec_len_all, sizeof(uint16_t), cmp_u16_desc);
        qsort(p->spec_len_user, p->n_spec_len_user, sizeof(uint16_t), cmp_u16_desc);
    }
done:
    free(len_all);
    free(len_user);
    return st;
}

static void add_eog(struct lg_vocab *v, int32_t id)
{
    struct lg_vocab_priv *p = v->priv;
    if (id < 0 || p->n_eog >= LG_TOK_MAX_EOG)
        return;
    size_t n;
    const char *t = lg_tok_text(v, id, &n);
    if (n == 4 && memcmp(t, "</s>", 4) == 0)
        return; /* plain text in Gemma (spec §4.2), never an end of generation */
    for (uint32_t i = 0; i < p->n_eog; i++)
        if (p->eog[i] == id)
            return;
    p->eog[p->n_eog++] = id;
}

static void build_eog(struct lg_vocab *v)
{
    static const char *const g4[] = {"<eos>", "<turn|>", "<|tool_response>"};
    static const char *const g3[] = {"<eos>", "<end_of_turn>"};
    const char *const *names = v->model == LG_TOK_MODEL_GEMMA4 ? g4 : g3;
    size_t n = v->model == LG_TOK_MODEL_GEMMA4 ? 3 : 2;
    for (size_t i = 0; i < n; i++)
        add_eog(v, lg_tok_lookup(v, names[i], strlen(names[i])));
    add_eog(v, v->eos_id);
}

enum lg_status lg_vocab_load(const struct lg_gguf *g, struct lg_vocab **out, struct lg_err *err)
{
    enum lg_status st;
    struct lg_vocab *v = NULL;
    *out = NULL;
    if (!g)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "vocab: no GGUF");

    struct lg_str model;
    st = lg_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (st)
        return st;
    enum lg_tok_model kind;
    if (lg_str_eq(model, "llama"))
        kind = LG_TOK_MODEL_SPM;
    else if (lg_str_eq(model, "gemma4"))
        kind = LG_TOK_MODEL_GEMMA4;
    else
        return lg_err_set(err, LG_ERR_UNSUPPORTED,
                          "vocab: tokenizer.ggml.model '%.*s' is not supported (llama, gemma4)",
                          (int)(model.len > 64 ? 64 : model.len), model.ptr);

    const struct lg_gguf_value *toks, *scores, *types, *merges;
    if ((st = get_arr_kv(g, "tokenizer.ggml.tokens", true, &toks, err)))
        return st;
    if (toks->v.arr.elem_type != LG_GGUF_TYPE_STRING)
        return lg_err_set(err, LG_ERR_FORMAT, "vocab: tokenizer.ggml.tokens is an array of %s, "
                          "expected strings", lg_gguf_type_name(toks->v.arr.elem_type));
    if ((st = get_arr_kv(g, "tokenizer.ggml.scores", kind == LG_TOK_MODEL_SPM, &scores, err)) ||
        (st = get_arr_kv(g, "tokenizer.ggml.token_type", true, &types, err)) ||
        (st = get_arr_kv(g, "tokenizer.ggml.merges", kind == LG_TOK_MODEL_GEMMA4, &merges, err)))
        return st;
    uint64_t n64 = toks->v.arr.n;
    if (n64 == 0 || n64 > LG_TOK_MAX_VOCAB)
        return lg_err_set(err, LG_ERR_RANGE, "vocab: %llu tokens (allowed 1..%u)",
                          (unsigned long long)n64, (unsigned)LG_TOK_MAX_VOCAB);
    uint32_t n = (uint32_t)n64;
    if (scores && (scores->v.arr.elem_type != LG_GGUF_TYPE_FLOAT32 || scores->v.arr.n != n))
        return lg_err_set(err, LG_ERR_FORMAT, "vocab: tokenizer.ggml.scores must be %u f32 "
                          "(has %llu %s)", n, (unsigned long long)scores->v.arr.n,
                          lg_gguf_type_name(scores->v.arr.elem_type));
    enum lg_gguf_type tt = types->v.arr.elem_type;
    if (tt > LG_GGUF_TYPE_INT32 || tt == LG_GGUF_TYPE_FLOAT32 || types->v.arr.n != n)
        return lg_err_set(err, LG_ERR_FORMAT, "vocab: tokenizer.ggml.token_type must be %u "
                          "integers (has %llu %s)", n, (unsigned long long)types->v.arr.n,
                          lg_gguf_type_name(tt));

    v = calloc(1, sizeof *v);
    struct lg_vocab_priv *p = calloc(1, sizeof *p);
    if (!v || !p) {
        free(v);
        free(p);
        return lg_err_set(err, LG_ERR_NOMEM, "vocab: out of memory");
    }
    v->priv = p;
    v->model = kind;
    v->n_tokens = n;

    /* texts */
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t len = toks->v.arr.strs[i].len;
        if (len == 0) {
            st = lg_err_set(err, LG_ERR_FORMAT, "vocab: token %u is empty", i);
            goto fail;
        }
        if (len > LG_TOK_MAX_TOKEN_BYTES) {
            st = lg_err_set(err, LG_ERR_RANGE, "vocab: token %u is %llu bytes (max %u)", i,
                            (unsigned long long)len, (unsigned)LG_TOK_MAX_TOKEN_BYTES);
            goto fail;
        }
        total += (size_t)len;
        if (len > v->max_token_bytes)
            v->max_token_bytes = (uint32_t)len;
    }
    if (total > UINT32_MAX) {
        st = lg_err_set(err, LG_ERR_RANGE, "vocab: token texts total %zu bytes", total);
        goto fail;
    }
    p->blob = malloc(total ? total : 1);
    p->off = malloc(((size_t)n + 1) * sizeof *p->off);
    p->scores = malloc((size_t)n * sizeof *p->scores);
    p->types = malloc(n);
    p->byte_val = calloc(n, 1);
    if (!p->blob || !p->off || !p->scores || !p->types || !p->byte_val) {
        st = lg_err_set(err, LG_ERR_NOMEM, "vocab: out of memory (%u tokens)", n);
        goto fail;
    }
    size_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        p->off[i] = (uint32_t)pos;
        memcpy(p->blob + pos, toks->v.arr.strs[i].ptr, (size_t)toks->v.arr.strs[i].len);
        pos += (size_t)toks->v.arr.strs[i].len;
    }
    p->off[n] = (uint32_t)pos;
    v->scores = p->scores;
    v->types = p->types;

    /* scores and types */
    for (int b = 0; b < 256; b++)
        p->byte_tok[b] = -1;
    for (uint32_t i = 0; i < n; i++) {
        float s = scores ? (float)lg_gguf_arr_f64(scores, i) : -1000.0f;
        if (!isfinite(s)) {
            st = lg_err_set(err, LG_ERR_FORMAT, "vocab: token %u has a non-finite score", i);
            goto fail;
        }
        p->scores[i] = s;
        int64_t t = lg_gguf_arr_i64(types, i);
        if (t < LG_TOK_TYPE_NORMAL || t > LG_TOK_TYPE_BYTE) {
            st = lg_err_set(err, LG_ERR_RANGE, "vocab: token %u has type %lld (allowed 1..6)",
                            i, (long long)t);
            goto fail;
        }
        p->types[i] = (uint8_t)t;
        if (t == LG_TOK_TYPE_BYTE) {
            size_t tn;
            const char *tx = lg_tok_text(v, (int32_t)i, &tn);
            int hi = tn == 6 ? hexval(tx[3]) : -1, lo = tn == 6 ? hexval(tx[4]) : -1;
            if (tn != 6 || memcmp(tx, "<0x", 3) != 0 || tx[5] != '>' || hi < 0 || lo < 0) {
                st = lg_err_set(err, LG_ERR_FORMAT, "vocab: byte token %u is '%.*s', expected "
                                "<0xHH>", i, (int)(tn > 16 ? 16 : tn), tx);
                goto fail;
            }
            p->byte_val[i] = (uint8_t)(hi * 16 + lo);
        }
    }
    if ((st = build_hash(v, err)))
        goto fail;
    /* Byte fallback looks up the uppercase spelling, as SentencePiece writes it. */
    for (int b = 0; b < 256; b++) {
        static const char hex[] = "0123456789ABCDEF";
        char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        int32_t id = lg_tok_lookup(v, name, 6);
        if (id < 0 || p->types[id] != LG_TOK_TYPE_BYTE) {
            st = lg_err_set(err, LG_ERR_FORMAT, "vocab: byte token <0x%c%c> is missing "
                            "(byte fallback needs all 256)", hex[b >> 4], hex[b & 15]);
            goto fail;
        }
        p->byte_tok[b] = id;
    }

    if ((st = get_special_id(g, "tokenizer.ggml.bos_token_id", n, &v->bos_id, err)) ||
        (st = get_special_id(g, "tokenizer.ggml.eos_token_id", n, &v->eos_id, err)) ||
        (st = get_special_id(g, "tokenizer.ggml.unknown_token_id", n, &v->unk_id, err)) ||
        (st = get_special_id(g, "tokenizer.ggml.padding_token_id", n, &v->pad_id, err)) ||
        (st = get_special_id(g, "tokenizer.ggml.mask_token_id", n, &v->mask_id, err)))
        goto fail;

    v->add_bos = true; /* llama.cpp's default for SPM when the key is absent */
    if (lg_gguf_find_kv(g, "tokenizer.ggml.add_bos_token") &&
        (st = lg_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err)))
        goto fail;
    if (kind == LG_TOK_MODEL_GEMMA4)
        v->add_bos = true; /* spec §4.1: forced, Gemma degrades badly without BOS */
    if (v->add_bos && v->bos_id < 0) {
        st = lg_err_set(err, LG_ERR_NOT_FOUND, "vocab: add_bos is set but "
                        "tokenizer.ggml.bos_token_id is missing");
        goto fail;
    }
    if (lg_gguf_find_kv(g, "tokenizer.ggml.add_space_prefix")) {
        bool asp;
        if ((st = lg_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &asp, err)))
            goto fail;
        if (asp) {
            st = lg_err_set(err, LG_ERR_UNSUPPORTED, "vocab: add_space_prefix = true is not "
                            "supported (Gemma vocabs set false)");
            goto fail;
        }
    }

    if (merges && kind == LG_TOK_MODEL_GEMMA4 && (st = load_merges(v, merges, err)))
        goto fail;
    if ((st = build_trie(v, err)))
        goto fail;
    build_eog(v);
    *out = v;
    return LG_OK;
fail:
    lg_vocab_free(v);
    return st;
}

void lg_vocab_free(struct lg_vocab *v)
{
    if (!v)
        return;
    struct lg_vocab_priv *p = v->priv;
    if (p) {
        free(p->blob);
        free(p->off);
        free(p->scores);
        free(p->types);
        free(p->byte_val);
        free(p->hash);
        free(p->filter);
        free(p->merge_key);
        free(p->merge_rank);
        free(p->merge_res);
        free(p->trie);
        free(p->spec_len_all);
        free(p->spec_len_user);
        free(p);
    }
    free(v);
}

struct lg_str lg_tok_piece(const struct lg_vocab *v, int32_t id)
{
    struct lg_str s = {"", 0};
    if (!v || id < 0 || (uint32_t)id >= v->n_tokens)
        return s;
    size_t n;
    s.ptr = lg_tok_text(v, id, &n);
    s.len = n;
    return s;
}

bool lg_tok_is_eog(const struct lg_vocab *v, int32_t id)
{
    if (!v || id < 0)
        return false;
    for (uint32_t i = 0; i < v->priv->n_eog; i++)
        if (v->priv->eog[i] == id)
            return true;
    return false;
}

bool lg_tok_is_control(const struct lg_vocab *v, int32_t id)
{
    return v && id >= 0 && (uint32_t)id < v->n_tokens &&
           v->types[id] == LG_TOK_TYPE_CONTROL;
}
