/* repack.c: at open, copies the model's Q4_0 / Q8_0 / Q4_K / Q6_K weight matrices into the
 * interleaved 8-row layout R8 (kern/repack.c) that the AVX2 kernels stream directly (#10).
 *
 * When: the kernel table for this CPU (lg_kern_get) is not the scalar one and LG_REPACK is not
 * "0". What: every matrix the forward pass multiplies with (lg_matmul_q), of a type R8
 * covers (lg_repack_r8_ok: Q4_0, Q8_0, Q4_K, Q6_K) with rows % 8 == 0; MoE experts expert by
 * expert (so e * expert_bytes still finds expert e). Never the embeddings (token_embd,
 * per_layer_token_embd): the forward pass reads single rows of those with lg_dequant_row. A
 * tied output matrix (output = token_embd) gets its own R8 copy; the embedding keeps the
 * mapping.
 *
 * Memory: each copy is an anonymous mapping of the tensor's size. After a tensor is copied,
 * the whole pages strictly inside its source bytes are dropped from our mapping
 * (MADV_DONTNEED; the GGUF map is MAP_PRIVATE and never written, so a later read faults the
 * file's bytes back in, nothing is lost), so RSS holds about one copy of the weights during
 * and after the repack. Only for bytes inside the GGUF's own file mapping (lg_gguf_is_mapped):
 * a GGUF opened over a caller's buffer keeps its pages (DONTNEED would zero anonymous
 * memory). Tensors go one by one; the groups of a tensor are split over 2 threads.
 * A copy that cannot be allocated is skipped (that matrix keeps the GGUF layout; the result
 * is the same, only slower).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "kern/kern.h"
#include "kern/qdot.h"
#include "model/model.h"

enum { REPACK_THREADS = 2 };

/* An anonymous read-write mapping of len bytes, NULL on failure. (Not advised for huge pages:
 * with THP "defrag=madvise" the faults compact memory, which doubled the load time on E2B,
 * for no measurable decode gain.) */
static void *map_anon(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

struct repack_job {
    uint32_t type;
    const uint8_t *src;
    size_t src_row_bytes;
    uint8_t *dst;
    int64_t cols, n_group; /* groups of one expert */
    int64_t n_expert;
    size_t expert_bytes;
};

static void repack_run(void *arg, int ith, int nth)
{
    const struct repack_job *j = arg;
    const int64_t n = j->n_group * j->n_expert;
    const int64_t lo = n * ith / nth, hi = n * (ith + 1) / nth;
    for (int64_t i = lo; i < hi;) {
        const int64_t e = i / j->n_group, g0 = i % j->n_group;
        const int64_t g1 = hi - e * j->n_group < j->n_group ? hi - e * j->n_group : j->n_group;
        lg_repack_r8(j->type, j->src + (size_t)e * j->expert_bytes, j->src_row_bytes,
                     j->dst + (size_t)e * j->expert_bytes, j->cols, g0, g1);
        i += g1 - g0;
    }
}

struct repacker {
    struct lg_model *m;
    struct lg_tp *tp;
};

/* Repacks n_expert matrices like w (expert e at e * expert_bytes) into one new buffer and
 * points w at it. Skips what R8 does not cover and what cannot be allocated. */
static enum lg_status repack_mat(struct repacker *r, struct lg_wmat *w, int64_t n_expert,
                                 size_t expert_bytes, struct lg_err *err)
{
    struct lg_model *m = r->m;
    if (!w->data || w->layout != LG_WLAYOUT_ROWS || !lg_repack_r8_ok(w->type, w->rows, w->cols))
        return LG_OK;
    const size_t gbytes = lg_repack_r8_group_bytes(w->type, w->cols);
    if (gbytes * (size_t)(w->rows / 8) != (size_t)w->rows * w->row_bytes ||
        expert_bytes != (size_t)w->rows * w->row_bytes)
        return LG_OK; /* padded rows: not a layout R8 reproduces */
    const size_t total = expert_bytes * (size_t)n_expert;
    /* the same source bound twice: share the copy */
    for (int32_t i = 0; i < m->n_repack; i++)
        if (m->repack[i].src == w->data && m->repack[i].len == total &&
            m->repack[i].type == w->type) {
            w->data = m->repack[i].p;
            w->layout = LG_WLAYOUT_R8;
            return LG_OK;
        }
    struct lg_repack_buf *nb = realloc(m->repack, (size_t)(m->n_repack + 1) * sizeof *nb);
    if (!nb)
        return lg_err_set(err, LG_ERR_NOMEM, "model: out of memory");
    m->repack = nb;
    void *p = map_anon(total);
    if (!p)
        return LG_OK;
    struct repack_job j = {.type = w->type,
                           .src = w->data,
                           .src_row_bytes = w->row_bytes,
                           .dst = p,
                           .cols = w->cols,
                           .n_group = w->rows / 8,
                           .n_expert = n_expert,
                           .expert_bytes = expert_bytes};
    if (r->tp)
        lg_tp_run(r->tp, repack_run, &j);
    else
        repack_run(&j, 0, 1);
    mprotect(p, total, PROT_READ); /* immutable from here on, like the mapping */
    m->repack[m->n_repack++] = (struct lg_repack_buf){p, total, w->data, w->type};
    m->repacked_bytes += total;
    /* the embeddings stay in use: never drop their pages */
    const bool shared = w->data == m->tok_embd.data || w->data == m->ple_tok.data;
    if (!shared && lg_gguf_is_mapped(m->gguf, w->data, total)) {
        const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t lo = ((uintptr_t)w->data + page - 1) / page * page;
        uintptr_t hi = ((uintptr_t)w->data + total) / page * page;
        if (hi > lo)
            madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
    w->data = p;
    w->layout = LG_WLAYOUT_R8;
    return LG_OK;
}

bool lg_model_repack_wanted(void)
{
    const char *env = getenv("LG_REPACK");
    if (env && strcmp(env, "0") == 0)
        return false;
    return strcmp(lg_kern_get()->isa, "ref") != 0;
}

enum lg_status lg_model_repack(struct lg_model *m, struct lg_err *err)
{
    if (!lg_model_repack_wanted())
        return LG_OK;
    struct repacker r = {.m = m, .tp = NULL};
    int nth = lg_tp_default_threads();
    if (nth > REPACK_THREADS)
        nth = REPACK_THREADS;
    if (nth > 1)
        r.tp = lg_tp_create(nth); /* NULL: one thread */
    enum lg_status st = LG_OK;
#define MAT(w)                                                                                     \
    do {                                                                                           \
        if (st == LG_OK)                                                                           \
            st = repack_mat(&r, (w), 1, (size_t)(w)->rows * (w)->row_bytes, err);                  \
    } while (0)
#define EXP(e)                                                                                     \
    do {                                                                                           \
        if (st == LG_OK && (e)->n_expert > 0)                                                      \
            st = repack_mat(&r, &(e)->mat, (e)->n_expert, (e)->expert_bytes, err);                 \
    } while (0)
    MAT(&m->output);
    MAT(&m->ple_proj);
    for (int32_t il = 0; il < m->cfg.n_layer; il++) {
        struct lg_layer_w *w = &m->layers[il];
        MAT(&w->wq);
        MAT(&w->wk);
        MAT(&w->wv);
        MAT(&w->wo);
        MAT(&w->ffn_gate);
        MAT(&w->ffn_up);
        MAT(&w->ffn_down);
        MAT(&w->inp_gate);
        MAT(&w->proj);
        MAT(&w->router);
        EXP(&w->gate_up_exps);
        EXP(&w->gate_exps);
        EXP(&w->up_exps);
        EXP(&w->down_exps);
    }
#undef MAT
#undef EXP
    lg_tp_destroy(r.tp);
    return st;
}

void lg_model_repack_free(struct lg_model *m)
{
    for (int32_t i = 0; i < m->n_repack; i++)
        munmap(m->repack[i].p, m->repack[i].len);
    free(m->repack);
    m->repack = NULL;
    m->n_repack = 0;
    m->repacked_bytes = 0;
}

size_t lg_model_repacked_bytes(const struct lg_model *m)
{
    return m ? m->repacked_bytes : 0;
}
