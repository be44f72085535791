/* gram_match.c: the incremental byte matcher.
 *
 * A state is a set of parse positions (node, frame). Advancing by a byte follows the byte edges
 * of every position, then closes over empty edges, calls (push a frame) and rule ends (pop, or
 * "complete" on the empty stack), keeping only positions that can consume a byte next.
 * Frames are hash-consed in a store shared by a state and its clones: equal stacks get equal
 * ids, so duplicates collapse and positions compare as plain integers. Bounds: call depth
 * LG_GRAMMAR_MAX_STACK (deeper pushes are dropped, which is how unbounded recursion stays
 * finite), LG_GRAMMAR_MAX_HEADS positions; both only remove alternatives, never add text the
 * grammar does not allow. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "grammar/gram_priv.h"

enum {
    VIS_BITS = 13,
    VIS_SIZE = 1 << VIS_BITS,
    VIS_MAX = VIS_SIZE / 2 /* positions examined per byte */
};

static const uint32_t NONE = UINT32_MAX;

static uint32_t frame_hash(int32_t ret, uint32_t parent)
{
    uint64_t x = ((uint64_t)(uint32_t)ret << 32 | parent) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 32);
}

static bool frames_rehash(struct lg_gctx *c, uint32_t n_buckets)
{
    uint32_t *b = malloc((size_t)n_buckets * sizeof *b);
    if (!b)
        return false;
    memset(b, 0xff, (size_t)n_buckets * sizeof *b);
    for (uint32_t i = 1; i < c->n_frames; i++) {
        uint32_t h = frame_hash(c->frames[i].ret, c->frames[i].parent) & (n_buckets - 1);
        c->frames[i].next = b[h];
        b[h] = i;
    }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = n_buckets;
    return true;
}

/* The frame for "return to ret, then continue with parent"; NONE when too deep or no memory. */
static uint32_t frame_push(struct lg_gctx *c, uint32_t parent, int32_t ret)
{
    uint32_t depth = c->frames[parent].depth + 1;
    if (depth > LG_GRAMMAR_MAX_STACK)
        return NONE;
    uint32_t h = frame_hash(ret, parent);
    for (uint32_t i = c->buckets[h & (c->n_buckets - 1)]; i != NONE; i = c->frames[i].next)
        if (c->frames[i].ret == ret && c->frames[i].parent == parent)
            return i;
    if (c->n_frames == c->cap_frames) {
        uint32_t cap = c->cap_frames * 2;
        struct lg_gframe *f = realloc(c->frames, (size_t)cap * sizeof *f);
        if (!f) {
            c->oom = true;
            return NONE;
        }
        c->frames = f;
        c->cap_frames = cap;
    }
    uint32_t id = c->n_frames++;
    c->frames[id] = (struct lg_gframe){ret, parent, depth, NONE};
    if (c->n_frames > c->n_buckets && !frames_rehash(c, c->n_buckets * 2)) {
        c->n_frames--;
        c->oom = true;
        return NONE;
    }
    uint32_t *bucket = &c->buckets[h & (c->n_buckets - 1)];
    c->frames[id].next = *bucket;
    *bucket = id;
    return id;
}

void lg_gram_frames_rollback(struct lg_gctx *c, uint32_t mark)
{
    while (c->n_frames > mark) {
        uint32_t id = c->n_frames - 1;
        uint32_t h = frame_hash(c->frames[id].ret, c->frames[id].parent) & (c->n_buckets - 1);
        /* Newest first in every chain: the frame being dropped heads its chain. */
        c->buckets[h] = c->frames[id].next;
        c->n_frames--;
    }
}

/* Marks (node, frame) visited in this step; false when already visited or over budget. */
static bool visit(struct lg_gctx *c, int32_t node, uint32_t frame)
{
    uint64_t key = (uint64_t)(uint32_t)node << 32 | frame;
    uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - VIS_BITS));
    for (;;) {
        if (c->vis_stamp[h] != c->stamp) {
            if (c->n_vis >= VIS_MAX)
                return false;
            c->vis_stamp[h] = c->stamp;
            c->vis_key[h] = key;
            c->n_vis++;
            return true;
        }
        if (c->vis_key[h] == key)
            return false;
        h = (h + 1) & (VIS_SIZE - 1);
    }
}

static void new_step(struct lg_gctx *c)
{
    if (++c->stamp == 0) {
        memset(c->vis_stamp, 0, VIS_SIZE * sizeof *c->vis_stamp);
        c->stamp = 1;
    }
    c->n_vis = 0;
}

static bool work_push(struct lg_gctx *c, uint32_t *n, int32_t node, uint32_t frame)
{
    if (*n == c->cap_work) {
        uint32_t cap = c->cap_work * 2;
        struct lg_ghead *w = realloc(c->work, (size_t)cap * sizeof *w);
        if (!w) {
            c->oom = true;
            return false;
        }
        c->work = w;
        c->cap_work = cap;
    }
    c->work[(*n)++] = (struct lg_ghead){node, frame};
    return true;
}

static void closure(struct lg_gctx *c, int32_t node, uint32_t frame, struct lg_ghead *out,
                    uint32_t *n_out, bool *complete)
{
    const struct lg_grammar *g = c->g;
    uint32_t n_work = 0;
    work_push(c, &n_work, node, frame);
    while (n_work) {
        struct lg_ghead h = c->work[--n_work];
        if (!visit(c, h.node, h.frame))
            continue;
        const struct lg_gnode *gn = &g->nodes[h.node];
        if (gn->n_bytes && *n_out < LG_GRAMMAR_MAX_HEADS)
            out[(*n_out)++] = h;
        const struct lg_gedge *e = g->edges + gn->e_first + gn->n_bytes;
        for (uint32_t k = 0; k < gn->n_other; k++) {
            if (e[k].kind == LG_GE_EPS) {
                work_push(c, &n_work, e[k].to, h.frame);
            } else {
                uint32_t nf = frame_push(c, h.frame, e[k].to);
                if (nf != NONE)
                    work_push(c, &n_work, e[k].callee, nf);
            }
        }
        if (gn->ret) {
            if (h.frame == 0)
                *complete = true;
            else
                work_push(c, &n_work, c->frames[h.frame].ret, c->frames[h.frame].parent);
        }
    }
}

uint32_t lg_gram_advance(struct lg_gctx *c, const struct lg_ghead *in, uint32_t n_in,
                         uint8_t byte, struct lg_ghead *out, bool *complete)
{
    const struct lg_grammar *g = c->g;
    uint32_t n_out = 0;
    *complete = false;
    new_step(c);
    for (uint32_t i = 0; i < n_in; i++) {
        const struct lg_gnode *gn = &g->nodes[in[i].node];
        const struct lg_gedge *e = g->edges + gn->e_first;
        for (uint32_t k = 0; k < gn->n_bytes; k++) {
            if (e[k].lo > byte)
                break;
            if (byte <= e[k].hi)
                closure(c, e[k].to, in[i].frame, out, &n_out, complete);
        }
    }
    return n_out;
}

static int cmp_head(const void *pa, const void *pb)
{
    const struct lg_ghead *a = pa, *b = pb;
    if (a->node != b->node)
        return a->node < b->node ? -1 : 1;
    return a->frame < b->frame ? -1 : a->frame > b->frame;
}

static void ctx_release(struct lg_gctx *c)
{
    if (!c || --c->refs)
        return;
    free(c->frames);
    free(c->buckets);
    free(c->vis_key);
    free(c->vis_stamp);
    free(c->work);
    free(c->pool);
    free(c->acc);
    free(c->scratch);
    lg_gram_walk_free(c->walk);
    for (int i = 0; i < LG_GMASK_CACHE; i++) {
        free(c->cache[i].heads);
        free(c->cache[i].mask);
    }
    free(c);
}

static struct lg_gctx *ctx_create(const struct lg_grammar *g)
{
    struct lg_gctx *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->g = g;
    c->refs = 1;
    c->cap_frames = 256;
    c->n_frames = 1;
    c->frames = malloc(c->cap_frames * sizeof *c->frames);
    c->vis_key = malloc(VIS_SIZE * sizeof *c->vis_key);
    c->vis_stamp = calloc(VIS_SIZE, sizeof *c->vis_stamp);
    c->cap_work = 256;
    c->work = malloc(c->cap_work * sizeof *c->work);
    c->acc = malloc(2 * (size_t)LG_GRAMMAR_MAX_HEADS * sizeof *c->acc);
    if (!c->frames || !c->vis_key || !c->vis_stamp || !c->work || !c->acc ||
        !frames_rehash(c, 256)) {
        ctx_release(c);
        return NULL;
    }
    c->frames[0] = (struct lg_gframe){-1, 0, 0, NONE};
    return c;
}

static bool heads_reserve(struct lg_grammar_state *s, uint32_t n)
{
    if (n <= s->cap_heads)
        return true;
    uint32_t cap = s->cap_heads ? s->cap_heads : 8;
    while (cap < n)
        cap *= 2;
    struct lg_ghead *h = realloc(s->heads, (size_t)cap * sizeof *h);
    if (!h)
        return false;
    s->heads = h;
    s->cap_heads = cap;
    return true;
}

void lg_grammar_state_reset(struct lg_grammar_state *s)
{
    struct lg_gctx *c = s->ctx;
    uint32_t n = 0;
    bool complete = false;
    new_step(c);
    closure(c, c->g->start, 0, s->heads, &n, &complete);
    qsort(s->heads, n, sizeof *s->heads, cmp_head);
    s->n_heads = n;
    s->complete = complete;
    s->ended = false;
}

enum lg_status lg_grammar_state_create(const struct lg_grammar *g, struct lg_grammar_state **out,
                                       struct lg_err *err)
{
    *out = NULL;
    if (!g)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "grammar state: no grammar");
    struct lg_grammar_state *s = calloc(1, sizeof *s);
    if (!s || !(s->ctx = ctx_create(g)) || !heads_reserve(s, LG_GRAMMAR_MAX_HEADS)) {
        lg_grammar_state_destroy(s);
        return lg_err_set(err, LG_ERR_NOMEM, "grammar state: out of memory");
    }
    lg_grammar_state_reset(s);
    *out = s;
    return LG_OK;
}

void lg_grammar_state_destroy(struct lg_grammar_state *s)
{
    if (!s)
        return;
    ctx_release(s->ctx);
    free(s->heads);
    free(s);
}

struct lg_grammar_state *lg_grammar_state_clone(const struct lg_grammar_state *s)
{
    struct lg_grammar_state *d = calloc(1, sizeof *d);
    if (!d || !heads_reserve(d, LG_GRAMMAR_MAX_HEADS)) {
        if (d)
            free(d->heads);
        free(d);
        return NULL;
    }
    d->ctx = s->ctx;
    d->ctx->refs++;
    memcpy(d->heads, s->heads, s->n_heads * sizeof *d->heads);
    d->n_heads = s->n_heads;
    d->complete = s->complete;
    d->ended = s->ended;
    return d;
}

enum lg_status lg_grammar_state_copy(struct lg_grammar_state *dst,
                                     const struct lg_grammar_state *src, struct lg_err *err)
{
    if (dst->ctx != src->ctx)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "grammar state copy: unrelated states");
    memcpy(dst->heads, src->heads, src->n_heads * sizeof *dst->heads);
    dst->n_heads = src->n_heads;
    dst->complete = src->complete;
    dst->ended = src->ended;
    return LG_OK;
}

enum lg_status lg_grammar_accept_bytes(struct lg_grammar_state *s, const void *bytes, size_t n,
                                       struct lg_err *err)
{
    struct lg_gctx *c = s->ctx;
    const uint8_t *p = bytes;
    if (n == 0)
        return LG_OK;
    if (s->ended)
        return lg_err_set(err, LG_ERR_RANGE, "grammar: output already ended");
    struct lg_ghead *buf = c->acc; /* allocation-free on the decode path */
    struct lg_ghead *cur = s->heads, *nxt = buf;
    uint32_t n_cur = s->n_heads;
    bool complete = s->complete;
    uint32_t mark = c->n_frames;
    for (size_t i = 0; i < n; i++) {
        uint32_t n_nxt = lg_gram_advance(c, cur, n_cur, p[i], nxt, &complete);
        if (c->oom) {
            c->oom = false;
            lg_gram_frames_rollback(c, mark);
            return lg_err_set(err, LG_ERR_NOMEM, "grammar: out of memory");
        }
        if (n_nxt == 0 && !complete) {
            lg_gram_frames_rollback(c, mark);
            return lg_err_set(err, LG_ERR_RANGE, "grammar: byte 0x%02x at offset %zu not allowed",
                              p[i], i);
        }
        cur = nxt;
        n_cur = n_nxt;
        nxt = (nxt == buf) ? buf + LG_GRAMMAR_MAX_HEADS : buf;
    }
    qsort(cur, n_cur, sizeof *cur, cmp_head);
    memcpy(s->heads, cur, n_cur * sizeof *cur);
    s->n_heads = n_cur;
    s->complete = complete;
    return LG_OK;
}

bool lg_grammar_is_complete(const struct lg_grammar_state *s)
{
    return s->complete;
}

bool lg_grammar_is_finished(const struct lg_grammar_state *s)
{
    return s->ended || (s->complete && s->n_heads == 0);
}

void lg_grammar_next_bytes(const struct lg_grammar_state *s, bool allowed[256])
{
    memset(allowed, 0, 256 * sizeof *allowed);
    if (s->ended)
        return;
    const struct lg_grammar *g = s->ctx->g;
    for (uint32_t i = 0; i < s->n_heads; i++) {
        const struct lg_gnode *gn = &g->nodes[s->heads[i].node];
        const struct lg_gedge *e = g->edges + gn->e_first;
        for (uint32_t k = 0; k < gn->n_bytes; k++)
            for (unsigned b = e[k].lo; b <= e[k].hi; b++)
                allowed[b] = true;
    }
}
