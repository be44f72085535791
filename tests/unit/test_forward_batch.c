/* test_forward_batch.c: lg_model_forward_batch (continuous batching) against one sequence at a
 * time.
 *
 * For every fixture variant (tests/golden/model/<v>.f32.gguf and .q8_0.gguf): three sequences
 * with different prompts are run alone (prefill, then decode token by token) to get reference
 * logits; then the same work is done in batches that mix a prefill of one sequence with decode
 * steps of the others, segments longer than the work state's chunk (split across sub-batches),
 * and LOGITS_ALL / LAST / NONE. Every logit must match the one-at-a-time run (only the float
 * summation order of grouped dot products may differ). Bad batches are refused before
 * anything runs: a shared cache, a token out of range, a context overflow, with the failing
 * segment named. The batch is run twice, the second time with KV-only sequence states
 * (lg_state_opts.kv_only, as the engine's slots 1..n): logits bit-identical; a KV-only state
 * is refused as the work state (and by lg_model_forward) before anything runs.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv.h"
#include "model/model.h"
#include "test.h"

static const char *const VARIANTS[] = {"gemma4_e2b", "gemma4_26b", "gemma4_31b", "gemma3"};
enum { N_VAR = 4, N_SEQ = 3, N_PROMPT = 13, N_DEC = 6, N_CTX = 64 };

/* Same arithmetic per token; grouping tokens changes only the order of some float sums. */
static const double TOL = 1e-4;

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d))
            return INFINITY;
        if (d > m)
            m = d;
    }
    return m;
}

static int32_t tok_of(int seq, int i, int32_t n_vocab)
{
    /* deterministic, different per sequence, in range */
    return (int32_t)((2 + seq * 977 + i * 131 + i * i * 7) % (n_vocab - 2)) + 1;
}

/* Creates a sequence state of N_CTX positions with rings for `chunk` (F32 KV); KV-only
 * (lg_state_opts.kv_only) when asked. */
static enum lg_status seq_state(struct lg_model *m, int64_t chunk, bool kv_only,
                                struct lg_model_state **out, struct lg_err *err)
{
    struct lg_state_opts so = {.n_ctx = N_CTX, .n_chunk = chunk, .type_k = LG_QTYPE_F32,
                               .type_v = LG_QTYPE_F32, .kv_only = kv_only};
    return lg_model_state_create_opts(m, &so, out, err);
}

/* kv_only: the batched sequences' states are KV-only; their logits must then be bit-identical
 * to the run with full states, whose logits *keep holds (set by the run with kv_only false,
 * freed by the one with kv_only true). */
static void run_variant(const char *v, const char *suffix, bool kv_only, float **keep)
{
    char path[512];
    snprintf(path, sizeof path, "%s/golden/model/%s%s", lg_test_data_dir(), v, suffix);
    struct lg_err err = {0};
    struct lg_model *m = NULL;
    if (lg_model_open(path, &m, &err) != LG_OK) {
        CHECK_MSG(0, "%s: %s", path, err.msg);
        return;
    }
    const int64_t V = m->cfg.n_vocab;
    const int n_all = N_PROMPT + N_DEC;
    int32_t toks[N_SEQ][N_PROMPT + N_DEC];
    for (int q = 0; q < N_SEQ; q++)
        for (int i = 0; i < n_all; i++)
            toks[q][i] = tok_of(q, i, (int32_t)V);
    /* sequence q has a prompt of N_PROMPT - 4 * q tokens, then decodes the rest one by one */
    float *ref = malloc(sizeof(float) * (size_t)(N_SEQ * n_all * V));
    float *got = malloc(sizeof(float) * (size_t)(N_SEQ * n_all * V));
    float *blk = malloc(sizeof(float) * (size_t)(N_SEQ * V));
    if (!ref || !got || !blk) {
        CHECK(0);
        goto out;
    }
    for (size_t i = 0; i < (size_t)(N_SEQ * n_all * V); i++)
        got[i] = NAN;

    /* reference: one sequence at a time, small chunks */
    for (int q = 0; q < N_SEQ; q++) {
        struct lg_model_state *s = NULL;
        CHECK(lg_model_state_create(m, N_CTX, 4, &s, &err) == LG_OK);
        if (!s)
            goto out;
        int np = N_PROMPT - 4 * q;
        float *r = ref + (size_t)q * n_all * V;
        CHECK(lg_model_forward(m, s, toks[q], np, LG_LOGITS_ALL, r, &err) == LG_OK);
        for (int i = np; i < n_all; i++)
            CHECK(lg_model_forward(m, s, toks[q] + i, 1, LG_LOGITS_LAST, r + i * V, &err) ==
                  LG_OK);
        lg_model_state_destroy(s);
    }

    /* batched: a work state with a chunk of 5 rows (so prompts are split across sub-batches),
     * sequence states with chunks of 4 (so a segment is also split by its own ring size) */
    struct lg_model_state *work = NULL, *st[N_SEQ] = {0};
    CHECK(lg_model_state_create(m, N_CTX, 5, &work, &err) == LG_OK);
    for (int q = 0; q < N_SEQ; q++)
        CHECK(seq_state(m, 4, kv_only, &st[q], &err) == LG_OK);
    if (!work || !st[0] || !st[1] || !st[2])
        goto out_states;
    int pos[N_SEQ] = {0, 0, 0};
    /* step 0: sequence 0 prefills everything (ALL), 1 prefills half (NONE), 2 not yet */
    {
        int np0 = N_PROMPT, h1 = (N_PROMPT - 4) / 2;
        struct lg_batch_seg seg[2] = {
            {st[0], toks[0], np0, LG_LOGITS_ALL, got},
            {st[1], toks[1], h1, LG_LOGITS_NONE, NULL},
        };
        int bad = 7;
        CHECK(lg_model_forward_batch(m, work, seg, 2, &bad, &err) == LG_OK);
        CHECK_EQ_INT(bad, -1);
        pos[0] = np0;
        pos[1] = h1;
    }
    /* step 1: 0 decodes (LAST), 1 finishes its prompt (ALL for the rest), 2 prefills (ALL) */
    {
        int np1 = N_PROMPT - 4, np2 = N_PROMPT - 8;
        struct lg_batch_seg seg[3] = {
            {st[0], toks[0] + pos[0], 1, LG_LOGITS_LAST, got + (size_t)pos[0] * V},
            {st[1], toks[1] + pos[1], np1 - pos[1], LG_LOGITS_ALL,
             got + ((size_t)n_all + pos[1]) * V},
            {st[2], toks[2], np2, LG_LOGITS_ALL, got + (size_t)2 * n_all * V},
        };
        CHECK(lg_model_forward_batch(m, work, seg, 3, NULL, &err) == LG_OK);
        pos[0]++;
        pos[1] = np1;
        pos[2] = np2;
    }
    /* then everyone decodes together, logits into one contiguous block (one output product) */
    for (int step = 0; step < n_all; step++) {
        struct lg_batch_seg seg[N_SEQ];
        int ns = 0, who[N_SEQ];
        for (int q = 0; q < N_SEQ; q++)
            if (pos[q] < n_all) {
                seg[ns] = (struct lg_batch_seg){st[q], toks[q] + pos[q], 1, LG_LOGITS_LAST,
                                                blk + (size_t)ns * V};
                who[ns++] = q;
            }
        if (!ns)
            break;
        CHECK(lg_model_forward_batch(m, work, seg, ns, NULL, &err) == LG_OK);
        for (int i = 0; i < ns; i++) {
            int q = who[i];
            memcpy(got + ((size_t)q * n_all + pos[q]) * V, blk + (size_t)i * V,
                   sizeof(float) * (size_t)V);
            pos[q]++;
        }
    }
    for (int q = 0; q < N_SEQ; q++) {
        /* sequence 1's first half ran without logits */
        size_t off = ((size_t)q * n_all + (q == 1 ? (N_PROMPT - 4) / 2 : 0)) * V;
        size_t cnt = (size_t)(n_all - (q == 1 ? (N_PROMPT - 4) / 2 : 0)) * V;
        double e = max_abs_diff(ref + off, got + off, cnt);
        CHECK_MSG(e <= TOL, "%s%s seq %d: batched vs alone %g", v, suffix, q, e);
        CHECK_EQ_INT(lg_kv_n_pos(lg_model_state_kv(st[q])), n_all);
    }
    if (!kv_only) {
        *keep = got; /* compared with the KV-only run's */
        got = NULL;
    } else if (*keep) {
        CHECK_MSG(!memcmp(*keep, got, sizeof(float) * (size_t)(N_SEQ * n_all * V)),
                  "%s%s: KV-only segment states change the logits", v, suffix);
        free(*keep);
        *keep = NULL;
    }

    /* refusals, before anything runs */
    {
        int32_t bad_tok = (int32_t)V;
        int64_t before = lg_kv_n_pos(lg_model_state_kv(st[0]));
        int bad = -1;
        struct lg_model_state *fresh = NULL;
        CHECK(lg_model_state_create(m, N_CTX, 4, &fresh, &err) == LG_OK);
        struct lg_batch_seg seg[2] = {
            {fresh, toks[0], 2, LG_LOGITS_NONE, NULL},
            {st[1], &bad_tok, 1, LG_LOGITS_NONE, NULL},
        };
        CHECK(lg_model_forward_batch(m, work, seg, 2, &bad, &err) == LG_ERR_INVALID_ARG);
        CHECK_EQ_INT(bad, 1);
        CHECK(strstr(err.msg, "out of range") != NULL);
        CHECK_EQ_INT(lg_kv_n_pos(lg_model_state_kv(fresh)), 0);
        seg[1] = (struct lg_batch_seg){fresh, toks[1], 1, LG_LOGITS_NONE, NULL};
        CHECK(lg_model_forward_batch(m, work, seg, 2, &bad, &err) == LG_ERR_INVALID_ARG);
        CHECK_EQ_INT(bad, 1);
        CHECK(strstr(err.msg, "share") != NULL);
        int32_t many[N_CTX];
        for (int i = 0; i < N_CTX; i++)
            many[i] = tok_of(0, i, (int32_t)V);
        seg[1] = (struct lg_batch_seg){st[0], many, N_CTX, LG_LOGITS_NONE, NULL};
        CHECK_MSG(lg_model_forward_batch(m, work, seg, 2, &bad, &err) == LG_ERR_CONTEXT, "%s",
                  err.msg);
        CHECK_EQ_INT(bad, 1);
        CHECK_EQ_INT(lg_kv_n_pos(lg_model_state_kv(st[0])), before);
        CHECK(lg_model_forward_batch(m, work, seg, 0, &bad, &err) == LG_ERR_INVALID_ARG);
        if (kv_only) { /* a KV-only state is no work state: refused, nothing runs */
            seg[1] = (struct lg_batch_seg){st[1], toks[1], 1, LG_LOGITS_NONE, NULL};
            before = lg_kv_n_pos(lg_model_state_kv(st[1]));
            CHECK(lg_model_forward_batch(m, st[0], seg, 2, &bad, &err) == LG_ERR_INVALID_ARG);
            CHECK(strstr(err.msg, "KV-only") != NULL);
            CHECK(lg_model_forward(m, st[0], toks[0], 1, LG_LOGITS_LAST, blk, &err) ==
                  LG_ERR_INVALID_ARG);
            CHECK_EQ_INT(lg_kv_n_pos(lg_model_state_kv(st[1])), before);
            CHECK_EQ_INT(lg_kv_n_pos(lg_model_state_kv(fresh)), 0);
        }
        lg_model_state_destroy(fresh);
    }
out_states:
    for (int q = 0; q < N_SEQ; q++)
        lg_model_state_destroy(st[q]);
    lg_model_state_destroy(work);
out:
    free(ref);
    free(got);
    free(blk);
    lg_model_close(m);
}

int main(void)
{
    for (int i = 0; i < N_VAR; i++) {
        for (int k = 0; k < 2; k++) {
            const char *suffix = k ? ".q8_0.gguf" : ".f32.gguf";
            float *keep = NULL;
            run_variant(VARIANTS[i], suffix, false, &keep);
            run_variant(VARIANTS[i], suffix, true, &keep);
            free(keep);
        }
    }
    return lg_test_done("test_forward_batch");
}
