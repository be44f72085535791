/* test_gemm.c: the register-tiled quantized GEMMs (kern/gemm_*.c) and their dispatch.
 *
 * For every ISA table this CPU runs and every weight type with a tiled GEMM (Q4_0, Q5_0, Q8_0,
 * Q4_K, Q6_K): lg_gemm_q_for picks the GEMM only for that ISA's own dot4 (never for the scalar
 * table), and the GEMM, called directly and through lg_matmul_q, equals the scalar reference
 * dot of every (row, token) on awkward shapes: rows not a multiple of the 8-row tile, row
 * ranges that start mid-tile, 1..13 tokens (and 67, past the 64-token pass), 1..9 blocks of
 * columns and more than one column chunk, padded activation / output strides. Outputs outside
 * the row range and in the padding must stay untouched (NaN). Three kinds of data: quantized
 * random floats; random block bytes with sane scales; and the i16 worst case (every weight
 * quant at its maximum code, activations at +-127). With GCC (no FP contraction in ISO C
 * mode) the results must be bit-identical to the reference; otherwise within 2e-6 relative.
 * The same holds for the ISA's vec_dot / vec_dot4 of these types (one token and a batch give
 * the same numbers as a prefill chunk).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant.h"
#include "quant/quant_blocks.h"
#include "test.h"

static void fill_floats(float *x, int64_t n)
{
    float scale = 1.0f;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0)
            scale = powf(10.0f, 2.0f * lg_test_frand() - 1.0f);
        x[i] = lg_test_frand() * scale;
    }
}

static const uint32_t gemm_types[] = {LG_QTYPE_Q4_0, LG_QTYPE_Q5_0, LG_QTYPE_Q8_0,
                                      LG_QTYPE_Q4_K, LG_QTYPE_Q6_K};
enum { N_GT = sizeof gemm_types / sizeof gemm_types[0] };

enum { MODE_QUANT, MODE_BYTES, MODE_EXTREME, N_MODES };

static uint16_t small_f16(void)
{
    return lg_f32_to_f16(0.001f + 0.01f * (lg_test_frand() + 1.0f));
}

/* One weight row of type t, n elements, in `mode`. */
static void make_wrow(uint32_t t, int64_t n, int mode, uint8_t *dst, float *tmp)
{
    if (mode == MODE_QUANT) {
        fill_floats(tmp, n);
        lg_quant_row((enum lg_qtype)t, tmp, dst, n);
        return;
    }
    const struct lg_qtype_info *qi = lg_qtype_get(t);
    int64_t nb = n / qi->block_size;
    size_t bs = qi->type_size;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *p = dst + (size_t)b * bs;
        for (size_t i = 0; i < bs; i++)
            p[i] = mode == MODE_EXTREME ? 0xff : (uint8_t)lg_test_rand_u32();
        uint16_t d = small_f16(), dm = small_f16();
        if (t == LG_QTYPE_Q4_0 || t == LG_QTYPE_Q5_0) {
            memcpy(p, &d, 2);
        } else if (t == LG_QTYPE_Q8_0) {
            memcpy(p, &d, 2);
            if (mode == MODE_EXTREME) /* -127 or +127 per element */
                for (int i = 0; i < 32; i++)
                    p[2 + i] = (uint8_t)(int8_t)(lg_test_rand_u32() & 1 ? 127 : -127);
            else
                for (int i = 0; i < 32; i++)
                    if (p[2 + i] == 0x80)
                        p[2 + i] = 0x81; /* Q8_0 quants are in [-127, 127] */
        } else if (t == LG_QTYPE_Q4_K) {
            memcpy(p, &d, 2);
            memcpy(p + 2, &dm, 2);
        } else if (t == LG_QTYPE_Q6_K) {
            memcpy(p + offsetof(struct lg_block_q6_k, d), &d, 2);
            if (mode == MODE_EXTREME) /* scales at -128 / 127 */
                for (int i = 0; i < 16; i++)
                    p[offsetof(struct lg_block_q6_k, scales) + i] =
                        (uint8_t)(int8_t)(lg_test_rand_u32() & 1 ? 127 : -128);
        }
    }
}

/* One activation row for weight type t: random, or +-1 patterns that quantize to +-127. */
static void make_arow(uint32_t t, int64_t n, int mode, uint8_t *dst, float *tmp)
{
    if (mode == MODE_EXTREME) {
        int sgn = lg_test_rand_u32() & 1 ? 1 : -1;
        for (int64_t i = 0; i < n; i++)
            tmp[i] = (float)sgn * (lg_test_rand_u32() % 4 ? 1.0f : -1.0f);
    } else {
        fill_floats(tmp, n);
    }
    lg_act_quantize(t, tmp, dst, n);
}

static int64_t block_of(uint32_t t)
{
    return lg_qtype_get(t)->block_size;
}

/* Runs one shape; returns the number of wrong outputs (and reports the first). */
static int run_shape(const struct lg_kern *k, lg_gemm_q_fn g, uint32_t t, int64_t rows,
                     int64_t nblk, int64_t nt, int64_t r0, int64_t r1, int mode, int via_matmul)
{
    const int64_t cols = nblk * block_of(t);
    uint64_t wb64;
    lg_qtype_row_bytes(t, (uint64_t)cols, &wb64);
    size_t wb = (size_t)wb64, ab = lg_act_row_bytes(t, cols);
    size_t wstride = wb + 4 * (size_t)(lg_test_rand_u32() % 3); /* padded, 4-byte aligned */
    size_t astride = (ab + 3) / 4 * 4 + 4 * (size_t)(lg_test_rand_u32() % 3);
    int64_t ldy = rows + (int64_t)(lg_test_rand_u32() % 5);
    uint8_t *w = malloc(wstride * (size_t)rows + 64), *a = malloc(astride * (size_t)nt + 64);
    float *tmp = malloc((size_t)cols * sizeof(float));
    float *y = malloc((size_t)(ldy * nt) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        make_wrow(t, cols, mode, w + (size_t)r * wstride, tmp);
    for (int64_t j = 0; j < nt; j++)
        make_arow(t, cols, mode, a + (size_t)j * astride, tmp);
    struct lg_wmat m = {.type = t, .data = w, .rows = rows, .cols = cols, .row_bytes = wstride};
    for (int64_t i = 0; i < ldy * nt; i++)
        y[i] = NAN;
    if (via_matmul)
        lg_matmul_q(k->vec_dot[t], k->vec_dot4[t], &m, a, astride, y, ldy, nt, r0, r1);
    else
        g(&m, a, astride, y, ldy, nt, r0, r1);
    int bad = 0;
    for (int64_t j = 0; j < nt; j++)
        for (int64_t r = 0; r < ldy; r++) {
            float got = y[j * ldy + r];
            if (r < r0 || r >= r1) {
                if (!isnan(got)) {
                    if (!bad)
                        fprintf(stderr, "  wrote outside rows: tok %lld row %lld\n",
                                (long long)j, (long long)r);
                    bad++;
                }
                continue;
            }
            const uint8_t *wr = w + (size_t)r * wstride, *ar = a + (size_t)j * astride;
            /* every path (GEMM, one-token kernel, the ISA's dots) equals the reference */
            float want = lg_vec_dot_ref[t](wr, ar, cols);
#if defined(__GNUC__) && !defined(__clang__)
            int ok = memcmp(&got, &want, sizeof got) == 0;
#else
            int ok = fabsf(got - want) <= 2e-6f * (fabsf(want) + 1.0f) * (float)cols;
#endif
            if (!ok) {
                if (!bad)
                    fprintf(stderr, "  tok %lld row %lld: %.9g, ref %.9g\n", (long long)j,
                            (long long)r, (double)got, (double)want);
                bad++;
            }
        }
    free(w);
    free(a);
    free(tmp);
    free(y);
    return bad;
}

/* The ISA's single dots (decode) and dot4 of the GEMM types equal the reference exactly too,
 * so that one token, a batch and a prefill chunk give the same numbers: lengths 1..19 blocks
 * (the AVX2 dots take 8 blocks at a time, then a tail). */
static void test_dots_exact(const struct lg_kern *k)
{
    for (int it = 0; it < N_GT; it++) {
        uint32_t t = gemm_types[it];
        int bad = 0, n_runs = 0;
        for (int64_t nblk = 1; nblk <= 19; nblk += block_of(t) == 256 ? 3 : 1) {
            const int64_t cols = nblk * block_of(t);
            uint64_t wb;
            lg_qtype_row_bytes(t, (uint64_t)cols, &wb);
            size_t ab = lg_act_row_bytes(t, cols);
            uint8_t *w = malloc((size_t)wb), *a = malloc(4 * ab);
            float *tmp = malloc((size_t)cols * sizeof(float)), out[4 * 3];
            int mode = (int)(nblk % N_MODES);
            make_wrow(t, cols, mode, w, tmp);
            for (int j = 0; j < 4; j++)
                make_arow(t, cols, mode, a + (size_t)j * ab, tmp);
            k->vec_dot4[t](w, a, ab, cols, out, 3);
            for (int j = 0; j < 4; j++) {
                float want = lg_vec_dot_ref[t](w, a + (size_t)j * ab, cols);
                float got = k->vec_dot[t](w, a + (size_t)j * ab, cols);
#if defined(__GNUC__) && !defined(__clang__)
                bad += memcmp(&got, &want, sizeof got) != 0;
                bad += memcmp(&out[3 * j], &want, sizeof got) != 0;
#else
                bad += fabsf(got - want) > 2e-6f * (fabsf(want) + 1.0f) * (float)cols;
                bad += out[3 * j] != got;
#endif
                n_runs++;
            }
            free(w);
            free(a);
            free(tmp);
        }
        CHECK_MSG(bad == 0, "[%s] %s vec_dot / vec_dot4 vs reference: %d of %d differ", k->isa,
                  lg_qtype_get(t)->name, bad, 2 * n_runs);
    }
}

static void test_isa(const struct lg_kern *k)
{
    if (k != lg_kern_ref())
        test_dots_exact(k);
    int is_ref = k == lg_kern_ref();
    for (int it = 0; it < N_GT; it++) {
        uint32_t t = gemm_types[it];
        const char *tn = lg_qtype_get(t)->name;
        lg_gemm_q_fn g = lg_gemm_q_for(t, LG_WLAYOUT_ROWS, k->vec_dot4[t], 64);
        if (is_ref) {
            CHECK_MSG(g == NULL, "[ref] %s: a tiled GEMM for the scalar table", tn);
            continue;
        }
        CHECK_MSG(g != NULL, "[%s] %s: no tiled GEMM", k->isa, tn);
        if (!g)
            continue;
        /* a type's GEMM is never picked for another type's dot4 */
        uint32_t other = gemm_types[(it + 1) % N_GT];
        CHECK_MSG(lg_gemm_q_for(t, LG_WLAYOUT_ROWS, k->vec_dot4[other], 64) == NULL, "[%s] %s: wrong dot4 accepted",
                  k->isa, tn);
        int nshapes = 0, bad_shapes = 0;
        /* 1..9 blocks, 1..13 tokens, rows around the tile size, ranges starting mid-tile */
        for (int64_t nblk = 1; nblk <= 9; nblk += (t == LG_QTYPE_Q4_K || t == LG_QTYPE_Q6_K) ? 2 : 1)
            for (int64_t nt = 1; nt <= 13; nt += 1 + (nblk % 2)) {
                int64_t rows = 1 + (int64_t)(lg_test_rand_u32() % 20);
                int64_t r0 = (int64_t)(lg_test_rand_u32() % (uint32_t)rows), r1 = rows;
                if (lg_test_rand_u32() % 2)
                    r1 = r0 + 1 + (int64_t)(lg_test_rand_u32() % (uint32_t)(rows - r0));
                int mode = (int)(lg_test_rand_u32() % N_MODES);
                int bad = run_shape(k, g, t, rows, nblk, nt, r0, r1, mode, 0);
                nshapes++;
                if (bad) {
                    bad_shapes++;
                    fprintf(stderr, "[%s] gemm %s rows %lld [%lld, %lld) blocks %lld tok %lld mode %d: %d wrong\n",
                            k->isa, tn, (long long)rows, (long long)r0, (long long)r1,
                            (long long)nblk, (long long)nt, mode, bad);
                }
            }
        CHECK_MSG(bad_shapes == 0, "[%s] gemm %s: %d of %d shapes wrong", k->isa, tn,
                  bad_shapes, nshapes);
        /* every mode on fixed awkward shapes: full tiles, partial tiles, several column
         * chunks (Q4_0 chunk 64 blocks, Q8_0 32, K-quants 8 super-blocks) and more than one
         * 64-token pass */
        const int64_t big[][5] = {/* rows, blocks (32-el), tokens, r0, r1 */
                                  {16, 1, 2, 0, 16},   {17, 3, 5, 1, 17},   {9, 70, 7, 0, 9},
                                  {24, 65, 4, 5, 21},  {11, 2, 67, 3, 11},  {8, 40, 13, 0, 8}};
        for (int mode = 0; mode < N_MODES; mode++)
            for (int s = 0; s < 6; s++) {
                int64_t nblk = big[s][1];
                if (block_of(t) == 256)
                    nblk = nblk > 8 ? 9 + nblk % 3 : nblk;
                int bad = run_shape(k, g, t, big[s][0], nblk, big[s][2], big[s][3], big[s][4],
                                    mode, 0);
                CHECK_MSG(!bad, "[%s] gemm %s rows %lld [%lld, %lld) blocks %lld tok %lld mode %d: %d wrong",
                          k->isa, tn, (long long)big[s][0], (long long)big[s][3],
                          (long long)big[s][4], (long long)nblk, (long long)big[s][2], mode, bad);
            }
        /* the packed GEMM from 4 tokens on; below, Q5_0 / Q8_0 have an unpacked kernel for one
         * token (Q4_0 decode uses the plain dot: faster end to end, see qdot_avx2.c) */
        CHECK_MSG(lg_gemm_q_for(t, LG_WLAYOUT_ROWS, k->vec_dot4[t], 4) == g, "[%s] %s: no GEMM for 4 tokens",
                  k->isa, tn);
        lg_gemm_q_fn g1 = lg_gemm_q_for(t, LG_WLAYOUT_ROWS, k->vec_dot4[t], 1);
        CHECK_MSG(g1 != g, "[%s] %s: packed GEMM for 1 token", k->isa, tn);
        CHECK_MSG((g1 != NULL) == (t == LG_QTYPE_Q5_0 || t == LG_QTYPE_Q8_0),
                  "[%s] %s: one-token kernel %s", k->isa, tn, g1 ? "present" : "missing");
        if (g1)
            for (int s = 0; s < 12; s++) {
                int64_t rows = 1 + (int64_t)(lg_test_rand_u32() % 20), nblk = 1 + s % 9;
                int64_t r0 = (int64_t)(lg_test_rand_u32() % (uint32_t)rows);
                int64_t nt = 1 + s % 3;
                int mode = s % N_MODES;
                int bad = run_shape(k, g1, t, rows, s == 11 ? 70 : nblk, nt, r0, rows, mode, 0);
                CHECK_MSG(!bad, "[%s] gemv %s rows %lld [%lld, %lld) blocks %lld tok %lld mode %d: %d wrong",
                          k->isa, tn, (long long)rows, (long long)r0, (long long)rows,
                          (long long)nblk, (long long)nt, mode, bad);
            }
        /* through the driver: the GEMM from its threshold on, the other kernels below */
        for (int64_t nt = 1; nt <= 6; nt++) {
            int bad = run_shape(k, g, t, 13, 3, nt, 2, 13, MODE_BYTES, 1);
            CHECK_MSG(!bad, "[%s] matmul_q %s n_tok %lld: %d wrong", k->isa, tn, (long long)nt,
                      bad);
        }
    }
}

int main(void)
{
    lg_test_rand_seed(1);
    const char *isas[] = {"ref", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        const struct lg_kern *k = lg_kern_select(isas[i]);
        if (!k)
            continue;
        printf("test_gemm: isa %s\n", k->isa);
        test_isa(k);
    }
    return lg_test_done("test_gemm");
}
