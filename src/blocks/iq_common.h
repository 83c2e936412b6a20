/*
 * src/blocks/iq_common.h — private to the codebook quantizers (iq2.c, iq3.c,
 * iq1.c): the shared pieces of ggml's IQ2 / IQ3 searches (iq_fit.c), and small
 * helpers of the block formats.
 *
 * The IQ2 and IQ3 quantizers share one shape (ggml's quantize_row_iq2_xs_impl
 * and its siblings): per sub-block, the magnitudes |x| are fitted by a scale
 * times odd levels 2l+1 that must form codebook points group by group; a set
 * of trial inverse scales is tried (each group rounded to its levels, off-grid
 * groups moved to their best neighbour), the best weighted least-squares fit
 * is kept, and the groups are re-rounded with the final scale. The sub-block
 * size, the number and spacing of trials, and which groups the last pass
 * re-rounds differ by type (sq__iq_fit_cfg).
 */
#ifndef SQ_BLOCKS_IQ_COMMON_H
#define SQ_BLOCKS_IQ_COMMON_H

#include "iq_grids.h"
#include "iq_search.h"
#include "quant_common.h"

/* Which groups the final pass re-rounds with the best scale. */
typedef enum sq__iq_refit {
    SQ__IQ_REFIT_OFFGRID,        /* only groups the best trial had off the grid (IQ2_XS, IQ2_S, IQ3_XXS) */
    SQ__IQ_REFIT_ALL_IF_OFFGRID, /* all groups, when any was off the grid (IQ3_S) */
    SQ__IQ_REFIT_ALWAYS,         /* all groups, always (IQ2_XXS) */
} sq__iq_refit;

typedef struct sq__iq_fit_cfg {
    const sq__iq_search *grid;
    int n;                /* values per sub-block: 16 or 32 */
    int kmaxq;            /* levels 0..kmaxq-1 (values 2l+1): 3 for IQ2, 8 for IQ3 */
    int nstep;            /* trial inverse scales for is = -nstep..nstep */
    float step;           /* (2*kmaxq - 1 + is*step) / max */
    float eps;            /* a sub-block with max |x| below this is zero; 0: only an exact zero */
    bool start_on_grid;   /* the groups' on-grid flags before any trial improves (false for IQ3_S) */
    bool from_qp;         /* IQ2_XXS: trials around sq__fit_positive's scale, not around max */
    sq__iq_refit refit;
} sq__iq_fit_cfg;

/*
 * The search of one sub-block: xval (n magnitudes, possibly one negative per
 * group after the parity fix), weight (n importance weights) and waux (their
 * square roots, the weights of the neighbour search). Writes the n levels L
 * (a codebook point per group, unless the scale ends negative in a way ggml
 * also leaves) and returns true with *scale set, or false for a sub-block
 * ggml stores as zero (L all zero).
 */
bool sq__iq_fit(const sq__iq_fit_cfg *c, const float *xval, const float *weight, const float *waux, int8_t *L,
                float *scale);

/* The errors err[j] of the codebook points cand[0..count) from per-term
 * errors: e[i][l] is the term of coordinate i at level l, and a point's error
 * is its terms summed in coordinate order from 0 (the order ggml sums the
 * same terms in, so the same floats); four points at a time as independent
 * chains. */
void sq__iq_list_errors(const sq__iq_search *s, const uint16_t *cand, int count, const float e[8][8], float *err);

/* The grid index of the dim levels L (a codebook point): map[u], or the
 * first neighbour of u if they are not one (never happens for levels
 * sq__iq_fit wrote; keeps a corrupt input from indexing outside the grid). */
static inline int sq__iq_grid_index(const sq__iq_search *s, const int8_t *L)
{
    int u = 0;
    for (int i = 0; i < s->dim; i++) u |= L[i] << (s->bits * i);
    const int g = s->map[u];
    return g >= 0 ? g : g == INT32_MIN ? 0 : sq__iq_neighbours(s, u)[1];
}

/*
 * Magnitudes and signs of the groups of 8 of a sub-block of n values: xval =
 * |x|, sign bit i set where x[i] < 0. With parity (the 7-bit sign codes of
 * IQ2_XXS, IQ2_XS, IQ3_XXS), a group with an odd number of negatives flips the
 * sign of its value of least weight*x^2 (first of equals), whose xval turns
 * negative; signs[k] then keeps the low 7 bits.
 */
static inline void sq__iq_signs(const float *x, const float *weight, int n, bool parity, float *xval,
                                uint8_t *signs)
{
    for (int k = 0; k < n / 8; ++k) {
        int nflip = 0;
        uint8_t s = 0;
        for (int i = 0; i < 8; ++i) {
            if (x[8 * k + i] >= 0) {
                xval[8 * k + i] = x[8 * k + i];
            } else {
                xval[8 * k + i] = -x[8 * k + i];
                ++nflip;
                s |= (uint8_t)(1 << i);
            }
        }
        if (parity && nflip % 2) {
            int imin = 0;
            float min = weight[8 * k] * x[8 * k] * x[8 * k];
            for (int i = 1; i < 8; ++i) {
                const float ax = weight[8 * k + i] * x[8 * k + i] * x[8 * k + i];
                if (ax < min) {
                    min = ax;
                    imin = i;
                }
            }
            xval[8 * k + imin] = -xval[8 * k + imin];
            s ^= (uint8_t)(1 << imin);
        }
        signs[k] = parity ? (uint8_t)(s & 127) : s;
    }
}

/* The 4-bit code of a sub-block scale against the super-block's d (id = 1/d):
 * nearest_int((s/d - 1)/2) limited to 0..15 (ggml's for IQ2 and IQ3; the
 * stored value decodes as d*(2l+1), up to the type's constant factor). */
static inline int sq__iq_scale_code(float id, float s, int maxl)
{
    int l = sq__nearest_int(0.5f * (id * s - 1));
    return l < 0 ? 0 : l > maxl ? maxl : l;
}

/* The importance weights of a sub-block of n values: qw*sqrt(sigma2 + x^2)
 * with an importance matrix, else x^2 + bias (bias 0.25*sigma2 for IQ2_S, 0
 * for the IQ3 types); and their square roots. */
static inline void sq__iq_weights(const float *x, const float *qw, float sigma2, float bias, int n, float *weight,
                                  float *waux)
{
    if (qw) {
        for (int i = 0; i < n; ++i) weight[i] = qw[i] * sqrtf(sigma2 + x[i] * x[i]);
    } else {
        /* bias + x^2 is x^2 exactly when bias is 0 */
        for (int i = 0; i < n; ++i) weight[i] = bias + x[i] * x[i];
    }
    for (int i = 0; i < n; ++i) waux[i] = sqrtf(weight[i]);
}

#endif
