/*
 * tok_unicode.c — the Unicode side of the tokenizers: UTF-8 decoding the way
 * llama.cpp does it, category flags (from libutf8proc, no tables of ours), the
 * GPT-2 byte-to-unicode mapping, and the pre-tokenizers of byte-level BPE
 * written as hand scanners that give exactly the words llama.cpp's regex
 * splitting gives (its unicode.cpp has the same scanners for these patterns).
 */
#include <string.h>
#include <utf8proc.h>

#include "engine/tok_internal.h"

/* Decodes one code point. llama.cpp checks only the lead byte's class and
 * that the continuation bytes look like continuations (overlong forms and
 * surrogates pass); everything else becomes U+FFFD over one byte. We must do
 * the same, or BPE words would differ from llama.cpp's on odd input. */
uint32_t sq__utf8_decode(const unsigned char *s, size_t n, size_t *pos)
{
    size_t i = *pos;
    unsigned c = s[i];
    if (c < 0x80) {
        *pos = i + 1;
        return c;
    }
    size_t need;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
        need = 1;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        need = 2;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        need = 3;
        cp = c & 0x07;
    } else { /* a continuation byte as lead, or 0xF8..0xFF */
        *pos = i + 1;
        return 0xFFFD;
    }
    if (i + need >= n) { /* the sequence runs past the end */
        *pos = i + 1;
        return 0xFFFD;
    }
    for (size_t k = 1; k <= need; k++) {
        if ((s[i + k] & 0xC0) != 0x80) {
            *pos = i + 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    *pos = i + need + 1;
    return cp;
}

/* Looks back at most 3 bytes for a lead byte whose sequence runs past the
 * end; continuation bytes on their own, or a complete sequence, give 0. */
size_t sq_utf8_incomplete_tail(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned c = u[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation: look further back */
        size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        return need > k ? k : 0;
    }
    return 0;
}

/* Encodes a code point (surrogates included, as llama.cpp); code points past
 * U+10FFFF, which only a malformed 4-byte sequence can produce, become U+FFFD
 * (llama.cpp throws there). */
size_t sq__utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp > 0x10FFFF) cp = 0xFFFD;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Letter (\p{L}), number (\p{N}), whitespace (\s: the White_Space set,
 * i.e. \t..\r, U+0085 and the Z* separators) and, past ASCII, punctuation
 * (\p{P}) flags. ASCII is answered without a library call: it is most of
 * every text (ASCII punctuation is classified where it is used). */
unsigned sq__cpt_flags(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return SQ__CPT_LETTER | SQ__CPT_DEFINED;
        if (cp >= '0' && cp <= '9') return SQ__CPT_NUMBER | SQ__CPT_DEFINED;
        if (cp == ' ' || (cp >= 9 && cp <= 13)) return SQ__CPT_SPACE | SQ__CPT_DEFINED;
        return SQ__CPT_DEFINED;
    }
    if (cp > 0x10FFFF) return SQ__CPT_DEFINED;
    if (cp == 0x85) return SQ__CPT_SPACE | SQ__CPT_DEFINED;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return SQ__CPT_LETTER | SQ__CPT_DEFINED;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return SQ__CPT_NUMBER | SQ__CPT_DEFINED;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: return SQ__CPT_SPACE | SQ__CPT_DEFINED;
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO: return SQ__CPT_PUNCT | SQ__CPT_DEFINED;
    default: return SQ__CPT_DEFINED;
    }
}

uint32_t sq__cpt_tolower(uint32_t cp)
{
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    if (cp > 0x10FFFF) return cp;
    return (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
}

/* GPT-2's byte-to-unicode table: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes (0x00-0x20, 0x7F-0xA0, 0xAD) take the code
 * points 256.. in byte order. */
uint32_t sq__byte_to_cpt(unsigned b)
{
    if (b <= 0x20) return 256 + b;
    if (b >= 0x7F && b <= 0xA0) return 256 + 33 + (b - 0x7F);
    if (b == 0xAD) return 256 + 33 + 34;
    return b;
}

int sq__cpt_to_byte(uint32_t cp)
{
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
    if (cp >= 256 && cp < 256 + 33) return (int)(cp - 256);
    if (cp >= 256 + 33 && cp < 256 + 67) return (int)(0x7F + (cp - 256 - 33));
    if (cp == 256 + 67) return 0xAD;
    return -1;
}

/* The scanners below walk the code points of the text and cut a word
 * wherever the pre-tokenizer's regex would end a match. The text seen by a
 * scanner is cps[0..n): positions past it have no flags and no code point. */
typedef struct scan {
    const uint32_t *cps;
    size_t n;
    uint32_t *lens;
    size_t n_words;
    size_t prev_end;
} scan;

#define OUT_OF_TEXT 0xFFFFFFFFu

static inline uint32_t cp_at(const scan *s, size_t pos) { return pos < s->n ? s->cps[pos] : OUT_OF_TEXT; }
static inline unsigned fl_at(const scan *s, size_t pos) { return pos < s->n ? sq__cpt_flags(s->cps[pos]) : 0; }

/* Ends the current word at end; returns its length (0: nothing emitted). */
static size_t cut(scan *s, size_t end)
{
    size_t len = end - s->prev_end;
    if (len > 0) s->lens[s->n_words++] = (uint32_t)len;
    s->prev_end = end;
    return len;
}

/* English contractions 's 't 're 've 'm 'll 'd at pos (an apostrophe):
 * returns how many code points match (0 if none). */
static size_t contraction(const scan *s, size_t pos, bool any_case)
{
    if (cp_at(s, pos) != '\'' || pos + 1 >= s->n) return 0;
    uint32_t a = cp_at(s, pos + 1);
    if (any_case) a = sq__cpt_tolower(a);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= s->n) return 0;
    uint32_t b = cp_at(s, pos + 2);
    if (any_case) b = sq__cpt_tolower(b);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* Runs of whitespace: the \s+(?!\S) and \s+ alternatives shared by both
 * patterns. Whitespace followed by a non-space gives all but its last
 * character (that one goes with the next word). */
static void whitespace_tail(scan *s, size_t *pos)
{
    size_t k = 0;
    while (fl_at(s, *pos + k) & SQ__CPT_SPACE) k++;
    if (k > 1 && cp_at(s, *pos + k) != OUT_OF_TEXT) {
        *pos += k - 1;
        cut(s, *pos);
        return;
    }
    if (k > 0) {
        *pos += k;
        cut(s, *pos);
        return;
    }
    cut(s, ++*pos); /* nothing matched: a word of one code point */
}

/* Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Qwen2 is the same pattern with \p{N} instead of \p{N}{1,3}: digits one at a
 * time (max_digits = 1). */
static void split_llama3(scan *s, size_t max_digits)
{
    size_t pos = 0;
    while (pos < s->n) {
        uint32_t c = cp_at(s, pos);
        unsigned f = fl_at(s, pos);
        size_t k = contraction(s, pos, true);
        if (k) {
            pos += cut(s, pos + k);
            continue;
        }
        /* an optional non-letter/digit/newline, then letters */
        if (!(c == '\r' || c == '\n' || (f & SQ__CPT_NUMBER))) {
            if ((f & SQ__CPT_LETTER) || (fl_at(s, pos + 1) & SQ__CPT_LETTER)) {
                pos++;
                while (fl_at(s, pos) & SQ__CPT_LETTER) pos++;
                cut(s, pos);
                continue;
            }
        }
        /* digits in groups of at most max_digits */
        if (f & SQ__CPT_NUMBER) {
            size_t start = pos;
            while (fl_at(s, pos) & SQ__CPT_NUMBER) {
                if (++pos - start >= max_digits) {
                    cut(s, pos);
                    start = pos;
                }
            }
            cut(s, pos);
            continue;
        }
        /* optional space, then punctuation/symbols, then newlines */
        unsigned f2 = c == ' ' ? fl_at(s, pos + 1) : f;
        if (!(f2 & (SQ__CPT_SPACE | SQ__CPT_LETTER | SQ__CPT_NUMBER)) && (f & SQ__CPT_DEFINED)) {
            pos += (c == ' ');
            while (!(f2 & (SQ__CPT_SPACE | SQ__CPT_LETTER | SQ__CPT_NUMBER)) && (f2 & SQ__CPT_DEFINED))
                f2 = fl_at(s, ++pos);
            uint32_t c2 = cp_at(s, pos);
            while (c2 == '\r' || c2 == '\n') c2 = cp_at(s, ++pos);
            cut(s, pos);
            continue;
        }
        /* whitespace ending in newlines: up to and including the last \r/\n */
        size_t k2 = 0, last_nl = 0;
        while (fl_at(s, pos + k2) & SQ__CPT_SPACE) {
            uint32_t c2 = cp_at(s, pos + k2);
            if (c2 == '\r' || c2 == '\n') last_nl = pos + k2 + 1;
            k2++;
        }
        if (last_nl > 0) {
            pos = last_nl;
            cut(s, pos);
            continue;
        }
        whitespace_tail(s, &pos);
    }
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void split_gpt2(scan *s)
{
    size_t pos = 0;
    while (pos < s->n) {
        uint32_t c = cp_at(s, pos);
        unsigned f = fl_at(s, pos);
        size_t k = contraction(s, pos, false);
        if (k) {
            pos += cut(s, pos + k);
            continue;
        }
        unsigned f2 = c == ' ' ? fl_at(s, pos + 1) : f;
        if (f2 & SQ__CPT_LETTER) {
            pos += (c == ' ');
            while (f2 & SQ__CPT_LETTER) f2 = fl_at(s, ++pos);
            cut(s, pos);
            continue;
        }
        if (f2 & SQ__CPT_NUMBER) {
            pos += (c == ' ');
            while (f2 & SQ__CPT_NUMBER) f2 = fl_at(s, ++pos);
            cut(s, pos);
            continue;
        }
        if (!(f2 & (SQ__CPT_SPACE | SQ__CPT_LETTER | SQ__CPT_NUMBER)) && (f2 & SQ__CPT_DEFINED)) {
            pos += (c == ' ');
            while (!(f2 & (SQ__CPT_SPACE | SQ__CPT_LETTER | SQ__CPT_NUMBER)) && (f2 & SQ__CPT_DEFINED))
                f2 = fl_at(s, ++pos);
            cut(s, pos);
            continue;
        }
        whitespace_tail(s, &pos);
    }
}

/* llama.cpp's default pre-tokenizer chains four regexes, each one cutting
 * the pieces left by the previous one (text between matches stays a piece):
 *   1. [\p{P}\$\+<=>\^~\|]+   runs of punctuation and these symbols
 *   2. the GPT-2 pattern (scanner above), within each piece
 *   3. \p{N}+                   runs of numbers
 *   4. [0-9][0-9][0-9]          ASCII digits three at a time
 * llama.cpp runs 1, 3 and 4 with std::regex on a text where every non-ASCII
 * code point is replaced by a byte standing for its category (whitespace by
 * \v), so the classes below are what those regexes see. */
static bool default_punct(uint32_t cp)
{
    if (cp < 0x80) return cp > 0x20 && cp < 0x7F && cp != '`' && !((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') &&
                          !(cp >= '0' && cp <= '9');
    unsigned f = sq__cpt_flags(cp);
    return !(f & SQ__CPT_SPACE) && (f & SQ__CPT_PUNCT);
}

static bool default_number(uint32_t cp)
{
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    unsigned f = sq__cpt_flags(cp);
    return !(f & SQ__CPT_SPACE) && (f & SQ__CPT_NUMBER);
}

/* Cuts every piece of in[] into runs that match `is` and stretches that do
 * not; returns the number of pieces written to out. */
static size_t cut_runs(const uint32_t *cps, const uint32_t *in, size_t n_in, uint32_t *out, bool (*is)(uint32_t))
{
    size_t n_out = 0, start = 0;
    for (size_t k = 0; k < n_in; k++) {
        size_t end = start + in[k], a = start;
        while (a < end) {
            bool m = is(cps[a]);
            size_t b = a + 1;
            while (b < end && is(cps[b]) == m) b++;
            out[n_out++] = (uint32_t)(b - a);
            a = b;
        }
        start = end;
    }
    return n_out;
}

static bool ascii_digit(uint32_t cp) { return cp >= '0' && cp <= '9'; }

/* Regex 4: leftmost triples of ASCII digits; what lies between them (single
 * digits, pairs, anything else) stays together. */
static size_t cut_triples(const uint32_t *cps, const uint32_t *in, size_t n_in, uint32_t *out)
{
    size_t n_out = 0, start = 0;
    for (size_t k = 0; k < n_in; k++) {
        size_t end = start + in[k], gap = start;
        for (size_t a = start; a + 3 <= end;) {
            if (ascii_digit(cps[a]) && ascii_digit(cps[a + 1]) && ascii_digit(cps[a + 2])) {
                if (a > gap) out[n_out++] = (uint32_t)(a - gap);
                out[n_out++] = 3;
                a += 3;
                gap = a;
            } else {
                a++;
            }
        }
        if (end > gap) out[n_out++] = (uint32_t)(end - gap);
        start = end;
    }
    return n_out;
}

static size_t split_default(const uint32_t *cps, size_t n, uint32_t *lens, uint32_t *tmp)
{
    uint32_t whole = (uint32_t)n;
    size_t k = cut_runs(cps, &whole, 1, lens, default_punct);
    /* the GPT-2 scanner inside each piece */
    size_t m = 0, start = 0;
    for (size_t i = 0; i < k; i++) {
        scan s = {cps + start, lens[i], tmp + m, 0, 0};
        split_gpt2(&s);
        m += s.n_words;
        start += lens[i];
    }
    k = cut_runs(cps, tmp, m, lens, default_number);
    m = cut_triples(cps, lens, k, tmp);
    memcpy(lens, tmp, m * sizeof *lens);
    return m;
}

size_t sq__pretok_split(sq_vocab_pre pre, const uint32_t *cps, size_t n, uint32_t *lens, uint32_t *scratch)
{
    if (n == 0) return 0;
    if (pre == SQ_VOCAB_PRE_DEFAULT) return split_default(cps, n, lens, scratch);
    scan s = {cps, n, lens, 0, 0};
    if (pre == SQ_VOCAB_PRE_LLAMA3)
        split_llama3(&s, 3);
    else if (pre == SQ_VOCAB_PRE_QWEN2)
        split_llama3(&s, 1);
    else
        split_gpt2(&s);
    return s.n_words;
}
