/* matmul_q.c: the blocked driver around the quantized dot products (see qdot.h): picks the
 * ISA's tiled kernel for the matrix's type and layout, else loops over the dots. The kernel
 * table is recognised by its dot4: the AVX2 ones (kern/qdot_avx2.c), or on the AVX-512 table of
 * a CPU with AVX512-VNNI the aliases lg_qdot_fill_avx512 installs (R8: the VNNI kernels, or
 * for several tokens on a CPU with AMX the tile kernels of kern/gemm_amx.c). */
#include "kern/amx.h"
#include "kern/kern.h"
#include "kern/qdot.h"

/* Weight bytes per row block: small enough to stay in L1/L2 while all tokens of a prefill
 * chunk stream over it. */
enum { BLOCK_BYTES = 24 * 1024 };

#if defined(__x86_64__) || defined(__i386__)
#include <pthread.h>

lg_gemm_q_fn lg_qdot_gemm_avx2(uint32_t type, uint32_t layout, lg_vec_dot4_fn dot4, int64_t n_tok);
void lg_qdot_fill_avx2(lg_vec_dot_fn *dot, lg_vec_dot4_fn *dot4);

/* The AVX-512 table's dot4 for the R8 types: the AVX2 dots under their own addresses, so
 * lg_gemm_q_for can tell that table from the AVX2 one and give it the VNNI R8 kernels
 * (kern/repack_avx512.c). Set only when the CPU has AVX512-VNNI (+ F, BW, VL). */
static lg_vec_dot4_fn avx2_dot4[LG_QTYPE_COUNT];
static pthread_once_t avx2_dot4_once = PTHREAD_ONCE_INIT;

static void avx2_dot4_init(void)
{
    lg_vec_dot_fn d[LG_QTYPE_COUNT] = {0};
    lg_qdot_fill_avx2(d, avx2_dot4);
}

#define VNNI_DOT4(name, T)                                                                         \
    static void name(const void *w, const void *a, size_t lda, int64_t n, float *out, int64_t ldo) \
    {                                                                                              \
        avx2_dot4[T](w, a, lda, n, out, ldo);                                                      \
    }
VNNI_DOT4(vnni_q4_0_x4, LG_QTYPE_Q4_0)
VNNI_DOT4(vnni_q8_0_x4, LG_QTYPE_Q8_0)
VNNI_DOT4(vnni_q4_k_x4, LG_QTYPE_Q4_K)
VNNI_DOT4(vnni_q6_k_x4, LG_QTYPE_Q6_K)
#undef VNNI_DOT4

static lg_vec_dot4_fn vnni_dot4_of(uint32_t type)
{
    switch (type) {
    case LG_QTYPE_Q4_0:
        return vnni_q4_0_x4;
    case LG_QTYPE_Q8_0:
        return vnni_q8_0_x4;
    case LG_QTYPE_Q4_K:
        return vnni_q4_k_x4;
    case LG_QTYPE_Q6_K:
        return vnni_q6_k_x4;
    default:
        return NULL;
    }
}

bool lg_cpu_has_avx512_vnni(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

const char *lg_kern_isa_label(const struct lg_kern *k)
{
    /* the avx512 table is the one with our dot4 (set only on an AVX512-VNNI CPU) */
    if (k->vec_dot4[LG_QTYPE_Q4_0] == vnni_q4_0_x4 && lg_amx_ok())
        return "avx512+amx";
    return k->isa;
}

void lg_qdot_fill_avx512(lg_vec_dot4_fn *dot4)
{
    if (!lg_cpu_has_avx512_vnni())
        return;
    pthread_once(&avx2_dot4_once, avx2_dot4_init);
    for (uint32_t t = 0; t < LG_QTYPE_COUNT; t++)
        if (vnni_dot4_of(t) && avx2_dot4[t])
            dot4[t] = vnni_dot4_of(t);
}
#else
const char *lg_kern_isa_label(const struct lg_kern *k)
{
    return k->isa;
}
#endif

lg_gemm_q_fn lg_gemm_q_for(uint32_t type, uint32_t layout, lg_vec_dot4_fn dot4, int64_t n_tok)
{
#if defined(__x86_64__) || defined(__i386__)
    /* Our dot4 can only be in a table when lg_qdot_fill_avx512 found VNNI on this CPU. */
    if (dot4 && dot4 == vnni_dot4_of(type)) {
        if (layout == LG_WLAYOUT_R8) {
            /* several tokens on an AMX CPU: the tile kernels (kern/gemm_amx.c) */
            lg_gemm_q_fn amx = lg_amx_ok() ? lg_gemm_r8_amx(type, n_tok) : NULL;
            return amx ? amx : lg_gemm_r8_avx512(type);
        }
        return lg_qdot_gemm_avx2(type, layout, avx2_dot4[type], n_tok);
    }
    return lg_qdot_gemm_avx2(type, layout, dot4, n_tok);
#else
    (void)type;
    (void)layout;
    (void)dot4;
    (void)n_tok;
    return NULL;
#endif
}

void lg_matmul_q(lg_vec_dot_fn dot, lg_vec_dot4_fn dot4, const struct lg_wmat *w, const void *qx,
                 size_t ldq, float *y, int64_t ldy, int64_t n_tok, int64_t r0, int64_t r1)
{
    lg_gemm_q_fn g = lg_gemm_q_for(w->type, w->layout, dot4, n_tok);
    if (g) {
        g(w, qx, ldq, y, ldy, n_tok, r0, r1);
        return;
    }
    if (w->layout == LG_WLAYOUT_R8) {
        lg_matmul_r8_ref(w, qx, ldq, y, ldy, n_tok, r0, r1);
        return;
    }
    const uint8_t *base = w->data;
    const uint8_t *ax = qx;
    int64_t rb_n = (int64_t)(BLOCK_BYTES / (w->row_bytes ? w->row_bytes : 1));
    if (rb_n < 1)
        rb_n = 1;
    if (n_tok == 1)
        rb_n = r1 - r0;
    for (int64_t rb = r0; rb < r1; rb += rb_n) {
        int64_t re = rb + rb_n < r1 ? rb + rb_n : r1;
        int64_t t = 0;
        if (dot4)
            for (; t + 4 <= n_tok; t += 4)
                for (int64_t r = rb; r < re; r++)
                    dot4(base + (size_t)r * w->row_bytes, ax + (size_t)t * ldq, ldq, w->cols,
                         y + t * ldy + r, ldy);
        for (; t < n_tok; t++) {
            const uint8_t *a = ax + (size_t)t * ldq;
            float *yt = y + t * ldy;
            for (int64_t r = rb; r < re; r++)
                yt[r] = dot(base + (size_t)r * w->row_bytes, a, w->cols);
        }
    }
}
