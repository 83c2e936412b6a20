/*
 * threadpool.c — a fixed pool of worker threads for the matrix products.
 *
 * The engine runs a product on every layer, so a run must cost little: the
 * workers are created once, and a run publishes the job by bumping a
 * generation counter. Workers spin on it for a short while (about 50 µs) and
 * only then sleep on a condition variable; the caller joins in as thread 0
 * and waits for the others the same way (spin, then sleep). Sleeping is
 * announced with a counter so that the fast path makes no system call.
 *
 * Sleeping uses Linux futexes on the counters themselves (the generation for
 * workers, the pending count for the caller), not condition variables: a
 * futex wait re-checks the value atomically in the kernel, so a wake-up can
 * never be lost between the check and the sleep. (glibc 2.36's condition
 * variables lost a done-signal here about once in 10^5 runs: bug 25847.)
 *
 * Each thread index of a run is claimed exactly once, by its worker or, when
 * that worker has not picked the run up by the time the caller has finished
 * its own share, by the caller, which then runs that share itself. On a
 * machine with more runnable threads than cores a descheduled worker thus
 * never holds a run up; with the matrix product's dynamic chunks the stolen
 * share is usually empty already.
 *
 * One run at a time per pool: sq_threadpool_run is not re-entrant, and two
 * threads must not run jobs on the same pool at once.
 */
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sq/matmul.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_NS 50000 /* how long a waiting thread spins before it sleeps */

struct sq_threadpool {
    int n_threads; /* including the caller */
    pthread_t *threads;
    struct worker_arg *args;

    void (*fn)(void *ctx, int ith, int nth);
    void *ctx;

    atomic_uint generation;   /* bumped once per job */
    atomic_int pending;       /* workers still running the current job */
    atomic_int stop;
    atomic_int sleepers;      /* workers asleep (or about to be) on work_cv */
    atomic_int main_sleeping; /* the caller sleeps on pending */
};

struct worker_arg {
    sq_threadpool *tp;
    int ith;
    atomic_int taken; /* this index of the current run has been claimed */
};

/* Sleeps while *addr == expected (returns at once if it already differs, or
 * spuriously: callers loop). */
static void futex_wait(void *addr, int expected)
{
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

/* Wakes every thread sleeping on addr. */
static void futex_wake_all(void *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins until *gen differs from seen, up to SPIN_NS; returns whether it did. */
static bool spin_for_generation(sq_threadpool *tp, unsigned seen)
{
    const uint64_t start = now_ns();
    for (int i = 0;; i++) {
        if (atomic_load_explicit(&tp->generation, memory_order_acquire) != seen) return true;
        if (atomic_load_explicit(&tp->stop, memory_order_relaxed)) return true;
        cpu_relax();
        if ((i & 63) == 63 && now_ns() - start > SPIN_NS) return false;
    }
}

static void *worker_main(void *p)
{
    struct worker_arg *a = p;
    sq_threadpool *tp = a->tp;
    unsigned seen = 0; /* the generation at creation: a job published before this thread starts still runs */
    for (;;) {
        if (!spin_for_generation(tp, seen)) {
            /* announce first, then re-check: the publisher bumps the
             * generation, then reads sleepers (both sequentially consistent),
             * so either we see the new generation or it sees us and wakes us */
            atomic_fetch_add(&tp->sleepers, 1);
            while (atomic_load(&tp->generation) == seen && !atomic_load(&tp->stop))
                futex_wait(&tp->generation, (int)seen);
            atomic_fetch_sub(&tp->sleepers, 1);
        }
        if (atomic_load(&tp->stop)) break;
        seen = atomic_load_explicit(&tp->generation, memory_order_acquire);
        /* the caller may have run this share already (then there is nothing to do) */
        if (atomic_exchange(&a->taken, 1) != 0) continue;
        tp->fn(tp->ctx, a->ith, tp->n_threads);
        if (atomic_fetch_sub(&tp->pending, 1) == 1 && atomic_load(&tp->main_sleeping))
            futex_wake_all(&tp->pending);
    }
    return NULL;
}

sq_threadpool *sq_threadpool_create(int n_threads)
{
    if (n_threads < 1) n_threads = 1;
    sq_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->n_threads = n_threads;
    atomic_init(&tp->generation, 0);
    atomic_init(&tp->pending, 0);
    atomic_init(&tp->stop, 0);
    atomic_init(&tp->sleepers, 0);
    atomic_init(&tp->main_sleeping, 0);
    if (n_threads > 1) {
        tp->threads = calloc((size_t)n_threads - 1, sizeof *tp->threads);
        tp->args = calloc((size_t)n_threads - 1, sizeof *tp->args);
        if (!tp->threads || !tp->args) {
            free(tp->threads);
            free(tp->args);
            free(tp);
            return NULL;
        }
        for (int i = 1; i < n_threads; i++) {
            tp->args[i - 1].tp = tp;
            tp->args[i - 1].ith = i;
            atomic_init(&tp->args[i - 1].taken, 1); /* nothing to claim before the first run */
            if (pthread_create(&tp->threads[i - 1], NULL, worker_main, &tp->args[i - 1]) != 0) {
                tp->n_threads = i; /* stop the ones started so far */
                sq_threadpool_free(tp);
                return NULL;
            }
        }
    }
    return tp;
}

void sq_threadpool_free(sq_threadpool *tp)
{
    if (!tp) return;
    atomic_store(&tp->stop, 1);
    atomic_fetch_add(&tp->generation, 1); /* changes the futex word, so sleepers return */
    futex_wake_all(&tp->generation);
    for (int i = 1; i < tp->n_threads; i++) pthread_join(tp->threads[i - 1], NULL);
    free(tp->threads);
    free(tp->args);
    free(tp);
}

int sq_threadpool_n_threads(const sq_threadpool *tp) { return tp ? tp->n_threads : 1; }

void sq_threadpool_run(sq_threadpool *tp, void (*fn)(void *ctx, int ith, int nth), void *ctx)
{
    if (!tp || tp->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->ctx = ctx;
    atomic_store(&tp->pending, tp->n_threads - 1);
    for (int i = 1; i < tp->n_threads; i++) atomic_store(&tp->args[i - 1].taken, 0); /* after fn, ctx */
    atomic_fetch_add(&tp->generation, 1); /* publishes the run (seq_cst) */
    if (atomic_load(&tp->sleepers) > 0) futex_wake_all(&tp->generation);
    fn(ctx, 0, tp->n_threads);
    /* shares no worker has claimed yet: run them here rather than wait for a descheduled thread */
    for (int i = 1; i < tp->n_threads; i++)
        if (atomic_exchange(&tp->args[i - 1].taken, 1) == 0) {
            fn(ctx, i, tp->n_threads);
            atomic_fetch_sub(&tp->pending, 1);
        }

    /* wait for the workers: spin, then sleep */
    const uint64_t start = now_ns();
    for (int i = 0; atomic_load_explicit(&tp->pending, memory_order_acquire) > 0; i++) {
        cpu_relax();
        if ((i & 63) == 63 && now_ns() - start > SPIN_NS) {
            /* announce, then re-check (the mirror of the workers' protocol) */
            atomic_store(&tp->main_sleeping, 1);
            for (int p; (p = atomic_load(&tp->pending)) > 0;) futex_wait(&tp->pending, p);
            atomic_store(&tp->main_sleeping, 0);
            break;
        }
    }
}
