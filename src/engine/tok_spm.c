/*
 * tok_spm.c — the SentencePiece-style tokenizer of "llama" vocabularies.
 *
 * The text (spaces already escaped to U+2581) starts as one symbol per UTF-8
 * character. Every adjacent pair whose concatenation is a vocabulary piece is
 * queued with that piece's score; the best pair (highest score, then the
 * leftmost) is merged, and the pairs around the merged symbol are queued
 * anew. Stale queue entries are recognised by their length: symbols only
 * grow, so a pair whose two lengths still add up to the queued size is intact.
 * A final symbol that is not a piece (only single characters can be) falls
 * back to its <0xXX> byte tokens. This reproduces llama.cpp's
 * llm_tokenizer_spm exactly, with a heap instead of std::priority_queue.
 */
#include <stdlib.h>

#include "engine/tok_internal.h"

/* Queues the pair (l, r) if it spells a piece. */
static void spm_try_pair(const sq_vocab *v, const char *text, const sq__sym *sym, int32_t l, int32_t r, sq__heap *h)
{
    if (l < 0 || r < 0) return;
    size_t n = (size_t)sym[l].n + sym[r].n;
    sq_token id = sq__vocab_lookup(v, text + sym[l].off, n);
    if (id == SQ_TOKEN_NULL) return;
    sq__bigram b = {v->toks[id].score, l, r, (uint32_t)n};
    sq__heap_push(h, b);
}

/* Emits the token of a final symbol, or its bytes' fallback tokens. */
static void spm_emit(const sq_vocab *v, const char *text, const sq__sym *s, sq__tok_out *out)
{
    sq_token id = sq__vocab_lookup(v, text + s->off, s->n);
    if (id != SQ_TOKEN_NULL) {
        sq__out_push(out, id);
        return;
    }
    for (uint32_t j = 0; j < s->n; j++) {
        sq_token b = v->byte_token[(unsigned char)text[s->off + j]];
        if (b == SQ_TOKEN_NULL) b = v->unk; /* llama.cpp would throw here */
        if (b != SQ_TOKEN_NULL) sq__out_push(out, b);
    }
}

void sq__spm_tokenize(const sq_vocab *v, const char *text, size_t len, sq__tok_out *out)
{
    if (len == 0) return;
    if (len > UINT32_MAX / 2) {
        out->oom = true; /* offsets are 32-bit; 2 GB of text in one fragment is refused */
        return;
    }
    /* When no multi-character piece contains a newline, a "\n" symbol can
     * never merge, so the text falls apart into independent lines: merging
     * line by line gives the same result as one queue over the whole text,
     * with small symbol and heap arrays that stay in cache (perplexity
     * tokenizes a whole file at once). Otherwise the whole fragment is one
     * segment. Symbols are built segment by segment into one reused array. */
    size_t cap = v->spm_newline_split ? 256 : len;
    sq__sym *sym = malloc(cap * sizeof *sym);
    sq__heap h = {0};
    if (!sym) {
        out->oom = true;
        return;
    }
    for (size_t off = 0; off < len;) {
        int32_t n = 0;
        do {
            if ((size_t)n == cap) {
                sq__sym *ns = realloc(sym, 2 * cap * sizeof *sym);
                if (!ns) {
                    out->oom = true;
                    goto done;
                }
                sym = ns;
                cap *= 2;
            }
            size_t l = sq__utf8_len((unsigned char)text[off]);
            if (l > len - off) l = len - off;
            sym[n].prev = n - 1;
            sym[n].next = n + 1;
            sym[n].off = (uint32_t)off;
            sym[n].n = (uint32_t)l;
            off += l;
            n++;
            if (v->spm_newline_split && l == 1 && text[off - 1] == '\n') break;
        } while (off < len);
        sym[n - 1].next = -1;
        h.n = 0;
        for (int32_t i = 1; i < n; i++) spm_try_pair(v, text, sym, i - 1, i, &h);
        while (h.n > 0) {
            sq__bigram bg = sq__heap_pop(&h);
            sq__sym *L = &sym[bg.left], *R = &sym[bg.right];
            if (L->n == 0 || R->n == 0 || L->n + R->n != bg.size) continue; /* stale */
            L->n += R->n;
            R->n = 0;
            L->next = R->next;
            if (R->next >= 0) sym[R->next].prev = bg.left;
            spm_try_pair(v, text, sym, L->prev, bg.left, &h);
            spm_try_pair(v, text, sym, bg.left, L->next, &h);
        }
        if (h.oom) {
            out->oom = true;
            break;
        }
        for (int32_t i = 0; i != -1; i = sym[i].next) spm_emit(v, text, &sym[i], out);
    }
done:
    free(h.a);
    free(sym);
}
