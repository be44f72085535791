/* model_run.h: the whole-model runs of the kernel tests (test_repack.c, test_amx.c): open a
 * GGUF with or without the load-time R8 repack, and run a token sequence through it (a prefill
 * with all logits, then single-token decode steps) on a chosen kernel table.
 * Include after test.h; static inline, one copy per test binary.
 */
#ifndef LG_TEST_MODEL_RUN_H
#define LG_TEST_MODEL_RUN_H

#include <stdio.h>
#include <stdlib.h>

#include "base/err.h"
#include "kern/kern.h"
#include "model/model.h"

/* The model at path, its weights repacked at load (repack) or kept as GGUF rows (LG_REPACK=0);
 * NULL with a message on stderr when it cannot be opened. */
static inline struct lg_model *lg_test_open_model(const char *path, int repack)
{
    struct lg_err err = {0};
    struct lg_model *m = NULL;
    if (repack)
        unsetenv("LG_REPACK");
    else
        setenv("LG_REPACK", "0", 1);
    if (lg_model_open(path, &m, &err) != LG_OK)
        fprintf(stderr, "  %s: %s\n", path, err.msg);
    unsetenv("LG_REPACK");
    return m;
}

/* Logits [n_prompt + n_dec][V] of tok on table k, in a state of n_ctx positions: tok[0..n_prompt)
 * as one prefill with all logits, then each later token as a decode step. Returns 1, or 0 with
 * a message on stderr. */
static inline int lg_test_run_model(struct lg_model *m, const struct lg_kern *k,
                                    const int32_t *tok, int n_prompt, int n_dec, int64_t n_ctx,
                                    float *out)
{
    struct lg_err err = {0};
    struct lg_model_state *s = NULL;
    const int64_t V = m->cfg.n_vocab;
    if (lg_model_state_create(m, n_ctx, 4, &s, &err) != LG_OK)
        return 0;
    lg_model_state_set_kern(s, k);
    int ok = lg_model_forward(m, s, tok, n_prompt, LG_LOGITS_ALL, out, &err) == LG_OK;
    for (int i = 0; ok && i < n_dec; i++)
        ok = lg_model_forward(m, s, tok + n_prompt + i, 1, LG_LOGITS_LAST,
                              out + (size_t)(n_prompt + i) * (size_t)V, &err) == LG_OK;
    if (!ok)
        fprintf(stderr, "  forward: %s\n", err.msg);
    lg_model_state_destroy(s);
    return ok;
}

#endif
