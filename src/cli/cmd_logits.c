/* cmd_logits.c: `localgemma logits MODEL.gguf --tokens 2,105,... [--out FILE] [--ctx N]
 * [--decode] [--chunk N] [--top K] [--kv-type T | --kv-type-k T --kv-type-v T]`: runs token
 * ids through the model (KV cache in f32 unless --kv-type* says otherwise: this is the exact
 * reference path, compared with transformers by tests/sh/test_logits.sh), prints the top-K
 * (id, logit) of every position, and with --out writes all logits as little-endian f32
 * [n_tokens][n_vocab]. --decode feeds the tokens one at a time (the KV-cache path) instead of
 * one prefill, so both paths can be compared from the command line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "model/model.h"

static int usage(void)
{
    fprintf(stderr, "usage: localgemma logits MODEL.gguf --tokens ID,ID,... [--out FILE] "
                    "[--ctx N] [--decode] [--chunk N] [--top K] [--kv-type T] "
                    "[--kv-type-k T] [--kv-type-v T]\n"
                    "  --kv-type*: KV-cache storage (f32 default here, f16, q8_0, q4_0)\n");
    return 2;
}

static int fail(const char *msg)
{
    fprintf(stderr, "localgemma logits: %s\n", msg);
    return 1;
}

/* Parses "2,105,7" into a malloc'd array. Returns count, or -1 on a malformed list. */
static int64_t parse_tokens(const char *s, int32_t **out)
{
    int64_t cap = 16, n = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v)
        return -1;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            free(v);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[n++] = (int32_t)x;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) {
            free(v);
            return -1;
        }
    }
    if (n == 0) {
        free(v);
        return -1;
    }
    *out = v;
    return n;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static void print_top(int64_t pos, int32_t tok, const float *l, int64_t V, int top)
{
    int32_t best[64];
    int nb = 0;
    for (int64_t i = 0; i < V; i++) {
        if (nb < top) {
            best[nb++] = (int32_t)i;
        } else if (l[i] > l[best[nb - 1]]) {
            best[nb - 1] = (int32_t)i;
        } else {
            continue;
        }
        for (int j = nb - 1; j > 0 && l[best[j]] > l[best[j - 1]]; j--) {
            int32_t t = best[j];
            best[j] = best[j - 1];
            best[j - 1] = t;
        }
    }
    printf("%lld %d:", (long long)pos, (int)tok);
    for (int j = 0; j < nb; j++)
        printf(" %d:%.4f", (int)best[j], (double)l[best[j]]);
    printf("\n");
}

int lg_cmd_logits(int argc, char **argv)
{
    const char *model_path = NULL, *tokens_arg = NULL, *out_path = NULL;
    long n_ctx = 0, n_chunk = 0, top = 5;
    uint32_t type_k = LG_QTYPE_F32, type_v = LG_QTYPE_F32;
    int decode = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tokens") && i + 1 < argc) {
            tokens_arg = argv[++i];
        } else if (!strcmp(a, "--out") && i + 1 < argc) {
            out_path = argv[++i];
        } else if (!strcmp(a, "--ctx") && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 1L << 30, &n_ctx))
                return usage();
        } else if (!strcmp(a, "--chunk") && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 1L << 20, &n_chunk))
                return usage();
        } else if (!strcmp(a, "--top") && i + 1 < argc) {
            if (parse_int(argv[++i], 0, 64, &top))
                return usage();
        } else if ((!strcmp(a, "--kv-type") || !strcmp(a, "--kv-type-k") ||
                    !strcmp(a, "--kv-type-v")) && i + 1 < argc) {
            uint32_t t;
            struct lg_err e = {0};
            if (lg_kv_type_parse(argv[++i], &t, &e) != LG_OK) {
                fprintf(stderr, "localgemma logits: %s: %s\n", a, e.msg);
                return 2;
            }
            if (strcmp(a, "--kv-type-v"))
                type_k = t;
            if (strcmp(a, "--kv-type-k"))
                type_v = t;
        } else if (!strcmp(a, "--decode")) {
            decode = 1;
        } else if (a[0] == '-' || model_path) {
            return usage();
        } else {
            model_path = a;
        }
    }
    if (!model_path || !tokens_arg)
        return usage();
    int32_t *tok = NULL;
    int64_t n = parse_tokens(tokens_arg, &tok);
    if (n < 0)
        return fail("--tokens: expected a comma-separated list of token ids");
    if (n_ctx == 0)
        n_ctx = (long)n;
    if (n_ctx < n) {
        free(tok);
        return fail("--ctx is smaller than the number of tokens");
    }

    struct lg_err err = {0};
    struct lg_model *m = NULL;
    struct lg_model_state *s = NULL;
    float *logits = NULL;
    FILE *f = NULL;
    int rc = 1;
    if (lg_model_open(model_path, &m, &err) != LG_OK) {
        fprintf(stderr, "localgemma logits: %s: %s\n", model_path, err.msg);
        goto done;
    }
    struct lg_state_opts so = {
        .n_ctx = n_ctx, .n_chunk = n_chunk, .type_k = type_k, .type_v = type_v};
    if (lg_model_state_create_opts(m, &so, &s, &err) != LG_OK) {
        fprintf(stderr, "localgemma logits: %s\n", err.msg);
        goto done;
    }
    const int64_t V = m->cfg.n_vocab;
    logits = malloc((size_t)n * (size_t)V * sizeof(float));
    if (!logits) {
        fail("out of memory for logits");
        goto done;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (decode) {
        for (int64_t i = 0; i < n; i++)
            if (lg_model_forward(m, s, tok + i, 1, LG_LOGITS_LAST, logits + i * V, &err)) {
                fprintf(stderr, "localgemma logits: %s\n", err.msg);
                goto done;
            }
    } else if (lg_model_forward(m, s, tok, n, LG_LOGITS_ALL, logits, &err)) {
        fprintf(stderr, "localgemma logits: %s\n", err.msg);
        goto done;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    for (int64_t i = 0; i < n && top > 0; i++)
        print_top(i, tok[i], logits + i * V, V, (int)top);
    if (out_path) {
        f = fopen(out_path, "wb");
        if (!f || fwrite(logits, sizeof(float), (size_t)(n * V), f) != (size_t)(n * V) ||
            fclose(f) != 0) {
            f = NULL;
            fprintf(stderr, "localgemma logits: cannot write %s: %s\n", out_path,
                    strerror(errno));
            goto done;
        }
        f = NULL;
    }
    fprintf(stderr, "localgemma logits: %lld tokens in %.3f s (%s, %s, kv %s/%s)\n",
            (long long)n, secs, decode ? "decode" : "prefill", lg_kern_get()->isa,
            lg_kv_type_name(type_k), lg_kv_type_name(type_v));
    rc = 0;
done:
    if (f)
        fclose(f);
    free(logits);
    lg_model_state_destroy(s);
    lg_model_close(m);
    free(tok);
    return rc;
}
