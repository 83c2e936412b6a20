/*
 * benchutil.h — small helpers the benchmarks share: a reproducible random
 * source, the path of a file under the shared test material
 * ($SQ_SHARED, default ../shared) and a type-list filter. Header-only.
 */
#ifndef SQ_BENCHUTIL_H
#define SQ_BENCHUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One step of xorshift64 (13, 7, 17) on *s; each benchmark keeps its own seed. */
static inline uint64_t bench_xorshift64(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Writes $SQ_SHARED/REL (SQ_SHARED unset or empty: ../shared) into buf. */
static inline const char *bench_shared_path(char *buf, size_t n, const char *rel)
{
    const char *s = getenv("SQ_SHARED");
    snprintf(buf, n, "%s/%s", (s && *s) ? s : "../shared", rel);
    return buf;
}

/* Whether the comma-separated list (e.g. $BENCH_TYPES) names `name` exactly. */
static inline int bench_list_has(const char *list, const char *name)
{
    const size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

#endif /* SQ_BENCHUTIL_H */
