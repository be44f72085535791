/* cmd_bench.c: `localgemma bench MODEL [-p 512] [-n 128] [-t N] [-r REPS] [--depth D]
 * [--ctx N] [--kv-type T] [--no-repack] [--json] [--watts W]` and
 * `localgemma bench --membw [-t N] [--json]`.
 *
 * Per repetition, on one state: a p-token prompt with logits of the last token (TTFT and
 * prefill tokens/s), then, after rewinding, an untimed D-token context and n single-token
 * decode steps (decode tokens/s). One untimed warm-up pass first pages the weights in (the
 * file is mmapped). Figures are medians over the repetitions with min..max as the spread.
 * "Weight bytes per token" counts every matrix a decode step reads (MoE: the routed share of
 * the experts, n_used / n_expert) plus the K/V read at the decode depth; multiplied by the
 * decode rate it is the effective bandwidth, which --membw puts beside the machine's.
 * "Load" includes copying Q4_0 / Q8_0 matrices into the kernels' R8 layout (model/repack.c;
 * "repacked" says how many bytes); --no-repack (= LG_REPACK=0) keeps the GGUF rows, for
 * before/after comparisons.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/threadpool.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/preflight.h"
#include "kv/kv.h"
#include "model/model.h"
#include "quant/quant.h"
#include "store/store.h"

#define CMD "bench"

enum { MAX_REPS = 100 };

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int usage(void)
{
    fprintf(stderr, "usage: localgemma bench MODEL [-p N] [-n N] [-t N] [-r REPS] "
                    "[--depth D] [--ctx N] [--no-repack]\n"
                    "                        [--kv-type|--kv-type-k|--kv-type-v f32|f16|q8_0|q4_0] "
                    "[--watts W] [--json]\n"
                    "       localgemma bench --membw [-t N] [--json]\n"
                    "  --ctx N: the state's context (default p, or depth + n, + 1); the memory "
                    "plan is checked first\n");
    return 2;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct stat3 {
    double med, lo, hi;
};

static struct stat3 stats(const double *v, int n)
{
    double s[MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_d);
    struct stat3 r = {n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]), s[0], s[n - 1]};
    return r;
}

static double mat_bytes(const struct lg_wmat *w)
{
    return w->data ? (double)w->rows * (double)w->row_bytes : 0.0;
}

static double exp_bytes(const struct lg_wexp *e, double share)
{
    return e->n_expert ? (double)e->n_expert * (double)e->expert_bytes * share : 0.0;
}

/* Weight bytes read by one decode step (see the file comment). */
static double weight_bytes_per_token(const struct lg_model *m)
{
    const struct lg_model_cfg *c = &m->cfg;
    double b = mat_bytes(&m->output) + mat_bytes(&m->ple_proj);
    b += (double)m->tok_embd.row_bytes + (double)m->ple_tok.row_bytes;
    double share = c->n_expert ? (double)c->n_expert_used / (double)c->n_expert : 0.0;
    for (int32_t il = 0; il < c->n_layer; il++) {
        const struct lg_layer_w *w = &m->layers[il];
        b += mat_bytes(&w->wq) + mat_bytes(&w->wk) + mat_bytes(&w->wv) + mat_bytes(&w->wo);
        b += mat_bytes(&w->ffn_gate) + mat_bytes(&w->ffn_up) + mat_bytes(&w->ffn_down);
        b += mat_bytes(&w->inp_gate) + mat_bytes(&w->proj) + mat_bytes(&w->router);
        b += exp_bytes(&w->gate_up_exps, share) + exp_bytes(&w->gate_exps, share) +
             exp_bytes(&w->up_exps, share) + exp_bytes(&w->down_exps, share);
    }
    return b;
}

/* K/V bytes one decode step at context `depth` reads (sliding layers: window), in the cache's
 * storage types. */
static double kv_bytes_per_token(const struct lg_model *m, int64_t depth, uint32_t type_k,
                                 uint32_t type_v)
{
    const struct lg_model_cfg *c = &m->cfg;
    double b = 0;
    for (int32_t il = 0; il < c->n_layer; il++) {
        const struct lg_layer_cfg *lc = &c->layers[il];
        int64_t keys = depth + 1;
        if (lc->sliding && c->sliding_window > 0 && keys > c->sliding_window)
            keys = c->sliding_window;
        uint64_t rk = 0, rv = 0, width = (uint64_t)lc->n_head_kv * (uint64_t)lc->head_dim;
        lg_qtype_row_bytes(type_k, width, &rk);
        lg_qtype_row_bytes(type_v, width, &rv);
        b += (double)keys * (double)(rk + rv);
    }
    return b;
}

/* ---- memory bandwidth --------------------------------------------------------------------- */

struct bw_job {
    const uint64_t *buf;
    size_t n; /* uint64 words */
    uint64_t sink[64];
};

static void bw_run(void *ctx, int ith, int nth)
{
    struct bw_job *j = ctx;
    size_t per = j->n / (size_t)nth / 8 * 8;
    const uint64_t *restrict b = j->buf + per * (size_t)ith;
    uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < per; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] ^= b[i + k];
    uint64_t s = 0;
    for (int k = 0; k < 8; k++)
        s ^= acc[k];
    j->sink[ith & 63] = s;
}

/* Read bandwidth in GB/s over a 1 GiB buffer, best of `reps` passes. */
static double membw(struct lg_tp *tp, int reps)
{
    size_t bytes = (size_t)1 << 30;
    uint64_t *buf = malloc(bytes);
    if (!buf)
        return 0;
    for (size_t i = 0; i < bytes / 8; i++)
        buf[i] = i;
    struct bw_job j = {.buf = buf, .n = bytes / 8};
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        lg_tp_run(tp, bw_run, &j);
        double gbs = (double)bytes / (now_s() - t0) / 1e9;
        if (gbs > best)
            best = gbs;
    }
    free(buf);
    return best;
}

/* Writes s as a JSON string literal (quotes, backslashes and control bytes escaped). */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* Current RSS of the mapping (file pages) and of the heap, in KiB (-1 when unknown). */
static void rss_split_kb(long *file_kb, long *anon_kb)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    *file_kb = *anon_kb = -1;
    while (f && fgets(line, sizeof line, f)) {
        long v;
        if (sscanf(line, "RssFile: %ld kB", &v) == 1)
            *file_kb = v;
        else if (sscanf(line, "RssAnon: %ld kB", &v) == 1)
            *anon_kb = v;
    }
    if (f)
        fclose(f);
}

/* Peak RSS in KiB: VmHWM of this process image. getrusage's ru_maxrss survives execve, so a
 * bench started from a large parent (bench/compare's Python with llama.cpp loaded) would
 * report the parent's peak; it is only the fallback. */
static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    if (kb >= 0)
        return kb;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int lg_cmd_bench(int argc, char **argv)
{
    const char *path = NULL;
    int64_t p = 512, n = 128, threads = lg_tp_default_threads(), reps = 3, depth = 0;
    int64_t ctx_opt = 0;
    double watts = 0;
    int json = 0, do_membw = 0;
    struct lg_cli_kv kvo = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int kr = lg_cli_kv_flag(CMD, argc, argv, &i, &kvo);
        if (kr < 0)
            return 2;
        if (kr > 0)
            continue;
        if (!strcmp(a, "--ctx")) {
            if (!(v = lg_arg_value(CMD, argc, argv, &i)) ||
                !lg_arg_i64(CMD, a, v, 2, (int64_t)1 << 30, &ctx_opt))
                return 2;
        } else if (!strcmp(a, "-p") || !strcmp(a, "-n") || !strcmp(a, "-t") || !strcmp(a, "-r") ||
                   !strcmp(a, "--depth") || !strcmp(a, "--watts")) {
            if (!(v = lg_arg_value(CMD, argc, argv, &i)))
                return 2;
            bool ok = !strcmp(a, "-p")        ? lg_arg_i64(CMD, a, v, 1, 1 << 20, &p)
                      : !strcmp(a, "-n")      ? lg_arg_i64(CMD, a, v, 1, 1 << 20, &n)
                      : !strcmp(a, "-t")      ? lg_arg_i64(CMD, a, v, 1, 256, &threads)
                      : !strcmp(a, "-r")      ? lg_arg_i64(CMD, a, v, 1, MAX_REPS, &reps)
                      : !strcmp(a, "--depth") ? lg_arg_i64(CMD, a, v, 0, 1 << 24, &depth)
                                              : lg_arg_f64(CMD, a, v, 0, 1e6, &watts);
            if (!ok)
                return 2;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--no-repack")) {
            setenv("LG_REPACK", "0", 1); /* read by lg_model_open (model/repack.c) */
        } else if (!strcmp(a, "--membw")) {
            do_membw = 1;
        } else if (a[0] == '-') {
            fprintf(stderr, "localgemma bench: unknown option %s\n", a);
            return usage();
        } else if (!path) {
            path = a;
        } else {
            return usage();
        }
    }
    if (do_membw) {
        struct lg_tp *tp = lg_tp_create((int)threads);
        if (!tp) {
            fprintf(stderr, "localgemma bench: cannot start %d threads\n", (int)threads);
            return 1;
        }
        double bw = membw(tp, 5);
        lg_tp_destroy(tp);
        if (bw <= 0) {
            fprintf(stderr, "localgemma bench: out of memory for the bandwidth buffer\n");
            return 1;
        }
        if (json)
            printf("{\"membw_gbs\": %.2f, \"threads\": %d}\n", bw, (int)threads);
        else
            printf("read bandwidth: %.2f GB/s (%d threads, best of 5 passes over 1 GiB)\n", bw,
                   (int)threads);
        if (!path)
            return 0;
    }
    if (!path)
        return usage();

    struct lg_err err = {0};
    char rpath[4096];
    if (lg_store_resolve_default(path, false, rpath, sizeof rpath, &err) != LG_OK) {
        fprintf(stderr, "localgemma bench: %s\n", err.msg);
        return 1;
    }
    path = rpath;
    int64_t n_ctx = (p > depth + n ? p : depth + n) + 1;
    if (ctx_opt) {
        if (ctx_opt < n_ctx) {
            fprintf(stderr,
                    "localgemma bench: --ctx %lld is smaller than the %lld positions "
                    "-p/--depth/-n need\n",
                    (long long)ctx_opt, (long long)n_ctx);
            return 2;
        }
        n_ctx = ctx_opt;
    }
    int64_t planned;
    if (lg_cli_preflight(CMD, path, n_ctx, 1, &kvo, &planned) != 0)
        return 1;
    lg_cli_kv_finish(&kvo);
    struct lg_model *m = NULL;
    double t0 = now_s();
    if (lg_model_open(path, &m, &err) != LG_OK) {
        fprintf(stderr, "localgemma bench: %s\n", err.msg);
        return 1;
    }
    double load_s = now_s() - t0;
    struct lg_state_opts so;
    lg_state_opts_default(&so);
    so.n_ctx = n_ctx;
    so.type_k = kvo.type_k;
    so.type_v = kvo.type_v;
    struct lg_model_state *s = NULL;
    int rc = 1;
    int32_t *tok = malloc((size_t)(n_ctx + p) * sizeof *tok);
    float *logits = malloc((size_t)m->cfg.n_vocab * sizeof *logits);
    if (!tok || !logits) {
        fprintf(stderr, "localgemma bench: out of memory\n");
        goto done;
    }
    if (lg_model_state_create_opts(m, &so, &s, &err) != LG_OK ||
        lg_model_state_set_threads(s, (int)threads, &err) != LG_OK) {
        fprintf(stderr, "localgemma bench: %s\n", err.msg);
        goto done;
    }
    /* Deterministic pseudo-random token ids (skipping the first few special ids). */
    uint64_t x = 0x2545F4914F6CDD1DULL;
    for (int64_t i = 0; i < n_ctx + p; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        tok[i] = (int32_t)(10 + x % (uint64_t)(m->cfg.n_vocab > 20 ? m->cfg.n_vocab - 10 : 1));
    }
    struct lg_kv *kv = lg_model_state_kv(s);
    double pp[MAX_REPS], tg[MAX_REPS], ttft[MAX_REPS];
    for (int64_t r = -1; r < reps; r++) { /* r = -1: warm-up */
        if (lg_kv_rewind(kv, 0, &err) != LG_OK)
            goto fail;
        int64_t wp = r < 0 ? (p < 16 ? p : 16) : p;
        double a = now_s();
        if (lg_model_forward(m, s, tok, wp, LG_LOGITS_LAST, logits, &err) != LG_OK)
            goto fail;
        double b = now_s();
        if (lg_kv_rewind(kv, 0, &err) != LG_OK)
            goto fail;
        if (depth > 0 &&
            lg_model_forward(m, s, tok + p, depth, LG_LOGITS_NONE, NULL, &err) != LG_OK)
            goto fail;
        int64_t wn = r < 0 ? (n < 2 ? n : 2) : n;
        double c0 = now_s();
        for (int64_t i = 0; i < wn; i++)
            if (lg_model_forward(m, s, tok + p + depth + i, 1, LG_LOGITS_LAST, logits, &err) !=
                LG_OK)
                goto fail;
        double c1 = now_s();
        if (r >= 0) {
            ttft[r] = b - a;
            pp[r] = (double)p / (b - a);
            tg[r] = (double)n / (c1 - c0);
        }
    }
    struct stat3 spp = stats(pp, (int)reps), stg = stats(tg, (int)reps),
                 sttft = stats(ttft, (int)reps);
    double wb = weight_bytes_per_token(m),
           kvb = kv_bytes_per_token(m, depth + n / 2, kvo.type_k, kvo.type_v);
    double bw = (wb + kvb) * stg.med / 1e9;
    long rss = peak_rss_kb(), rss_file, rss_anon;
    rss_split_kb(&rss_file, &rss_anon);
    /* kWh per 1e6 tokens = W * (1e6 / rate) s / 3.6e6 J/kWh */
    double kwh_tg = watts > 0 ? watts * (1e6 / stg.med) / 3.6e6 : 0;
    double kwh_pp = watts > 0 ? watts * (1e6 / spp.med) / 3.6e6 : 0;
    if (json) {
        printf("{\"model\": ");
        json_str(path);
        printf(", \"threads\": %d, \"p\": %lld, \"n\": %lld, \"depth\": %lld, "
               "\"reps\": %d, \"isa\": \"%s\", \"load_s\": %.9g, \"ttft_s\": %.9g, "
               "\"ttft_min_s\": %.9g, \"ttft_max_s\": %.9g, \"prefill_tps\": %.9g, "
               "\"prefill_min_tps\": %.3f, \"prefill_max_tps\": %.3f, \"decode_tps\": %.9g, "
               "\"decode_min_tps\": %.3f, \"decode_max_tps\": %.3f, \"peak_rss_mib\": %.1f, "
               "\"weight_bytes_per_token\": %.0f, \"kv_bytes_per_token\": %.0f, "
               "\"effective_gbs\": %.9g, \"n_ctx\": %lld, \"kv_type_k\": \"%s\", "
               "\"kv_type_v\": \"%s\", \"rss_file_mib\": %.1f, \"rss_anon_mib\": %.1f, "
               "\"repacked_bytes\": %zu",
               (int)threads, (long long)p, (long long)n, (long long)depth, (int)reps,
               lg_kern_isa_label(lg_kern_get()), load_s, sttft.med, sttft.lo, sttft.hi, spp.med,
               spp.lo, spp.hi, stg.med, stg.lo, stg.hi, (double)rss / 1024.0, wb, kvb, bw,
               (long long)n_ctx, lg_kv_type_name(kvo.type_k), lg_kv_type_name(kvo.type_v),
               (double)rss_file / 1024.0, (double)rss_anon / 1024.0, lg_model_repacked_bytes(m));
        if (watts > 0)
            printf(", \"watts\": %.1f, \"decode_kwh_per_mtok\": %.9g, "
                   "\"prefill_kwh_per_mtok\": %.9g",
                   watts, kwh_tg, kwh_pp);
        printf("}\n");
    } else {
        printf("model        %s\n", path);
        printf("threads      %d (isa %s), %d reps, median [min..max]\n", (int)threads,
               lg_kern_isa_label(lg_kern_get()), (int)reps);
        printf("load         %.3f s (open + map + repack; repacked %.1f MiB to R8)\n", load_s,
               (double)lg_model_repacked_bytes(m) / (1024.0 * 1024.0));
        printf("TTFT p=%-5lld %.3f s [%.3f..%.3f]\n", (long long)p, sttft.med, sttft.lo, sttft.hi);
        printf("prefill      %.2f tok/s [%.2f..%.2f]\n", spp.med, spp.lo, spp.hi);
        printf("decode n=%-4lld %.2f tok/s [%.2f..%.2f] at depth %lld\n", (long long)n, stg.med,
               stg.lo, stg.hi, (long long)depth);
        printf("bytes/token  %.1f MB weights + %.2f MB KV -> %.2f GB/s effective\n", wb / 1e6,
               kvb / 1e6, bw);
        printf("peak RSS     %.1f MiB (now: %.1f MiB mapped file, %.1f MiB anon; context %lld, "
               "KV %s/%s)\n",
               (double)rss / 1024.0, (double)rss_file / 1024.0, (double)rss_anon / 1024.0,
               (long long)n_ctx, lg_kv_type_name(kvo.type_k), lg_kv_type_name(kvo.type_v));
        if (watts > 0)
            printf("energy       %.3f kWh / 1M decoded tokens, %.4f kWh / 1M prompt tokens "
                   "at %.0f W\n",
                   kwh_tg, kwh_pp, watts);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "localgemma bench: %s\n", err.msg);
done:
    free(tok);
    free(logits);
    lg_model_state_destroy(s);
    lg_model_close(m);
    return rc;
}
