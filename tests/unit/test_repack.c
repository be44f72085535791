/* test_repack.c: the interleaved 8-row weight layout R8 (kern/repack.c, kern/repack_body.h,
 * model/repack.c).
 *
 * 1. Round trip: for Q4_0, Q8_0, Q4_K and Q6_K matrices, unpacking every row of the R8 copy
 *    gives back its GGUF bytes; the Q4_0 bytes sit where kern/repack.c's diagram says.
 * 2. Kernels: for every kernel table this CPU runs (ref: the scalar R8 path; avx2: the AVX2
 *    R8 kernels; avx512: the VNNI ones of kern/repack_avx512.c when the CPU has AVX512-VNNI,
 *    else the AVX2 ones; called directly and through lg_matmul_q), random matrices (quantized
 *    floats, random bytes incl. Q8_0 -128, and the i16 worst case: every quant and scale at its
 *    extreme, activations at +-127) with awkward shapes (rows 8..48, 32..16640 columns, past
 *    the prepass and L1 chunks, row ranges cut anywhere, 1..70 tokens incl. the decoded-chunk
 *    path of Q4_K / Q6_K, one token over two column chunks (the AVX-512 one-token tiles
 *    resuming from partial sums), padded strides): every output is bit-identical to
 *    lg_vec_dot_ref on the GGUF rows; outputs outside the range stay NaN.
 * 3. Dispatch: lg_gemm_q_for gives the R8 kernel only for the ISA's own dot4, never for the
 *    scalar table, and the VNNI kernel exactly on the avx512 table of a CPU with AVX512-VNNI
 *    (never elsewhere); lg_repack_r8_ok refuses other types and shapes. Without LG_ISA (or
 *    with an empty one) the automatic table is avx512 on a CPU with AVX512-VNNI.
 * 4. Models: the golden fixtures (Q8_0, with MoE experts and a tied output) and a Q4_0 copy
 *    made here are opened with LG_REPACK=0 and with repacking; the forward pass (prefill and
 *    decode) gives bit-identical logits with and without R8, on the CPU's table and on the
 *    scalar table; embeddings stay GGUF rows in the mapping, a tied output gets its own copy,
 *    experts are repacked; the repacked model reports its bytes, the other 0.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "kern/amx.h"
#include "kern/kern.h"
#include "kern/qdot.h"
#include "kv/kv.h"
#include "model/model.h"
#include "quant/quant.h"
#include "quant/quant_blocks.h"
#include "quant/quant_mix.h"
#include "test.h"
#include "model_run.h"

static const uint32_t types[] = {LG_QTYPE_Q4_0, LG_QTYPE_Q8_0, LG_QTYPE_Q4_K, LG_QTYPE_Q6_K};
enum { N_TYPES = 4 };
enum { MODE_QUANT, MODE_BYTES, MODE_EXTREME, N_MODES };

static size_t row_bytes(uint32_t t, int64_t cols)
{
    uint64_t b = 0;
    lg_qtype_row_bytes(t, (uint64_t)cols, &b);
    return (size_t)b;
}

static int64_t block_of(uint32_t t)
{
    return lg_qtype_get(t)->block_size;
}

/* One GGUF weight row of type t in `mode`: random bytes with sane f16 scales; extreme: every
 * quant at its largest magnitude (Q4_0 0 / 15, Q8_0 -128 / 127, Q4_K 15 with 63 scales,
 * Q6_K 63 / 0 with scales -128 / 127). */
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
    for (int64_t b = 0; b < cols / block_of(t); b++) {
        uint8_t *p = dst + (size_t)b * bs;
        for (size_t i = 0; i < bs; i++) {
            uint8_t v = (uint8_t)lg_test_rand_u32();
            if (mode == MODE_EXTREME)
                v = t == LG_QTYPE_Q8_0 ? (uint8_t)(int8_t)(lg_test_rand_u32() & 1 ? 127 : -128)
                                       : (lg_test_rand_u32() & 1 ? 0xff : 0x00);
            p[i] = v;
        }
        uint16_t d = lg_f32_to_f16(0.001f + 0.01f * (lg_test_frand() + 1.0f));
        uint16_t dm = lg_f32_to_f16(0.001f + 0.01f * (lg_test_frand() + 1.0f));
        if (t == LG_QTYPE_Q6_K) {
            memcpy(p + offsetof(struct lg_block_q6_k, d), &d, 2);
            if (mode == MODE_EXTREME)
                for (int i = 0; i < 16; i++)
                    p[offsetof(struct lg_block_q6_k, scales) + i] =
                        (uint8_t)(int8_t)(lg_test_rand_u32() & 1 ? 127 : -128);
        } else {
            memcpy(p, &d, 2);
            if (t == LG_QTYPE_Q4_K) {
                memcpy(p + 2, &dm, 2);
                if (mode == MODE_EXTREME) /* scales and mins at 63 */
                    memset(p + 4, 0xff, 12);
            }
        }
    }
}

/* One activation row: random floats, or +-1 patterns that quantize to +-127. */
static void make_arow(uint32_t t, int64_t cols, int mode, uint8_t *dst, float *tmp)
{
    for (int64_t i = 0; i < cols; i++)
        tmp[i] = mode == MODE_EXTREME ? (lg_test_rand_u32() % 3 ? 1.0f : -1.0f) : lg_test_frand() * 3.0f;
    lg_act_quantize(t, tmp, dst, cols);
}

static int same_float(float a, float b)
{
#if defined(__GNUC__) && !defined(__clang__)
    return memcmp(&a, &b, sizeof a) == 0;
#else
    return fabsf(a - b) <= 2e-6f * (fabsf(b) + 1.0f) * 4096.0f;
#endif
}

/* Repacks a rows x cols matrix of type t; checks the round trip; runs the product (g, or
 * lg_matmul_q when g is NULL) over [r0, r1) for nt tokens. Returns the number of wrong values. */
static int run_shape(const struct lg_kern *k, lg_gemm_q_fn g, uint32_t t, int64_t rows,
                     int64_t cols, int64_t nt, int64_t r0, int64_t r1, int mode)
{
    const size_t rb = row_bytes(t, cols), ab = lg_act_row_bytes(t, cols);
    const size_t wstride = rb + 2 * (size_t)(lg_test_rand_u32() % 3);               /* GGUF rows, padded */
    const size_t astride = (ab + 3) / 4 * 4 + 4 * (size_t)(lg_test_rand_u32() % 3); /* Q8_K: 4-aligned */
    const int64_t ldy = rows + (int64_t)(lg_test_rand_u32() % 4);
    uint8_t *w = malloc(wstride * (size_t)rows), *r8 = malloc(rb * (size_t)rows);
    uint8_t *a = malloc(astride * (size_t)nt), *row = malloc(rb);
    float *tmp = malloc((size_t)cols * sizeof(float)),
          *y = malloc((size_t)(ldy * nt) * sizeof(float));
    int bad = 0;
    for (int64_t r = 0; r < rows; r++)
        make_wrow(t, cols, mode, w + (size_t)r * wstride, tmp);
    for (int64_t j = 0; j < nt; j++)
        make_arow(t, cols, mode, a + (size_t)j * astride, tmp);
    memset(r8, 0xa5, rb * (size_t)rows);
    /* in two calls, as the loader's threads split the groups */
    int64_t ng = rows / 8, gm = ng / 2;
    lg_repack_r8(t, w, wstride, r8, cols, 0, gm);
    lg_repack_r8(t, w, wstride, r8, cols, gm, ng);
    struct lg_wmat m = {.type = t,
                        .data = r8,
                        .rows = rows,
                        .cols = cols,
                        .row_bytes = rb,
                        .layout = LG_WLAYOUT_R8};
    for (int64_t r = 0; r < rows; r++) {
        lg_unpack_r8_row(&m, r, row);
        if (memcmp(row, w + (size_t)r * wstride, rb) != 0) {
            if (!bad)
                fprintf(stderr, "  round trip: row %lld differs\n", (long long)r);
            bad++;
        }
    }
    for (int64_t i = 0; i < ldy * nt; i++)
        y[i] = NAN;
    if (g)
        g(&m, a, astride, y, ldy, nt, r0, r1);
    else
        lg_matmul_q(k->vec_dot[t], k->vec_dot4[t], &m, a, astride, y, ldy, nt, r0, r1);
    for (int64_t j = 0; j < nt; j++)
        for (int64_t r = 0; r < ldy; r++) {
            float got = y[j * ldy + r];
            int ok;
            float want = NAN;
            if (r < r0 || r >= r1) {
                ok = isnan(got);
            } else {
                want = lg_vec_dot_ref[t](w + (size_t)r * wstride, a + (size_t)j * astride, cols);
                ok = same_float(got, want);
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
    free(row);
    free(tmp);
    free(y);
    return bad;
}

static void test_ok_rules(void)
{
    CHECK(lg_repack_r8_ok(LG_QTYPE_Q4_0, 8, 32));
    CHECK(lg_repack_r8_ok(LG_QTYPE_Q8_0, 4096, 4096));
    CHECK(!lg_repack_r8_ok(LG_QTYPE_Q4_0, 12, 32));
    CHECK(!lg_repack_r8_ok(LG_QTYPE_Q8_0, 0, 32));
    CHECK(!lg_repack_r8_ok(LG_QTYPE_Q4_0, 8, 48));
    CHECK(lg_repack_r8_ok(LG_QTYPE_Q4_K, 8, 256));
    CHECK(lg_repack_r8_ok(LG_QTYPE_Q6_K, 16, 512));
    CHECK(!lg_repack_r8_ok(LG_QTYPE_Q6_K, 16, 288));
    CHECK(!lg_repack_r8_ok(LG_QTYPE_Q5_K, 8, 256));
    CHECK(!lg_repack_r8_ok(LG_QTYPE_F32, 8, 32));
    CHECK_EQ_INT(lg_repack_r8_group_bytes(LG_QTYPE_Q4_0, 64), 8 * 2 * 18);
    CHECK_EQ_INT(lg_repack_r8_group_bytes(LG_QTYPE_Q8_0, 64), 8 * 2 * 34);
    CHECK_EQ_INT(lg_repack_r8_group_bytes(LG_QTYPE_Q6_K, 256), 8 * 210);
    CHECK_EQ_INT(lg_repack_r8_group_bytes(LG_QTYPE_Q5_K, 256), 0);
}

/* The R8 bytes themselves, against the layout the file comment of kern/repack.c draws. */
static void test_layout(void)
{
    uint8_t w[16 * 2 * 18], r8[sizeof w];
    for (size_t i = 0; i < sizeof w; i++)
        w[i] = (uint8_t)(i * 7 + 3);
    lg_repack_r8(LG_QTYPE_Q4_0, w, 2 * 18, r8, 64, 0, 2);
    int bad = 0;
    for (int g = 0; g < 2; g++)
        for (int b = 0; b < 2; b++) {
            const uint8_t *o = r8 + g * 8 * 36 + b * 144;
            for (int j = 0; j < 8; j++) {
                const uint8_t *x = w + (8 * g + j) * 36 + b * 18;
                bad += memcmp(o + 2 * j, x, 2) != 0;
                for (int k = 0; k < 4; k++)
                    bad += memcmp(o + 16 + 32 * k + 4 * j, x + 2 + 4 * k, 4) != 0;
            }
        }
    CHECK_MSG(bad == 0, "Q4_0 R8 bytes: %d pieces misplaced", bad);
}

static void test_isa(const struct lg_kern *k)
{
    const int is_ref = k == lg_kern_ref();
    for (int it = 0; it < N_TYPES; it++) {
        const uint32_t t = types[it];
        const char *tn = lg_qtype_get(t)->name;
        lg_gemm_q_fn g = lg_gemm_q_for(t, LG_WLAYOUT_R8, k->vec_dot4[t], 1);
        if (is_ref) {
            CHECK_MSG(g == NULL, "[ref] %s: an R8 kernel for the scalar table", tn);
        } else {
            CHECK_MSG(g != NULL, "[%s] %s: no R8 kernel", k->isa, tn);
            const int vnni = strcmp(k->isa, "avx512") == 0 && lg_cpu_has_avx512_vnni();
            CHECK_MSG(g == (vnni ? lg_gemm_r8_avx512(t) : lg_gemm_r8_avx2(t)),
                      "[%s] %s: not the %s R8 kernel", k->isa, tn, vnni ? "VNNI" : "AVX2");
            CHECK_MSG(lg_gemm_q_for(t, LG_WLAYOUT_R8, k->vec_dot4[types[(it + 1) % N_TYPES]], 1) ==
                          NULL,
                      "[%s] %s: R8 kernel for another type's dot4", k->isa, tn);
            /* 70 tokens: the same kernel, or on an AMX CPU the tile kernel (kern/amx.h) */
            lg_gemm_q_fn amx70 = vnni && lg_amx_ok() ? lg_gemm_r8_amx(t, 70) : NULL;
            CHECK_MSG(lg_gemm_q_for(t, LG_WLAYOUT_R8, k->vec_dot4[t], 70) == (amx70 ? amx70 : g),
                      "[%s] %s: not the expected R8 kernel for 70 tokens", k->isa, tn);
        }
        /* random shapes: rows 8..48, 1..130 blocks (and 4096 columns), ranges cut anywhere */
        int nshapes = 0, bad_shapes = 0;
        const int64_t toks[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 33, 64, 67, 70};
        for (int s = 0; s < 56; s++) {
            int64_t rows = 8 * (1 + (int64_t)(lg_test_rand_u32() % 6));
            int64_t nblk = s % 7 == 0 ? 128 : 1 + (int64_t)(lg_test_rand_u32() % 70);
            int64_t nt = toks[s % 14];
            if (nt > 13 && nblk > 40)
                nblk = 40;
            if (block_of(t) == 256) /* super-blocks: 1..17 (more than one L1 chunk) */
                nblk = 8 * (1 + nblk % 17);
            int64_t r0 = (int64_t)(lg_test_rand_u32() % (uint32_t)rows), r1 = rows;
            if (lg_test_rand_u32() % 2)
                r1 = r0 + 1 + (int64_t)(lg_test_rand_u32() % (uint32_t)(rows - r0));
            if (s % 5 == 0) {
                r0 = 0;
                r1 = rows;
            }
            int mode = s % N_MODES;
            int via = is_ref || s % 3 == 0; /* through lg_matmul_q */
            int bad = run_shape(k, via ? NULL : g, t, rows, 32 * nblk, nt, r0, r1, mode);
            nshapes++;
            if (bad) {
                bad_shapes++;
                fprintf(stderr,
                        "[%s] %s rows %lld [%lld, %lld) cols %lld tok %lld mode %d%s: "
                        "%d wrong\n",
                        k->isa, tn, (long long)rows, (long long)r0, (long long)r1,
                        (long long)(32 * nblk), (long long)nt, mode, via ? " (matmul_q)" : "", bad);
            }
        }
        CHECK_MSG(bad_shapes == 0, "[%s] R8 %s: %d of %d shapes wrong", k->isa, tn, bad_shapes,
                  nshapes);
        /* fixed shapes: 4096 columns, one group, past the 4096-entry prepass (8 tokens x 520
         * blocks), the i16 worst case on long rows */
        const int64_t fixed[][5] = {/* rows, cols, tokens, r0, r1 */
                                    {8, 4096, 1, 0, 8},    {16, 4096, 3, 4, 13},
                                    {24, 16640, 8, 0, 24}, {16, 16640, 1, 3, 16},
                                    {8, 256, 70, 1, 7},    {40, 2048, 5, 8, 40}};
        for (int s = 0; s < 6; s++)
            for (int mode = 0; mode < N_MODES; mode++) {
                int bad = run_shape(k, is_ref ? NULL : g, t, fixed[s][0], fixed[s][1], fixed[s][2],
                                    fixed[s][3], fixed[s][4], mode);
                CHECK_MSG(!bad,
                          "[%s] R8 %s rows %lld [%lld, %lld) cols %lld tok %lld mode %d: "
                          "%d wrong",
                          k->isa, tn, (long long)fixed[s][0], (long long)fixed[s][3],
                          (long long)fixed[s][4], (long long)fixed[s][1], (long long)fixed[s][2],
                          mode, bad);
            }
        /* one token past the prepass (2049 blocks: a second column chunk, so the one-token
         * tiles resume from partial sums), rows cut at both ends */
        for (int mode = 0; mode < N_MODES; mode++) {
            const int64_t cols = 2049 * block_of(t);
            int bad = run_shape(k, is_ref ? NULL : g, t, 16, cols, 1, 3, 13, mode);
            CHECK_MSG(!bad, "[%s] R8 %s one token, %lld columns, mode %d: %d wrong", k->isa, tn,
                      (long long)cols, mode, bad);
        }
    }
}

/* ---- whole models ------------------------------------------------------------------------ */

enum { N_PROMPT = 9, N_DEC = 3, N_CTX = 32 };

/* Logits [N_PROMPT + N_DEC][V] of this file's token sequence: a prefill with all logits,
 * then decode steps (tests/model_run.h). */
static int run_model(struct lg_model *m, const struct lg_kern *k, float *out)
{
    const int64_t V = m->cfg.n_vocab;
    int32_t tok[N_PROMPT + N_DEC];
    for (int i = 0; i < N_PROMPT + N_DEC; i++)
        tok[i] = (int32_t)((7 + 131 * i + 17 * i * i) % (V - 2)) + 1;
    return lg_test_run_model(m, k, tok, N_PROMPT, N_DEC, N_CTX, out);
}

/* Counts the model's R8 matrices (experts tensors count once). */
static int count_r8(const struct lg_model *m)
{
    int n = m->output.layout == LG_WLAYOUT_R8;
    n += m->tok_embd.layout == LG_WLAYOUT_R8 ? 1000 : 0; /* never */
    n += m->ple_tok.layout == LG_WLAYOUT_R8 ? 1000 : 0;  /* never */
    for (int32_t il = 0; il < m->cfg.n_layer; il++) {
        const struct lg_layer_w *w = &m->layers[il];
        n += (w->wq.layout == LG_WLAYOUT_R8) + (w->ffn_gate.layout == LG_WLAYOUT_R8) +
             (w->ffn_down.layout == LG_WLAYOUT_R8) + (w->gate_up_exps.mat.layout == LG_WLAYOUT_R8);
    }
    return n;
}

static void check_model(const char *path, int expect_experts)
{
    struct lg_model *m0 = lg_test_open_model(path, 0), *m1 = lg_test_open_model(path, 1);
    CHECK_MSG(m0 && m1, "%s: cannot open", path);
    if (!m0 || !m1)
        goto out;
    CHECK_MSG(lg_model_repacked_bytes(m0) == 0, "%s: LG_REPACK=0 repacked %zu bytes", path,
              lg_model_repacked_bytes(m0));
    CHECK_MSG(count_r8(m0) == 0, "%s: R8 matrices with LG_REPACK=0", path);
    const struct lg_kern *kauto = lg_kern_get();
    const int avx = strcmp(kauto->isa, "ref") != 0;
    if (avx) {
        CHECK_MSG(lg_model_repacked_bytes(m1) > 0, "%s: nothing repacked", path);
        int n = count_r8(m1);
        CHECK_MSG(n > 0 && n < 1000, "%s: %d R8 matrices (embeddings must stay rows)", path, n);
        CHECK_MSG(m1->tok_embd.layout == LG_WLAYOUT_ROWS, "%s: embedding repacked", path);
        /* the embedding still reads the mapping; a tied output has its own R8 copy */
        const struct lg_gguf_tensor *te = lg_gguf_find_tensor(m1->gguf, "token_embd.weight");
        CHECK_MSG(te && m1->tok_embd.data == te->data, "%s: embedding not in the mapping", path);
        if (!lg_gguf_find_tensor(m1->gguf, "output.weight") &&
            lg_repack_r8_ok(m1->output.type, m1->output.rows, m1->output.cols))
            CHECK_MSG(m1->output.layout == LG_WLAYOUT_R8 && m1->output.data != te->data,
                      "%s: tied output not repacked", path);
        if (expect_experts) /* the fixture's fused gate/up experts are Q8_0 [8][32, 32] */
            for (int32_t il = 0; il < m1->cfg.n_layer; il++)
                if (m1->cfg.layers[il].has_moe)
                    CHECK_MSG(m1->layers[il].gate_up_exps.mat.layout == LG_WLAYOUT_R8,
                              "%s: layer %d experts not repacked", path, (int)il);
    }
    const int64_t V = m0->cfg.n_vocab;
    const size_t n = (size_t)(N_PROMPT + N_DEC) * (size_t)V;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    float *c = malloc(n * sizeof(float)), *d = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        a[i] = b[i] = c[i] = d[i] = NAN;
    /* the CPU's table without / with R8; the scalar table without / with R8 */
    int ok = run_model(m0, kauto, a) && run_model(m1, kauto, b) &&
             run_model(m0, lg_kern_ref(), c) && run_model(m1, lg_kern_ref(), d);
    CHECK_MSG(ok, "%s: forward failed", path);
    if (ok) {
        size_t d1 = 0, d2 = 0, nan = 0;
        for (size_t i = 0; i < n; i++) {
            d1 += memcmp(&a[i], &b[i], sizeof(float)) != 0;
            d2 += !same_float(c[i], d[i]);
            nan += isnan(a[i]) || isnan(c[i]);
        }
        CHECK_MSG(nan == 0, "%s: %zu NaN logits", path, nan);
        CHECK_MSG(d1 == 0, "%s: %zu of %zu logits differ with repacking (%s)", path, d1, n,
                  kauto->isa);
        CHECK_MSG(d2 == 0, "%s: %zu of %zu logits differ with repacking (ref)", path, d2, n);
    }
    free(a);
    free(b);
    free(c);
    free(d);
out:
    lg_model_close(m0);
    lg_model_close(m1);
}

static void test_models(void)
{
    char path[512], q4[512];
    const char *dir = lg_test_data_dir();
    snprintf(path, sizeof path, "%s/golden/model/gemma4_e2b.q8_0.gguf", dir);
    check_model(path, 0);
    snprintf(path, sizeof path, "%s/golden/model/gemma4_26b.q8_0.gguf", dir);
    check_model(path, 1);
    snprintf(path, sizeof path, "%s/golden/model/gemma3.q8_0.gguf", dir);
    check_model(path, 0);
    /* a Q4_0 model: the E2B fixture requantized (pure Q4_0 where the shapes allow) */
    snprintf(path, sizeof path, "%s/golden/model/gemma4_e2b.f32.gguf", dir);
    snprintf(q4, sizeof q4, "/tmp/test_repack_%d.q4_0.gguf", (int)getpid());
    struct lg_quant_file_opts o = {
        .ftype = LG_FTYPE_Q4_0, .base_type = LG_QTYPE_Q4_0, .pure = true, .n_threads = 1};
    struct lg_err err = {0};
    enum lg_status st = lg_quant_file(path, q4, &o, NULL, &err);
    CHECK_MSG(st == LG_OK, "quantize %s: %s", path, err.msg);
    if (st == LG_OK)
        check_model(q4, 0);
    unlink(q4);
}

/* The automatic choice: the avx512 table (with its VNNI R8 kernels) on a CPU with
 * AVX512-VNNI, when LG_ISA does not choose. */
static void test_auto_isa(void)
{
    const char *env = getenv("LG_ISA");
    if (env && *env)
        return;
    const struct lg_kern *k = lg_kern_get();
    if (lg_cpu_has_avx512_vnni())
        CHECK_MSG(strcmp(k->isa, "avx512") == 0, "automatic table %s on an AVX512-VNNI CPU",
                  k->isa);
    CHECK_MSG(k == lg_kern_select(NULL), "lg_kern_select(NULL) is not the automatic table");
}

int main(void)
{
    lg_test_rand_seed(8);
    test_ok_rules();
    test_layout();
    test_auto_isa();
    const char *isas[] = {"ref", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        const struct lg_kern *k = lg_kern_select(isas[i]);
        if (!k)
            continue;
        printf("test_repack: isa %s\n", k->isa);
        test_isa(k);
    }
    test_models();
    return lg_test_done("test_repack");
}
