/* tok_encode.c: text -> token ids for both Gemma vocabularies.
 *
 * Three stages, all linear or n log n in the input and free of recursion:
 *  1. partition: special tokens are cut out atomically. The result equals llama.cpp's
 *     (tokenizer_st_partition): specials are taken longest first over the whole text, and
 *     for one length left to right, each only where none of its bytes is already taken.
 *     Instead of one scan per special we walk a trie once per position, then resolve the
 *     candidates length by length (a rejected candidate falls back to the longest shorter
 *     special starting at the same position).
 *  2. per text fragment, spaces become U+2581 and one of the two merge algorithms runs on a
 *     doubly linked list of symbols with a binary heap of candidate pairs (O(n log n)).
 *  3. symbols that are not tokens fall back to one <0xHH> token per byte.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tok/tok_priv.h"

/* ---- stage 1: special tokens ---------------------------------------------------------- */

struct cand {
    uint32_t pos;
    int32_t node;  /* trie node of the current (longest still possible) special */
    int accepted;
};

/* Deepest special (enabled set) that starts at text[pos]: its trie node, or -1. */
static int32_t longest_special(const struct lg_vocab_priv *p, const unsigned char *t, size_t len,
                               size_t pos, bool all)
{
    int32_t node = p->root_child[t[pos]], best = -1;
    size_t i = pos;
    while (node >= 0) {
        const struct lg_tok_trie_node *nd = &p->trie[node];
        if (nd->tok >= 0 && (all || nd->user))
            best = node;
        if (++i >= len)
            break;
        int32_t c = nd->first_child;
        while (c >= 0 && p->trie[c].byte != t[i])
            c = p->trie[c].next_sibling;
        node = c;
    }
    return best;
}

/* One piece of the partition: either text [start, start+len) or a special token. */
struct frag {
    size_t start, len;
    int32_t tok; /* -1 for text */
};

struct frags {
    struct frag *v;
    size_t n, cap;
};

static enum lg_status frag_push(struct frags *f, size_t start, size_t len, int32_t tok)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        struct frag *nv = realloc(f->v, cap * sizeof *nv);
        if (!nv)
            return LG_ERR_NOMEM;
        f->v = nv;
        f->cap = cap;
    }
    f->v[f->n++] = (struct frag){start, len, tok};
    return LG_OK;
}

static enum lg_status partition(const struct lg_vocab *v, const unsigned char *t, size_t len,
                                bool all, struct frags *out)
{
    const struct lg_vocab_priv *p = v->priv;
    struct cand *c = NULL;
    size_t n_c = 0, cap_c = 0;
    unsigned char *taken = NULL;
    enum lg_status st = LG_OK;

    for (size_t pos = 0; pos < len; pos++) {
        if (p->root_child[t[pos]] < 0)
            continue;
        int32_t node = longest_special(p, t, len, pos, all);
        if (node < 0)
            continue;
        if (n_c == cap_c) {
            size_t cap = cap_c ? cap_c * 2 : 64;
            struct cand *nc = realloc(c, cap * sizeof *nc);
            if (!nc) {
                st = LG_ERR_NOMEM;
                goto done;
            }
            c = nc;
            cap_c = cap;
        }
        c[n_c++] = (struct cand){(uint32_t)pos, node, 0};
    }
    if (n_c == 0) {
        st = len ? frag_push(out, 0, len, -1) : LG_OK;
        goto done;
    }
    taken = calloc(len, 1);
    if (!taken) {
        st = LG_ERR_NOMEM;
        goto done;
    }
    const uint16_t *lens = all ? p->spec_len_all : p->spec_len_user;
    uint32_t n_lens = all ? p->n_spec_len_all : p->n_spec_len_user;
    for (uint32_t li = 0; li < n_lens; li++) {
        uint16_t L = lens[li];
        size_t w = 0;
        for (size_t i = 0; i < n_c; i++) {
            struct cand k = c[i];
            if (!k.accepted && p->trie[k.node].depth == L) {
                size_t a = k.pos, b = k.pos + L - 1;
                /* Every span taken so far is at least L long, so it overlaps [a, b] only if
                 * it covers a or b: two checks instead of L. */
                if (taken[a] || taken[b]) {
                    k.node = all ? p->trie[k.node].up_all : p->trie[k.node].up_user;
                    if (k.node < 0)
                        continue; /* no shorter special here: drop */
                } else {
                    memset(taken + a, 1, L);
                    k.accepted = 1;
                }
            }
            c[w++] = k;
        }
        n_c = w;
    }
    size_t at = 0;
    for (size_t i = 0; i < n_c; i++) {
        if (!c[i].accepted)
            continue;
        size_t a = c[i].pos, L = p->trie[c[i].node].depth;
        if (a > at && (st = frag_push(out, at, a - at, -1)))
            goto done;
        if ((st = frag_push(out, a, L, p->trie[c[i].node].tok)))
            goto done;
        at = a + L;
    }
    if (at < len)
        st = frag_push(out, at, len - at, -1);
done:
    free(c);
    free(taken);
    return st;
}

/* ---- stage 2: shared pieces ----------------------------------------------------------- */

/* Symbols are contiguous spans of the (escaped) fragment, linked in order. */
struct sym {
    uint32_t start, n;
    int32_t prev, next;
    int32_t id; /* Gemma 4: token of the span or -1; unused by SPM */
};

/* Candidate pair. SPM orders by score (high first), Gemma 4 by rank (low first); ties go to
 * the leftmost pair in both, as in SentencePiece, llama.cpp and HF tokenizers. */
struct pair {
    float score;
    uint32_t rank;
    int32_t left, right;
    uint32_t size;       /* SPM: bytes of the merged text, to detect stale entries */
    int32_t id_l, id_r;  /* Gemma 4: ids the pair was made from, to detect stale entries */
};

struct heap {
    struct pair *v;
    size_t n, cap;
    bool by_rank;
};

static bool pair_before(const struct heap *h, const struct pair *a, const struct pair *b)
{
    if (h->by_rank) {
        if (a->rank != b->rank)
            return a->rank < b->rank;
    } else if (a->score != b->score) {
        return a->score > b->score;
    }
    return a->left < b->left;
}

static enum lg_status heap_push(struct heap *h, struct pair e)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct pair *nv = realloc(h->v, cap * sizeof *nv);
        if (!nv)
            return LG_ERR_NOMEM;
        h->v = nv;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(h, &e, &h->v[parent]))
            break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = e;
    return LG_OK;
}

static struct pair heap_pop(struct heap *h)
{
    struct pair top = h->v[0];
    struct pair last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct pair *best = &last;
        if (l < h->n && pair_before(h, &h->v[l], best)) {
            m = l;
            best = &h->v[l];
        }
        if (r < h->n && pair_before(h, &h->v[r], best))
            m = r;
        if (m == i)
            break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n > 0)
        h->v[i] = last;
    return top;
}

/* Length of the symbol starting with byte c, the way llama.cpp splits (lead byte only). */
static size_t lead_len(unsigned char c)
{
    static const unsigned char lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* Builds symbols over s[0..n): one per character (by lead byte, cut at the end). */
static enum lg_status make_syms(const unsigned char *s, size_t n, struct sym **out, size_t *n_out)
{
    struct sym *y = malloc((n ? n : 1) * sizeof *y);
    if (!y)
        return LG_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t l = lead_len(s[i]);
        if (l > n - i)
            l = n - i;
        y[k] = (struct sym){(uint32_t)i, (uint32_t)l, (int32_t)k - 1, -1, -1};
        if (k > 0)
            y[k - 1].next = (int32_t)k;
        k++;
        i += l;
    }
    *out = y;
    *n_out = k;
    return LG_OK;
}

static enum lg_status emit_span(const struct lg_vocab *v, const unsigned char *s, size_t n,
                                int32_t id, struct lg_tok_buf *out)
{
    if (id < 0)
        id = lg_tok_lookup(v, (const char *)s, n);
    if (id >= 0)
        return lg_tok_buf_push(out, id);
    for (size_t i = 0; i < n; i++) {
        enum lg_status st = lg_tok_buf_push(out, v->priv->byte_tok[s[i]]);
        if (st)
            return st;
    }
    return LG_OK;
}

/* Replaces every ' ' by U+2581; with sanitize, also every byte that does not start a valid
 * UTF-8 character by U+FFFD (Gemma 4 only; see README: llama.cpp does the same through its
 * code-point conversion, HF cannot take such bytes at all). */
static enum lg_status escape_text(const unsigned char *t, size_t len, bool sanitize,
                                  unsigned char **out, size_t *n_out)
{
    size_t cap = len * 3 + 1; /* each byte grows to at most 3 */
    unsigned char *o = malloc(cap);
    if (!o)
        return LG_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = t[i];
        if (c == ' ') {
            memcpy(o + k, "\xE2\x96\x81", 3);
            k += 3;
            i++;
        } else if (c < 0x80 || !sanitize) {
            o[k++] = c;
            i++;
        } else {
            bool inc;
            size_t l = lg_tok_utf8_valid(t + i, len - i, &inc);
            if (l == 0) {
                memcpy(o + k, "\xEF\xBF\xBD", 3);
                k += 3;
                i++;
            } else {
                memcpy(o + k, t + i, l);
                k += l;
                i += l;
            }
        }
    }
    *out = o;
    *n_out = k;
    return LG_OK;
}

/* ---- stage 2a: SentencePiece-style merging (Gemma 3) ---------------------------------- */

static enum lg_status spm_try_pair(const struct lg_vocab *v, const unsigned char *s,
                                   const struct sym *y, int32_t l, int32_t r, struct heap *h)
{
    if (l < 0 || r < 0)
        return LG_OK;
    uint32_t size = y[l].n + y[r].n;
    int32_t id = lg_tok_lookup(v, (const char *)s + y[l].start, size);
    if (id < 0)
        return LG_OK;
    struct pair e = {v->priv->scores[id], 0, l, r, size, -1, -1};
    return heap_push(h, e);
}

static enum lg_status spm_fragment(const struct lg_vocab *v, const unsigned char *text,
                                   size_t len, struct lg_tok_buf *out)
{
    unsigned char *s = NULL;
    size_t n = 0, n_sym = 0;
    struct sym *y = NULL;
    struct heap h = {NULL, 0, 0, false};
    enum lg_status st;
    if ((st = escape_text(text, len, false, &s, &n)) || (st = make_syms(s, n, &y, &n_sym)))
        goto done;
    for (size_t i = 1; i < n_sym; i++)
        if ((st = spm_try_pair(v, s, y, (int32_t)i - 1, (int32_t)i, &h)))
            goto done;
    while (h.n > 0) {
        struct pair e = heap_pop(&h);
        struct sym *a = &y[e.left], *b = &y[e.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != e.size)
            continue; /* one side changed since the pair was queued */
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0)
            y[b->next].prev = e.left;
        if ((st = spm_try_pair(v, s, y, a->prev, e.left, &h)) ||
            (st = spm_try_pair(v, s, y, e.left, a->next, &h)))
            goto done;
    }
    for (int32_t i = n_sym ? 0 : -1; i >= 0; i = y[i].next)
        if ((st = emit_span(v, s + y[i].start, y[i].n, -1, out)))
            goto done;
done:
    free(s);
    free(y);
    free(h.v);
    return st;
}

/* ---- stage 2b: BPE over ranked merges (Gemma 4) --------------------------------------- */

static enum lg_status bpe_try_pair(const struct lg_vocab *v, const struct sym *y, int32_t l,
                                   int32_t r, struct heap *h)
{
    if (l < 0 || r < 0)
        return LG_OK;
    uint32_t rank;
    int32_t res;
    if (!lg_tok_merge_lookup(v, y[l].id, y[r].id, &rank, &res))
        return LG_OK;
    struct pair e = {0, rank, l, r, 0, y[l].id, y[r].id};
    return heap_push(h, e);
}

/* BPE of one word s[0..n) (valid UTF-8, no newline mixed with other characters). */
static enum lg_status bpe_word(const struct lg_vocab *v, const unsigned char *s, size_t n,
                               struct lg_tok_buf *out)
{
    struct sym *y = NULL;
    size_t n_sym = 0;
    struct heap h = {NULL, 0, 0, true};
    enum lg_status st = make_syms(s, n, &y, &n_sym);
    if (st)
        return st;
    for (size_t i = 0; i < n_sym; i++)
        y[i].id = lg_tok_lookup(v, (const char *)s + y[i].start, y[i].n);
    for (size_t i = 1; i < n_sym; i++)
        if ((st = bpe_try_pair(v, y, (int32_t)i - 1, (int32_t)i, &h)))
            goto done;
    while (h.n > 0) {
        struct pair e = heap_pop(&h);
        struct sym *a = &y[e.left], *b = &y[e.right];
        if (a->n == 0 || b->n == 0 || a->next != e.right || a->id != e.id_l || b->id != e.id_r)
            continue;
        uint32_t rank;
        int32_t res;
        lg_tok_merge_lookup(v, a->id, b->id, &rank, &res);
        a->id = res;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0)
            y[b->next].prev = e.left;
        if ((st = bpe_try_pair(v, y, a->prev, e.left, &h)) ||
            (st = bpe_try_pair(v, y, e.left, a->next, &h)))
            goto done;
    }
    for (int32_t i = n_sym ? 0 : -1; i >= 0; i = y[i].next)
        if ((st = emit_span(v, s + y[i].start, y[i].n, y[i].id, out)))
            goto done;
done:
    free(y);
    free(h.v);
    return st;
}

static enum lg_status gemma4_fragment(const struct lg_vocab *v, const unsigned char *text,
                                      size_t len, struct lg_tok_buf *out)
{
    unsigned char *s = NULL;
    size_t n = 0;
    enum lg_status st = escape_text(text, len, true, &s, &n);
    if (st)
        return st;
    /* Words are runs of newlines and runs of anything else (llama.cpp's "[^\n]+|[\n]+"):
     * the real Gemma 4 merges never join a newline to another character, so this split
     * loses nothing against Hugging Face. A newline run that is a token is taken whole. */
    for (size_t i = 0; i < n && !st;) {
        bool nl = s[i] == '\n';
        size_t j = i;
        while (j < n && (s[j] == '\n') == nl)
            j++;
        int32_t whole = nl ? lg_tok_lookup(v, (const char *)s + i, j - i) : -1;
        st = whole >= 0 ? lg_tok_buf_push(out, whole) : bpe_word(v, s + i, j - i, out);
        i = j;
    }
    free(s);
    return st;
}

/* ---- entry points ---------------------------------------------------------------------- */

static enum lg_status encode_buf(const struct lg_vocab *v, const char *text, size_t len,
                                 unsigned flags, struct lg_tok_buf *out, struct lg_err *err)
{
    if (!v || (!text && len))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "tokenize: no vocab or text");
    if (len > LG_TOK_MAX_TEXT_BYTES)
        return lg_err_set(err, LG_ERR_RANGE, "tokenize: text of %zu bytes (max %u)", len,
                          (unsigned)LG_TOK_MAX_TEXT_BYTES);
    const unsigned char *t = (const unsigned char *)text;
    struct frags f = {NULL, 0, 0};
    enum lg_status st = partition(v, t, len, (flags & LG_TOK_PARSE_SPECIAL) != 0, &f);
    if (st)
        goto done;
    bool bos = (flags & LG_TOK_ADD_BOS) && v->add_bos;
    if (bos && f.n > 0 && f.v[0].tok == v->bos_id)
        bos = false; /* exactly one BOS (spec §7.1): the text already starts with "<bos>" */
    if (bos && (st = lg_tok_buf_push(out, v->bos_id)))
        goto done;
    for (size_t i = 0; i < f.n && !st; i++) {
        const struct frag *fr = &f.v[i];
        if (fr->tok >= 0)
            st = lg_tok_buf_push(out, fr->tok);
        else if (v->model == LG_TOK_MODEL_GEMMA4)
            st = gemma4_fragment(v, t + fr->start, fr->len, out);
        else
            st = spm_fragment(v, t + fr->start, fr->len, out);
    }
done:
    free(f.v);
    if (st == LG_ERR_NOMEM)
        return lg_err_set(err, st, "tokenize: out of memory (%zu bytes of text)", len);
    return st;
}

enum lg_status lg_tok_encode(const struct lg_vocab *v, const char *text, size_t len,
                             unsigned flags, int32_t *ids, size_t cap, size_t *n_ids,
                             struct lg_err *err)
{
    struct lg_tok_buf b = {NULL, 0, 0};
    *n_ids = 0;
    enum lg_status st = encode_buf(v, text, len, flags, &b, err);
    if (st == LG_OK) {
        *n_ids = b.n;
        size_t k = b.n < cap ? b.n : cap;
        if (k)
            memcpy(ids, b.ids, k * sizeof *ids);
        if (b.n > cap)
            st = lg_err_set(err, LG_ERR_RANGE, "tokenize: %zu tokens do not fit in %zu", b.n,
                            cap);
    }
    free(b.ids);
    return st;
}

enum lg_status lg_tok_encode_alloc(const struct lg_vocab *v, const char *text, size_t len,
                                   unsigned flags, int32_t **ids, size_t *n_ids,
                                   struct lg_err *err)
{
    struct lg_tok_buf b = {NULL, 0, 0};
    *ids = NULL;
    *n_ids = 0;
    enum lg_status st = encode_buf(v, text, len, flags, &b, err);
    if (st) {
        free(b.ids);
        return st;
    }
    if (!b.ids && !(b.ids = malloc(sizeof *b.ids)))
        return lg_err_set(err, LG_ERR_NOMEM, "tokenize: out of memory");
    *ids = b.ids;
    *n_ids = b.n;
    return LG_OK;
}
