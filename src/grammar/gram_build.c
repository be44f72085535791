/* gram_build.c: grammar builder — nodes and edges appended freely, then frozen into CSR form
 * with unproductive branches pruned (so a matcher never walks into a dead end).
 * Budget: LG_GRAMMAR_MAX_NODES nodes and 8x as many edges; exceeding either fails the build
 * with LG_ERR_RANGE (hardening.md G6). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "grammar/gram_priv.h"

enum { LG_GB_MAX_EDGES = 8 * LG_GRAMMAR_MAX_NODES };

int32_t lg_gb_fail(struct lg_gbuild *b, enum lg_status code, const char *fmt, ...)
{
    if (b->st == LG_OK) {
        b->st = code;
        if (b->err) {
            char msg[sizeof b->err->msg];
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(msg, sizeof msg, fmt, ap);
            va_end(ap);
            lg_err_set(b->err, code, "%s", msg);
        }
    }
    return -1;
}

int32_t lg_gb_node(struct lg_gbuild *b)
{
    if (b->st != LG_OK)
        return -1;
    if (b->n_nodes >= LG_GRAMMAR_MAX_NODES)
        return lg_gb_fail(b, LG_ERR_RANGE, "schema too large: grammar exceeds %d nodes",
                          LG_GRAMMAR_MAX_NODES);
    if (b->n_nodes == b->cap_nodes) {
        uint32_t cap = b->cap_nodes ? 2 * b->cap_nodes : 256;
        uint8_t *r = realloc(b->ret, cap);
        if (!r)
            return lg_gb_fail(b, LG_ERR_NOMEM, "out of memory building grammar");
        b->ret = r;
        b->cap_nodes = cap;
    }
    b->ret[b->n_nodes] = 0;
    return (int32_t)b->n_nodes++;
}

static void add_edge(struct lg_gbuild *b, int32_t from, struct lg_gedge e)
{
    if (b->st != LG_OK || from < 0 || e.to < 0)
        return;
    if (b->n_e >= LG_GB_MAX_EDGES) {
        lg_gb_fail(b, LG_ERR_RANGE, "schema too large: grammar exceeds %d edges",
                   LG_GB_MAX_EDGES);
        return;
    }
    if (b->n_e == b->cap_e) {
        uint32_t cap = b->cap_e ? 2 * b->cap_e : 1024;
        struct lg_gtmp_edge *p = realloc(b->e, (size_t)cap * sizeof *p);
        if (!p) {
            lg_gb_fail(b, LG_ERR_NOMEM, "out of memory building grammar");
            return;
        }
        b->e = p;
        b->cap_e = cap;
    }
    b->e[b->n_e].from = from;
    b->e[b->n_e].e = e;
    b->n_e++;
}

void lg_gb_bytes(struct lg_gbuild *b, int32_t from, uint8_t lo, uint8_t hi, int32_t to)
{
    if (lo > hi)
        return;
    add_edge(b, from, (struct lg_gedge){LG_GE_BYTES, lo, hi, to, -1});
}

void lg_gb_eps(struct lg_gbuild *b, int32_t from, int32_t to)
{
    if (from != to)
        add_edge(b, from, (struct lg_gedge){LG_GE_EPS, 0, 0, to, -1});
}

void lg_gb_call(struct lg_gbuild *b, int32_t from, int32_t callee, int32_t to)
{
    if (callee < 0)
        return;
    add_edge(b, from, (struct lg_gedge){LG_GE_CALL, 0, 0, to, callee});
}

int32_t lg_gb_rule(struct lg_gbuild *b, int32_t *end)
{
    int32_t s = lg_gb_node(b), e = lg_gb_node(b);
    if (s < 0 || e < 0) {
        *end = -1;
        return -1;
    }
    b->ret[e] |= LG_GB_RET;
    *end = e;
    return s;
}

int32_t lg_gb_range(struct lg_gbuild *b, int32_t from, uint8_t lo, uint8_t hi)
{
    if (from < 0)
        return -1;
    int32_t n = lg_gb_node(b);
    lg_gb_bytes(b, from, lo, hi, n);
    return n;
}

int32_t lg_gb_lit(struct lg_gbuild *b, int32_t from, const char *s, size_t n)
{
    for (size_t i = 0; i < n && from >= 0; i++)
        from = lg_gb_range(b, from, (uint8_t)s[i], (uint8_t)s[i]);
    return from;
}

int32_t lg_gb_step_call(struct lg_gbuild *b, int32_t from, int32_t callee)
{
    if (from < 0 || callee < 0)
        return -1;
    int32_t n = lg_gb_node(b);
    lg_gb_call(b, from, callee, n);
    return n;
}

void lg_gb_free(struct lg_gbuild *b)
{
    free(b->e);
    free(b->ret);
    b->e = NULL;
    b->ret = NULL;
    b->n_e = b->cap_e = b->n_nodes = b->cap_nodes = 0;
}

static int cmp_edge(const void *pa, const void *pb)
{
    const struct lg_gtmp_edge *a = pa, *b = pb;
    if (a->from != b->from)
        return a->from < b->from ? -1 : 1;
    int ka = a->e.kind != LG_GE_BYTES, kb = b->e.kind != LG_GE_BYTES;
    if (ka != kb)
        return ka - kb;
    if (a->e.lo != b->e.lo)
        return a->e.lo < b->e.lo ? -1 : 1;
    if (a->e.to != b->e.to)
        return a->e.to < b->e.to ? -1 : 1;
    return 0;
}

static bool edge_live(const uint8_t *prod, const struct lg_gedge *e)
{
    return prod[e->to] && (e->kind != LG_GE_CALL || prod[e->callee]);
}


/* Does [lo, hi] hold a "short-plain" byte: printable ASCII but '"', '\\' and '<', or a UTF-8
 * lead byte (gram_mask.c's short-plain shortcut)? */
static bool short_plain_overlap(uint8_t lo, uint8_t hi)
{
    for (unsigned b = lo; b <= hi; b++)
        if ((b >= 0x20 && b <= 0x7F && b != '"' && b != '\\' && b != '<') ||
            (b >= 0xC2 && b <= 0xF4))
            return true;
    return false;
}

enum lg_status lg_gb_finish(struct lg_gbuild *b, int32_t start, struct lg_grammar **out)
{
    *out = NULL;
    uint32_t nn = b->n_nodes, ne = b->n_e;
    uint8_t *prod = NULL;
    uint32_t *in_first = NULL, *in_edge = NULL, *work = NULL;
    struct lg_grammar *g = NULL;
    if (b->st != LG_OK || start < 0)
        goto fail;
    /* Productivity: reverse adjacency (an edge is listed under its target and its callee),
     * then a worklist from the rule ends. O(nodes + edges). */
    prod = calloc(nn ? nn : 1, 1);
    in_first = calloc((size_t)nn + 1, sizeof *in_first);
    in_edge = malloc(((size_t)ne * 2 + 1) * sizeof *in_edge);
    work = malloc(((size_t)nn + 1) * sizeof *work);
    if (!prod || !in_first || !in_edge || !work) {
        lg_gb_fail(b, LG_ERR_NOMEM, "out of memory building grammar");
        goto fail;
    }
    for (uint32_t i = 0; i < ne; i++) {
        in_first[b->e[i].e.to]++;
        if (b->e[i].e.kind == LG_GE_CALL)
            in_first[b->e[i].e.callee]++;
    }
    uint32_t acc = 0;
    for (uint32_t i = 0; i < nn; i++) {
        uint32_t c = in_first[i];
        in_first[i] = acc;
        acc += c;
    }
    in_first[nn] = acc;
    {
        uint32_t *fill = work; /* reuse as cursor */
        for (uint32_t i = 0; i < nn; i++)
            fill[i] = in_first[i];
        for (uint32_t i = 0; i < ne; i++) {
            in_edge[fill[b->e[i].e.to]++] = i;
            if (b->e[i].e.kind == LG_GE_CALL)
                in_edge[fill[b->e[i].e.callee]++] = i;
        }
    }
    uint32_t n_work = 0;
    for (uint32_t i = 0; i < nn; i++)
        if (b->ret[i] & LG_GB_RET) {
            prod[i] = 1;
            work[n_work++] = i;
        }
    while (n_work) {
        uint32_t v = work[--n_work];
        for (uint32_t k = in_first[v]; k < in_first[v + 1]; k++) {
            const struct lg_gtmp_edge *te = &b->e[in_edge[k]];
            if (!prod[te->from] && edge_live(prod, &te->e)) {
                prod[te->from] = 1;
                work[n_work++] = (uint32_t)te->from;
            }
        }
    }
    if (!prod[start]) {
        lg_gb_fail(b, LG_ERR_INVALID_ARG, "schema has no finite instance (unsatisfiable or "
                                          "infinitely recursive)");
        goto fail;
    }
    /* Freeze: keep live edges only, sorted per node. */
    uint32_t n_live = 0;
    for (uint32_t i = 0; i < ne; i++)
        if (prod[b->e[i].from] && edge_live(prod, &b->e[i].e))
            b->e[n_live++] = b->e[i];
    qsort(b->e, n_live, sizeof *b->e, cmp_edge);
    g = calloc(1, sizeof *g);
    if (!g)
        goto nomem;
    g->nodes = calloc(nn ? nn : 1, sizeof *g->nodes);
    g->edges = malloc((n_live ? n_live : 1) * sizeof *g->edges);
    if (!g->nodes || !g->edges)
        goto nomem;
    g->n_nodes = nn;
    g->n_edges = n_live;
    g->start = start;
    for (uint32_t i = 0; i < nn; i++) {
        g->nodes[i].ret = b->ret[i] & LG_GB_RET;
        g->nodes[i].free_str = (b->ret[i] & LG_GB_FREE_STR) != 0;
        g->nodes[i].plain_char = (b->ret[i] & LG_GB_PLAIN_CHAR) != 0;
    }
    for (uint32_t i = 0, k = 0; i < nn; i++) {
        g->nodes[i].e_first = k;
        while (k < n_live && b->e[k].from == (int32_t)i) {
            g->edges[k] = b->e[k].e;
            if (b->e[k].e.kind == LG_GE_BYTES)
                g->nodes[i].n_bytes++;
            else
                g->nodes[i].n_other++;
            k++;
        }
    }
    for (uint32_t i = 0; i < nn; i++) {
        bool takes = false;
        for (uint32_t k = g->nodes[i].e_first; k < g->nodes[i].e_first + g->nodes[i].n_bytes &&
                                               !takes; k++)
            if (g->edges[k].kind == LG_GE_BYTES)
                takes = short_plain_overlap(g->edges[k].lo, g->edges[k].hi);
        g->nodes[i].plain_dead = !takes;
    }
    free(prod);
    free(in_first);
    free(in_edge);
    free(work);
    lg_gb_free(b);
    *out = g;
    return LG_OK;
nomem:
    lg_gb_fail(b, LG_ERR_NOMEM, "out of memory building grammar");
fail:
    lg_grammar_free(g);
    free(prod);
    free(in_first);
    free(in_edge);
    free(work);
    lg_gb_free(b);
    return b->st != LG_OK ? b->st : LG_ERR_INTERNAL;
}

void lg_grammar_free(struct lg_grammar *g)
{
    if (!g)
        return;
    free(g->nodes);
    free(g->edges);
    free(g);
}

uint32_t lg_grammar_n_nodes(const struct lg_grammar *g)
{
    return g ? g->n_nodes : 0;
}
