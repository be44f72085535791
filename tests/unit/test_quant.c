/* test_quant.c: the type table, row sizes, f16/bf16 conversions, and our reference
 * dequantizers/quantizers against gguf-py bit for bit (golden files from
 * tools/make-quant-golden.py in tests/golden/quant/).
 *
 * gguf-py 0.19 dequantizes F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K..Q6_K IQ4_NL IQ4_XS
 * MXFP4 (all checked here) but not Q8_K or Q8_1 (checked by round trip in test_quant_rt.c).
 * It quantizes F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 MXFP4 (checked here byte for byte) but no
 * K-quant and not IQ4_NL/IQ4_XS: those (and the legacy types again, on signed-zero blocks)
 * are checked byte for byte against ggml's own reference quantizers (qg_*.bin, made with
 * the prebuilt libggml of PyPI's libggml-python; MXFP4 there too), and by error bounds in
 * test_quant_rt.c.
 */
#include <stdint.h>
#include <string.h>

#include "quant/quant.h"
#include "test.h"

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_table(void)
{
    static const struct {
        uint32_t id;
        const char *name;
        uint32_t bs, ts;
        bool deq;
    } want[] = {
        {0, "F32", 1, 4, true},       {1, "F16", 1, 2, true},
        {2, "Q4_0", 32, 18, true},    {3, "Q4_1", 32, 20, true},
        {6, "Q5_0", 32, 22, true},    {7, "Q5_1", 32, 24, true},
        {8, "Q8_0", 32, 34, true},    {9, "Q8_1", 32, 36, true},
        {10, "Q2_K", 256, 84, true},  {11, "Q3_K", 256, 110, true},
        {12, "Q4_K", 256, 144, true}, {13, "Q5_K", 256, 176, true},
        {14, "Q6_K", 256, 210, true}, {15, "Q8_K", 256, 292, true},
        {16, "IQ2_XXS", 256, 66, false}, {17, "IQ2_XS", 256, 74, false},
        {18, "IQ3_XXS", 256, 98, false}, {19, "IQ1_S", 256, 50, false},
        {20, "IQ4_NL", 32, 18, true},  {21, "IQ3_S", 256, 110, false},
        {22, "IQ2_S", 256, 82, false}, {23, "IQ4_XS", 256, 136, true},
        {24, "I8", 1, 1, false},       {25, "I16", 1, 2, false},
        {26, "I32", 1, 4, false},      {27, "I64", 1, 8, false},
        {28, "F64", 1, 8, false},      {29, "IQ1_M", 256, 56, false},
        {30, "BF16", 1, 2, true},      {34, "TQ1_0", 256, 54, false},
        {35, "TQ2_0", 256, 66, false}, {39, "MXFP4", 32, 17, true},
        {40, "NVFP4", 64, 36, false},  {41, "Q1_0", 128, 18, false},
    };
    int n_known = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct lg_qtype_info *q = lg_qtype_get(want[i].id);
        CHECK_MSG(q != NULL, "type %u", want[i].id);
        if (!q)
            continue;
        n_known++;
        CHECK_EQ_STR(q->name, want[i].name);
        CHECK_EQ_INT(q->block_size, want[i].bs);
        CHECK_EQ_INT(q->type_size, want[i].ts);
        CHECK_MSG(q->can_dequant == want[i].deq, "%s can_dequant", want[i].name);
        CHECK_EQ_INT(lg_qtype_from_name(want[i].name), want[i].id);
    }
    /* holes and out-of-range ids */
    static const uint32_t holes[] = {4, 5, 31, 32, 33, 36, 37, 38, 42, 255, 0xffffffffu};
    for (size_t i = 0; i < sizeof holes / sizeof holes[0]; i++) {
        CHECK_MSG(lg_qtype_get(holes[i]) == NULL, "hole %u", holes[i]);
        uint64_t out = 7;
        CHECK_EQ_INT(lg_qtype_row_bytes(holes[i], 32, &out), LG_ERR_UNSUPPORTED);
        CHECK_EQ_INT(out, 7);
        float dst[32];
        CHECK_EQ_INT(lg_dequant_row_checked(holes[i], dst, dst, 32), LG_ERR_UNSUPPORTED);
    }
    int n_ids = 0;
    for (uint32_t t = 0; t < 64; t++)
        n_ids += lg_qtype_get(t) != NULL;
    CHECK_EQ_INT(n_ids, n_known);
    /* names: case-insensitive, exact length */
    CHECK_EQ_INT(lg_qtype_from_name("q4_k"), LG_QTYPE_Q4_K);
    CHECK_EQ_INT(lg_qtype_from_name("Bf16"), LG_QTYPE_BF16);
    CHECK_EQ_INT(lg_qtype_from_name("mxfp4"), LG_QTYPE_MXFP4);
    CHECK_EQ_INT(lg_qtype_from_name("Q4_K_M"), -1);
    CHECK_EQ_INT(lg_qtype_from_name("Q4"), -1);
    CHECK_EQ_INT(lg_qtype_from_name(""), -1);
    CHECK_EQ_INT(lg_qtype_from_name(NULL), -1);
    CHECK_EQ_INT(lg_qtype_from_name("F32 "), -1);
    /* can_quant where we claim it */
    static const uint32_t quantable[] = {0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 20, 30};
    for (size_t i = 0; i < sizeof quantable / sizeof quantable[0]; i++)
        CHECK_MSG(lg_qtype_get(quantable[i])->can_quant, "can_quant %u", quantable[i]);
}

static void test_row_bytes(void)
{
    uint64_t out = 0;
    CHECK_EQ_INT(lg_qtype_row_bytes(LG_QTYPE_Q4_0, 64, &out), LG_OK);
    CHECK_EQ_INT(out, 36);
    CHECK_EQ_INT(lg_qtype_row_bytes(LG_QTYPE_Q6_K, 640 * 256, &out), LG_OK);
    CHECK_EQ_INT(out, 640 * 210);
    CHECK_EQ_INT(lg_qtype_row_bytes(LG_QTYPE_F32, 0, &out), LG_OK);
    CHECK_EQ_INT(out, 0);
    CHECK_EQ_INT(lg_qtype_row_bytes(LG_QTYPE_Q4_K, 100, &out), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_qtype_row_bytes(LG_QTYPE_Q8_0, 33, &out), LG_ERR_FORMAT);
    /* overflow: 2^62 f32 elements = 2^64 bytes */
    CHECK_EQ_INT(lg_qtype_row_bytes(LG_QTYPE_F32, (uint64_t)1 << 62, &out), LG_ERR_RANGE);
    CHECK_EQ_INT(lg_qtype_row_bytes(LG_QTYPE_F64, UINT64_MAX, &out), LG_ERR_RANGE);
    CHECK_EQ_INT(lg_qtype_row_bytes(LG_QTYPE_F32, ((uint64_t)1 << 62) - 1, &out), LG_OK);
    CHECK(out == (((uint64_t)1 << 62) - 1) * 4);
    /* largest element count whose byte size still fits, and the next one */
    CHECK_EQ_INT(lg_qtype_row_bytes(LG_QTYPE_F64, UINT64_MAX / 8, &out), LG_OK);
    CHECK(out == UINT64_MAX / 8 * 8);
    CHECK_EQ_INT(lg_qtype_row_bytes(LG_QTYPE_F64, UINT64_MAX / 8 + 1, &out), LG_ERR_RANGE);
    /* a block type never overflows (type_size < block_size), even at the largest multiple */
    CHECK_EQ_INT(lg_qtype_row_bytes(LG_QTYPE_Q6_K, UINT64_MAX / 256 * 256, &out), LG_OK);
    CHECK(out == UINT64_MAX / 256 * 210);
    CHECK_EQ_INT(lg_qtype_row_bytes(LG_QTYPE_Q6_K, 256, NULL), LG_OK);
    /* checked row functions */
    float buf[64];
    uint8_t q[64];
    memset(buf, 0, sizeof buf);
    CHECK_EQ_INT(lg_quant_row_checked(LG_QTYPE_Q8_0, buf, q, 31), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_quant_row_checked(LG_QTYPE_Q8_0, buf, q, -32), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_quant_row_checked(LG_QTYPE_IQ2_XXS, buf, q, 256), LG_ERR_UNSUPPORTED);
    CHECK_EQ_INT(lg_dequant_row_checked(LG_QTYPE_Q8_0, q, buf, 31), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_quant_row_checked(LG_QTYPE_Q8_0, buf, q, 32), LG_OK);
    /* unsupported dequant fills NaN instead of leaving garbage */
    lg_dequant_row(LG_QTYPE_IQ2_XXS, q, buf, 16);
    CHECK(isnan(buf[0]) && isnan(buf[15]));
}

static void test_f16(void)
{
    /* every f16 converts to f32 and back to itself (NaNs stay NaN with their payload) */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lg_f16_to_f32((uint16_t)h);
        uint16_t back = lg_f32_to_f16(f);
        bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan ? (!isnan(f) || (back | 0x200) != (h | 0x200)) : back != h)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(lg_f16_to_f32(0x3c00) == 1.0f);
    CHECK(lg_f16_to_f32(0xc000) == -2.0f);
    CHECK(lg_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(lg_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(lg_f16_to_f32(0x0400) == 0x1p-14f);
    CHECK(isinf(lg_f16_to_f32(0x7c00)) && lg_f16_to_f32(0xfc00) < 0);
    CHECK(f32_bits(lg_f16_to_f32(0x8000)) == 0x80000000u);
    /* rounding: midpoints between neighbours go to the even one; just above goes up */
    bad = 0;
    for (uint32_t h = 0; h < 0x7bff; h++) {
        float lo = lg_f16_to_f32((uint16_t)h), hi = lg_f16_to_f32((uint16_t)(h + 1));
        double mid = ((double)lo + (double)hi) / 2;
        float fmid = (float)mid; /* exact: midpoints of f16 fit in f32 */
        uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        if (lg_f32_to_f16(fmid) != want)
            bad++;
        if (lg_f32_to_f16(nextafterf(fmid, 1e30f)) != h + 1)
            bad++;
        if (lg_f32_to_f16(nextafterf(fmid, -1e30f)) != h)
            bad++;
        if (lg_f32_to_f16(-fmid) != (want | 0x8000))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(lg_f32_to_f16(65519.996f), 0x7bff);
    CHECK_EQ_INT(lg_f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ_INT(lg_f32_to_f16(1e30f), 0x7c00);
    CHECK_EQ_INT(lg_f32_to_f16(-INFINITY), 0xfc00);
    CHECK_EQ_INT(lg_f32_to_f16(0x1p-25f), 0x0000);
    CHECK_EQ_INT(lg_f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    CHECK_EQ_INT(lg_f32_to_f16(1e-30f), 0x0000);
    CHECK_EQ_INT(lg_f32_to_f16(-1e-30f), 0x8000);
    CHECK((lg_f32_to_f16(NAN) & 0x7e00) == 0x7e00);
    /* bf16 */
    CHECK(lg_bf16_to_f32(0x3f80) == 1.0f);
    CHECK_EQ_INT(lg_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(lg_f32_to_bf16(bits_f32(0x3f808000u)), 0x3f80); /* tie to even (down) */
    CHECK_EQ_INT(lg_f32_to_bf16(bits_f32(0x3f818000u)), 0x3f82); /* tie to even (up) */
    CHECK_EQ_INT(lg_f32_to_bf16(bits_f32(0x3f808001u)), 0x3f81);
    CHECK_EQ_INT(lg_f32_to_bf16(bits_f32(0x7f7fffffu)), 0x7f80); /* rounds to inf */
    CHECK_EQ_INT(lg_f32_to_bf16(bits_f32(0x7f800001u)), 0x7fc0); /* sNaN -> quiet */
    CHECK_EQ_INT(lg_f32_to_bf16(bits_f32(0xffc00000u)), 0xffc0);
    CHECK_EQ_INT(lg_f32_to_bf16(bits_f32(0x00000001u)), 0x0000); /* denormal rounds, no flush */
    CHECK_EQ_INT(lg_f32_to_bf16(bits_f32(0x00008001u)), 0x0001);
}

/* ---- golden files ---------------------------------------------------------------------- */

struct golden {
    uint32_t kind, type, n_elems, n_bytes;
    uint8_t *bytes;
    float *floats;
};

static bool read_golden(const char *path, struct golden *g)
{
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char magic[4];
    uint32_t hdr[5];
    bool ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "LGQG", 4) == 0 &&
              fread(hdr, 4, 5, f) == 5 && hdr[0] == 1 && hdr[3] <= (1u << 24) &&
              hdr[4] <= (1u << 26);
    if (ok) {
        g->kind = hdr[1];
        g->type = hdr[2];
        g->n_elems = hdr[3];
        g->n_bytes = hdr[4];
        g->bytes = malloc(g->n_bytes + 1);
        g->floats = malloc((size_t)g->n_elems * 4 + 4);
        ok = g->bytes && g->floats;
        if (ok && g->kind == 0)
            ok = fread(g->bytes, 1, g->n_bytes, f) == g->n_bytes &&
                 fread(g->floats, 4, g->n_elems, f) == g->n_elems;
        else if (ok)
            ok = fread(g->floats, 4, g->n_elems, f) == g->n_elems &&
                 fread(g->bytes, 1, g->n_bytes, f) == g->n_bytes;
        ok = ok && fgetc(f) == EOF;
    }
    fclose(f);
    return ok;
}

static void golden_free(struct golden *g)
{
    free(g->bytes);
    free(g->floats);
}

static void test_golden_dequant(const char *name)
{
    char path[512];
    struct golden g;
    snprintf(path, sizeof path, "%s/golden/quant/deq_%s.bin", lg_test_data_dir(), name);
    bool ok = read_golden(path, &g);
    CHECK_MSG(ok, "cannot read %s", path);
    if (!ok) {
        golden_free(&g);
        return;
    }
    const struct lg_qtype_info *q = lg_qtype_get(g.type);
    CHECK(q && strcmp(q->name, name) == 0 && g.kind == 0);
    uint64_t nb = 0;
    CHECK_EQ_INT(lg_qtype_row_bytes(g.type, g.n_elems, &nb), LG_OK);
    CHECK_EQ_INT(nb, g.n_bytes);
    float *out = malloc((size_t)g.n_elems * 4);
    for (uint32_t i = 0; i < g.n_elems; i++)
        out[i] = NAN;
    enum lg_status st = lg_dequant_row_checked(g.type, g.bytes, out, g.n_elems);
    CHECK_MSG(st == LG_OK, "%s: dequant status %d", name, st);
    uint32_t n_bad = 0, first_bad = 0;
    for (uint32_t i = 0; i < g.n_elems; i++) {
        bool same = f32_bits(out[i]) == f32_bits(g.floats[i]) ||
                    (isnan(out[i]) && isnan(g.floats[i]));
        if (!same && n_bad++ == 0)
            first_bad = i;
    }
    CHECK_MSG(n_bad == 0, "%s: %u of %u differ, first at %u: %.9g vs gguf-py %.9g", name,
              n_bad, g.n_elems, first_bad, out[first_bad], g.floats[first_bad]);
    free(out);
    golden_free(&g);
}

/* prefix "q" = gguf-py's bytes, "qg" = ggml's own reference quantizer's bytes */
static void test_golden_quant(const char *prefix, const char *name)
{
    char path[512];
    struct golden g;
    snprintf(path, sizeof path, "%s/golden/quant/%s_%s.bin", lg_test_data_dir(), prefix, name);
    bool ok = read_golden(path, &g);
    CHECK_MSG(ok, "cannot read %s", path);
    if (!ok) {
        golden_free(&g);
        return;
    }
    const struct lg_qtype_info *q = lg_qtype_get(g.type);
    CHECK(q && strcmp(q->name, name) == 0 && g.kind == 1);
    uint64_t nb = 0;
    CHECK_EQ_INT(lg_qtype_row_bytes(g.type, g.n_elems, &nb), LG_OK);
    CHECK_EQ_INT(nb, g.n_bytes);
    uint8_t *out = malloc(g.n_bytes);
    memset(out, 0xa5, g.n_bytes);
    enum lg_status st = lg_quant_row_checked(g.type, g.floats, out, g.n_elems);
    CHECK_MSG(st == LG_OK, "%s: quant status %d", name, st);
    uint32_t n_bad = 0, first_bad = 0;
    for (uint32_t i = 0; i < g.n_bytes; i++) {
        if (out[i] != g.bytes[i] && n_bad++ == 0)
            first_bad = i;
    }
    CHECK_MSG(n_bad == 0, "%s_%s: %u of %u bytes differ, first at %u (block %u): %02x vs %02x",
              prefix, name, n_bad, g.n_bytes, first_bad, first_bad / q->type_size, out[first_bad],
              g.bytes[first_bad]);
    free(out);
    golden_free(&g);
}

int main(void)
{
    test_table();
    test_row_bytes();
    test_f16();
    static const char *deq[] = {"F32",  "F16",  "BF16", "Q4_0", "Q4_1",   "Q5_0",
                                "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",   "Q5_K",
                                "Q6_K", "IQ4_NL", "IQ4_XS", "MXFP4"};
    for (size_t i = 0; i < sizeof deq / sizeof deq[0]; i++)
        test_golden_dequant(deq[i]);
    static const char *qt[] = {"F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "MXFP4"};
    for (size_t i = 0; i < sizeof qt / sizeof qt[0]; i++)
        test_golden_quant("q", qt[i]);
    static const char *qg[] = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ4_NL",
                               "IQ4_XS", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "MXFP4"};
    for (size_t i = 0; i < sizeof qg / sizeof qg[0]; i++)
        test_golden_quant("qg", qg[i]);
    return lg_test_done("test_quant");
}
