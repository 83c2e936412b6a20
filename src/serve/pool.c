/*
 * pool.c — the request slots and the bounded wait queue.
 *
 * A slot is an index (the server keeps one sq_context per slot). A request
 * takes a free slot at once, or waits its turn in FIFO order when fewer than
 * queue_max requests are already waiting, or is refused at once (the server
 * answers 503). A released slot goes straight to the first waiter. A waiter
 * whose client went away leaves the queue; shutdown wakes every waiter with
 * a refusal.
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "sq/serve.h"

/* A request waiting for a slot: lives on its waiting thread's stack, linked
 * in FIFO order; a release hands its slot straight to the head. */
typedef struct waiter {
    struct waiter *next;
    bool granted;
    int slot;
} waiter;

struct sq_slot_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n_slots, queue_max;
    bool *busy; /* n_slots flags */
    int n_busy;
    int n_waiting;
    waiter *head, *tail;
    bool shutdown;
};

sq_slot_pool *sq_slot_pool_create(int n_slots, int queue_max)
{
    if (n_slots < 1 || queue_max < 0) return NULL;
    sq_slot_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->busy = calloc((size_t)n_slots, sizeof *p->busy);
    if (!p->busy) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    p->n_slots = n_slots;
    p->queue_max = queue_max;
    return p;
}

void sq_slot_pool_free(sq_slot_pool *p)
{
    if (!p) return;
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->busy);
    free(p);
}

static int take_free(sq_slot_pool *p)
{
    for (int i = 0; i < p->n_slots; i++)
        if (!p->busy[i]) {
            p->busy[i] = true;
            p->n_busy++;
            return i;
        }
    return -1;
}

/* Unlinks a waiter that gives up (shutdown, client gone). */
static void unlink_waiter(sq_slot_pool *p, waiter *w)
{
    waiter *prev = NULL;
    for (waiter *it = p->head; it; prev = it, it = it->next)
        if (it == w) {
            if (prev) prev->next = w->next;
            else p->head = w->next;
            if (p->tail == w) p->tail = prev;
            p->n_waiting--;
            return;
        }
}

sq_slot_result sq_slot_pool_acquire(sq_slot_pool *p, int *slot)
{
    return sq_slot_pool_acquire_until(p, slot, NULL, NULL);
}

/* Takes a slot now, waits for one (bounded queue), or refuses. */
sq_slot_result sq_slot_pool_acquire_until(sq_slot_pool *p, int *slot, bool (*gone)(void *ud), void *ud)
{
    pthread_mutex_lock(&p->mu);
    if (p->shutdown) {
        pthread_mutex_unlock(&p->mu);
        return SQ_SLOT_SHUTDOWN;
    }
    if (!p->head && p->n_busy < p->n_slots) {
        *slot = take_free(p);
        pthread_mutex_unlock(&p->mu);
        return SQ_SLOT_OK;
    }
    if (p->n_waiting >= p->queue_max) {
        pthread_mutex_unlock(&p->mu);
        return SQ_SLOT_FULL;
    }
    waiter w = {NULL, false, -1};
    if (p->tail) p->tail->next = &w;
    else p->head = &w;
    p->tail = &w;
    p->n_waiting++;
    sq_slot_result res = SQ_SLOT_OK;
    while (!w.granted) {
        if (p->shutdown) {
            res = SQ_SLOT_SHUTDOWN;
            break;
        }
        if (!gone) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        /* wake every 50 ms to see whether the client is still there */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        if (!w.granted && gone(ud)) {
            res = SQ_SLOT_GONE;
            break;
        }
    }
    if (w.granted) {
        *slot = w.slot; /* removed from the queue by the releaser */
        res = SQ_SLOT_OK;
    } else {
        unlink_waiter(p, &w);
    }
    pthread_mutex_unlock(&p->mu);
    return res;
}

/* Gives a slot back: straight to the first waiter, or free. */
void sq_slot_pool_release(sq_slot_pool *p, int slot)
{
    if (!p || slot < 0 || slot >= p->n_slots) return;
    pthread_mutex_lock(&p->mu);
    if (p->busy[slot]) {
        waiter *w = p->head;
        if (w && !p->shutdown) {
            p->head = w->next;
            if (!p->head) p->tail = NULL;
            p->n_waiting--;
            w->granted = true;
            w->slot = slot; /* stays busy: it changes hands */
            pthread_cond_broadcast(&p->cv);
        } else {
            p->busy[slot] = false;
            p->n_busy--;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

void sq_slot_pool_shutdown(sq_slot_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->shutdown = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void sq_slot_pool_stats(sq_slot_pool *p, int *idle, int *busy, int *queued)
{
    pthread_mutex_lock(&p->mu);
    if (idle) *idle = p->n_slots - p->n_busy;
    if (busy) *busy = p->n_busy;
    if (queued) *queued = p->n_waiting;
    pthread_mutex_unlock(&p->mu);
}
