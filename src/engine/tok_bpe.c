/*
 * tok_bpe.c — byte-level BPE ("gpt2" vocabularies, Llama-3 and friends).
 *
 * The fragment is decoded to code points and cut into words by the
 * pre-tokenizer (tok_unicode.c). Each word is re-encoded to UTF-8 and every
 * byte replaced by its GPT-2 stand-in character, so that the vocabulary's
 * pieces never contain raw bytes. With ignore_merges (Llama-3) a word that is
 * itself a piece is taken whole. Otherwise the word starts as one symbol per
 * character and the adjacent pair with the lowest merge rank (then the
 * leftmost) is merged until no listed merge applies — llama.cpp's
 * llm_tokenizer_bpe_session, with our own hash tables and heap.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/tok_internal.h"

static void bpe_try_pair(const sq_vocab *v, const char *w, const sq__sym *sym, int32_t l, int32_t r, sq__heap *h)
{
    if (l < 0 || r < 0) return;
    int64_t rank = sq__vocab_merge_rank(v, w + sym[l].off, sym[l].n, w + sym[r].off, sym[r].n);
    if (rank < 0) return;
    sq__bigram b = {-(double)rank, l, r, sym[l].n + sym[r].n};
    sq__heap_push(h, b);
}

/* Emits a final symbol: its piece, or (never for a complete vocabulary) the
 * single bytes of its text that happen to be pieces, as llama.cpp does. */
static void bpe_emit(const sq_vocab *v, const char *w, const sq__sym *s, sq__tok_out *out)
{
    sq_token id = sq__vocab_lookup(v, w + s->off, s->n);
    if (id != SQ_TOKEN_NULL) {
        sq__out_push(out, id);
        return;
    }
    for (uint32_t j = 0; j < s->n; j++) {
        sq_token b = sq__vocab_lookup(v, w + s->off + j, 1);
        if (b != SQ_TOKEN_NULL) sq__out_push(out, b);
    }
}

void sq__bpe_tokenize(const sq_vocab *v, const char *text, size_t len, sq__tok_out *out)
{
    if (len == 0) return;
    if (len > UINT32_MAX / 16) {
        out->oom = true;
        return;
    }
    uint32_t *cps = malloc(len * sizeof *cps);
    uint32_t *lens = malloc(len * sizeof *lens);
    uint32_t *scratch = malloc(len * sizeof *scratch);
    char *w = NULL;
    sq__sym *sym = NULL;
    sq__heap h = {0};
    if (!cps || !lens || !scratch) goto oom;
    size_t ncp = 0;
    for (size_t pos = 0; pos < len;) cps[ncp++] = sq__utf8_decode((const unsigned char *)text, len, &pos);
    size_t nw = sq__pretok_split(v->pre, cps, ncp, lens, scratch);
    size_t maxw = 0;
    for (size_t i = 0; i < nw; i++)
        if (lens[i] > maxw) maxw = lens[i];
    /* a code point is at most 4 UTF-8 bytes, each byte's stand-in at most 2 */
    w = malloc(maxw * 8 + 1);
    sym = malloc(maxw * 8 * sizeof *sym + 1);
    if (!w || !sym) goto oom;
    size_t cp0 = 0;
    for (size_t wi = 0; wi < nw; wi++) {
        size_t wl = 0;
        for (size_t k = cp0; k < cp0 + lens[wi]; k++) {
            char u[4];
            size_t ul = sq__utf8_encode(cps[k], u);
            for (size_t j = 0; j < ul; j++) wl += sq__utf8_encode(sq__byte_to_cpt((unsigned char)u[j]), w + wl);
        }
        cp0 += lens[wi];
        if (v->ignore_merges) {
            sq_token id = sq__vocab_lookup(v, w, wl);
            if (id != SQ_TOKEN_NULL) {
                sq__out_push(out, id);
                continue;
            }
        }
        int32_t n = 0;
        for (size_t off = 0; off < wl;) {
            size_t l = sq__utf8_len((unsigned char)w[off]);
            if (l > wl - off) l = wl - off;
            sym[n].prev = n - 1;
            sym[n].off = (uint32_t)off;
            sym[n].n = (uint32_t)l;
            off += l;
            sym[n].next = off == wl ? -1 : n + 1;
            n++;
        }
        h.n = 0;
        for (int32_t i = 1; i < n; i++) bpe_try_pair(v, w, sym, i - 1, i, &h);
        while (h.n > 0) {
            sq__bigram b = sq__heap_pop(&h);
            sq__sym *L = &sym[b.left], *R = &sym[b.right];
            if (L->n == 0 || R->n == 0 || L->n + R->n != b.size) continue; /* stale */
            L->n += R->n;
            R->n = 0;
            L->next = R->next;
            if (R->next >= 0) sym[R->next].prev = b.left;
            bpe_try_pair(v, w, sym, L->prev, b.left, &h);
            bpe_try_pair(v, w, sym, b.left, L->next, &h);
        }
        if (h.oom) goto oom;
        for (int32_t i = 0; n > 0 && i != -1; i = sym[i].next) bpe_emit(v, w, &sym[i], out);
    }
    goto done;
oom:
    out->oom = true;
done:
    free(h.a);
    free(sym);
    free(w);
    free(scratch);
    free(lens);
    free(cps);
}
