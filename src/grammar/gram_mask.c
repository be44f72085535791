/* gram_mask.c: allowed-token masks over a vocabulary.
 *
 * The vocabulary's tokens, as the bytes the detokenizer prints for them, are stored as a trie in
 * preorder (a node's subtree is the index range [node+1, end)). A mask walks the trie once from
 * the current state, keeping the parse positions of every depth of the current path; when the
 * grammar rejects a prefix, the whole subtree is skipped. Frames pushed during the walk are
 * dropped afterwards, so a walk leaves the frame store as it found it. Masks of the last
 * LG_GMASK_CACHE states are cached: inside a free string or a repeated array item the state
 * repeats token after token and the mask is a copy. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "grammar/gram_priv.h"
#include "tok/tok.h"

struct trie_node {
    uint32_t end;      /* one past the last node of the subtree */
    uint32_t tok_first; /* index into ids_sorted of the tokens spelled by this path */
    uint16_t depth;
    uint8_t byte;
    uint8_t n_tok;
};

struct lg_grammar_vocab {
    uint32_t n_tokens;
    uint32_t n_words;          /* mask words */
    uint32_t *tok_off;         /* [n_tokens + 1] into blob; equal offsets = never allowed */
    uint8_t *blob;
    int32_t *eog;
    uint32_t n_eog;
    int32_t *ids_sorted;       /* allowed tokens sorted by their bytes */
    struct trie_node *nodes;
    uint32_t n_nodes;
    uint32_t max_depth;
    /* Free-string shortcut: tokens made only of characters an unbounded JSON string takes as
     * they are (printable, no '"' or '\\', well-formed UTF-8) leave the string's loop node
     * where it was, so in that state they are all allowed at once (plain_mask) and the walk
     * skips subtrees holding only such tokens (plain_sub). */
    uint32_t *plain_mask; /* [n_words] */
    uint8_t *plain_sub;   /* [n_nodes] */
    /* Short-plain shortcut (bounded strings, Gemma-surface strings): tokens of 1..SHORT_MAXC
     * code points that are all "short-plain" (plain, and no '<') are, in a state whose
     * positions are all string-character nodes or nodes that take no such byte, allowed
     * exactly when that many characters fit, whichever characters they are. short_cum[c-1] =
     * such tokens of at most c code points; short_sub = subtrees holding only such tokens. */
    uint32_t *short_cum; /* [SHORT_MAXC][n_words] */
    uint8_t *short_sub;  /* [n_nodes] */
};

enum { SHORT_MAXC = 16 };

/* Code points of b[0..n) when every one is short-plain (plain JSON text without '<'), else 0. */
static uint32_t short_plain_count(const uint8_t *b, size_t n);

/* Whether the bytes are plain JSON string characters (same classes as the grammar's). */
static bool plain_json_text(const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = b[i];
        if (c < 0x80) {
            if (c < 0x20 || c == '"' || c == '\\')
                return false;
            i++;
            continue;
        }
        size_t k;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            k = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0)
                lo = 0xA0;
            if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0)
                lo = 0x90;
            if (c == 0xF4)
                hi = 0x8F;
        } else {
            return false;
        }
        if (n - i - 1 < k || b[i + 1] < lo || b[i + 1] > hi)
            return false;
        for (size_t j = 2; j <= k; j++)
            if (b[i + j] < 0x80 || b[i + j] > 0xBF)
                return false;
        i += k + 1;
    }
    return true;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* For qsort_r of ids by bytes. */
static int cmp_tok(const void *pa, const void *pb, void *arg)
{
    const struct lg_grammar_vocab *gv = arg;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    uint32_t la = gv->tok_off[a + 1] - gv->tok_off[a], lb = gv->tok_off[b + 1] - gv->tok_off[b];
    int c = memcmp(gv->blob + gv->tok_off[a], gv->blob + gv->tok_off[b], la < lb ? la : lb);
    if (c)
        return c;
    if (la != lb)
        return la < lb ? -1 : 1;
    return a < b ? -1 : 1;
}

static uint32_t short_plain_count(const uint8_t *b, size_t n)
{
    if (n == 0 || memchr(b, '<', n) || !plain_json_text(b, n))
        return 0;
    uint32_t cp = 0;
    for (size_t i = 0; i < n; i++)
        cp += (b[i] & 0xC0) != 0x80;
    return cp;
}

void lg_grammar_vocab_free(struct lg_grammar_vocab *gv)
{
    if (!gv)
        return;
    free(gv->tok_off);
    free(gv->blob);
    free(gv->eog);
    free(gv->ids_sorted);
    free(gv->nodes);
    free(gv->plain_mask);
    free(gv->plain_sub);
    free(gv->short_cum);
    free(gv->short_sub);
    free(gv);
}

enum lg_status lg_grammar_vocab_build(const struct lg_vocab *v, struct lg_grammar_vocab **out,
                                      struct lg_err *err)
{
    *out = NULL;
    if (!v || v->n_tokens == 0)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "grammar vocab: empty vocabulary");
    struct lg_grammar_vocab *gv = calloc(1, sizeof *gv);
    if (!gv)
        return lg_err_set(err, LG_ERR_NOMEM, "grammar vocab: out of memory");
    uint32_t n = v->n_tokens;
    gv->n_tokens = n;
    gv->n_words = (n + 31) / 32;
    size_t blob_bytes = 0;
    for (uint32_t id = 0; id < n; id++)
        blob_bytes += lg_tok_piece(v, (int32_t)id).len;
    gv->tok_off = malloc(((size_t)n + 1) * sizeof *gv->tok_off);
    gv->blob = malloc(blob_bytes + 1);
    gv->eog = malloc((size_t)n * sizeof *gv->eog);
    gv->ids_sorted = malloc((size_t)n * sizeof *gv->ids_sorted);
    if (!gv->tok_off || !gv->blob || !gv->eog || !gv->ids_sorted)
        goto nomem;
    size_t off = 0;
    uint32_t n_ids = 0;
    for (uint32_t id = 0; id < n; id++) {
        gv->tok_off[id] = (uint32_t)off;
        if (lg_tok_is_eog(v, (int32_t)id)) {
            /* Never matched as text (Gemma 4's <|tool_response> is user-defined): an EOG
             * token is allowed only as the end. */
            gv->eog[gv->n_eog++] = (int32_t)id;
            continue;
        }
        uint8_t type = v->types[id];
        if (type == LG_TOK_TYPE_CONTROL || type == LG_TOK_TYPE_UNKNOWN ||
            type == LG_TOK_TYPE_UNUSED)
            continue;
        struct lg_str p = lg_tok_piece(v, (int32_t)id);
        const char *s = p.ptr;
        size_t len = p.len;
        size_t start = off;
        if (type == LG_TOK_TYPE_BYTE) {
            if (len == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
                hexval(s[3]) >= 0 && hexval(s[4]) >= 0)
                gv->blob[off++] = (uint8_t)(hexval(s[3]) * 16 + hexval(s[4]));
        } else {
            for (size_t i = 0; i < len; i++) {
                if (i + 2 < len && (uint8_t)s[i] == 0xE2 && (uint8_t)s[i + 1] == 0x96 &&
                    (uint8_t)s[i + 2] == 0x81) {
                    gv->blob[off++] = ' ';
                    i += 2;
                } else {
                    gv->blob[off++] = (uint8_t)s[i];
                }
            }
        }
        if (off > start) {
            gv->ids_sorted[n_ids++] = (int32_t)id;
            if (off - start > gv->max_depth)
                gv->max_depth = (uint32_t)(off - start);
        }
    }
    gv->tok_off[n] = (uint32_t)off;
    qsort_r(gv->ids_sorted, n_ids, sizeof *gv->ids_sorted, cmp_tok, gv);
    /* Preorder trie from the sorted list: a node is created for each byte past the common
     * prefix with the previous token; nodes on the abandoned part of the path get their end. */
    size_t cap = off + 1;
    gv->nodes = malloc(cap * sizeof *gv->nodes);
    uint32_t *path = malloc(((size_t)gv->max_depth + 1) * sizeof *path);
    if (!gv->nodes || !path) {
        free(path);
        goto nomem;
    }
    gv->nodes[0] = (struct trie_node){0, 0, 0, 0, 0};
    path[0] = 0;
    uint32_t nn = 1, cur_len = 0;
    const uint8_t *prev = NULL;
    for (uint32_t k = 0; k < n_ids; k++) {
        int32_t id = gv->ids_sorted[k];
        const uint8_t *b = gv->blob + gv->tok_off[id];
        uint32_t len = gv->tok_off[id + 1] - gv->tok_off[id];
        uint32_t l = 0;
        if (prev)
            while (l < cur_len && l < len && prev[l] == b[l])
                l++;
        for (uint32_t d = cur_len; d > l; d--)
            gv->nodes[path[d]].end = nn;
        for (uint32_t d = l + 1; d <= len; d++) {
            gv->nodes[nn] = (struct trie_node){0, 0, (uint16_t)d, b[d - 1], 0};
            path[d] = nn++;
        }
        struct trie_node *t = &gv->nodes[path[len]];
        if (t->n_tok == 0)
            t->tok_first = k;
        if (t->n_tok < 255)
            t->n_tok++;
        prev = b;
        cur_len = len;
    }
    for (uint32_t d = cur_len; d > 0; d--)
        gv->nodes[path[d]].end = nn;
    gv->nodes[0].end = nn;
    gv->n_nodes = nn;
    free(path);
    gv->plain_mask = calloc(gv->n_words, sizeof *gv->plain_mask);
    gv->plain_sub = malloc(nn);
    if (!gv->plain_mask || !gv->plain_sub)
        goto nomem;
    /* Children come after their parent in preorder: fill bottom-up by walking backwards. */
    for (uint32_t i = nn; i-- > 0;) {
        const struct trie_node *t = &gv->nodes[i];
        bool plain = true;
        for (uint32_t j = 0; j < t->n_tok && plain; j++) {
            int32_t id = gv->ids_sorted[t->tok_first + j];
            plain = plain_json_text(gv->blob + gv->tok_off[id],
                                    gv->tok_off[id + 1] - gv->tok_off[id]);
            if (plain)
                for (uint32_t q = 0; q < t->n_tok; q++) {
                    int32_t qid = gv->ids_sorted[t->tok_first + q];
                    gv->plain_mask[qid >> 5] |= 1u << (qid & 31);
                }
        }
        for (uint32_t j = i + 1; j < t->end && plain; j = gv->nodes[j].end)
            plain = gv->plain_sub[j];
        gv->plain_sub[i] = plain && i > 0;
    }
    gv->short_cum = calloc((size_t)SHORT_MAXC * gv->n_words, sizeof *gv->short_cum);
    gv->short_sub = malloc(nn);
    if (!gv->short_cum || !gv->short_sub)
        goto nomem;
    for (uint32_t i = nn; i-- > 0;) {
        const struct trie_node *t = &gv->nodes[i];
        bool sp = true;
        if (t->n_tok) { /* the tokens of a node share its bytes */
            int32_t id0 = gv->ids_sorted[t->tok_first];
            uint32_t cnt = short_plain_count(gv->blob + gv->tok_off[id0],
                                             gv->tok_off[id0 + 1] - gv->tok_off[id0]);
            sp = cnt >= 1 && cnt <= SHORT_MAXC;
            for (uint32_t q = 0; sp && q < t->n_tok; q++) {
                int32_t qid = gv->ids_sorted[t->tok_first + q];
                for (uint32_t c = cnt; c <= SHORT_MAXC; c++)
                    gv->short_cum[(size_t)(c - 1) * gv->n_words + (qid >> 5)] |=
                        1u << (qid & 31);
            }
        }
        for (uint32_t j = i + 1; j < t->end && sp; j = gv->nodes[j].end)
            sp = gv->short_sub[j];
        gv->short_sub[i] = sp && i > 0;
    }
    *out = gv;
    return LG_OK;
nomem:
    lg_grammar_vocab_free(gv);
    return lg_err_set(err, LG_ERR_NOMEM, "grammar vocab: out of memory");
}

uint32_t lg_grammar_vocab_n_tokens(const struct lg_grammar_vocab *gv)
{
    return gv ? gv->n_tokens : 0;
}

uint32_t lg_grammar_vocab_n_trie_nodes(const struct lg_grammar_vocab *gv)
{
    return gv ? gv->n_nodes : 0;
}

const uint8_t *lg_grammar_vocab_bytes(const struct lg_grammar_vocab *gv, int32_t id, size_t *n)
{
    *n = 0;
    if (!gv || id < 0 || (uint32_t)id >= gv->n_tokens)
        return NULL;
    *n = gv->tok_off[id + 1] - gv->tok_off[id];
    return *n ? gv->blob + gv->tok_off[id] : NULL;
}

static bool is_eog(const struct lg_grammar_vocab *gv, int32_t id)
{
    for (uint32_t i = 0; i < gv->n_eog; i++)
        if (gv->eog[i] == id)
            return true;
    return false;
}

static struct lg_gmask_entry *cache_find(struct lg_gctx *c, const struct lg_grammar_state *s,
                                         const struct lg_grammar_vocab *gv)
{
    for (int i = 0; i < LG_GMASK_CACHE; i++) {
        struct lg_gmask_entry *e = &c->cache[i];
        if (e->used && e->gv == gv && e->n_heads == s->n_heads && e->complete == s->complete &&
            memcmp(e->heads, s->heads, s->n_heads * sizeof *s->heads) == 0)
            return e;
    }
    return NULL;
}

static void cache_store(struct lg_gctx *c, const struct lg_grammar_state *s,
                        const struct lg_grammar_vocab *gv, const uint32_t *mask)
{
    struct lg_gmask_entry *e = &c->cache[0];
    for (int i = 1; i < LG_GMASK_CACHE; i++)
        if (!c->cache[i].used || (e->used && c->cache[i].tick < e->tick))
            e = &c->cache[i];
    if (!e->mask || e->gv != gv) {
        free(e->mask);
        e->mask = malloc((size_t)gv->n_words * sizeof *e->mask);
    }
    struct lg_ghead *h = realloc(e->heads, (s->n_heads ? s->n_heads : 1) * sizeof *h);
    if (!e->mask || !h) {
        if (h)
            e->heads = h;
        e->used = false;
        return;
    }
    e->heads = h;
    memcpy(e->heads, s->heads, s->n_heads * sizeof *h);
    memcpy(e->mask, mask, (size_t)gv->n_words * sizeof *mask);
    e->n_heads = s->n_heads;
    e->complete = s->complete;
    e->gv = gv;
    e->used = true;
    e->tick = ++c->tick;
}


/* ---- memoised walk ----------------------------------------------------------------------------
 * Parse-position sets met during one walk are interned, and each (set, byte) transition is
 * computed once: inside a free string every depth of the trie has the same set, so the walk
 * becomes a table lookup per trie node (a lazily built DFA over the pushdown states). The memo
 * persists across steps (frames are then kept, not rolled back): the sets one step explores
 * (e.g. positions i+1.. of a counted string) are the ones the next step starts from. When it
 * fills up it is cleared; if one walk alone overflows it, that walk runs without memo. */
enum {
    WALK_MAX_SETS = 4096,
    WALK_UNKNOWN = -2,
    WALK_DEAD = -1
};

struct wset {
    uint32_t first, n; /* heads in w->heads */
    uint32_t hash;
    bool complete;
};

struct lg_gwalk {
    struct wset *sets;
    uint32_t n_sets, cap_sets;
    struct lg_ghead *heads;
    size_t n_heads, cap_heads;
    int32_t *trans;    /* [cap_sets][256] */
    int32_t *buckets;  /* [n_buckets] set ids, -1 empty */
    uint32_t n_buckets;
    struct lg_ghead *tmp; /* [LG_GRAMMAR_MAX_HEADS] */
};

void lg_gram_walk_free(struct lg_gwalk *w)
{
    if (!w)
        return;
    free(w->sets);
    free(w->heads);
    free(w->trans);
    free(w->buckets);
    free(w->tmp);
    free(w);
}

static int cmp_ghead(const void *pa, const void *pb)
{
    const struct lg_ghead *a = pa, *b = pb;
    if (a->node != b->node)
        return a->node < b->node ? -1 : 1;
    return a->frame < b->frame ? -1 : a->frame > b->frame;
}

static uint32_t set_hash(const struct lg_ghead *h, uint32_t n, bool complete)
{
    uint64_t x = 0x9E3779B97F4A7C15ull ^ n ^ ((uint64_t)complete << 40);
    for (uint32_t i = 0; i < n; i++) {
        x ^= (uint64_t)(uint32_t)h[i].node << 32 | h[i].frame;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 31;
    }
    return (uint32_t)x;
}

static void walk_reset(struct lg_gwalk *w)
{
    w->n_sets = 0;
    w->n_heads = 0;
    memset(w->buckets, 0xff, w->n_buckets * sizeof *w->buckets);
}

static bool walk_init(struct lg_gwalk **pw)
{
    if (!*pw) {
        struct lg_gwalk *w = calloc(1, sizeof *w);
        if (!w)
            return false;
        w->n_buckets = 2 * WALK_MAX_SETS;
        w->buckets = malloc(w->n_buckets * sizeof *w->buckets);
        w->tmp = malloc(LG_GRAMMAR_MAX_HEADS * sizeof *w->tmp);
        if (!w->buckets || !w->tmp) {
            lg_gram_walk_free(w);
            return false;
        }
        *pw = w;
        walk_reset(w);
    }
    return true;
}

/* Interns h[0..n) (sorted in place); returns the set id, or -1 when full / out of memory. */
static int32_t walk_intern(struct lg_gwalk *w, struct lg_ghead *h, uint32_t n, bool complete)
{
    qsort(h, n, sizeof *h, cmp_ghead);
    uint32_t hash = set_hash(h, n, complete);
    uint32_t b = hash & (w->n_buckets - 1);
    for (; w->buckets[b] >= 0; b = (b + 1) & (w->n_buckets - 1)) {
        const struct wset *s = &w->sets[w->buckets[b]];
        if (s->hash == hash && s->n == n && s->complete == complete &&
            memcmp(w->heads + s->first, h, n * sizeof *h) == 0)
            return w->buckets[b];
    }
    if (w->n_sets >= WALK_MAX_SETS)
        return -1;
    if (w->n_sets == w->cap_sets) {
        uint32_t cap = w->cap_sets ? w->cap_sets * 2 : 64;
        struct wset *ns = realloc(w->sets, cap * sizeof *ns);
        if (!ns)
            return -1;
        w->sets = ns;
        int32_t *nt = realloc(w->trans, (size_t)cap * 256 * sizeof *nt);
        if (!nt)
            return -1;
        w->trans = nt;
        w->cap_sets = cap;
    }
    if (w->n_heads + n > w->cap_heads) {
        size_t cap = w->cap_heads ? w->cap_heads * 2 : 4096;
        while (cap < w->n_heads + n)
            cap *= 2;
        struct lg_ghead *nh = realloc(w->heads, cap * sizeof *nh);
        if (!nh)
            return -1;
        w->heads = nh;
        w->cap_heads = cap;
    }
    uint32_t id = w->n_sets++;
    w->sets[id] = (struct wset){(uint32_t)w->n_heads, n, hash, complete};
    memcpy(w->heads + w->n_heads, h, n * sizeof *h);
    w->n_heads += n;
    for (int k = 0; k < 256; k++)
        w->trans[(size_t)id * 256 + k] = WALK_UNKNOWN;
    w->buckets[b] = (int32_t)id;
    return (int32_t)id;
}

/* The memoised walk; false when the memo overflowed (the caller walks without it). */
static bool walk_memo(struct lg_gctx *c, const struct lg_grammar_state *s,
                      const struct lg_grammar_vocab *gv, uint32_t *mask, int32_t *stack,
                      const uint8_t *skip)
{
    if (!walk_init(&c->walk))
        return false;
    struct lg_gwalk *w = c->walk;
    memcpy(w->tmp, s->heads, s->n_heads * sizeof *s->heads);
    int32_t root = walk_intern(w, w->tmp, s->n_heads, s->complete);
    if (root < 0)
        return false;
    stack[0] = root;
    const struct trie_node *nodes = gv->nodes;
    uint32_t i = 1;
    while (i < gv->n_nodes) {
        const struct trie_node *t = &nodes[i];
        if (skip && skip[i]) {
            i = t->end;
            continue;
        }
        int32_t p = stack[t->depth - 1];
        int32_t nx = w->trans[(size_t)p * 256 + t->byte];
        if (nx == WALK_UNKNOWN) {
            const struct wset *ps = &w->sets[p];
            bool comp;
            uint32_t k = lg_gram_advance(c, w->heads + ps->first, ps->n, t->byte, w->tmp, &comp);
            if (k == 0 && !comp) {
                nx = WALK_DEAD;
            } else {
                nx = walk_intern(w, w->tmp, k, comp);
                if (nx < 0)
                    return false;
            }
            w->trans[(size_t)p * 256 + t->byte] = nx;
        }
        if (nx == WALK_DEAD) {
            i = t->end;
            continue;
        }
        stack[t->depth] = nx;
        for (uint32_t j = 0; j < t->n_tok; j++) {
            int32_t id = gv->ids_sorted[t->tok_first + j];
            mask[id >> 5] |= 1u << (id & 31);
        }
        i++;
    }
    return true;
}

/* Every position is a string-character node or takes no short-plain byte (need_char: and at
 * least one is a character node). */
static bool short_state(const struct lg_grammar *g, const struct lg_ghead *h, uint32_t n,
                        bool need_char)
{
    bool any = false;
    for (uint32_t i = 0; i < n; i++) {
        const struct lg_gnode *nd = &g->nodes[h[i].node];
        if (!nd->plain_char && !nd->plain_dead)
            return false;
        any |= nd->plain_char;
    }
    return any || !need_char;
}

/* For the short-plain shortcut: how many short-plain characters may follow (0..SHORT_MAXC),
 * found by feeding 'a' — every short-plain code point leads to the same state while the state
 * stays of the short_state kind, which is checked at each step — or -1 when the shortcut does
 * not apply. buf has room for 2 x LG_GRAMMAR_MAX_HEADS positions. */
static int short_probe(struct lg_gctx *c, const struct lg_grammar_state *s, struct lg_ghead *buf)
{
    if (!short_state(c->g, s->heads, s->n_heads, true))
        return -1;
    const struct lg_ghead *in = s->heads;
    uint32_t n = s->n_heads;
    for (int k = 1; k <= SHORT_MAXC; k++) {
        bool comp = false;
        struct lg_ghead *out = buf + (size_t)(k & 1) * LG_GRAMMAR_MAX_HEADS;
        uint32_t m = lg_gram_advance(c, in, n, 'a', out, &comp);
        if (c->oom)
            return -1;
        if (m == 0)
            return comp ? k : k - 1;
        if (k < SHORT_MAXC && !short_state(c->g, out, m, false))
            return -1;
        in = out;
        n = m;
    }
    return SHORT_MAXC;
}

enum lg_status lg_grammar_mask(struct lg_grammar_state *s, const struct lg_grammar_vocab *gv,
                               uint32_t *allowed, struct lg_err *err)
{
    struct lg_gctx *c = s->ctx;
    if (s->ended)
        return LG_OK;
    struct lg_gmask_entry *hit = cache_find(c, s, gv);
    if (hit) {
        for (uint32_t w = 0; w < gv->n_words; w++)
            allowed[w] |= hit->mask[w];
        hit->tick = ++c->tick;
        return LG_OK;
    }
    size_t need = ((size_t)gv->max_depth + 1) * LG_GRAMMAR_MAX_HEADS;
    if (c->cap_pool < need) {
        struct lg_ghead *p = realloc(c->pool, need * sizeof *p);
        if (!p)
            return lg_err_set(err, LG_ERR_NOMEM, "grammar mask: out of memory");
        c->pool = p;
        c->cap_pool = (uint32_t)need;
    }
    size_t n_scratch = (size_t)gv->n_words + gv->max_depth + 1;
    if (c->n_scratch < n_scratch) {
        uint32_t *p = realloc(c->scratch, n_scratch * sizeof *p);
        if (!p)
            return lg_err_set(err, LG_ERR_NOMEM, "grammar mask: out of memory");
        c->scratch = p;
        c->n_scratch = n_scratch;
    }
    uint32_t *mask = c->scratch, *n_at = c->scratch + gv->n_words;
    memset(mask, 0, (size_t)gv->n_words * sizeof *mask);
    const uint8_t *skip = NULL;
    int n_short;
    if (s->n_heads == 1 && !s->complete && c->g->nodes[s->heads[0].node].free_str) {
        skip = gv->plain_sub;
        memcpy(mask, gv->plain_mask, (size_t)gv->n_words * sizeof *mask);
    } else if (gv->max_depth >= 1 && (n_short = short_probe(c, s, c->pool)) >= 0) {
        /* a bounded string: the chain position decides how many characters still fit, and
         * every token of that many short-plain characters or fewer is allowed at once */
        skip = gv->short_sub;
        if (n_short > 0)
            memcpy(mask, gv->short_cum + (size_t)(n_short - 1) * gv->n_words,
                   (size_t)gv->n_words * sizeof *mask);
    }
    c->oom = false;
    uint32_t mark = c->n_frames;
    bool memo_ok = walk_memo(c, s, gv, mask, (int32_t *)n_at, skip);
    if (!memo_ok && c->walk) {
        walk_reset(c->walk);
        memo_ok = walk_memo(c, s, gv, mask, (int32_t *)n_at, skip);
    }
    if (!memo_ok) {
        if (c->walk)
            walk_reset(c->walk); /* its sets may name frames rolled back below */
        lg_gram_frames_rollback(c, mark);
    }
    memcpy(c->pool, s->heads, s->n_heads * sizeof *s->heads);
    n_at[0] = s->n_heads;
    const struct trie_node *nodes = gv->nodes;
    uint32_t i = memo_ok ? gv->n_nodes : 1;
    while (i < gv->n_nodes) {
        const struct trie_node *t = &nodes[i];
        uint32_t d = t->depth;
        if (skip && skip[i]) {
            i = t->end;
            continue;
        }
        bool comp;
        uint32_t k = lg_gram_advance(c, c->pool + (size_t)(d - 1) * LG_GRAMMAR_MAX_HEADS,
                                     n_at[d - 1], t->byte,
                                     c->pool + (size_t)d * LG_GRAMMAR_MAX_HEADS, &comp);
        if (k == 0 && !comp) {
            i = t->end;
            continue;
        }
        n_at[d] = k;
        for (uint32_t j = 0; j < t->n_tok; j++) {
            int32_t id = gv->ids_sorted[t->tok_first + j];
            mask[id >> 5] |= 1u << (id & 31);
        }
        i++;
    }
    if (!memo_ok)
        lg_gram_frames_rollback(c, mark);
    bool oom = c->oom;
    c->oom = false;
    if (s->complete)
        for (uint32_t e = 0; e < gv->n_eog; e++)
            mask[gv->eog[e] >> 5] |= 1u << (gv->eog[e] & 31);
    for (uint32_t w = 0; w < gv->n_words; w++)
        allowed[w] |= mask[w];
    if (!oom)
        cache_store(c, s, gv, mask);
    return LG_OK;
}

enum lg_status lg_grammar_accept_token(struct lg_grammar_state *s,
                                       const struct lg_grammar_vocab *gv, int32_t id,
                                       struct lg_err *err)
{
    if (!gv || id < 0 || (uint32_t)id >= gv->n_tokens)
        return lg_err_set(err, LG_ERR_RANGE, "grammar: token %d out of range", (int)id);
    if (s->ended)
        return lg_err_set(err, LG_ERR_RANGE, "grammar: output already ended");
    if (is_eog(gv, id)) {
        if (!s->complete)
            return lg_err_set(err, LG_ERR_RANGE, "grammar: end of generation before the "
                                                 "output is complete");
        s->ended = true;
        return LG_OK;
    }
    size_t n;
    const uint8_t *b = lg_grammar_vocab_bytes(gv, id, &n);
    if (!b)
        return lg_err_set(err, LG_ERR_RANGE, "grammar: token %d is never allowed", (int)id);
    return lg_grammar_accept_bytes(s, b, n, err);
}

enum lg_status lg_grammar_sample_mask(void *hook, uint32_t *allowed, int32_t n_vocab,
                                      struct lg_err *err)
{
    struct lg_grammar_hook *h = hook;
    if (!h || !h->state || !h->vocab || n_vocab < 0 ||
        (uint32_t)n_vocab != h->vocab->n_tokens)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "grammar mask: vocab size mismatch");
    return lg_grammar_mask(h->state, h->vocab, allowed, err);
}
