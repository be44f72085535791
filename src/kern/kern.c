/* kern.c: picks the kernel table once at start-up.
 *
 * Each ISA file (kern/x_avx2.c, kern/x_avx512.c) defines a filler
 * `void lg_kern_fill_avx2(struct lg_kern *k)` that overwrites the slots it implements. The x86
 * fillers are always built (the Makefile gives each file its ISA's flags) and referenced
 * strongly: a weak reference would not pull their objects out of the static library. The
 * AVX-512 table takes kern/ops_avx512.c's element-wise ops, quantizers and attention
 * (kern/attn_avx512.c), the VNNI R8 kernels (lg_qdot_fill_avx512, kern/matmul_q.c) on a CPU
 * with AVX512-VNNI, and the AVX2 functions in every other slot; it is the automatic choice on a
 * CPU with AVX-512 F/BW/VL/DQ. Selection: LG_ISA=ref|avx2|avx512 when set, else the best ISA
 * the CPU supports.
 * Invariant: every slot of a returned table is non-NULL.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot_more.h"

/* The AVX2 dot products are always built on x86 (kern/qdot_avx2.c), and referenced strongly:
 * a weak reference would not pull their object out of the static library. */
#if defined(__x86_64__) || defined(__i386__)
void lg_qdot_fill_avx2(lg_vec_dot_fn *dot, lg_vec_dot4_fn *dot4);
static void (*const qdot_fill_avx2)(lg_vec_dot_fn *, lg_vec_dot4_fn *) = lg_qdot_fill_avx2;
/* The AVX2 attention (kern/attn_avx2.c), strongly referenced for the same reason. */
static void (*const attn_fill_avx2)(struct lg_kern *) = lg_attn_fill_avx2;
/* The AVX2 element-wise ops and activation quantizers (kern/ops_avx2.c), likewise. */
static void (*const ops_fill_avx2)(struct lg_kern *) = lg_kern_fill_avx2;
/* Q2_K, Q3_K, IQ4_XS, BF16 and F32 dots (kern/qdot_more_avx2.c), likewise. */
static void (*const qdot_more_avx2)(lg_vec_dot_fn *) = lg_qdot_avx2_more;
/* The AVX-512 element-wise ops, quantizers and attention (kern/ops_avx512.c), likewise. */
static void (*const ops_fill_avx512)(struct lg_kern *) = lg_kern_fill_avx512;
#else
static void (*const qdot_fill_avx2)(lg_vec_dot_fn *, lg_vec_dot4_fn *) = NULL;
static void (*const attn_fill_avx2)(struct lg_kern *) = NULL;
static void (*const ops_fill_avx2)(struct lg_kern *) = NULL;
static void (*const qdot_more_avx2)(lg_vec_dot_fn *) = NULL;
static void (*const ops_fill_avx512)(struct lg_kern *) = NULL;
#endif

static struct lg_kern avx2_table, avx512_table;
static const struct lg_kern *auto_table;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* glu_quantize of the ISA tables: composed from each table's own slots. */
static void glu_quantize_avx2(uint32_t w, const float *g, const float *m, void *dst, int64_t n)
{
    lg_kern_glu_quantize_with(&avx2_table, w, g, m, dst, n);
}

static void glu_quantize_avx512(uint32_t w, const float *g, const float *m, void *dst,
                                int64_t n)
{
    lg_kern_glu_quantize_with(&avx512_table, w, g, m, dst, n);
}

static void fill_missing(struct lg_kern *k)
{
    const struct lg_kern *r = lg_kern_ref();
    if (!k->matmul)
        k->matmul = r->matmul;
    if (!k->rmsnorm)
        k->rmsnorm = r->rmsnorm;
    if (!k->rope_neox)
        k->rope_neox = r->rope_neox;
    if (!k->softmax)
        k->softmax = r->softmax;
    if (!k->gelu_tanh)
        k->gelu_tanh = r->gelu_tanh;
    if (!k->mul)
        k->mul = r->mul;
    if (!k->axpy)
        k->axpy = r->axpy;
    if (!k->softcap)
        k->softcap = r->softcap;
    if (!k->act_quantize)
        k->act_quantize = r->act_quantize;
    if (!k->glu_quantize)
        k->glu_quantize = r->glu_quantize;
    if (!k->attention)
        k->attention = r->attention;
    for (int t = 0; t < LG_QTYPE_COUNT; t++)
        if (!k->vec_dot[t])
            k->vec_dot[t] = r->vec_dot[t];
}

static int cpu_has_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static int cpu_has_avx512(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
    return 0;
#endif
}

/* AVX512-VNNI (+ F, BW, VL): the AVX-512 table then has kernels of its own (the R8 ones). */
static int cpu_has_avx512_vnni(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return lg_cpu_has_avx512_vnni();
#else
    return 0;
#endif
}

static void init_tables(void)
{
    memset(&avx2_table, 0, sizeof avx2_table);
    avx2_table.isa = "avx2";
    if (ops_fill_avx2)
        ops_fill_avx2(&avx2_table);
    if (qdot_fill_avx2)
        qdot_fill_avx2(avx2_table.vec_dot, avx2_table.vec_dot4);
    if (qdot_more_avx2)
        qdot_more_avx2(avx2_table.vec_dot);
    if (attn_fill_avx2 && !avx2_table.attention)
        attn_fill_avx2(&avx2_table);
    avx2_table.glu_quantize = glu_quantize_avx2;
    fill_missing(&avx2_table);

    /* AVX-512 machines also run the AVX2 kernels for slots the AVX-512 file leaves empty. */
    memset(&avx512_table, 0, sizeof avx512_table);
    avx512_table.isa = "avx512";
    /* only on an AVX-512 CPU: the filler itself is built with AVX-512 flags */
    if (ops_fill_avx512 && cpu_has_avx512())
        ops_fill_avx512(&avx512_table);
    if (ops_fill_avx2) {
        struct lg_kern tmp;
        memset(&tmp, 0, sizeof tmp);
        ops_fill_avx2(&tmp);
        if (!avx512_table.matmul)
            avx512_table.matmul = tmp.matmul;
        if (!avx512_table.rmsnorm)
            avx512_table.rmsnorm = tmp.rmsnorm;
        if (!avx512_table.gelu_tanh)
            avx512_table.gelu_tanh = tmp.gelu_tanh;
        if (!avx512_table.mul)
            avx512_table.mul = tmp.mul;
        if (!avx512_table.axpy)
            avx512_table.axpy = tmp.axpy;
        if (!avx512_table.softcap)
            avx512_table.softcap = tmp.softcap;
        if (!avx512_table.act_quantize)
            avx512_table.act_quantize = tmp.act_quantize;
        if (!avx512_table.attention)
            avx512_table.attention = tmp.attention;
    }
    if (attn_fill_avx2 && !avx512_table.attention)
        attn_fill_avx2(&avx512_table);
#if defined(__x86_64__) || defined(__i386__)
    lg_qdot_fill_avx512(avx512_table.vec_dot4); /* VNNI R8 kernels (kern/repack_avx512.c) */
#endif
    /* The AVX-512 table's own kernels: kern/ops_avx512.c's slots, and on a CPU with
     * AVX512-VNNI the R8 matrix products (the dot4 above, by which lg_gemm_q_for picks
     * kern/repack_avx512.c for R8 matrices); every other slot holds the AVX2 functions (an
     * AVX-512 CPU runs them). */
    if (qdot_fill_avx2) {
        lg_vec_dot_fn d[LG_QTYPE_COUNT] = {0};
        lg_vec_dot4_fn d4[LG_QTYPE_COUNT] = {0};
        qdot_fill_avx2(d, d4);
        if (qdot_more_avx2)
            qdot_more_avx2(d);
        for (int t = 0; t < LG_QTYPE_COUNT; t++) {
            if (!avx512_table.vec_dot[t])
                avx512_table.vec_dot[t] = d[t];
            if (!avx512_table.vec_dot4[t])
                avx512_table.vec_dot4[t] = d4[t];
        }
    }
    avx512_table.glu_quantize = glu_quantize_avx512;
    fill_missing(&avx512_table);

    const char *env = getenv("LG_ISA");
    const struct lg_kern *t = NULL;
    if (env && *env) {
        if (strcmp(env, "ref") == 0)
            t = lg_kern_ref();
        else if (strcmp(env, "avx2") == 0 && cpu_has_avx2())
            t = &avx2_table;
        else if (strcmp(env, "avx512") == 0 && cpu_has_avx512())
            t = &avx512_table;
    }
    if (!t) {
        if (cpu_has_avx512() && (ops_fill_avx512 || cpu_has_avx512_vnni()))
            t = &avx512_table;
        else if (cpu_has_avx2() && (ops_fill_avx2 || qdot_fill_avx2 || attn_fill_avx2))
            t = &avx2_table;
        else
            t = lg_kern_ref();
    }
    auto_table = t;
}

const struct lg_kern *lg_kern_get(void)
{
    pthread_once(&once, init_tables);
    return auto_table;
}

const struct lg_kern *lg_kern_select(const char *isa)
{
    pthread_once(&once, init_tables);
    if (!isa)
        return auto_table;
    if (strcmp(isa, "ref") == 0)
        return lg_kern_ref();
    if (strcmp(isa, "avx2") == 0)
        return cpu_has_avx2() ? &avx2_table : NULL;
    if (strcmp(isa, "avx512") == 0)
        return cpu_has_avx512() ? &avx512_table : NULL;
    return NULL;
}
