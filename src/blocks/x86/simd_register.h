/*
 * simd_register.h — fills a kernel table with this compilation's SIMD
 * kernels and names its tile kernels; included last by each x86 kernel file
 * after simd_dot.h, simd_iq.h and simd_conv.h, with SQ_REGISTER_FN / SQ_GEMM_FN set to
 * that file's public names.
 */
#ifndef SQ_X86_SIMD_REGISTER_H
#define SQ_X86_SIMD_REGISTER_H

#include "simd_ik.h"

#define SQ_SET(T, ID)                        \
    do {                                     \
        table[SQ_TYPE_##ID].vec_dot = vdot_##T; \
        table[SQ_TYPE_##ID].dequantize = deq_##T; \
    } while (0)

/* vec_dot only (the dequantizers stay scalar). */
#define SQ_SET_DOT(T, ID) table[SQ_TYPE_##ID].vec_dot = vdot_##T

void SQ_REGISTER_FN(sq__kernels table[SQ_TYPE_COUNT])
{
    SQ_SET(q4_0, Q4_0);
    SQ_SET(q4_1, Q4_1);
    SQ_SET(q5_0, Q5_0);
    SQ_SET(q5_1, Q5_1);
    SQ_SET(q8_0, Q8_0);
    SQ_SET(iq4_nl, IQ4_NL);
    SQ_SET(q2_K, Q2_K);
    SQ_SET(q3_K, Q3_K);
    SQ_SET(q4_K, Q4_K);
    SQ_SET(q5_K, Q5_K);
    SQ_SET(q6_K, Q6_K);
    SQ_SET(iq4_xs, IQ4_XS);
    SQ_SET(f16, F16);
    SQ_SET(bf16, BF16);
    SQ_SET_DOT(iq2_xxs, IQ2_XXS);
    SQ_SET_DOT(iq2_xs, IQ2_XS);
    SQ_SET_DOT(iq2_s, IQ2_S);
    SQ_SET_DOT(iq3_xxs, IQ3_XXS);
    SQ_SET_DOT(iq3_s, IQ3_S);
    SQ_SET_DOT(iq1_s, IQ1_S);
    SQ_SET_DOT(iq1_m, IQ1_M);
    SQ_SET_DOT(tq1_0, TQ1_0);
    SQ_SET_DOT(tq2_0, TQ2_0);
    table[SQ_TYPE_Q8_0].from_float = from_float_q8_0;
    table[SQ_TYPE_Q8_1].from_float = from_float_q8_1;
    table[SQ_TYPE_Q8_K].from_float = from_float_q8_K;
    table[SQ_TYPE_F16].from_float = from_float_f16;
    table[SQ_TYPE_BF16].from_float = from_float_bf16;
    ik_register(table);
#ifdef SQ_ZMM_REGISTER
    SQ_ZMM_REGISTER(table);
#endif
#ifdef SQ_IQZ_REGISTER
    SQ_IQZ_REGISTER(table);
#endif
#ifdef SQ_IKZ_REGISTER
    SQ_IKZ_REGISTER(table);
#endif
}
#undef SQ_SET
#undef SQ_SET_DOT

sq__gemm_fn SQ_GEMM_FN(int type)
{
    if (ik_gemm(type)) return ik_gemm(type);
#ifdef SQ_PAIR512_GEMM
    SQ_PAIR512_GEMM(type);
#endif
#ifdef SQ_ZMM_GEMM
    SQ_ZMM_GEMM(type);
#endif
    switch (type) {
    case SQ_TYPE_Q4_0: return gemm_q4_0;
    case SQ_TYPE_Q4_1: return gemm_q4_1;
    case SQ_TYPE_Q5_0: return gemm_q5_0;
    case SQ_TYPE_Q5_1: return gemm_q5_1;
    case SQ_TYPE_Q8_0: return gemm_q8_0;
    case SQ_TYPE_IQ4_NL: return gemm_iq4_nl;
    case SQ_TYPE_Q2_K: return gemm_q2_K;
    case SQ_TYPE_Q3_K: return gemm_q3_K;
    case SQ_TYPE_Q4_K: return gemm_q4_K;
    case SQ_TYPE_Q5_K: return gemm_q5_K;
    case SQ_TYPE_Q6_K: return gemm_q6_K;
    case SQ_TYPE_IQ4_XS: return gemm_iq4_xs;
    case SQ_TYPE_F16: return gemm_f16;
    case SQ_TYPE_BF16: return gemm_bf16;
    case SQ_TYPE_IQ2_XXS: return gemm_iq2_xxs;
    case SQ_TYPE_IQ2_XS: return gemm_iq2_xs;
    case SQ_TYPE_IQ2_S: return gemm_iq2_s;
    case SQ_TYPE_IQ3_XXS: return gemm_iq3_xxs;
    case SQ_TYPE_IQ3_S: return gemm_iq3_s;
    case SQ_TYPE_IQ1_S: return gemm_iq1_s;
    case SQ_TYPE_IQ1_M: return gemm_iq1_m;
    case SQ_TYPE_TQ1_0: return gemm_tq1_0;
    case SQ_TYPE_TQ2_0: return gemm_tq2_0;
    default: return NULL;
    }
}

#endif
