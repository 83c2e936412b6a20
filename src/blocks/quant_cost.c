/*
 * quant_cost.c — what each quantizer of this build costs per value: a
 * type-level property, for callers that quantize a type many times to
 * measure it (the planner chooses its default candidate types by it, so a
 * plan's time stays bounded however many types the table holds).
 *
 * The figures are CPU nanoseconds per value of sq_quantize_rows with
 * importance weights on 256-column rows (one SmarterQuant segment each),
 * single-threaded, as `build/bench/bench_qcost` prints them (that program's
 * data; the project's 2-core AVX-512 machine, 2026-12-06), rounded to two
 * figures. Relative costs are what matter: they span four decades, from the
 * ternary types' 9 ns to the trellis types' 49 µs (ik_llama.cpp's IQ2_KS,
 * IQ2_K and IQ4_KSS search their scale grids exhaustively, the trellis types
 * search a codebook per group of values). A type that gains a quantizer gains
 * a row here (tests/test_plan.c checks that every quantizable weight type
 * has one).
 */
#include "sq/blocks.h"

typedef struct qcost {
    int type;
    float ns_per_value;
} qcost;

static const qcost costs[] = {
    {SQ_TYPE_TQ1_0, 8.7f},     {SQ_TYPE_TQ2_0, 9.8f},     {SQ_TYPE_Q8_0, 13.0f},    {SQ_TYPE_Q6_K, 44.0f},
    {SQ_TYPE_MXFP4, 46.0f},    {SQ_TYPE_Q3_K, 61.0f},     {SQ_TYPE_IQ4_NL, 69.0f},  {SQ_TYPE_IQ4_XS, 69.0f},
    {SQ_TYPE_Q5_0, 110.0f},    {SQ_TYPE_Q4_0, 110.0f},    {SQ_TYPE_Q4_K, 110.0f},   {SQ_TYPE_Q5_K, 120.0f},
    {SQ_TYPE_Q2_K, 130.0f},    {SQ_TYPE_Q6_0, 280.0f},    {SQ_TYPE_IQ1_M, 280.0f},  {SQ_TYPE_Q5_1, 310.0f},
    {SQ_TYPE_Q4_1, 320.0f},    {SQ_TYPE_IQ2_KL, 410.0f},  {SQ_TYPE_IQ3_KS, 710.0f}, {SQ_TYPE_IQ2_XXS, 770.0f},
    {SQ_TYPE_IQ3_K, 780.0f},   {SQ_TYPE_IQ3_S, 780.0f},   {SQ_TYPE_IQ2_S, 930.0f},  {SQ_TYPE_IQ5_KS, 1000.0f},
    {SQ_TYPE_IQ5_K, 1100.0f},  {SQ_TYPE_IQ3_XXS, 1100.0f}, {SQ_TYPE_IQ4_K, 1200.0f}, {SQ_TYPE_IQ6_K, 1200.0f},
    {SQ_TYPE_IQ4_KS, 1200.0f}, {SQ_TYPE_IQ2_XS, 1300.0f}, {SQ_TYPE_IQ1_S, 1500.0f}, {SQ_TYPE_IQ4_KSS, 2800.0f},
    {SQ_TYPE_IQ2_K, 3000.0f},  {SQ_TYPE_IQ2_KS, 10000.0f}, {SQ_TYPE_IQ2_KT, 22000.0f}, {SQ_TYPE_IQ4_KT, 49000.0f},
    {SQ_TYPE_IQ3_KT, 49000.0f},
};

double sq_blocks_quantize_cost(int type)
{
    for (size_t i = 0; i < sizeof costs / sizeof costs[0]; i++)
        if (costs[i].type == type) return costs[i].ns_per_value;
    return 0.0;
}
