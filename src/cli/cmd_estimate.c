/* cmd_estimate.c: `localgemma estimate MODEL [--ctx N] [--parallel N] [--kv-type T]
 * [--kv-type-k T] [--kv-type-v T] [--json]`: the memory plan (src/model/plan.h) of a model
 * for a context, without loading it: what is resident, what is paged, the KV cache by layer
 * kind, activations, overhead, the total against the memory available, and the largest
 * context that fits. Exit 0 whether it fits or not (the verdict is in the output); 1 when the
 * file cannot be planned; 2 for usage errors. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/preflight.h"
#include "gguf/gguf.h"
#include "kv/kv.h"
#include "model/plan.h"
#include "store/store.h"

#define CMD "estimate"

static int usage(FILE *f)
{
    fprintf(f, "usage: localgemma estimate MODEL [--ctx N] [--parallel N] [--kv-type f16|q8_0|q4_0]\n"
               "                          [--kv-type-k T] [--kv-type-v T] [--json]\n"
               "  MODEL is a store name or a path to a .gguf file.\n"
               "  --ctx N        positions per sequence (default: the largest that fits, at most\n"
               "                 min(trained context, %d))\n"
               "  --parallel N   sequences served at once (each has its own KV cache; they\n"
               "                 share one set of activation buffers, as `serve` does)\n"
               "  --kv-type T    KV-cache storage type for K and V (f32, f16, q8_0, q4_0)\n"
               "  LG_MEM_AVAILABLE=SIZE in the environment replaces the detected free memory.\n",
            (int)LG_PLAN_DEFAULT_CTX_CAP);
    return f == stdout ? 0 : 2;
}

static double mib(uint64_t b)
{
    return (double)b / (1024.0 * 1024.0);
}

static void print_table(const char *path, const struct lg_plan *p)
{
    const uint64_t np = (uint64_t)p->n_parallel;
    printf("model       %s\n", path);
    printf("context     %lld positions x %d sequence%s (trained %lld), KV cache K %s / V %s\n",
           (long long)p->n_ctx, p->n_parallel, p->n_parallel == 1 ? "" : "s",
           (long long)p->n_ctx_train, lg_kv_type_name(p->type_k), lg_kv_type_name(p->type_v));
    printf("\n%-44s %12s\n", "", "MiB");
    printf("%-44s %12.1f\n", "weights, mapped and resident", mib(p->weights_bytes));
    printf("%-44s %12.1f\n", "GGUF header and metadata (mapped)", mib(p->meta_bytes));
    if (p->paged_total_bytes)
        printf("%-44s %12s   %.1f MiB mapped, read one row per token;\n%-44s %12s   up to "
               "%.1f MiB more RSS at %lld distinct tokens (reclaimable)\n",
               "per-layer embeddings, paged (not counted)", "-", mib(p->paged_total_bytes), "",
               "", mib(p->paged_bytes), (long long)p->n_ctx);
    printf("%-44s %12.1f\n", "repacked weight copies", mib(p->repack_bytes));
    char label[96];
    snprintf(label, sizeof label, "KV cache (x%d)", p->n_parallel);
    printf("%-44s %12.1f\n", label, mib(p->kv_bytes * np));
    snprintf(label, sizeof label, "  sliding: %d layers x ring of %lld", p->kv_sliding.n_layers,
             (long long)p->kv_sliding.n_slots);
    printf("%-44s %12.1f\n", label, mib(p->kv_sliding.bytes * np));
    snprintf(label, sizeof label, "  global: %d layers x %lld%s", p->kv_global.n_layers,
             (long long)p->kv_global.n_slots, p->n_kv_eq_v ? " (K=V: K and V kept)" : "");
    printf("%-44s %12.1f\n", label, mib(p->kv_global.bytes * np));
    if (p->n_kv_shared) {
        snprintf(label, sizeof label, "  shared: %d layers read another's", p->n_kv_shared);
        printf("%-44s %12.1f\n", label, 0.0);
    }
    /* the server's slots 1..n are KV-only: one set of activations (slot 0's, the batch's) */
    const uint64_t na = p->kv_only_rest ? 1 : np;
    snprintf(label, sizeof label, "activations and scratch (x%d)", (int)na);
    printf("%-44s %12.1f\n", label, mib(p->act_bytes * na));
    printf("%-44s %12.1f\n", "token and logit buffers", mib(p->session_bytes * np));
    printf("%-44s %12.1f\n", "vocabulary", mib(p->vocab_bytes));
    printf("%-44s %12.1f\n", "model tables (norms, parsed metadata)", mib(p->model_heap_bytes));
    printf("%-44s %12.1f\n", "process baseline", mib(p->baseline_bytes));
    printf("%-44s %12.1f\n", "total (peak RSS with the context full)", mib(p->total_bytes));
    snprintf(label, sizeof label, "available (%s)", p->available_src);
    printf("%-44s %12.1f\n", label, mib(p->available_bytes));
    if (p->fits)
        printf("\nfits (%.1f MiB to spare beside %.0f MiB headroom)", 
               mib(p->available_bytes - p->total_bytes - LG_PLAN_HEADROOM_BYTES),
               mib(LG_PLAN_HEADROOM_BYTES));
    else
        printf("\ndoes NOT fit");
    if (p->n_ctx_max > 0)
        printf("; largest context that fits: %lld\n", (long long)p->n_ctx_max);
    else
        printf("; not even %d positions fit\n", (int)LG_PLAN_MIN_CTX);
}

static int print_json(const char *path, const struct lg_plan *p)
{
    json_t *kv = json_pack("{s:{s:i,s:I,s:I},s:{s:i,s:I,s:I},s:i,s:i,s:I}",
                           "sliding", "layers", (int)p->kv_sliding.n_layers, "slots",
                           (json_int_t)p->kv_sliding.n_slots, "bytes",
                           (json_int_t)p->kv_sliding.bytes, "global", "layers",
                           (int)p->kv_global.n_layers, "slots", (json_int_t)p->kv_global.n_slots,
                           "bytes", (json_int_t)p->kv_global.bytes, "kv_eq_v_layers",
                           (int)p->n_kv_eq_v, "shared_layers", (int)p->n_kv_shared,
                           "bytes_per_sequence", (json_int_t)p->kv_bytes);
    json_t *o = json_pack(
        "{s:s,s:I,s:I,s:i,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
        "s:s,s:b,s:I,s:I}",
        "model", path, "n_ctx", (json_int_t)p->n_ctx, "n_ctx_train", (json_int_t)p->n_ctx_train,
        "n_parallel", (int)p->n_parallel, "kv_type_k", lg_kv_type_name(p->type_k), "kv_type_v",
        lg_kv_type_name(p->type_v), "file_bytes", (json_int_t)p->file_bytes, "weights_bytes",
        (json_int_t)p->weights_bytes, "meta_bytes", (json_int_t)p->meta_bytes,
        "paged_total_bytes", (json_int_t)p->paged_total_bytes, "paged_bytes",
        (json_int_t)p->paged_bytes, "repack_bytes", (json_int_t)p->repack_bytes, "kv", kv,
        "activations_bytes_per_sequence", (json_int_t)p->act_bytes, "state_bytes_per_sequence",
        (json_int_t)p->state_bytes, "session_bytes_per_sequence", (json_int_t)p->session_bytes,
        "vocab_bytes", (json_int_t)p->vocab_bytes, "model_heap_bytes",
        (json_int_t)p->model_heap_bytes, "baseline_bytes", (json_int_t)p->baseline_bytes,
        "available_bytes", (json_int_t)p->available_bytes, "available_source", p->available_src,
        "fits", p->fits ? 1 : 0, "n_ctx_max_fit", (json_int_t)p->n_ctx_max, "total_bytes",
        (json_int_t)p->total_bytes);
    if (!o) {
        fprintf(stderr, "localgemma estimate: out of memory\n");
        return 1;
    }
    json_object_set_new(o, "headroom_bytes", json_integer((json_int_t)LG_PLAN_HEADROOM_BYTES));
    json_object_set_new(o, "kv_only_rest", json_boolean(p->kv_only_rest));
    json_object_set_new(o, "state_bytes_first_sequence",
                        json_integer((json_int_t)p->state_first_bytes));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) {
        fprintf(stderr, "localgemma estimate: out of memory\n");
        return 1;
    }
    puts(s);
    free(s);
    return 0;
}

int lg_cmd_estimate(int argc, char **argv)
{
    const char *model = NULL;
    int64_t n_ctx = 0, n_par = 1;
    bool json = false;
    struct lg_cli_kv kv = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = lg_cli_kv_flag(CMD, argc, argv, &i, &kv);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            return usage(stdout);
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = lg_arg_value(CMD, argc, argv, &i)) ||
                !lg_arg_i64(CMD, a, v, 1, (int64_t)1 << 30, &n_ctx))
                return 2;
        } else if (!strcmp(a, "--parallel") || !strcmp(a, "-np")) {
            if (!(v = lg_arg_value(CMD, argc, argv, &i)) || !lg_arg_i64(CMD, a, v, 1, 256, &n_par))
                return 2;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (a[0] == '-') {
            fprintf(stderr, "localgemma estimate: unknown option %s\n", a);
            return usage(stderr);
        } else if (!model) {
            model = a;
        } else {
            fprintf(stderr, "localgemma estimate: one MODEL only (got '%s' too)\n", a);
            return usage(stderr);
        }
    }
    if (!model)
        return usage(stderr);
    lg_cli_kv_finish(&kv);

    struct lg_err err = {0};
    char path[4096];
    struct lg_gguf *g = NULL;
    if (lg_store_resolve_default(model, false, path, sizeof path, &err) != LG_OK ||
        lg_gguf_open(path, &g, &err) != LG_OK) {
        fprintf(stderr, "localgemma estimate: %s\n", err.msg);
        return 1;
    }
    struct lg_plan_opts o;
    struct lg_plan p;
    lg_plan_opts_default(&o);
    o.n_ctx = n_ctx;
    o.n_parallel = (int32_t)n_par;
    o.kv_only_rest = true; /* as the server allocates its slots (engine_models.c) */
    o.type_k = kv.type_k;
    o.type_v = kv.type_v;
    enum lg_status st = lg_plan_compute(g, &o, &p, &err);
    lg_gguf_close(g);
    if (st != LG_OK) {
        fprintf(stderr, "localgemma estimate: %s: %s\n", path, err.msg);
        return 1;
    }
    if (json)
        return print_json(path, &p);
    print_table(path, &p);
    return 0;
}
