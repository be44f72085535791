/* qdot_more.h: AVX2 dot products for the weight types qdot_avx2.c leaves to the scalar
 * reference (issue #10): Q2_K, Q3_K, IQ4_XS, BF16 and F32.
 *
 * Each function equals lg_vec_dot_ref[type] bit for bit for every input (same integer totals,
 * the same float and double operations in the same order; the file is compiled in ISO C mode,
 * so nothing is contracted to FMA), so decode, prefill and batched results stay identical.
 * A NaN result is NaN in both, but its payload may differ (hardware F16C conversion quiets
 * signalling NaNs that the reference's software conversion passes through).
 */
#ifndef LG_KERN_QDOT_MORE_H
#define LG_KERN_QDOT_MORE_H

#include "kern/qdot.h"

/* kern/qdot_more_avx2.c (x86 only): sets dot[Q2_K], dot[Q3_K], dot[IQ4_XS], dot[BF16] and
 * dot[F32]; leaves every other slot alone. Callers must have checked that the CPU has AVX2 +
 * FMA + F16C. Writes only `dot`; any thread (the table belongs to the caller). */
void lg_qdot_avx2_more(lg_vec_dot_fn dot[LG_QTYPE_COUNT]);

#endif
