/*
 * pool.c — the request slots and the bounded wait queue.
 *
 * A slot is an index (the server keeps one sq_context per slot). A request
 * takes a free slot at once, or waits its turn in FIFO order (tickets) when
 * fewer than queue_max requests are already waiting, or is refused at once
 * (the server answers 503). Shutdown wakes every waiter with a refusal.
 */
#include <pthread.h>
#include <stdlib.h>

#include "sq/serve.h"

struct sq_slot_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n_slots, queue_max;
    bool *busy;         /* n_slots flags */
    int n_busy;
    int n_waiting;
    uint64_t next_ticket; /* given to the next waiter */
    uint64_t serving;     /* the ticket allowed to take the next free slot */
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
    pthread_cond_init(&p->cv, NULL);
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

/* Takes a slot now, waits for one (bounded queue), or refuses. */
sq_slot_result sq_slot_pool_acquire(sq_slot_pool *p, int *slot)
{
    pthread_mutex_lock(&p->mu);
    if (p->shutdown) {
        pthread_mutex_unlock(&p->mu);
        return SQ_SLOT_SHUTDOWN;
    }
    if (p->n_waiting == 0 && p->n_busy < p->n_slots) {
        *slot = take_free(p);
        pthread_mutex_unlock(&p->mu);
        return SQ_SLOT_OK;
    }
    if (p->n_waiting >= p->queue_max) {
        pthread_mutex_unlock(&p->mu);
        return SQ_SLOT_FULL;
    }
    uint64_t ticket = p->next_ticket++;
    p->n_waiting++;
    while (!p->shutdown && (ticket != p->serving || p->n_busy == p->n_slots)) pthread_cond_wait(&p->cv, &p->mu);
    p->n_waiting--;
    if (p->shutdown) {
        pthread_mutex_unlock(&p->mu);
        return SQ_SLOT_SHUTDOWN;
    }
    p->serving++;
    *slot = take_free(p);
    pthread_cond_broadcast(&p->cv); /* the next ticket may find another free slot */
    pthread_mutex_unlock(&p->mu);
    return SQ_SLOT_OK;
}

void sq_slot_pool_release(sq_slot_pool *p, int slot)
{
    if (!p || slot < 0 || slot >= p->n_slots) return;
    pthread_mutex_lock(&p->mu);
    if (p->busy[slot]) {
        p->busy[slot] = false;
        p->n_busy--;
    }
    pthread_cond_broadcast(&p->cv);
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
