/* test_amx.c: the AMX matrix products on R8 weights (kern/gemm_amx.c, kern/amx.h).
 *
 * 1. Availability: lg_amx_ok() is stable, and false with LG_AMX=0 (checked in a child process,
 *    since the answer is decided once per process). When it is false here, the kernel checks
 *    are skipped with a message and only the dispatch rule (3) is tested.
 * 2. Kernels: Q4_0 and Q8_0 R8 matrices of awkward shapes (rows 8, 16, 24, 40, 264; 32 to 6176
 *    columns; 2..70 tokens incl. 16, 17, 33; row ranges cut at any row, not only at 8 or 16),
 *    with random quantized rows, random bytes (Q8_0 -128 included), extremes (every Q4_0 quant
 *    -8 or 7, Q8_0 -128 / 127, activations +-127, large and tiny (subnormal f16) scales), and
 *    padded strides: every output is bit-identical (memcmp) to lg_vec_dot_ref on the GGUF
 *    rows; outputs outside the range stay NaN. Also more tokens than one pass (TPASS) and K
 *    longer than one chunk, so partial sums leave through y and come back.
 * 3. Dispatch: on the avx512 table of an AMX CPU, lg_gemm_q_for picks lg_gemm_r8_amx from its
 *    threshold on (and the VNNI kernel below it, always for one token); without AMX never;
 *    lg_kern_isa_label says "avx512+amx" for that table then, the plain isa otherwise.
 * 4. Models: the E2B golden fixture (Q8_0) and a pure Q4_0 copy give bit-identical logits
 *    (prefill with all logits, then decode steps) repacked on the CPU's table (AMX prefill)
 *    and as GGUF rows (the AVX2 kernels, exact like the reference).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/err.h"
#include "kern/amx.h"
#include "kern/kern.h"
#include "kern/qdot.h"
#include "model/model.h"
#include "quant/quant.h"
#include "quant/quant_blocks.h"
#include "quant/quant_mix.h"
#include "test.h"
#include "model_run.h"

enum { MODE_QUANT, MODE_BYTES, MODE_EXTREME, MODE_SCALES, N_MODES };

static size_t row_bytes(uint32_t t, int64_t cols)
{
    uint64_t b = 0;
    lg_qtype_row_bytes(t, (uint64_t)cols, &b);
    return (size_t)b;
}

/* A weight scale for `mode`: sane, or (MODE_SCALES) large, tiny or subnormal. */
static uint16_t wscale(int mode)
{
    if (mode != MODE_SCALES)
        return lg_f32_to_f16(0.001f + 0.01f * (lg_test_frand() + 1.0f));
    switch (lg_test_rand_below(4)) {
    case 0:
        return lg_f32_to_f16(30000.0f);
    case 1:
        return (uint16_t)(1 + lg_test_rand_below(1023)); /* subnormal */
    case 2:
        return lg_f32_to_f16(-1e-4f);
    default:
        return lg_f32_to_f16(1000.0f * lg_test_frand());
    }
}

/* One GGUF weight row of Q4_0 / Q8_0. */
static void make_wrow(uint32_t t, int64_t cols, int mode, uint8_t *dst, float *tmp)
{
    if (mode == MODE_QUANT) {
        float scale = 1.0f;
        for (int64_t i = 0; i < cols; i++) {
            if (i % 32 == 0)
                scale = powf(10.0f, 2.0f * lg_test_frand() - 1.0f);
            tmp[i] = lg_test_frand() * scale;
        }
        lg_quant_row((enum lg_qtype)t, tmp, dst, cols);
        return;
    }
    const size_t bs = lg_qtype_get(t)->type_size;
    for (int64_t b = 0; b < cols / LG_QK; b++) {
        uint8_t *p = dst + (size_t)b * bs;
        for (size_t i = 2; i < bs; i++) {
            uint8_t v = (uint8_t)lg_test_rand_u32();
            if (mode == MODE_EXTREME || mode == MODE_SCALES) /* Q4_0: -8 / 7; Q8_0 -128 / 127 */
                v = t == LG_QTYPE_Q8_0 ? (uint8_t)(int8_t)(lg_test_rand_below(2) ? 127 : -128)
                                       : (lg_test_rand_below(2) ? 0xff : 0x00);
            p[i] = v;
        }
        uint16_t d = wscale(mode);
        memcpy(p, &d, 2);
    }
}

/* One Q8_0 activation row: quantized random floats, or blocks of +-127 (extreme modes) with
 * sane or extreme scales. */
static void make_arow(int64_t cols, int mode, uint8_t *dst, float *tmp)
{
    if (mode == MODE_QUANT || mode == MODE_BYTES) {
        for (int64_t i = 0; i < cols; i++)
            tmp[i] = lg_test_frand() * 3.0f;
        lg_act_quantize(LG_QTYPE_Q8_0, tmp, dst, cols);
        return;
    }
    for (int64_t b = 0; b < cols / LG_QK; b++) {
        uint8_t *p = dst + (size_t)b * sizeof(struct lg_block_q8_0);
        uint16_t d = mode == MODE_SCALES ? wscale(mode) : lg_f32_to_f16(0.02f);
        memcpy(p, &d, 2);
        for (int i = 0; i < LG_QK; i++)
            p[2 + i] = (uint8_t)(int8_t)(lg_test_rand_below(2) ? 127 : -127);
    }
}

/* Repacks a rows x cols matrix of type t and runs g over [r0, r1) for nt tokens. Returns the
 * number of wrong outputs (bitwise against lg_vec_dot_ref; NaN outside the range). */
static int run_shape(lg_gemm_q_fn g, uint32_t t, int64_t rows, int64_t cols, int64_t nt, int64_t r0,
                     int64_t r1, int mode)
{
    const size_t rb = row_bytes(t, cols), ab = lg_act_row_bytes(t, cols);
    const size_t wstride = rb + 2 * (size_t)lg_test_rand_below(3);
    const size_t astride = ab + 2 * (size_t)lg_test_rand_below(3);
    const int64_t ldy = rows + (int64_t)lg_test_rand_below(4);
    uint8_t *w = malloc(wstride * (size_t)rows), *r8 = malloc(rb * (size_t)rows);
    uint8_t *a = malloc(astride * (size_t)nt);
    float *tmp = malloc((size_t)cols * sizeof(float));
    float *y = malloc((size_t)(ldy * nt) * sizeof(float));
    if (!w || !r8 || !a || !tmp || !y) {
        fprintf(stderr, "  out of memory\n");
        free(w), free(r8), free(a), free(tmp), free(y);
        return 1;
    }
    for (int64_t r = 0; r < rows; r++)
        make_wrow(t, cols, mode, w + (size_t)r * wstride, tmp);
    for (int64_t j = 0; j < nt; j++)
        make_arow(cols, mode, a + (size_t)j * astride, tmp);
    lg_repack_r8(t, w, wstride, r8, cols, 0, rows / 8);
    struct lg_wmat m = {.type = t,
                        .data = r8,
                        .rows = rows,
                        .cols = cols,
                        .row_bytes = rb,
                        .layout = LG_WLAYOUT_R8};
    for (int64_t i = 0; i < ldy * nt; i++)
        y[i] = NAN;
    g(&m, a, astride, y, ldy, nt, r0, r1);
    int bad = 0;
    for (int64_t j = 0; j < nt; j++)
        for (int64_t r = 0; r < ldy; r++) {
            const float got = y[j * ldy + r];
            float want = NAN;
            int ok;
            if (r < r0 || r >= r1) {
                ok = isnan(got);
            } else {
                want = lg_vec_dot_ref[t](w + (size_t)r * wstride, a + (size_t)j * astride, cols);
                ok = memcmp(&got, &want, sizeof got) == 0;
            }
            if (!ok) {
                if (!bad)
                    fprintf(stderr, "  tok %lld row %lld: %.9g, want %.9g\n", (long long)j,
                            (long long)r, (double)got, (double)want);
                bad++;
            }
        }
    free(w);
    free(r8);
    free(a);
    free(tmp);
    free(y);
    return bad;
}

static void test_kernels(uint32_t t)
{
    const char *tn = lg_qtype_get(t)->name;
    lg_gemm_q_fn g = lg_gemm_r8_amx(t, 70);
    CHECK_MSG(g != NULL, "%s: no AMX kernel for 70 tokens", tn);
    if (!g)
        return;
    /* fixed shapes: every row count with every column count, tokens and ranges varied */
    const int64_t rows_s[] = {8, 16, 24, 40, 264};
    const int64_t cols_s[] = {32, 64, 96, 2048, 6144 + 32};
    const int64_t toks[] = {2, 3, 7, 15, 16, 17, 31, 32, 33, 47, 64, 70, 1};
    int n = 0, bad_shapes = 0;
    for (int ir = 0; ir < 5; ir++)
        for (int ic = 0; ic < 5; ic++)
            for (int rep = 0; rep < 3; rep++) {
                const int64_t rows = rows_s[ir], cols = cols_s[ic];
                int64_t nt = toks[(ir * 5 + ic * 3 + rep * 7) % 13];
                if (rows * cols * nt > 264 * 2048 * 17) /* keep the scalar reference quick */
                    nt = 3 + rep;
                int64_t r0 = 0, r1 = rows;
                if (rep == 1) { /* cut anywhere */
                    r0 = (int64_t)lg_test_rand_below((uint32_t)rows);
                    r1 = r0 + 1 + (int64_t)lg_test_rand_below((uint32_t)(rows - r0));
                } else if (rep == 2 && rows > 8) { /* on 8-row groups, odd group first */
                    r0 = 8;
                    r1 = rows - (rows > 16 ? 8 : 0);
                }
                const int mode = (ir + ic + rep) % N_MODES;
                const int bad = run_shape(g, t, rows, cols, nt, r0, r1, mode);
                n++;
                if (bad) {
                    bad_shapes++;
                    fprintf(stderr,
                            "%s rows %lld [%lld, %lld) cols %lld tok %lld mode %d: %d wrong\n", tn,
                            (long long)rows, (long long)r0, (long long)r1, (long long)cols,
                            (long long)nt, mode, bad);
                }
            }
    CHECK_MSG(bad_shapes == 0, "AMX %s: %d of %d shapes wrong", tn, bad_shapes, n);
    /* every token count 1..70 on a small matrix, ranges cut anywhere, every mode */
    bad_shapes = 0;
    for (int64_t nt = 1; nt <= 70; nt++) {
        const int64_t rows = 8 * (1 + (int64_t)lg_test_rand_below(6));
        const int64_t cols = 32 * (1 + (int64_t)lg_test_rand_below(12));
        int64_t r0 = (int64_t)lg_test_rand_below((uint32_t)rows), r1 = rows;
        if (lg_test_rand_below(2))
            r1 = r0 + 1 + (int64_t)lg_test_rand_below((uint32_t)(rows - r0));
        const int mode = (int)(nt % N_MODES);
        const int bad = run_shape(g, t, rows, cols, nt, r0, r1, mode);
        if (bad) {
            bad_shapes++;
            fprintf(stderr, "%s rows %lld [%lld, %lld) cols %lld tok %lld mode %d: %d wrong\n", tn,
                    (long long)rows, (long long)r0, (long long)r1, (long long)cols, (long long)nt,
                    mode, bad);
        }
    }
    CHECK_MSG(bad_shapes == 0, "AMX %s: %d of 70 token counts wrong", tn, bad_shapes);
    /* past one pass of tokens (600 > 512) with the K chunk of a full pass (8 blocks) exceeded,
     * and a long K for few tokens (past the 32-block chunk) */
    const int64_t big[][5] = {/* rows, cols, tokens, r0, r1 */
                              {16, 32 * 20, 600, 3, 13},
                              {24, 32 * 200, 5, 8, 24},
                              {8, 32 * 129, 40, 0, 8}};
    for (int s = 0; s < 3; s++)
        for (int mode = 0; mode < N_MODES; mode++) {
            const int bad =
                run_shape(g, t, big[s][0], big[s][1], big[s][2], big[s][3], big[s][4], mode);
            CHECK_MSG(bad == 0, "AMX %s rows %lld cols %lld tok %lld mode %d: %d wrong", tn,
                      (long long)big[s][0], (long long)big[s][1], (long long)big[s][2], mode, bad);
        }
}

/* lg_gemm_q_for on the avx512 table's dot4. */
static void test_dispatch(void)
{
    const struct lg_kern *k = lg_kern_select("avx512");
    if (!k || !lg_cpu_has_avx512_vnni()) {
        printf("test_amx: no AVX512-VNNI table here: dispatch not tested\n");
        CHECK(k == NULL || lg_gemm_q_for(LG_QTYPE_Q4_0, LG_WLAYOUT_R8, k->vec_dot4[LG_QTYPE_Q4_0],
                                         64) != lg_gemm_r8_amx(LG_QTYPE_Q4_0, 64));
        return;
    }
    const uint32_t types[] = {LG_QTYPE_Q4_0, LG_QTYPE_Q8_0};
    for (int i = 0; i < 2; i++) {
        const uint32_t t = types[i];
        const char *tn = lg_qtype_get(t)->name;
        CHECK_MSG(lg_gemm_q_for(t, LG_WLAYOUT_R8, k->vec_dot4[t], 1) == lg_gemm_r8_avx512(t),
                  "%s: one token not on the VNNI kernel", tn);
        CHECK_MSG(lg_gemm_r8_amx(t, 1) == NULL, "%s: an AMX kernel for one token", tn);
        for (int64_t n = 2; n <= 80; n++) {
            lg_gemm_q_fn amx = lg_gemm_r8_amx(t, n),
                         got = lg_gemm_q_for(t, LG_WLAYOUT_R8, k->vec_dot4[t], n);
            lg_gemm_q_fn want = lg_amx_ok() && amx ? amx : lg_gemm_r8_avx512(t);
            if (got != want) {
                CHECK_MSG(got == want, "%s %lld tokens: kernel %s", tn, (long long)n,
                          got == amx ? "AMX without AMX" : "not AMX");
                break;
            }
        }
        /* the AMX kernel only for R8 and only for the type's own dot4 */
        CHECK_MSG(lg_gemm_q_for(t, LG_WLAYOUT_ROWS, k->vec_dot4[t], 64) != lg_gemm_r8_amx(t, 64),
                  "%s: AMX R8 kernel for GGUF rows", tn);
        CHECK_MSG(lg_gemm_q_for(t, LG_WLAYOUT_R8, k->vec_dot4[types[1 - i]], 64) == NULL,
                  "%s: R8 kernel for another type's dot4", tn);
    }
    if (lg_amx_ok())
        CHECK_MSG(lg_gemm_q_for(LG_QTYPE_Q4_0, LG_WLAYOUT_R8, k->vec_dot4[LG_QTYPE_Q4_0], 64) ==
                      lg_gemm_r8_amx(LG_QTYPE_Q4_0, 64),
                  "Q4_0: 64 tokens not on AMX");
    /* the name users see says AMX exactly when the table uses it */
    CHECK_EQ_STR(lg_kern_isa_label(k), lg_amx_ok() ? "avx512+amx" : "avx512");
    CHECK_EQ_STR(lg_kern_isa_label(lg_kern_ref()), "ref");
    const struct lg_kern *k2 = lg_kern_select("avx2");
    if (k2)
        CHECK_EQ_STR(lg_kern_isa_label(k2), "avx2");
}

/* LG_AMX=0 in a fresh process (the answer is decided once per process). */
static void test_env(void)
{
    const int ok = lg_amx_ok();
    CHECK(lg_amx_ok() == ok);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* a child of a process that already decided sees the decision; so exec ourselves */
        setenv("LG_AMX", "0", 1);
        execl("/proc/self/exe", "test_amx", "--amx-state", (char *)NULL);
        _exit(3);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "with LG_AMX=0 the child says AMX is %s",
              WIFEXITED(st) && WEXITSTATUS(st) == 1 ? "usable" : "(child failed)");
}

/* ---- whole models ------------------------------------------------------------------------ */

enum { N_PROMPT = 9, N_DEC = 3, N_CTX = 32 };

/* Logits [N_PROMPT + N_DEC][V] of this file's token sequence: a prefill with all logits,
 * then decode steps (tests/model_run.h). */
static int run_model(struct lg_model *m, float *out)
{
    const int64_t V = m->cfg.n_vocab;
    int32_t tok[N_PROMPT + N_DEC];
    for (int i = 0; i < N_PROMPT + N_DEC; i++)
        tok[i] = (int32_t)((11 + 97 * i + 13 * i * i) % (V - 2)) + 1;
    return lg_test_run_model(m, lg_kern_get(), tok, N_PROMPT, N_DEC, N_CTX, out);
}

static void check_model(const char *path)
{
    struct lg_model *m0 = lg_test_open_model(path, 0), *m1 = lg_test_open_model(path, 1);
    CHECK_MSG(m0 && m1, "%s: cannot open", path);
    if (m0 && m1) {
        CHECK_MSG(lg_model_repacked_bytes(m1) > 0, "%s: nothing repacked", path);
        const size_t n = (size_t)(N_PROMPT + N_DEC) * (size_t)m0->cfg.n_vocab;
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
        if (a && b) {
            for (size_t i = 0; i < n; i++)
                a[i] = b[i] = NAN;
            const int ok = run_model(m0, a) && run_model(m1, b);
            CHECK_MSG(ok, "%s: forward failed", path);
            size_t diff = 0, nan = 0;
            for (size_t i = 0; ok && i < n; i++) {
                diff += memcmp(&a[i], &b[i], sizeof(float)) != 0;
                nan += isnan(a[i]) != 0;
            }
            CHECK_MSG(ok && nan == 0, "%s: %zu NaN logits", path, nan);
            CHECK_MSG(ok && diff == 0, "%s: %zu of %zu logits differ with R8 + AMX", path, diff, n);
        }
        free(a);
        free(b);
    }
    lg_model_close(m0);
    lg_model_close(m1);
}

static void test_models(void)
{
    char path[512], q4[512];
    const char *dir = lg_test_data_dir();
    snprintf(path, sizeof path, "%s/golden/model/gemma4_e2b.q8_0.gguf", dir);
    check_model(path);
    snprintf(path, sizeof path, "%s/golden/model/gemma4_e2b.f32.gguf", dir);
    snprintf(q4, sizeof q4, "/tmp/test_amx_%d.q4_0.gguf", (int)getpid());
    struct lg_quant_file_opts o = {
        .ftype = LG_FTYPE_Q4_0, .base_type = LG_QTYPE_Q4_0, .pure = true, .n_threads = 1};
    struct lg_err err = {0};
    enum lg_status st = lg_quant_file(path, q4, &o, NULL, &err);
    CHECK_MSG(st == LG_OK, "quantize %s: %s", path, err.msg);
    if (st == LG_OK)
        check_model(q4);
    unlink(q4);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--amx-state") == 0) /* the child of test_env */
        return lg_amx_ok() ? 1 : 0;
    lg_test_rand_seed(42);
    test_env();
    test_dispatch();
    if (!lg_amx_ok()) {
        printf("test_amx: AMX not usable here (CPU, OS or LG_AMX=0): kernels not run\n");
    } else {
        printf("test_amx: AMX usable: kernels against the reference\n");
        test_kernels(LG_QTYPE_Q4_0);
        test_kernels(LG_QTYPE_Q8_0);
        test_models();
    }
    return lg_test_done("test_amx");
}
