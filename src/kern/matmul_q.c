/* matmul_q.c: the blocked driver around the quantized dot products (see qdot.h): picks the
 * ISA's tiled kernel for the matrix's type and layout, else loops over the dots. */
#include "kern/kern.h"
#include "kern/qdot.h"

/* Weight bytes per row block: small enough to stay in L1/L2 while all tokens of a prefill
 * chunk stream over it. */
enum { BLOCK_BYTES = 24 * 1024 };

#if defined(__x86_64__) || defined(__i386__)
lg_gemm_q_fn lg_qdot_gemm_avx2(uint32_t type, uint32_t layout, lg_vec_dot4_fn dot4,
                               int64_t n_tok);
#endif

lg_gemm_q_fn lg_gemm_q_for(uint32_t type, uint32_t layout, lg_vec_dot4_fn dot4, int64_t n_tok)
{
#if defined(__x86_64__) || defined(__i386__)
    return lg_qdot_gemm_avx2(type, layout, dot4, n_tok);
#else
    (void)type;
    (void)layout;
    (void)dot4;
    (void)n_tok;
    return NULL;
#endif
}

void lg_matmul_q(lg_vec_dot_fn dot, lg_vec_dot4_fn dot4, const struct lg_wmat *w,
                 const void *qx, size_t ldq, float *y, int64_t ldy, int64_t n_tok, int64_t r0,
                 int64_t r1)
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
