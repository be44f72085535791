/* preflight.c: KV-type flags and the memory check before loading (preflight.h). */
#include "cli/preflight.h"

#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "cli/args.h"
#include "gguf/gguf.h"
#include "kv/kv.h"
#include "model/plan.h"
#include "quant/quant.h"

int lg_cli_kv_flag(const char *cmd, int argc, char **argv, int *i, struct lg_cli_kv *kv)
{
    const char *a = argv[*i];
    bool both = !strcmp(a, "--kv-type"), k = !strcmp(a, "--kv-type-k"),
         v = !strcmp(a, "--kv-type-v");
    if (!both && !k && !v)
        return 0;
    const char *val = lg_arg_value(cmd, argc, argv, i);
    if (!val)
        return -1;
    uint32_t t;
    struct lg_err err = {0};
    if (lg_kv_type_parse(val, &t, &err) != LG_OK) {
        fprintf(stderr, "localgemma %s: %s: %s\n", cmd, a, err.msg);
        return -1;
    }
    if (both || k)
        kv->k = val;
    if (both || v)
        kv->v = val;
    return 1;
}

void lg_cli_kv_finish(struct lg_cli_kv *kv)
{
    struct lg_err err;
    kv->type_k = kv->type_v = LG_QTYPE_F16;
    if (kv->k)
        (void)lg_kv_type_parse(kv->k, &kv->type_k, &err);
    if (kv->v)
        (void)lg_kv_type_parse(kv->v, &kv->type_v, &err);
}

int lg_cli_preflight(const char *cmd, const char *path, int64_t n_ctx, int n_parallel,
                     const struct lg_cli_kv *kv, int64_t *n_ctx_out)
{
    struct lg_err err = {0};
    struct lg_gguf *g = NULL;
    struct lg_plan_opts o;
    struct lg_plan p;
    lg_plan_opts_default(&o);
    o.n_ctx = n_ctx;
    o.n_parallel = n_parallel;
    o.kv_only_rest = true; /* as the engine allocates: one work state, KV-only for the rest */
    struct lg_cli_kv k = *kv;
    lg_cli_kv_finish(&k);
    o.type_k = k.type_k;
    o.type_v = k.type_v;
    if (lg_gguf_open(path, &g, &err) != LG_OK || lg_plan_compute(g, &o, &p, &err) != LG_OK) {
        fprintf(stderr, "localgemma %s: %s: %s\n", cmd, path, err.msg);
        lg_gguf_close(g);
        return 1;
    }
    lg_gguf_close(g);
    if (!p.fits) {
        char why[1024];
        fprintf(stderr, "localgemma %s: %s does not fit in memory: %s\n", cmd, path,
                lg_plan_explain(&p, why, sizeof why));
        return 1;
    }
    *n_ctx_out = p.n_ctx;
    return 0;
}
