/*
 * iq_search.c — builds the codebook quantizers' search structures
 * (iq_search.h) from the vendored codebooks, once per grid, on first use.
 *
 * The lists are the ones ggml's iq2xs_init_impl / iq3xs_init_impl derive
 * (ggml sorts all codebook points by (distance, index) for every off-grid
 * point; here the `nwant` smallest distances are found in one pass and the
 * points at each of them are collected in index order, which is the same
 * list), restricted to the points a quantizer can form: levels below
 * n_levels, 3^8 = 6561 of the 4^8 indices of the 8-value grids.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "iq_grids.h"
#include "iq_search.h"

/* What defines one grid: its points, their shape, the level values a
 * coordinate byte may hold (in level order) and how many neighbour distances
 * each off-grid point keeps (ggml's nwant). */
typedef struct grid_desc {
    const void *points;
    int ngrid, dim, bits, nwant, n_levels;
    int8_t values[8]; /* byte value of level l, read as int8 */
} grid_desc;

static const grid_desc descs[SQ__IQ_GRID_COUNT] = {
    [SQ__IQ_GRID_2XXS] = {sq__iq2xxs_grid, 256, 8, 2, 2, 3, {8, 25, 43}},
    [SQ__IQ_GRID_2XS] = {sq__iq2xs_grid, 512, 8, 2, 2, 3, {8, 25, 43}},
    [SQ__IQ_GRID_2S] = {sq__iq2s_grid, 1024, 8, 2, 1, 3, {8, 25, 43}},
    [SQ__IQ_GRID_1S] = {sq__iq1s_grid, 2048, 8, 2, 3, 3, {-1, 0, 1}},
    [SQ__IQ_GRID_3XXS] = {sq__iq3xxs_grid, 256, 4, 3, 2, 8, {4, 12, 20, 28, 36, 44, 52, 62}},
    [SQ__IQ_GRID_3S] = {sq__iq3s_grid, 512, 4, 3, 3, 8, {1, 3, 5, 7, 9, 11, 13, 15}},
};

static sq__iq_search searches[SQ__IQ_GRID_COUNT];
static bool built[SQ__IQ_GRID_COUNT];

/* A growable list of uint16 (the neighbour lists while they are built). */
typedef struct u16list {
    uint16_t *v;
    size_t n, cap;
} u16list;

static bool u16_push(u16list *l, uint16_t x)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4096;
        uint16_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

/* The levels of every coordinate of every point (false if a byte is not one
 * of the grid's level values: a corrupt table). */
static bool point_levels(const grid_desc *g, int8_t *level)
{
    const int8_t *bytes = g->points; /* little-endian: byte k of point j */
    for (int i = 0; i < g->ngrid * g->dim; i++) {
        int l = 0;
        while (l < g->n_levels && g->values[l] != bytes[i]) l++;
        if (l == g->n_levels) return false;
        level[i] = (int8_t)l;
    }
    return true;
}

/* The nwant smallest distinct values of d2[0..n) into best[], ascending;
 * returns how many there are. */
static int smallest_distinct(const int *d2, int n, int nwant, int best[8])
{
    int nb = 0;
    for (int j = 0; j < n; j++) {
        const int d = d2[j];
        int k = 0;
        while (k < nb && best[k] < d) k++;
        if (k < nb && best[k] == d) continue;
        if (k == nwant) continue;
        if (nb < nwant) nb++;
        for (int m = nb - 1; m > k; m--) best[m] = best[m - 1];
        best[k] = d;
    }
    return nb;
}

/* Appends the neighbour list of the off-grid point with levels lu[] to out:
 * the count, then the points at each of the nwant smallest distances in
 * grid order. lt holds the levels coordinate-major (lt[k * ngrid + j]), so
 * that the distance loop runs over points; d2 is ngrid ints of scratch. */
static bool add_neighbours(const grid_desc *g, const int16_t *lt, const int *lu, int *d2, u16list *out)
{
    for (int j = 0; j < g->ngrid; j++) d2[j] = 0;
    for (int k = 0; k < g->dim; k++) {
        const int16_t *l = lt + k * g->ngrid;
        const int v = lu[k];
        for (int j = 0; j < g->ngrid; j++) d2[j] += (l[j] - v) * (l[j] - v);
    }
    int best[8];
    const int nb = smallest_distinct(d2, g->ngrid, g->nwant, best);
    const size_t start = out->n;
    if (!u16_push(out, 0)) return false;
    for (int b = 0; b < nb; b++)
        for (int j = 0; j < g->ngrid; j++)
            if (d2[j] == best[b] && !u16_push(out, (uint16_t)j)) return false;
    out->v[start] = (uint16_t)(out->n - start - 1);
    return true;
}

/* The map and the neighbour lists of grid id into searches[id]; false (and
 * nothing kept) when memory runs out or the table is corrupt. */
static bool build(sq__iq_grid_id id)
{
    const grid_desc *g = &descs[id];
    const int nmap = 1 << (g->dim * g->bits);
    int8_t *level = malloc((size_t)g->ngrid * g->dim);
    int32_t *map = malloc((size_t)nmap * sizeof *map);
    int *d2 = malloc((size_t)g->ngrid * sizeof *d2);
    int16_t *lt = malloc((size_t)g->ngrid * g->dim * sizeof *lt);
    u16list nb = {0};
    bool ok = level && map && d2 && lt && point_levels(g, level);
    for (int j = 0; ok && j < g->ngrid; j++)
        for (int k = 0; k < g->dim; k++) lt[k * g->ngrid + j] = level[j * g->dim + k];
    for (int u = 0; ok && u < nmap; u++) map[u] = INT32_MIN; /* never formed (a level >= n_levels) */
    for (int j = 0; ok && j < g->ngrid; j++) {
        int u = 0;
        for (int k = 0; k < g->dim; k++) u |= level[j * g->dim + k] << (g->bits * k);
        map[u] = j;
    }
    for (int u = 0; ok && u < nmap; u++) {
        if (map[u] >= 0) continue;
        int lu[8];
        bool formed = true;
        for (int k = 0; k < g->dim; k++) {
            lu[k] = (u >> (g->bits * k)) & ((1 << g->bits) - 1);
            formed = formed && lu[k] < g->n_levels;
        }
        if (!formed) continue;
        map[u] = -(int32_t)nb.n - 1;
        ok = add_neighbours(g, lt, lu, d2, &nb);
    }
    free(d2);
    free(lt);
    if (!ok) {
        free(level), free(map), free(nb.v);
        return false;
    }
    searches[id] = (sq__iq_search){g->ngrid, g->dim, g->bits, g->n_levels, level, map, nb.v};
    return true;
}

#define SQ_IQ_ONCE(ID)                                                \
    static pthread_once_t once_##ID = PTHREAD_ONCE_INIT;              \
    static void init_##ID(void) { built[SQ__IQ_GRID_##ID] = build(SQ__IQ_GRID_##ID); }
SQ_IQ_ONCE(2XXS)
SQ_IQ_ONCE(2XS)
SQ_IQ_ONCE(2S)
SQ_IQ_ONCE(1S)
SQ_IQ_ONCE(3XXS)
SQ_IQ_ONCE(3S)
#undef SQ_IQ_ONCE

const sq__iq_search *sq__iq_search_get(sq__iq_grid_id id)
{
    switch (id) {
    case SQ__IQ_GRID_2XXS: pthread_once(&once_2XXS, init_2XXS); break;
    case SQ__IQ_GRID_2XS: pthread_once(&once_2XS, init_2XS); break;
    case SQ__IQ_GRID_2S: pthread_once(&once_2S, init_2S); break;
    case SQ__IQ_GRID_1S: pthread_once(&once_1S, init_1S); break;
    case SQ__IQ_GRID_3XXS: pthread_once(&once_3XXS, init_3XXS); break;
    case SQ__IQ_GRID_3S: pthread_once(&once_3S, init_3S); break;
    default: return NULL;
    }
    return built[id] ? &searches[id] : NULL;
}
