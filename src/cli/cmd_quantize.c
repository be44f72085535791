/* cmd_quantize.c: `localgemma quantize IN.gguf OUT.gguf TYPE [--threads N] [--pure] [-v]`.
 *
 * TYPE is a llama.cpp quantization name: a single type (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1
 * Q8_0 Q6_K IQ4_NL IQ4_XS) or a mix (Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M
 * MXFP4_MOE; Q3_K/Q4_K/Q5_K mean the _M mix). As llama-quantize, the per-tensor rules of
 * src/quant/quant_mix.c apply to every block type (output.weight or tied embeddings get Q6_K,
 * some attn_v and ffn_down layers get more bits, 1-D tensors and norms stay as they are);
 * --pure gives every quantizable tensor exactly TYPE. Exit: 0 ok, 1 error, 2 usage or an
 * unknown TYPE.
 * The output is written to OUT.tmp.<pid> and renamed over OUT at the end: an interrupted run
 * (error, SIGINT, SIGTERM, SIGHUP, even SIGKILL) never leaves a partial OUT; on the catchable
 * signals the temporary file is removed too.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "quant/quant.h"
#include "quant/quant_mix.h"

static char g_tmp_path[4096]; /* OUT.tmp.<pid>, removed by the signal handler */

static void on_signal(int sig)
{
    if (g_tmp_path[0])
        unlink(g_tmp_path); /* async-signal-safe */
    _exit(128 + sig);
}

static void quantize_usage(FILE *f)
{
    fprintf(f,
            "usage: localgemma quantize IN.gguf OUT.gguf TYPE [--threads N] [--pure] [-v]\n"
            "  TYPE       F32 F16 BF16 Q8_0 Q6_K Q5_0 Q5_1 Q4_0 Q4_1 IQ4_NL IQ4_XS, or a mix:\n"
            "             Q5_K_M Q5_K_S Q4_K_M Q4_K_S Q3_K_L Q3_K_M Q3_K_S Q2_K MXFP4_MOE\n"
            "  --threads  worker threads (default: all cores)\n"
            "  --pure     no per-tensor upgrades: every quantizable tensor gets TYPE\n"
            "  -v         print the type chosen for each tensor\n");
}

struct progress {
    bool tty;
    int last; /* last percentage drawn */
};

static void draw_progress(void *user, uint64_t done, uint64_t total)
{
    struct progress *p = user;
    int pct = total ? (int)(done * 100 / total) : 100;
    if (pct > 100)
        pct = 100;
    /* a terminal redraws one line on every percent; a log gets a line per 10% */
    if (pct == p->last || (!p->tty && p->last >= 0 && pct / 10 == p->last / 10 && pct != 100))
        return;
    p->last = pct;
    enum { WIDTH = 40 };
    char bar[WIDTH + 1];
    int fill = pct * WIDTH / 100;
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "%squantize [%s] %3d%%  %.1f/%.1f MB%s", p->tty ? "\r" : "", bar, pct,
            (double)done / 1e6, (double)total / 1e6, p->tty && pct < 100 ? "" : "\n");
    fflush(stderr);
}

static void print_tensor(void *user, const char *name, uint32_t src_type, uint32_t dst_type)
{
    (void)user;
    const struct lg_qtype_info *a = lg_qtype_get(src_type), *b = lg_qtype_get(dst_type);
    fprintf(stderr, "  %-40s %-7s -> %s\n", name, a ? a->name : "?", b ? b->name : "?");
}

int lg_cmd_quantize(int argc, char **argv)
{
    const char *pos[3] = {NULL, NULL, NULL};
    int n_pos = 0;
    int64_t n_threads = sysconf(_SC_NPROCESSORS_ONLN);
    bool pure = false, verbose = false;
    if (n_threads < 1)
        n_threads = 1;
    if (n_threads > 64)
        n_threads = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--threads") == 0 || strcmp(a, "-t") == 0) {
            const char *v = lg_arg_value("quantize", argc, argv, &i);
            if (!v || !lg_arg_i64("quantize", a, v, 1, 64, &n_threads))
                return 2;
        } else if (strcmp(a, "--pure") == 0) {
            pure = true;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            verbose = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            quantize_usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "localgemma quantize: unknown option %s\n", a);
            quantize_usage(stderr);
            return 2;
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            fprintf(stderr, "localgemma quantize: too many arguments\n");
            quantize_usage(stderr);
            return 2;
        }
    }
    if (n_pos != 3) {
        quantize_usage(stderr);
        return 2;
    }
    struct lg_quant_file_opts opts = {0};
    if (!lg_ftype_from_name(pos[2], &opts.ftype, &opts.base_type)) {
        fprintf(stderr, "localgemma quantize: unknown type %s (see localgemma quantize --help)\n",
                pos[2]);
        return 2;
    }
    opts.pure = pure;
    opts.n_threads = (int32_t)n_threads;
    struct progress prog = {isatty(STDERR_FILENO) != 0, -1};
    opts.progress = draw_progress;
    opts.progress_user = &prog;
    if (verbose)
        opts.on_tensor = print_tensor;

    int len = snprintf(g_tmp_path, sizeof g_tmp_path, "%s.tmp.%ld", pos[1], (long)getpid());
    if (len < 0 || (size_t)len >= sizeof g_tmp_path)
        g_tmp_path[0] = '\0';
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    struct lg_quant_file_stats stats;
    struct lg_err err = {0};
    enum lg_status st = lg_quant_file(pos[0], pos[1], &opts, &stats, &err);
    if (st != LG_OK) {
        if (prog.tty && prog.last >= 0 && prog.last < 100)
            fputc('\n', stderr);
        fprintf(stderr, "localgemma quantize: %s\n", err.msg[0] ? err.msg : lg_status_str(st));
        return 1;
    }
    printf("%s: %s, %llu tensors (%llu quantized, %llu kept, %llu fell back to a compatible "
           "type), %.1f MB -> %.1f MB\n",
           pos[1], lg_ftype_name(opts.ftype), (unsigned long long)stats.n_tensors,
           (unsigned long long)stats.n_quantized, (unsigned long long)stats.n_copied,
           (unsigned long long)stats.n_fallback, (double)stats.in_bytes / 1e6,
           (double)stats.out_bytes / 1e6);
    return 0;
}
