/* amx.h: Intel AMX (advanced matrix extensions) kernels for many-token products on R8 weights
 * (x86 only; kern/gemm_amx.c, kern/gemm_k_amx.c).
 *
 * AMX multiplies int8 tiles (up to 16 rows x 64 bytes) in a unit beside the vector units: one
 * TDPBSSD / TDPBUSD does up to 16 x 16 x 64 multiply-adds. Prefill and batched decode (from a
 * per-type token count on) use it on CPUs that have it (Sapphire Rapids and later); one token
 * keeps the VNNI kernels. Exactness: per weight block the tile gives the same exact int32 sums
 * as the reference, and the float steps after it follow the reference's order, so outputs are
 * bit-identical to lg_vec_dot_ref (tests/unit/test_amx.c).
 * LG_AMX=0 in the environment turns AMX off (read once, at the first lg_amx_ok()).
 * Thread-safety: reentrant; each call configures the tiles of its own thread and releases them.
 */
#ifndef LG_KERN_AMX_H
#define LG_KERN_AMX_H

#include <stdbool.h>
#include <stdint.h>

#include "kern/kern.h"
#include "kern/qdot.h"

/* Whether the AMX kernels can run here: the CPU has AMX-TILE and AMX-INT8, the OS manages the
 * tile state (XCR0) and granted it to this process (arch_prctl ARCH_REQ_XCOMP_PERM; refused
 * e.g. under valgrind), and the environment does not say LG_AMX=0. Decided once (first call);
 * any thread. */
bool lg_amx_ok(void);

/* kern/gemm_amx.c: the AMX kernel for R8 matrices of `type` and n_tok tokens (same contract as
 * lg_gemm_q_fn; stack buffers of about 100 KiB), or NULL where there is none or n_tok is below
 * the count from which it beats the VNNI kernel (Q4_0: 7, Q8_0: 5; K-quants: 2). Callers have
 * checked lg_amx_ok(). */
lg_gemm_q_fn lg_gemm_r8_amx(uint32_t type, int64_t n_tok);

/* kern/gemm_k_amx.c: the K-quant kernels lg_gemm_r8_amx hands out (Q4_K, Q6_K), or NULL. */
lg_gemm_q_fn lg_gemm_r8_amx_k(uint32_t type);

#endif
