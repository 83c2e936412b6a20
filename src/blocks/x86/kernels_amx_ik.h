/*
 * kernels_amx_ik.h — the AMX unpack steps of ik_llama.cpp's types whose
 * activations are Q8_K (IQ4_KS, IQ4_K, IQ5_K, IQ5_KS, IQ3_K, IQ3_KS, IQ6_K,
 * IQ2_KL), for
 * kernels_amx.c only (it includes this after amx_split; the kinds are in its
 * table).
 *
 * An ik value is a level of a non-linear table (or of its "shifted" twin,
 * chosen per sub-block) times an integer sub-block scale: v = s·L, with
 * |L| <= 127 and |s| <= 127, so |v| <= 16129 fits 2^7·hi + lo with a signed
 * hi byte (-127..126) and lo in 0..127, as the K-quants' values do (the top
 * of kernels_amx.c). Each step decodes the block's 256 levels (signed bytes,
 * value order) with vpshufb on the table's 16-entry halves, the shifted
 * table taken per 128-bit lane by a byte mask, and the 16 per-16 scales as
 * int16, then amx_split does the rest. The float per slot is the block's d
 * (IQn_K) or the row scale (IQn_KS: each segment of a SmarterQuant run and
 * each plain row starts with it, so `row` points at that scale and the
 * super-block index b counts blocks after it). No mins: the levels are
 * signed already. IQ6_K's levels are not integers: see its step.
 */
#ifndef SQ_X86_KERNELS_AMX_IK_H
#define SQ_X86_KERNELS_AMX_IK_H

/* A 16-entry signed table (16 bytes at t) in every 128-bit lane. */
SQ_INLINE __m512i amx_ik_table(const int8_t *t) { return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)t)); }

/* The byte mask of the 128-bit lanes of value group g (64 values, 16 per
 * lane) whose 16-value sub-block has its bit set in sh16 (bit i: values
 * 16i..16i+15). */
SQ_INLINE __mmask64 amx_ik_lanes(unsigned sh16, int g)
{
    return _cvtu64_mask64(_pdep_u64((sh16 >> 4 * g) & 0xF, 0x0001000100010001ull) * 0xFFFFull);
}

/* Per-32 bits (bit i: values 32i..32i+31) as per-16 bits. */
SQ_INLINE unsigned amx_ik_dup_bits(unsigned b8) { return _pdep_u32(b8 & 0xFF, 0x5555u) * 3u; }

/* The 4-bit indices of a 256-value IQ4_KS / IQ4_K block in value order:
 * 32-value sub-block i is qs[16i..16i+15], low nibbles first. */
SQ_INLINE void amx_ik_nib4(const uint8_t *qs, __m512i q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    SQ_UNROLL for (int g = 0; g < 4; g++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
        const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        q[g] = _mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(3, 1, 2, 0));
    }
}

/* Levels of the 4-bit indices q (in place) from the 16-entry table t and its
 * shifted twin t + 16, per 16-value sub-block by the bits of sh16. */
SQ_INLINE void amx_ik_levels4(__m512i q[4], const int8_t *t, unsigned sh16)
{
    const __m512i t0 = amx_ik_table(t), t1 = amx_ik_table(t + 16);
    SQ_UNROLL for (int g = 0; g < 4; g++)
        q[g] = _mm512_mask_shuffle_epi8(_mm512_shuffle_epi8(t0, q[g]), amx_ik_lanes(sh16, g), t1, q[g]);
}

/* Levels of 5-bit indices (low nibbles q, fifth bit from Q5_K's qh layout
 * at qh) from the 32-entry table t and its shifted twin t + 32. */
SQ_INLINE void amx_ik_levels5(__m512i q[4], const uint8_t *qh, const int8_t *t, unsigned sh16)
{
    const __m512i t0 = amx_ik_table(t), t0h = amx_ik_table(t + 16), t1 = amx_ik_table(t + 32),
                  t1h = amx_ik_table(t + 48);
    const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh));
    SQ_UNROLL for (int g = 0; g < 4; g++) {
        const __mmask64 hb = _mm512_test_epi8_mask(h, KZ_TAB(kz_q5_nat, g)), sh = amx_ik_lanes(sh16, g);
        __m512i r = _mm512_shuffle_epi8(t0, q[g]);
        r = _mm512_mask_shuffle_epi8(r, _kandn_mask64(sh, hb), t0h, q[g]);
        r = _mm512_mask_shuffle_epi8(r, _kandn_mask64(hb, sh), t1, q[g]);
        q[g] = _mm512_mask_shuffle_epi8(r, _kand_mask64(hb, sh), t1h, q[g]);
    }
}

/* Levels of 3-bit indices q (0..7) from ik's 16-byte iq3nl table (the
 * shifted levels at +8). */
SQ_INLINE void amx_ik_levels3(__m512i q[4], unsigned sh16)
{
    const __m512i t = amx_ik_table(sq__iq3nl_values), b8 = _mm512_set1_epi8(8);
    SQ_UNROLL for (int g = 0; g < 4; g++)
        q[g] = _mm512_shuffle_epi8(t, _mm512_mask_add_epi8(q[g], amx_ik_lanes(sh16, g), q[g], b8));
}

/* Eight per-32 scales (int16 in the low half) as 16 per-16 int16 scales. */
SQ_INLINE __m256i amx_ik_dup16(__m128i s16)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi16(s16, s16)), _mm_unpackhi_epi16(s16, s16), 1);
}

/* The IQ4_KS / IQ5_KS per-32 scales: (byte & 254) − 127, as per-16 int16. */
SQ_INLINE __m256i amx_ik_ks_scales(const uint8_t *scales)
{
    const __m128i b = _mm_and_si128(_mm_loadl_epi64((const __m128i *)scales), _mm_set1_epi8((char)254));
    return amx_ik_dup16(_mm_sub_epi16(_mm_cvtepu8_epi16(b), _mm_set1_epi16(127)));
}

/* The IQ4_KS / IQ5_KS shifted-table bits (bit 0 of each scale byte), per 16. */
SQ_INLINE unsigned amx_ik_ks_shifted(const uint8_t *scales)
{
    const __m128i b = _mm_slli_epi16(_mm_loadl_epi64((const __m128i *)scales), 7);
    return amx_ik_dup_bits((unsigned)_mm_movemask_epi8(b));
}

/* The 6-bit IQ4_K / IQ5_K scales (stored +32) as 16 int16. */
SQ_INLINE __m256i amx_ik_k45_scales(const uint8_t *scales_h, const uint8_t *scales_l)
{
    _Alignas(32) int16_t s[16];
    for (int ib = 0; ib < 16; ib++)
        s[ib] = (int16_t)(((scales_l[ib / 2] >> 4 * (ib % 2) & 0xF) | ((scales_h[ib / 4] >> 2 * (ib % 4) & 3) << 4)) - 32);
    return _mm256_load_si256((const __m256i *)s);
}

/* The f32 row scale at p. */
SQ_INLINE float amx_ik_f32(const void *p)
{
    float d;
    memcpy(&d, p, sizeof d);
    return d;
}

/* IQ4_KS (row: f32 scale, then the blocks). */
SQ_INLINE void amx_unpack_iq4_ks(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const sq__block_iq4_ks *w = (const sq__block_iq4_ks *)((const char *)row + 4) + b;
    __m512i q[4];
    amx_ik_nib4(w->qs, q);
    amx_ik_levels4(q, sq__iq4k_values, amx_ik_ks_shifted(w->scales));
    amx_split(q, true, amx_ik_ks_scales(w->scales), k, P->hi[r] + 256 * s, P->lo[r] + 256 * s);
    P->d[s][r] = amx_ik_f32(row);
}

/* IQ5_KS (row: f32 scale, then the blocks). */
SQ_INLINE void amx_unpack_iq5_ks(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const sq__block_iq5_ks *w = (const sq__block_iq5_ks *)((const char *)row + 4) + b;
    __m512i q[4];
    kz_k4_nibbles(w->qs, q, 1);
    amx_ik_levels5(q, w->qh, sq__iq5nl_values, amx_ik_ks_shifted(w->scales));
    amx_split(q, true, amx_ik_ks_scales(w->scales), k, P->hi[r] + 256 * s, P->lo[r] + 256 * s);
    P->d[s][r] = amx_ik_f32(row);
}

/* IQ4_K: per-16 shifted bits in extra, 6-bit scales. */
SQ_INLINE void amx_unpack_iq4_k(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const sq__block_iq4_k *w = (const sq__block_iq4_k *)row + b;
    __m512i q[4];
    amx_ik_nib4(w->qs, q);
    amx_ik_levels4(q, sq__iq4k_values, w->extra);
    amx_split(q, true, amx_ik_k45_scales(w->scales_h, w->scales_l), k, P->hi[r] + 256 * s, P->lo[r] + 256 * s);
    P->d[s][r] = h2f(w->d);
}

/* IQ5_K: Q5_K's index layout, per-16 shifted bits in extra, 6-bit scales. */
SQ_INLINE void amx_unpack_iq5_k(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const sq__block_iq5_k *w = (const sq__block_iq5_k *)row + b;
    __m512i q[4];
    kz_k4_nibbles(w->qs, q, 1);
    amx_ik_levels5(q, w->qh, sq__iq5nl_values, w->extra);
    amx_split(q, true, amx_ik_k45_scales(w->scales_h, w->scales_l), k, P->hi[r] + 256 * s, P->lo[r] + 256 * s);
    P->d[s][r] = h2f(w->d);
}

/* IQ3_K: Q3_K's index layout, odd scales ±(2l+1) with signs in scales_h,
 * per-16 shifted bits in extra. */
SQ_INLINE void amx_unpack_iq3_k(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const sq__block_iq3_k *w = (const sq__block_iq3_k *)row + b;
    __m512i q[4];
    kz_q3_vals(w->qh, w->qs, q);
    amx_ik_levels3(q, w->extra);
    const __m128i sl = _mm_loadl_epi64((const __m128i *)w->scales_l);
    const __m128i l = _mm_and_si128(_mm_unpacklo_epi8(sl, _mm_srli_epi16(sl, 4)), _mm_set1_epi8(0x0F));
    const __m256i odd = _mm256_add_epi16(_mm256_slli_epi16(_mm256_cvtepu8_epi16(l), 1), _mm256_set1_epi16(1));
    const __mmask16 neg = _cvtu32_mask16(w->scales_h);
    amx_split(q, true, _mm256_mask_sub_epi16(odd, neg, _mm256_setzero_si256(), odd), k, P->hi[r] + 256 * s,
              P->lo[r] + 256 * s);
    P->d[s][r] = h2f(w->d);
}

/* IQ3_KS (row: fp16 scale, then the blocks): Q3_K's index layout, 5-bit
 * per-32 scales (fifth bits in extra 0-7), shifted bits in extra 8-15. */
SQ_INLINE void amx_unpack_iq3_ks(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const sq__block_iq3_ks *w = (const sq__block_iq3_ks *)((const char *)row + 2) + b;
    __m512i q[4];
    kz_q3_vals(w->qh, w->qs, q);
    amx_ik_levels3(q, amx_ik_dup_bits(w->extra >> 8));
    /* scale i: nibble i/4 of scales[i % 4] | bit i of extra << 4, − 16 */
    const __m128i sc = _mm_cvtsi32_si128((int)(w->scales[0] | w->scales[1] << 8 | w->scales[2] << 16 |
                                               (uint32_t)w->scales[3] << 24));
    const __m128i nib = _mm_and_si128(_mm_unpacklo_epi32(sc, _mm_srli_epi16(sc, 4)), _mm_set1_epi8(0x0F));
    const __m128i hi5 = _mm_maskz_mov_epi8(_cvtu32_mask16(w->extra & 0xFF), _mm_set1_epi8(16));
    const __m128i s8 = _mm_sub_epi8(_mm_or_si128(nib, hi5), _mm_set1_epi8(16));
    uint16_t d16;
    memcpy(&d16, row, sizeof d16);
    amx_split(q, true, amx_ik_dup16(_mm_cvtepi8_epi16(s8)), k, P->hi[r] + 256 * s, P->lo[r] + 256 * s);
    P->d[s][r] = h2f(d16);
}

/* IQ2_KL (row: fp16 scale, then the blocks): pairs of values, a 5-bit index
 * each (low or high nibble of qs, fifth bit in qh) into a 32-entry grid of
 * iq3nl pairs, looked up as int16 (both bytes at once) with vpermw; 6-bit
 * per-32 scales stored +32. */
SQ_INLINE void amx_unpack_iq2_kl(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    const sq__block_iq2_kl *w = (const sq__block_iq2_kl *)((const char *)row + 2) + b;
    const __m512i grid = _mm512_loadu_si512(sq__iq2kl_values), m4 = _mm512_set1_epi16(0x0F);
    const __m256i qh = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)w->qh));
    const __m512i qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), qh, 1);
    __m512i q[4];
    SQ_UNROLL for (int g = 0; g < 4; g++) {
        /* sub-blocks 2g (low nibbles of qs[16g..16g+15]) and 2g+1 (high nibbles), 16 pairs each */
        const __m256i n = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(w->qs + 16 * g)));
        const __m512i nib = _mm512_and_si512(
            _mm512_inserti64x4(_mm512_castsi256_si512(n), _mm256_srli_epi16(n, 4), 1), m4);
        const __m512i h = _mm512_and_si512(_mm512_srlv_epi16(qh2, ikz_shift_halves(2 * g, 2 * g + 1)),
                                           _mm512_set1_epi16(1));
        q[g] = _mm512_permutexvar_epi16(_mm512_or_si512(nib, _mm512_slli_epi16(h, 4)), grid);
    }
    _Alignas(16) int16_t sc[8];
    for (int ib = 0; ib < 8; ib++)
        sc[ib] = (int16_t)(((w->scales_l[ib % 4] >> 4 * (ib / 4) & 0xF) | ((w->scales_h >> 2 * ib & 3) << 4)) - 32);
    uint16_t d16;
    memcpy(&d16, row, sizeof d16);
    amx_split(q, true, amx_ik_dup16(_mm_load_si128((const __m128i *)sc)), k, P->hi[r] + 256 * s, P->lo[r] + 256 * s);
    P->d[s][r] = h2f(d16);
}

/* IQ6_K: levels from ik's cubic (not integers), so v = round(2·s·L) (|v| <=
 * 32258: hi = v >> 8 signed, lo = v & 255) with d/2 as the slot's float: the
 * product is the one of weights moved by at most d/4, 1/64516 of the block's
 * largest |d·s·L| (its largest |s| is 127), well below the rounding of d to
 * fp16 itself (1/2048 relative). Indices: Q4_K's nibble layout, the two high
 * bits as Q6_K's qh. */
SQ_INLINE void amx_unpack_iq6_k(const void *row, int64_t b, amx_panel *P, int r, int s, const amx_kind k)
{
    (void)k;
    const sq__block_iq6_k *w = (const sq__block_iq6_k *)row + b;
    __m512i q[4];
    kz_k4_nibbles(w->qs, q, 1);
    const __m512i sh_a = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i sh_b = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1), m3 = _mm512_set1_epi8(3);
    SQ_UNROLL for (int h = 0; h < 2; h++) {
        /* qh[32h + l] bits 2j..2j+1: the high bits of values 128h + 32j + l */
        const __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w->qh + 32 * h)));
        const __m512i ha = _mm512_and_si512(_mm512_srlv_epi16(raw, sh_a), m3);
        const __m512i hb = _mm512_and_si512(_mm512_srlv_epi16(raw, sh_b), m3);
        q[2 * h] = _mm512_or_si512(q[2 * h], _mm512_slli_epi16(ha, 4));
        q[2 * h + 1] = _mm512_or_si512(q[2 * h + 1], _mm512_slli_epi16(hb, 4));
    }
    _Alignas(64) uint8_t idx8[256];
    SQ_UNROLL for (int g = 0; g < 4; g++) _mm512_store_si512(idx8 + 64 * g, q[g]);
    int8_t *hi = P->hi[r] + 256 * s, *lo = P->lo[r] + 256 * s;
    const __m512i m8 = _mm512_set1_epi32(255);
    for (int i = 0; i < 16; i++) { /* 16-value sub-block i */
        const __m128i idx = _mm_load_si128((const __m128i *)(idx8 + 16 * i));
        const __m512 l = ikz6_levels16(idx, _mm512_set1_ps(w->extra >> i & 1 ? 1.0f : 0.0f));
        const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(l, _mm512_set1_ps(2.0f * (float)w->scales[i])));
        _mm_storeu_si128((__m128i *)(hi + 16 * i), _mm512_cvtepi32_epi8(_mm512_srai_epi32(v, 8)));
        _mm_storeu_si128((__m128i *)(lo + 16 * i), _mm512_cvtepi32_epi8(_mm512_and_si512(v, m8)));
    }
    P->d[s][r] = 0.5f * h2f(w->d);
}

#endif
