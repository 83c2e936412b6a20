/*
 * sys.c — clock, peak memory and aligned allocation: the few OS services the
 * library needs, kept in one place.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq/base.h"

#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

double sq_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t sq_peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024u; /* Linux reports KiB */
}

void *sq_aligned_alloc(size_t nbytes)
{
    void *p = NULL;
    if (nbytes == 0) nbytes = 64;
    if (posix_memalign(&p, 64, nbytes) != 0) return NULL;
    return p;
}

void sq_aligned_free(void *p)
{
    free(p);
}
