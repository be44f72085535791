/* test_plan.c: the memory planner (src/model/plan.h) against the code that allocates.
 * On the tiny golden Gemma 4 fixtures: the KV breakdown by layer kind (sliding ring of
 * window + chunk slots, global n_ctx slots, shared layers nothing) equals, byte for byte, the
 * K/V stores of a state really created with the same options; the state size equals
 * lg_model_state_bytes with the opened model's max_cols (the planner derives max_cols from the
 * configuration alone); the total is the sum of its parts; n_parallel multiplies only the
 * per-sequence parts; the largest context that fits is exact at a chosen budget boundary; the
 * default context is min(trained, cap, fits); too little memory gives fits = false with an
 * explanation; a block KV type whose blocks do not divide the head is refused; K=V layers are
 * counted; LG_MEM_AVAILABLE overrides the detected memory; KV-only states (kv_only_rest, the
 * engine's slots 1..n) are planned at exactly what they allocate and refuse to run a pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "gguf/gguf.h"
#include "kv/kv.h"
#include "model/model.h"
#include "model/plan.h"
#include "model/state_priv.h"
#include "quant/quant.h"

static const char *fixture(const char *name)
{
    static char b[512];
    snprintf(b, sizeof b, "%s/golden/model/%s", lg_test_data_dir(), name);
    return b;
}

static uint64_t parts_sum(const struct lg_plan *p)
{
    uint64_t np = (uint64_t)p->n_parallel;
    return p->meta_bytes + p->weights_bytes + p->repack_bytes + p->vocab_bytes +
           p->model_heap_bytes + p->baseline_bytes + p->state_first_bytes +
           (np - 1) * p->state_bytes + np * p->session_bytes;
}

static void test_e2b(void)
{
    struct lg_err err = {0};
    struct lg_gguf *g = NULL;
    struct lg_model *m = NULL;
    CHECK(lg_gguf_open(fixture("gemma4_e2b.f32.gguf"), &g, &err) == LG_OK);
    if (!g)
        return;
    CHECK(lg_model_from_gguf(g, &m, &err) == LG_OK);
    if (!m) {
        lg_gguf_close(g);
        return;
    }
    const struct lg_model_cfg *c = &m->cfg;

    struct lg_plan_opts o;
    struct lg_plan p;
    lg_plan_opts_default(&o);
    CHECK_EQ_INT((int)o.type_k, LG_QTYPE_F16);
    o.n_ctx = 1024;
    o.mem_available = (uint64_t)1 << 40;
    CHECK(lg_plan_compute(g, &o, &p, &err) == LG_OK);
    CHECK_EQ_INT((int)p.n_ctx, 1024);
    CHECK_EQ_STR(p.available_src, "given");
    CHECK(p.fits);

    /* the layer kinds, recomputed here from the configuration */
    int n_sl = 0, n_gl = 0, n_sh = 0;
    uint64_t b_sl = 0, b_gl = 0;
    for (int32_t il = 0; il < c->n_layer; il++) {
        const struct lg_layer_cfg *lc = &c->layers[il];
        if (lc->kv_src != il) {
            n_sh++;
            continue;
        }
        uint64_t row = 2u * (uint64_t)lc->n_head_kv * (uint64_t)lc->head_dim * 2u; /* K+V f16 */
        if (lc->sliding) {
            n_sl++;
            b_sl += (uint64_t)(c->sliding_window + LG_STATE_DEFAULT_CHUNK) * row;
        } else {
            n_gl++;
            b_gl += 1024u * row;
        }
    }
    CHECK_EQ_INT(n_sh, c->n_kv_shared);
    CHECK(n_sh > 0 && n_sl > 0 && n_gl > 0);
    CHECK_EQ_INT(p.kv_sliding.n_layers, n_sl);
    CHECK_EQ_INT(p.kv_global.n_layers, n_gl);
    CHECK_EQ_INT(p.n_kv_shared, n_sh);
    CHECK_EQ_INT((int)p.kv_sliding.n_slots, c->sliding_window + LG_STATE_DEFAULT_CHUNK);
    CHECK_EQ_INT((int)p.kv_global.n_slots, 1024);
    CHECK(p.kv_sliding.bytes == b_sl);
    CHECK(p.kv_global.bytes == b_gl);
    CHECK(p.kv_bytes == b_sl + b_gl);
    CHECK_EQ_INT(p.n_kv_eq_v, 0);

    /* the state: the planner's max_cols equals the binder's, and a real state agrees */
    struct lg_state_opts so;
    lg_state_opts_default(&so);
    so.n_ctx = 1024;
    CHECK(p.state_bytes == lg_model_state_bytes(c, m->max_cols, &so));
    CHECK(p.act_bytes == p.state_bytes - p.kv_bytes);
    struct lg_model_state *s = NULL;
    CHECK(lg_model_state_create_opts(m, &so, &s, &err) == LG_OK);
    if (s) {
        CHECK(lg_kv_bytes(lg_model_state_kv(s)) == p.kv_bytes);
        lg_model_state_destroy(s);
    }

    /* the mapping: PLE table paged, everything else resident */
    const struct lg_gguf_tensor *ple = lg_gguf_find_tensor(g, "per_layer_token_embd.weight");
    CHECK(ple && p.paged_total_bytes == ple->nbytes);
    uint64_t all = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        all += g->tensors[i].nbytes;
    CHECK(p.weights_bytes >= all - ple->nbytes && p.weights_bytes < all - ple->nbytes + 4096);
    CHECK(p.meta_bytes >= g->data_offset && p.meta_bytes % 4096 == 0);
    CHECK(p.paged_bytes > 0 && p.paged_bytes <= p.paged_total_bytes);
    CHECK(p.vocab_bytes > 0 && p.model_heap_bytes > 0);
    CHECK(p.session_bytes == 8u * 1024u + 4u * (uint64_t)c->n_vocab);
    CHECK(p.total_bytes == parts_sum(&p));

    /* n_parallel multiplies the per-sequence parts only */
    struct lg_plan p3;
    o.n_parallel = 3;
    CHECK(lg_plan_compute(g, &o, &p3, &err) == LG_OK);
    CHECK(p3.total_bytes - p.total_bytes == 2 * (p.state_bytes + p.session_bytes));
    CHECK(p.state_first_bytes == p.state_bytes);
    /* the engine's slot 0 may have a bigger chunk (batch scratch): counted once */
    struct lg_plan pe;
    o.n_chunk_first = 2 * LG_STATE_DEFAULT_CHUNK;
    CHECK(lg_plan_compute(g, &o, &pe, &err) == LG_OK);
    so.n_chunk = 2 * LG_STATE_DEFAULT_CHUNK;
    CHECK(pe.state_first_bytes == lg_model_state_bytes(c, m->max_cols, &so));
    so.n_chunk = 0;
    CHECK(pe.state_bytes == p.state_bytes && pe.state_first_bytes > pe.state_bytes);
    CHECK(pe.total_bytes == p3.total_bytes + pe.state_first_bytes - pe.state_bytes);
    CHECK(pe.total_bytes == parts_sum(&pe));

    /* the engine's slots 1.. are KV-only (kv_only_rest): their state is the struct + KV,
     * exactly what a real KV-only state allocates; the first keeps its activations */
    struct lg_plan pk;
    o.kv_only_rest = true;
    CHECK(lg_plan_compute(g, &o, &pk, &err) == LG_OK);
    so.kv_only = true;
    so.n_chunk = 0;
    CHECK(pk.state_bytes == lg_model_state_bytes(c, m->max_cols, &so));
    CHECK(pk.state_first_bytes == pe.state_first_bytes);
    CHECK(pk.act_bytes == pe.state_first_bytes - pe.kv_bytes);
    CHECK(pk.kv_bytes == p.kv_bytes && pk.kv_only_rest);
    CHECK(pk.total_bytes == parts_sum(&pk));
    CHECK(pk.total_bytes == pe.total_bytes - 2 * (pe.state_bytes - pk.state_bytes));
    struct lg_model_state *ks = NULL;
    CHECK(lg_model_state_create_opts(m, &so, &ks, &err) == LG_OK);
    if (ks) {
        CHECK(ks->bytes == pk.state_bytes);
        CHECK(ks->bytes == sizeof *ks + lg_kv_footprint(lg_model_state_kv(ks)));
        CHECK(ks->kv_only && !ks->pool && !ks->qx && !ks->mem && !ks->x);
        CHECK(lg_kv_bytes(lg_model_state_kv(ks)) == p.kv_bytes);
        /* no pass runs on it: refused with a clear error, no crash */
        CHECK(lg_model_state_set_threads(ks, 1, &err) == LG_ERR_INVALID_ARG);
        CHECK(strstr(err.msg, "KV-only") != NULL);
        int32_t tok = 2;
        float *lg = malloc((size_t)c->n_vocab * sizeof *lg);
        CHECK(lg_model_forward(m, ks, &tok, 1, LG_LOGITS_LAST, lg, &err) == LG_ERR_INVALID_ARG);
        CHECK(strstr(err.msg, "KV-only") != NULL);
        CHECK(lg_kv_n_pos(lg_model_state_kv(ks)) == 0);
        free(lg);
        lg_model_state_destroy(ks);
    }
    so.kv_only = false;
    o.kv_only_rest = false;
    o.n_chunk_first = 0;
    o.n_parallel = 1;

    /* KV types: f32 doubles the f16 cache; q8_0 cannot split 16-wide heads into 32-blocks */
    struct lg_plan p32;
    o.type_k = o.type_v = LG_QTYPE_F32;
    CHECK(lg_plan_compute(g, &o, &p32, &err) == LG_OK);
    CHECK(p32.kv_bytes == 2 * p.kv_bytes);
    o.type_k = LG_QTYPE_Q8_0;
    CHECK(lg_plan_compute(g, &o, &p32, &err) == LG_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "32") != NULL);
    o.type_k = o.type_v = LG_QTYPE_F16;

    /* the largest context that fits, at a budget boundary of exactly 2000 positions */
    struct lg_plan b;
    o.n_ctx = 2000;
    CHECK(lg_plan_compute(g, &o, &b, &err) == LG_OK);
    o.n_ctx = 0;
    o.mem_available = b.total_bytes + LG_PLAN_HEADROOM_BYTES;
    struct lg_plan q;
    CHECK(lg_plan_compute(g, &o, &q, &err) == LG_OK);
    CHECK_EQ_INT((int)q.n_ctx_max, 2000);
    CHECK_EQ_INT((int)q.n_ctx, 2000); /* below min(trained 4096, cap) */
    CHECK(q.fits);
    o.n_ctx = 2001;
    CHECK(lg_plan_compute(g, &o, &q, &err) == LG_OK);
    CHECK(!q.fits);
    char why[1024];
    lg_plan_explain(&q, why, sizeof why);
    CHECK_MSG(strstr(why, "largest context that fits is 2000") != NULL, "explain: %s", why);

    /* plenty of memory: the default context is min(trained, cap) */
    o.n_ctx = 0;
    o.mem_available = (uint64_t)1 << 40;
    CHECK(lg_plan_compute(g, &o, &q, &err) == LG_OK);
    int64_t want = c->n_ctx_train < LG_PLAN_DEFAULT_CTX_CAP ? c->n_ctx_train
                                                            : LG_PLAN_DEFAULT_CTX_CAP;
    CHECK_EQ_INT((int)q.n_ctx, (int)want);
    CHECK_EQ_INT((int)q.n_ctx_max, (int)c->n_ctx_train);

    /* almost no memory: does not fit at all */
    o.mem_available = 1 << 20;
    CHECK(lg_plan_compute(g, &o, &q, &err) == LG_OK);
    CHECK(!q.fits);
    CHECK_EQ_INT((int)q.n_ctx_max, 0);
    lg_plan_explain(&q, why, sizeof why);
    CHECK_MSG(strstr(why, "not even") != NULL && strstr(why, "needs") != NULL, "%s", why);

    /* bad options */
    o.mem_available = (uint64_t)1 << 40;
    o.n_parallel = 1000;
    CHECK(lg_plan_compute(g, &o, &q, &err) == LG_ERR_INVALID_ARG);
    o.n_parallel = 1;
    o.n_ctx = -5;
    CHECK(lg_plan_compute(g, &o, &q, &err) == LG_ERR_INVALID_ARG);

    lg_model_close(m);
    lg_gguf_close(g);
}

static void test_moe_kv_eq_v(void)
{
    struct lg_err err = {0};
    struct lg_gguf *g = NULL;
    CHECK(lg_gguf_open(fixture("gemma4_26b.q8_0.gguf"), &g, &err) == LG_OK);
    if (!g)
        return;
    struct lg_model_cfg *c = malloc(sizeof *c);
    CHECK(c && lg_model_cfg_read(g, c, &err) == LG_OK);
    int no_v = 0;
    char name[64];
    for (int32_t il = 0; c && il < c->n_layer; il++) {
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", (int)il);
        no_v += lg_gguf_find_tensor(g, name) == NULL;
    }
    struct lg_plan_opts o;
    struct lg_plan p;
    lg_plan_opts_default(&o);
    o.n_ctx = 512;
    o.mem_available = (uint64_t)1 << 40;
    CHECK(lg_plan_compute(g, &o, &p, &err) == LG_OK);
    CHECK(no_v > 0);
    CHECK_EQ_INT(p.n_kv_eq_v, no_v);
    CHECK_EQ_INT(p.n_kv_shared, 0);
    CHECK(p.paged_total_bytes == 0 && p.paged_bytes == 0);
    CHECK(p.total_bytes == parts_sum(&p));
    /* experts are read every pass: all tensor data is resident */
    uint64_t all = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        all += g->tensors[i].nbytes;
    CHECK(p.weights_bytes >= all && p.weights_bytes < all + 4096);
    free(c);
    lg_gguf_close(g);
}

static void test_mem_available(void)
{
    char src[64];
    setenv("LG_MEM_AVAILABLE", "512M", 1);
    CHECK(lg_plan_mem_available(src, sizeof src) == (uint64_t)512 << 20);
    CHECK_EQ_STR(src, "LG_MEM_AVAILABLE");
    setenv("LG_MEM_AVAILABLE", "1.5GiB", 1);
    CHECK(lg_plan_mem_available(src, sizeof src) == (uint64_t)3 << 29);
    unsetenv("LG_MEM_AVAILABLE");
    uint64_t a = lg_plan_mem_available(src, sizeof src);
    CHECK_MSG(a > 0, "no memory figure (source %s)", src);
    CHECK(strcmp(src, "LG_MEM_AVAILABLE") != 0);
}

/* Repacked weights (repack.c): the plan counts a tied output matrix's R8 copy (token_embd
 * stays mapped) and a page per repacked matrix, exactly when the loaded model repacks;
 * nothing with LG_REPACK=0. */
static void test_repack(const char *name)
{
    struct lg_err err = {0};
    struct lg_gguf *g = NULL;
    CHECK(lg_gguf_open(fixture(name), &g, &err) == LG_OK);
    if (!g)
        return;
    struct lg_plan_opts o;
    struct lg_plan p, p0;
    lg_plan_opts_default(&o);
    o.n_ctx = 512;
    o.mem_available = (uint64_t)1 << 40;
    const char *old = getenv("LG_REPACK");
    unsetenv("LG_REPACK");
    CHECK(lg_plan_compute(g, &o, &p, &err) == LG_OK);
    struct lg_model *m = NULL;
    CHECK(lg_model_from_gguf(g, &m, &err) == LG_OK);
    setenv("LG_REPACK", "0", 1);
    CHECK(lg_plan_compute(g, &o, &p0, &err) == LG_OK);
    if (old)
        setenv("LG_REPACK", old, 1);
    else
        unsetenv("LG_REPACK");
    CHECK(p0.repack_bytes == 0);
    CHECK(p.total_bytes - p0.total_bytes == p.repack_bytes);
    if (m) {
        const struct lg_gguf_tensor *te = lg_gguf_find_tensor(g, "token_embd.weight");
        bool tied = lg_gguf_find_tensor(g, "output.weight") == NULL;
        bool out_copy = tied && m->output.layout == LG_WLAYOUT_R8;
        /* repacked matrices besides a tied output: one page each */
        size_t rest = lg_model_repacked_bytes(m) - (out_copy ? te->nbytes : 0);
        size_t n_pages = (size_t)((p.repack_bytes - (out_copy ? te->nbytes : 0)) / 4096);
        CHECK_MSG(p.repack_bytes == (out_copy ? te->nbytes : 0) + 4096 * n_pages,
                  "%s: repack %llu", name, (unsigned long long)p.repack_bytes);
        /* the model repacked something exactly when the plan counts pages for it */
        CHECK_MSG((rest > 0) == (n_pages > 0), "%s: %zu repacked, %zu pages", name, rest,
                  n_pages);
        lg_model_close(m);
    }
    lg_gguf_close(g);
}

int main(void)
{
    test_repack("gemma4_e2b.q8_0.gguf");
    test_repack("gemma4_26b.q8_0.gguf");
    test_repack("gemma4_e2b.f32.gguf");
    test_e2b();
    test_moe_kv_eq_v();
    test_mem_available();
    return lg_test_done("test_plan");
}
