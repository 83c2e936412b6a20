/*
 * src/blocks/iq_search.h — the search structures of the codebook quantizers
 * (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S), derived from the
 * vendored codebooks (iq_grids.h) at first use.
 *
 * The quantizers round each group of 8 (IQ1, IQ2) or 4 (IQ3) values to a
 * point of a fixed lattice of levels 0..n-1 per coordinate, then look the
 * point up: an index u packs the levels, `bits` per coordinate (coordinate k
 * in bits k*bits..). When the point is a codebook entry, map[u] is its grid
 * index; otherwise map[u] = -(o + 1), and neighbours[o] is a count c followed
 * by c grid indices: every codebook point whose squared distance to u is among
 * the `nwant` smallest distances any codebook point has (nearest first, equal
 * distances in grid order), as ggml's iq2xs_init_impl / iq3xs_init_impl build
 * them. Only points whose levels are all below n_levels get a neighbour list:
 * the quantizers never form others.
 */
#ifndef SQ_BLOCKS_IQ_SEARCH_H
#define SQ_BLOCKS_IQ_SEARCH_H

#include <stdbool.h>
#include <stdint.h>

typedef enum sq__iq_grid_id {
    SQ__IQ_GRID_2XXS, /* 256 points of 8, levels 0..2, 2 neighbour distances */
    SQ__IQ_GRID_2XS,  /* 512 points of 8, levels 0..2, 2 */
    SQ__IQ_GRID_2S,   /* 1024 points of 8, levels 0..2, 1 */
    SQ__IQ_GRID_1S,   /* 2048 points of 8, levels 0..2 (-1, 0, 1), 3 */
    SQ__IQ_GRID_3XXS, /* 256 points of 4, levels 0..7, 2 */
    SQ__IQ_GRID_3S,   /* 512 points of 4, levels 0..7, 3 */
    SQ__IQ_GRID_COUNT
} sq__iq_grid_id;

typedef struct sq__iq_search {
    int ngrid;                  /* codebook points */
    int dim;                    /* values per point: 8 or 4 */
    int bits;                   /* bits per coordinate in an index u: 2 or 3 */
    int n_levels;               /* levels per coordinate: 3 or 8 */
    const int8_t *level;        /* ngrid * dim: the level of each coordinate of each point */
    const int32_t *map;         /* 1 << (dim * bits) entries, as above */
    const uint16_t *neighbours; /* the neighbour lists, as above */
} sq__iq_search;

/* The search structure of a grid, built on first use (thread-safe, once per
 * grid, kept for the life of the process); NULL if memory ran out. */
const sq__iq_search *sq__iq_search_get(sq__iq_grid_id id);

/* The neighbour list of an index u that is not a codebook point: list[0] is
 * the count, list[1..count] the grid indices. */
static inline const uint16_t *sq__iq_neighbours(const sq__iq_search *s, int u)
{
    return s->neighbours + (-s->map[u] - 1);
}

#endif
