/* test_amx_k.c: the AMX kernels for R8 Q4_K / Q6_K matrices (kern/gemm_k_amx.c).
 *
 * 1. Selection: lg_gemm_r8_amx_k gives a kernel for Q4_K and Q6_K only; where the AMX dispatch
 *    hands out kernels (lg_gemm_r8_amx with many tokens) it hands out these.
 * 2. Kernels (only where lg_amx_ok(): the CPU has AMX-TILE + AMX-INT8, the OS grants the tile
 *    state and LG_AMX is not 0; otherwise skipped with a message): random matrices (quantized
 *    floats; random bytes with finite f16 scales; every quant, scale and min at its extreme with
 *    activations at +-127), rows 8, 16, 24, 264 (an 8-row tail), 256 .. 6400 columns (past a K
 *    chunk, a short last chunk), 1 .. 40 tokens (a token tile, one more, a short last tile with
 *    zero-padded rows), 129, 130 (a last tile of 1, 2 tokens) and 300 (two token passes), row
 *    ranges cut anywhere, padded strides: every output is bit-identical (memcmp) to
 *    lg_vec_dot_ref on the GGUF rows and to lg_matmul_r8_ref; outputs outside the range stay
 *    NaN.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kern/amx.h"
#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant.h"
#include "quant/quant_blocks.h"
#include "test.h"

enum { MODE_QUANT, MODE_BYTES, MODE_EXTREME, N_MODES };

static size_t row_bytes(uint32_t t, int64_t cols)
{
    uint64_t b = 0;
    lg_qtype_row_bytes(t, (uint64_t)cols, &b);
    return (size_t)b;
}

/* One GGUF weight row of type t (Q4_K / Q6_K) in `mode`. */
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
    for (int64_t b = 0; b < cols / LG_QK_K; b++) {
        uint8_t *p = dst + (size_t)b * bs;
        for (size_t i = 0; i < bs; i++)
            p[i] = mode == MODE_EXTREME ? (lg_test_rand_u32() & 1 ? 0xff : 0x00) : (uint8_t)lg_test_rand_u32();
        const uint16_t d = lg_f32_to_f16(0.001f + 0.01f * (lg_test_frand() + 1.0f));
        const uint16_t dm = lg_f32_to_f16(0.001f + 0.01f * (lg_test_frand() + 1.0f));
        if (t == LG_QTYPE_Q6_K) {
            memcpy(p + offsetof(struct lg_block_q6_k, d), &d, 2);
            if (mode == MODE_EXTREME) /* quants 0 / 63 (q -32 / 31), scales -128 / 127 */
                for (int i = 0; i < 16; i++)
                    p[offsetof(struct lg_block_q6_k, scales) + i] =
                        (uint8_t)(int8_t)(lg_test_rand_u32() & 1 ? 127 : -128);
        } else {
            memcpy(p + offsetof(struct lg_block_q4_k, d), &d, 2);
            memcpy(p + offsetof(struct lg_block_q4_k, dmin), &dm, 2);
            if (mode == MODE_EXTREME) { /* quants 15, scales and mins 63 */
                memset(p + offsetof(struct lg_block_q4_k, scales), 0xff, 12);
                memset(p + offsetof(struct lg_block_q4_k, qs), 0xff, 128);
            }
        }
    }
}

/* One Q8_K activation row: random floats, or +-1 patterns that quantize to +-127. */
static void make_arow(uint32_t t, int64_t cols, int mode, uint8_t *dst, float *tmp)
{
    for (int64_t i = 0; i < cols; i++)
        tmp[i] = mode == MODE_EXTREME ? (lg_test_rand_u32() % 3 ? 1.0f : -1.0f) : lg_test_frand() * 3.0f;
    lg_act_quantize(t, tmp, dst, cols);
}

/* Repacks a rows x cols matrix of type t, runs the AMX kernel over [r0, r1) for nt tokens and
 * compares with the references. Returns the number of wrong values. */
static int run_shape(uint32_t t, int64_t rows, int64_t cols, int64_t nt, int64_t r0, int64_t r1,
                     int mode)
{
    const size_t rb = row_bytes(t, cols), ab = lg_act_row_bytes(t, cols);
    const size_t wstride = rb + 2 * (size_t)(lg_test_rand_u32() % 3);
    const size_t astride = (ab + 3) / 4 * 4 + 4 * (size_t)(lg_test_rand_u32() % 3); /* Q8_K: 4-aligned */
    const int64_t ldy = rows + (int64_t)(lg_test_rand_u32() % 4);
    uint8_t *w = malloc(wstride * (size_t)rows), *r8 = malloc(rb * (size_t)rows);
    uint8_t *a = malloc(astride * (size_t)nt);
    float *tmp = malloc((size_t)cols * sizeof(float));
    float *y = malloc((size_t)(ldy * nt) * sizeof(float));
    float *yr = malloc((size_t)(ldy * nt) * sizeof(float));
    if (!w || !r8 || !a || !tmp || !y || !yr) {
        fprintf(stderr, "  out of memory\n");
        free(w), free(r8), free(a), free(tmp), free(y), free(yr);
        return 1;
    }
    int bad = 0;
    for (int64_t r = 0; r < rows; r++)
        make_wrow(t, cols, mode, w + (size_t)r * wstride, tmp);
    for (int64_t j = 0; j < nt; j++)
        make_arow(t, cols, mode, a + (size_t)j * astride, tmp);
    lg_repack_r8(t, w, wstride, r8, cols, 0, rows / 8);
    const struct lg_wmat m = {.type = t,
                              .data = r8,
                              .rows = rows,
                              .cols = cols,
                              .row_bytes = rb,
                              .layout = LG_WLAYOUT_R8};
    for (int64_t i = 0; i < ldy * nt; i++)
        y[i] = yr[i] = NAN;
    lg_gemm_r8_amx_k(t)(&m, a, astride, y, ldy, nt, r0, r1);
    lg_matmul_r8_ref(&m, a, astride, yr, ldy, nt, r0, r1);
    for (int64_t j = 0; j < nt; j++)
        for (int64_t r = 0; r < ldy; r++) {
            const float got = y[j * ldy + r];
            float want = NAN;
            int ok;
            if (r < r0 || r >= r1) {
                ok = isnan(got);
            } else {
                want = lg_vec_dot_ref[t](w + (size_t)r * wstride, a + (size_t)j * astride, cols);
                ok = memcmp(&got, &want, sizeof got) == 0 &&
                     memcmp(&got, &yr[j * ldy + r], sizeof got) == 0;
            }
            if (!ok) {
                if (!bad)
                    fprintf(stderr, "  tok %lld row %lld: %.9g, want %.9g (r8 ref %.9g)\n",
                            (long long)j, (long long)r, (double)got, (double)want,
                            (double)yr[j * ldy + r]);
                bad++;
            }
        }
    free(w), free(r8), free(a), free(tmp), free(y), free(yr);
    return bad;
}

static void test_selection(void)
{
    CHECK(lg_gemm_r8_amx_k(LG_QTYPE_Q4_K) != NULL);
    CHECK(lg_gemm_r8_amx_k(LG_QTYPE_Q6_K) != NULL);
    CHECK(lg_gemm_r8_amx_k(LG_QTYPE_Q4_K) != lg_gemm_r8_amx_k(LG_QTYPE_Q6_K));
    const uint32_t others[] = {LG_QTYPE_Q4_0, LG_QTYPE_Q8_0, LG_QTYPE_Q5_K,
                               LG_QTYPE_Q8_K, LG_QTYPE_F32,  9999};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        CHECK_MSG(lg_gemm_r8_amx_k(others[i]) == NULL, "type %u", (unsigned)others[i]);
    /* the dispatch hands out these kernels wherever it hands out a K-quant kernel */
    const uint32_t kt[] = {LG_QTYPE_Q4_K, LG_QTYPE_Q6_K};
    for (int i = 0; i < 2; i++) {
        lg_gemm_q_fn g = lg_gemm_r8_amx(kt[i], 256);
        CHECK_MSG(g == lg_gemm_r8_amx_k(kt[i]), "%s: lg_gemm_r8_amx gives another kernel",
                  lg_qtype_get(kt[i])->name);
    }
}

static void test_kernels(void)
{
    const uint32_t types[] = {LG_QTYPE_Q4_K, LG_QTYPE_Q6_K};
    for (int it = 0; it < 2; it++) {
        const uint32_t t = types[it];
        const char *tn = lg_qtype_get(t)->name;
        /* fixed shapes: rows, cols, tokens, r0, r1 */
        const int64_t fixed[][5] = {
            {8, 256, 2, 0, 8},      {16, 256, 16, 0, 16},     {16, 512, 17, 0, 16},
            {24, 2048, 33, 0, 24},  {24, 2048, 16, 3, 21},    {264, 2048, 5, 0, 264},
            {264, 6400, 2, 0, 264}, {264, 512, 40, 100, 257}, {8, 6400, 17, 2, 7},
            {16, 1280, 300, 0, 16}, {24, 512, 300, 9, 24},    {264, 256, 64, 8, 264},
            {16, 512, 130, 0, 16},  {24, 1536, 129, 5, 20},   {16, 512, 1, 3, 16}};
        for (size_t s = 0; s < sizeof fixed / sizeof fixed[0]; s++)
            for (int mode = 0; mode < N_MODES; mode++) {
                const int bad = run_shape(t, fixed[s][0], fixed[s][1], fixed[s][2], fixed[s][3],
                                          fixed[s][4], mode);
                CHECK_MSG(!bad, "%s rows %lld [%lld, %lld) cols %lld tok %lld mode %d: %d wrong",
                          tn, (long long)fixed[s][0], (long long)fixed[s][3],
                          (long long)fixed[s][4], (long long)fixed[s][1], (long long)fixed[s][2],
                          mode, bad);
            }
        /* random shapes: every token count 2..40, ranges cut anywhere */
        const int64_t rows_of[] = {8, 16, 24, 264}, cols_of[] = {256, 512, 2048, 6400};
        int bad_shapes = 0, n_shapes = 0;
        for (int64_t nt = 2; nt <= 40; nt++) {
            const int64_t rows = rows_of[lg_test_rand_u32() % 4];
            int64_t cols = cols_of[lg_test_rand_u32() % 4];
            if (rows * cols > 264 * 2048)
                cols = 1024;
            int64_t r0 = (int64_t)(lg_test_rand_u32() % (uint32_t)rows), r1 = rows;
            if (lg_test_rand_u32() % 2)
                r1 = r0 + 1 + (int64_t)(lg_test_rand_u32() % (uint32_t)(rows - r0));
            if (nt % 5 == 0)
                r0 = 0, r1 = rows;
            const int mode = (int)(nt % N_MODES);
            const int bad = run_shape(t, rows, cols, nt, r0, r1, mode);
            n_shapes++;
            if (bad) {
                bad_shapes++;
                fprintf(stderr, "%s rows %lld [%lld, %lld) cols %lld tok %lld mode %d: %d wrong\n",
                        tn, (long long)rows, (long long)r0, (long long)r1, (long long)cols,
                        (long long)nt, mode, bad);
            }
        }
        CHECK_MSG(bad_shapes == 0, "%s: %d of %d random shapes wrong", tn, bad_shapes, n_shapes);
    }
}

int main(void)
{
    lg_test_rand_seed(10);
    test_selection();
    if (!lg_gemm_r8_amx_k(LG_QTYPE_Q4_K) || !lg_gemm_r8_amx_k(LG_QTYPE_Q6_K))
        printf("test_amx_k: no Q4_K / Q6_K kernel (failed above): kernels not run\n");
    else if (lg_amx_ok())
        test_kernels();
    else
        printf("test_amx_k: AMX not usable here (CPU, OS or LG_AMX=0): kernels skipped\n");
    return lg_test_done("test_amx_k");
}
