/*
 * test_gguf_malformed.c — the reader against broken files. A small valid GGUF
 * (every value type, a string array, a nested array, three tensors, one of
 * them SmarterQuant) is generated here with the positions of its fields
 * recorded; each test patches one field and checks that open fails with its
 * own clear message (naming the offset). Every input is opened from an
 * exact-size heap copy, so AddressSanitizer (make asan) sees any overread.
 * Also: truncation at every byte of the small file and at every section
 * boundary of the demo model, and a seeded random-mutation sweep.
 */
#include <unistd.h>

#include "harness.h"
#include "sq/gguf.h"

/* ---- a tiny GGUF builder ---- */

typedef struct gb {
    uint8_t p[8192];
    size_t n;
} gb;

static void put(gb *b, const void *d, size_t n)
{
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void u32(gb *b, uint32_t v) { put(b, &v, 4); }
static void u64(gb *b, uint64_t v) { put(b, &v, 8); }
static void str(gb *b, const char *s)
{
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad(gb *b, size_t a)
{
    while (b->n % a) b->p[b->n++] = 0;
}
static void patch32(gb *b, size_t at, uint32_t v) { memcpy(b->p + at, &v, 4); }
static void patch64(gb *b, size_t at, uint64_t v) { memcpy(b->p + at, &v, 8); }

enum { K_ARCH, K_ALIGN, K_AAA, K_BBB, K_STR, K_ARRSTR, K_NESTED, K_SQ_EN, K_SQ_PERM, K_SQ_TYPES, K_F64, K_U64, N_K };
enum { T_A, T_B, T_SQ, N_T };

/* Field positions of the base file. */
typedef struct layout {
    size_t key_len[N_K], kv_type[N_K], val[N_K];
    size_t t_name[N_T], t_ndims[N_T], t_ne[N_T], t_type[N_T], t_off[N_T];
    size_t kv_end, infos_end, data_start;
} layout;

static void kv_begin(gb *b, layout *L, int k, const char *key, uint32_t type)
{
    L->key_len[k] = b->n;
    str(b, key);
    L->kv_type[k] = b->n;
    u32(b, type);
    L->val[k] = b->n;
}

static void tensor(gb *b, layout *L, int t, const char *name, int n_dims, const uint64_t *ne, uint32_t type,
                   uint64_t off)
{
    L->t_name[t] = b->n;
    str(b, name);
    L->t_ndims[t] = b->n;
    u32(b, (uint32_t)n_dims);
    L->t_ne[t] = b->n;
    for (int d = 0; d < n_dims; d++) u64(b, ne[d]);
    L->t_type[t] = b->n;
    u32(b, type);
    L->t_off[t] = b->n;
    u64(b, off);
}

#define SQ_BYTES (2 * (272 + 144)) /* [512, 2] with types [8,2,2,2]: Q8_0 segment then Q4_0 */

/* The value of t.sq.smarterquant.permutation that build_base writes. */
static const char *base_perm = "[]";

static void build_base(gb *b, layout *L)
{
    memset(b, 0, sizeof *b);
    memset(L, 0, sizeof *L);
    u32(b, 0x46554747u);
    u32(b, 3);
    u64(b, N_T);
    u64(b, N_K);
    kv_begin(b, L, K_ARCH, "general.architecture", SQ_GGUF_STRING);
    str(b, "test");
    kv_begin(b, L, K_ALIGN, "general.alignment", SQ_GGUF_UINT32);
    u32(b, 32);
    kv_begin(b, L, K_AAA, "test.aaa", SQ_GGUF_UINT32);
    u32(b, 1);
    kv_begin(b, L, K_BBB, "test.bbb", SQ_GGUF_UINT32);
    u32(b, 2);
    kv_begin(b, L, K_STR, "test.str", SQ_GGUF_STRING);
    str(b, "hello");
    kv_begin(b, L, K_ARRSTR, "test.arr_str", SQ_GGUF_ARRAY);
    u32(b, SQ_GGUF_STRING);
    u64(b, 4);
    str(b, "a");
    str(b, "bb");
    str(b, "");
    str(b, "ccc");
    kv_begin(b, L, K_NESTED, "test.nested", SQ_GGUF_ARRAY);
    u32(b, SQ_GGUF_ARRAY);
    u64(b, 2);
    u32(b, SQ_GGUF_UINT8);
    u64(b, 2);
    put(b, "\x01\x02", 2);
    u32(b, SQ_GGUF_STRING);
    u64(b, 1);
    str(b, "x");
    kv_begin(b, L, K_SQ_EN, "t.sq.smarterquant.enabled", SQ_GGUF_BOOL);
    put(b, "\x01", 1);
    kv_begin(b, L, K_SQ_PERM, "t.sq.smarterquant.permutation", SQ_GGUF_STRING);
    str(b, base_perm);
    kv_begin(b, L, K_SQ_TYPES, "t.sq.smarterquant.block_types", SQ_GGUF_STRING);
    str(b, "[8,2,2,2]");
    kv_begin(b, L, K_F64, "test.f64", SQ_GGUF_FLOAT64);
    const double d = 2.25;
    put(b, &d, 8);
    kv_begin(b, L, K_U64, "test.u64", SQ_GGUF_UINT64);
    u64(b, (1ull << 63) + 5);
    L->kv_end = b->n;
    const uint64_t ne_a[1] = {8}, ne_b[2] = {4, 2}, ne_sq[2] = {512, 2};
    tensor(b, L, T_A, "t.a", 1, ne_a, SQ_TYPE_F32, 0);
    tensor(b, L, T_B, "t.b", 2, ne_b, SQ_TYPE_F16, 32);
    tensor(b, L, T_SQ, "t.sq", 2, ne_sq, SQ_TYPE_Q4_0, 64);
    L->infos_end = b->n;
    pad(b, 32);
    L->data_start = b->n;
    for (int i = 0; i < 64 + SQ_BYTES; i++) b->p[b->n++] = (uint8_t)(i * 13 + 1);
}

/* Opens n bytes of p from an exact-size heap copy. */
static sq_status open_copy(const uint8_t *p, size_t n, sq_gguf **g, sq_error *err)
{
    uint8_t *c = malloc(n ? n : 1);
    memcpy(c, p, n);
    sq_status st = sq_gguf_open_memory(c, n, "mal.gguf", g, err);
    if (st == SQ_OK) {
        /* keep the copy alive as long as the handle: test code closes right away */
        sq_gguf_close(*g);
        *g = NULL;
        st = sq_gguf_open_memory(p, n, "mal.gguf", g, err);
    }
    free(c);
    return st;
}

/* Expects open to fail with status st and a message containing want and an offset. */
#define EXPECT_FAIL(b, st, want)                                                              \
    do {                                                                                      \
        sq_error e_ = {0};                                                                    \
        sq_gguf *g_ = NULL;                                                                   \
        CHECK_INT(open_copy((b)->p, (b)->n, &g_, &e_), (st));                                 \
        CHECK(g_ == NULL);                                                                    \
        CHECK_CONTAINS(e_.msg, (want));                                                       \
        CHECK_CONTAINS(e_.msg, "mal.gguf: offset ");                                          \
        sq_gguf_close(g_);                                                                    \
    } while (0)

/* ---- tests ---- */

static void test_base_is_valid(void)
{
    gb b;
    layout L;
    build_base(&b, &L);
    sq_error err = {0};
    sq_gguf *g = NULL;
    CHECK_MSG(sq_gguf_open_memory(b.p, b.n, "mal.gguf", &g, &err) == SQ_OK, "%s", err.msg);
    if (!g) return;
    CHECK_INT(sq_gguf_n_kv(g), N_K);
    CHECK_INT(sq_gguf_data_offset(g), L.data_start);
    const sq_gguf_tensor *t = sq_gguf_find_tensor(g, "t.sq");
    CHECK(t && t->smarterquant && t->nbytes == SQ_BYTES && t->sq.types[0] == 8 && t->sq.types[1] == 2);
    CHECK(t && t->data == b.p + L.data_start + 64);
    char out[128];
    sq_gguf_kv_format(g, K_NESTED, 0, 0, out, sizeof out);
    CHECK_STR(out, "[[1, 2], [\"x\"]]");
    sq_gguf_kv_format(g, K_NESTED, 1, 0, out, sizeof out);
    CHECK_STR(out, "[[1, ...], ...]");
    sq_gguf_kv_format(g, K_NESTED, 1, SQ_GGUF_FMT_JSON, out, sizeof out);
    CHECK_STR(out, "[[1]]");
    CHECK_INT(sq_gguf_arr_type(g, K_NESTED), SQ_GGUF_ARRAY);
    CHECK_INT(sq_gguf_arr_n(g, K_NESTED), 2);
    CHECK(sq_gguf_arr_data(g, K_NESTED) == NULL);
    CHECK(sq_gguf_arr_str(g, K_ARRSTR, 2).len == 0 && sq_gguf_arr_str(g, K_ARRSTR, 3).len == 3);
    sq_gguf_kv_format(g, K_F64, 0, 0, out, sizeof out);
    CHECK_STR(out, "2.25");
    sq_gguf_kv_format(g, K_U64, 0, 0, out, sizeof out);
    CHECK_STR(out, "9223372036854775813");
    int64_t v;
    CHECK_INT(sq_gguf_get_i64(g, "test.u64", &v, &err), SQ_ERANGE);
    float f;
    CHECK_INT(sq_gguf_get_f32(g, "test.f64", &f, &err), SQ_OK);
    CHECK(f == 2.25f);
    /* the raw bytes of a value are exactly what is in the file */
    uint64_t nraw = 0;
    const void *raw = sq_gguf_kv_raw(g, K_STR, &nraw);
    CHECK(nraw == 13 && raw == b.p + L.val[K_STR]);
    /* a formatter that is short of room still terminates and reports the full length */
    CHECK_INT(sq_gguf_kv_format(g, K_ARRSTR, 0, 0, out, 5), strlen("[\"a\", \"bb\", \"\", \"ccc\"]"));
    CHECK_INT(strlen(out), 4);
    sq_gguf_close(g);

    /* enabled = false: t.sq is an ordinary Q4_0 tensor of 576 bytes */
    b.p[L.val[K_SQ_EN]] = 0;
    CHECK_INT(sq_gguf_open_memory(b.p, b.n, "mal.gguf", &g, &err), SQ_OK);
    t = sq_gguf_find_tensor(g, "t.sq");
    CHECK(t && !t->smarterquant && t->nbytes == 576);
    sq_gguf_close(g);

    /* version 2 reads the same */
    build_base(&b, &L);
    patch32(&b, 4, 2);
    CHECK_INT(sq_gguf_open_memory(b.p, b.n, "mal.gguf", &g, &err), SQ_OK);
    CHECK_INT(sq_gguf_version(g), 2);
    sq_gguf_close(g);
}

static void test_header(void)
{
    gb b;
    layout L;
    build_base(&b, &L);
    b.p[0] = 'X';
    EXPECT_FAIL(&b, SQ_EFORMAT, "bad magic");
    build_base(&b, &L);
    patch32(&b, 4, 1);
    EXPECT_FAIL(&b, SQ_EUNSUPPORTED, "unsupported GGUF version 1");
    patch32(&b, 4, 0x03000000u);
    EXPECT_FAIL(&b, SQ_EUNSUPPORTED, "big-endian");
    build_base(&b, &L);
    patch64(&b, 16, 1ull << 62);
    EXPECT_FAIL(&b, SQ_EFORMAT, "key/value count 4611686018427387904 is impossible");
    build_base(&b, &L);
    patch64(&b, 16, N_K + 1); /* the first tensor info is read as key 12, then tensor 0 is garbage */
    EXPECT_FAIL(&b, SQ_EFORMAT, "tensor 0");
    build_base(&b, &L);
    patch64(&b, 8, 1ull << 40);
    EXPECT_FAIL(&b, SQ_EFORMAT, "tensor count 1099511627776 is impossible");
    build_base(&b, &L);
    patch64(&b, 8, N_T + 1);
    EXPECT_FAIL(&b, SQ_EFORMAT, "tensor 3");
    build_base(&b, &L);
    b.n = 10;
    EXPECT_FAIL(&b, SQ_EFORMAT, "too small for a GGUF header");
}

static void test_lying_lengths(void)
{
    gb b;
    layout L;
    build_base(&b, &L);
    patch64(&b, L.key_len[K_AAA], 1000000000000ull);
    EXPECT_FAIL(&b, SQ_EFORMAT, "key 2: key length 1000000000000 runs past the end of the file");
    build_base(&b, &L);
    patch64(&b, L.val[K_STR], ~0ull);
    EXPECT_FAIL(&b, SQ_EFORMAT, "key 4 'test.str': string length 18446744073709551615 runs past the end");
    build_base(&b, &L);
    patch64(&b, L.val[K_ARRSTR] + 12 + 9, 5000); /* the second string of the array */
    EXPECT_FAIL(&b, SQ_EFORMAT, "'test.arr_str', element 1: string length 5000 runs past the end");
    build_base(&b, &L);
    patch64(&b, L.val[K_ARRSTR] + 4, 1ull << 60);
    EXPECT_FAIL(&b, SQ_EFORMAT, "array count 1152921504606846976 is impossible");
    build_base(&b, &L);
    patch64(&b, L.t_name[T_B], 1ull << 50);
    EXPECT_FAIL(&b, SQ_EFORMAT, "tensor 1: tensor name length 1125899906842624 runs past the end");
    build_base(&b, &L);
    patch64(&b, L.key_len[K_ARCH], 0);
    EXPECT_FAIL(&b, SQ_EFORMAT, "empty key");
    build_base(&b, &L);
    b.p[L.key_len[K_AAA] + 8 + 2] = 0;
    EXPECT_FAIL(&b, SQ_EFORMAT, "key contains a NUL byte");
}

static void test_bad_types(void)
{
    gb b;
    layout L;
    build_base(&b, &L);
    patch32(&b, L.kv_type[K_AAA], 13);
    EXPECT_FAIL(&b, SQ_EFORMAT, "key 2 'test.aaa': unknown value type 13");
    build_base(&b, &L);
    patch32(&b, L.val[K_ARRSTR], 99);
    EXPECT_FAIL(&b, SQ_EFORMAT, "unknown array element type 99");
    build_base(&b, &L);
    patch32(&b, L.t_type[T_B], 4);
    EXPECT_FAIL(&b, SQ_EFORMAT, "tensor 1 't.b': unknown tensor type 4");
    build_base(&b, &L);
    patch32(&b, L.t_type[T_B], 1000);
    EXPECT_FAIL(&b, SQ_EFORMAT, "unknown tensor type 1000");
    build_base(&b, &L);
    patch32(&b, L.t_type[T_B], SQ_TYPE_Q8_0);
    EXPECT_FAIL(&b, SQ_EFORMAT, "row length 4 is not a multiple of the block size 32 of type q8_0");
}

static void test_nesting_depth(void)
{
    gb b;
    memset(&b, 0, sizeof b);
    u32(&b, 0x46554747u);
    u32(&b, 3);
    u64(&b, 0);
    u64(&b, 1);
    str(&b, "deep");
    u32(&b, SQ_GGUF_ARRAY);
    for (int i = 0; i < 12; i++) {
        u32(&b, SQ_GGUF_ARRAY);
        u64(&b, 1);
    }
    u32(&b, SQ_GGUF_UINT8);
    u64(&b, 0);
    EXPECT_FAIL(&b, SQ_EFORMAT, "arrays nested deeper than 8 levels");
}

static void test_alignment(void)
{
    gb b;
    layout L;
    build_base(&b, &L);
    patch32(&b, L.val[K_ALIGN], 3);
    EXPECT_FAIL(&b, SQ_EFORMAT, "general.alignment 3 is not a nonzero power of two");
    patch32(&b, L.val[K_ALIGN], 0);
    EXPECT_FAIL(&b, SQ_EFORMAT, "general.alignment 0 is not a nonzero power of two");
    build_base(&b, &L);
    patch32(&b, L.kv_type[K_ALIGN], SQ_GGUF_INT32);
    EXPECT_FAIL(&b, SQ_EFORMAT, "general.alignment must be u32, not i32");
    /* alignment 16 is fine: offsets 0, 32, 64 are multiples of it */
    build_base(&b, &L);
    patch32(&b, L.val[K_ALIGN], 16);
    sq_gguf *g = NULL;
    sq_error err = {0};
    CHECK_MSG(sq_gguf_open_memory(b.p, b.n, "mal.gguf", &g, &err) == SQ_OK, "%s", err.msg);
    CHECK_INT(sq_gguf_alignment(g), 16);
    sq_gguf_close(g);
    /* alignment 64: offset 32 is misaligned */
    patch32(&b, L.val[K_ALIGN], 64);
    EXPECT_FAIL(&b, SQ_EFORMAT, "tensor 't.b': data offset 32 is not a multiple of the alignment 64");
}

static void test_duplicates(void)
{
    gb b;
    layout L;
    build_base(&b, &L);
    memcpy(b.p + L.key_len[K_BBB] + 8, "test.aaa", 8);
    EXPECT_FAIL(&b, SQ_EFORMAT, "duplicate key 'test.aaa' (key 3; first seen as key 2 at offset");
    build_base(&b, &L);
    memcpy(b.p + L.t_name[T_B] + 8, "t.a", 3);
    EXPECT_FAIL(&b, SQ_EFORMAT, "duplicate tensor name 't.a' (tensor 1; first seen as tensor 0");
}

static void test_shapes(void)
{
    gb b;
    layout L;
    build_base(&b, &L);
    patch32(&b, L.t_ndims[T_A], 0);
    EXPECT_FAIL(&b, SQ_EFORMAT, "n_dims 0 outside 1..4");
    patch32(&b, L.t_ndims[T_A], 5);
    EXPECT_FAIL(&b, SQ_EFORMAT, "n_dims 5 outside 1..4");
    build_base(&b, &L);
    patch64(&b, L.t_ne[T_B], 1ull << 63);
    EXPECT_FAIL(&b, SQ_EFORMAT, "ne[0] = 9223372036854775808 is negative");
    build_base(&b, &L);
    patch64(&b, L.t_ne[T_B], 1ull << 40);
    patch64(&b, L.t_ne[T_B] + 8, 1ull << 40);
    EXPECT_FAIL(&b, SQ_EFORMAT, "element count overflows int64");
    /* a SmarterQuant row of 2^40 columns (2^32 segments) is sized in O(1): with 0 rows it is a valid empty
     * tensor, with 2 rows (2 x (272 + (2^32 - 1) x 144) bytes) it runs past the end (this used to loop over
     * every segment: a hang) */
    build_base(&b, &L);
    patch64(&b, L.t_ne[T_SQ], 1ull << 40);
    patch64(&b, L.t_ne[T_SQ] + 8, 0);
    sq_gguf *g = NULL;
    sq_error err = {0};
    CHECK_MSG(sq_gguf_open_memory(b.p, b.n, "mal.gguf", &g, &err) == SQ_OK, "%s", err.msg);
    const sq_gguf_tensor *t = sq_gguf_find_tensor(g, "t.sq");
    CHECK(t && t->smarterquant && t->nbytes == 0);
    sq_gguf_close(g);
    patch64(&b, L.t_ne[T_SQ] + 8, 2);
    EXPECT_FAIL(&b, SQ_EFORMAT, "tensor 't.sq': data [64, 64 + 1236950581504) runs past the end");
    /* a huge but representable shape: its size runs past the file */
    build_base(&b, &L);
    patch64(&b, L.t_ne[T_B], 1ull << 40);
    EXPECT_FAIL(&b, SQ_EFORMAT, "runs past the end of the file");
}

static void test_offsets(void)
{
    gb b;
    layout L;
    build_base(&b, &L);
    patch64(&b, L.t_off[T_SQ], 1 << 20);
    EXPECT_FAIL(&b, SQ_EFORMAT, "tensor 't.sq': data [1048576, 1048576 + 832) runs past the end of the file");
    patch64(&b, L.t_off[T_SQ], ~0ull - 31);
    EXPECT_FAIL(&b, SQ_EFORMAT, "runs past the end of the file");
    build_base(&b, &L);
    patch64(&b, L.t_off[T_B], 33);
    EXPECT_FAIL(&b, SQ_EFORMAT, "data offset 33 is not a multiple of the alignment 32");
    build_base(&b, &L);
    patch64(&b, L.t_off[T_B], 0);
    EXPECT_FAIL(&b, SQ_EFORMAT, "data [0, 32) overlaps tensor 't.b' [0, 16)");
    build_base(&b, &L);
    patch64(&b, L.t_off[T_A], 64); /* t.a [64, 96) inside t.sq [64, 896) */
    EXPECT_FAIL(&b, SQ_EFORMAT, "overlaps tensor");
    /* tensors out of file order but disjoint are fine */
    build_base(&b, &L);
    patch64(&b, L.t_off[T_A], 32);
    patch64(&b, L.t_off[T_B], 0);
    sq_gguf *g = NULL;
    sq_error err = {0};
    CHECK_MSG(sq_gguf_open_memory(b.p, b.n, "mal.gguf", &g, &err) == SQ_OK, "%s", err.msg);
    sq_gguf_close(g);
}

static void test_smarterquant_meta(void)
{
    static const struct {
        const char *types; /* 9 characters, replacing "[8,2,2,2]" */
        const char *want;
    } bad[] = {
        {"[8,2,2,x]", "offset 7: expected a non-negative integer"},
        {"[8,2,2]  ", "3 type ids, need exactly 4"},
        {"[8,2,2,2,", "offset 9: expected a non-negative integer"},
        {"[8,2,2,3]", "block_types[3] is 3 (q4_1) but the declared type is 2 (q4_0)"},
        {"[4,2,2,2]", "unknown or removed type id 4"},
        {"[9,2,2,2]", "not usable for weights"},
        {"[8,2,2,2]x", NULL}, /* placeholder, skipped */
        {"8,2,2,2] ", "expected '['"},
        {"[8,02,2,2", "leading zero"},
        {"[8,-2,2,2", "offset 3: expected a non-negative integer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!bad[i].want || strlen(bad[i].types) != 9) continue;
        gb b;
        layout L;
        build_base(&b, &L);
        memcpy(b.p + L.val[K_SQ_TYPES] + 8, bad[i].types, 9);
        EXPECT_FAIL(&b, SQ_EFORMAT, "bad smarterquant block_types");
        EXPECT_FAIL(&b, SQ_EFORMAT, bad[i].want);
    }
    /* a K-quant in a segment of 256 columns is fine, but not in a final segment of 44 */
    gb b;
    layout L;
    build_base(&b, &L);
    memcpy(b.p + L.val[K_SQ_TYPES] + 8, "[8,2,2,2]", 9);
    patch64(&b, L.t_ne[T_SQ], 300);
    EXPECT_FAIL(&b, SQ_EFORMAT, "segment 1: type q4_0 has blocks of 32 columns, which do not divide the segment length 44");
    build_base(&b, &L);
    patch32(&b, L.kv_type[K_SQ_EN], SQ_GGUF_UINT8);
    EXPECT_FAIL(&b, SQ_EFORMAT, "key 't.sq.smarterquant.enabled' must be bool, not u8");
    build_base(&b, &L);
    b.p[L.key_len[K_SQ_TYPES] + 8 + strlen("t.sq.smarterquant.block_type")] = 'z';
    EXPECT_FAIL(&b, SQ_EFORMAT, "smarterquant-enabled but key 't.sq.smarterquant.block_types' is missing");
    build_base(&b, &L);
    patch32(&b, L.kv_type[K_SQ_TYPES], SQ_GGUF_UINT64); /* 8 bytes: the length field */
    EXPECT_FAIL(&b, SQ_EFORMAT, "key 10: key length"); /* the string bytes now parse as the next key */
}

/* The permutation of t.sq (512 columns) is read and checked at open: a
 * permutation of every column, or "[]"; the message names the key. */
static void test_smarterquant_perm(void)
{
    char *text = malloc(8192);
    static const struct {
        int64_t n;     /* entries written: 0..n-1 reversed */
        int64_t dup;   /* >= 0: entry that repeats entry 0's value */
        int64_t big;   /* >= 0: entry that gets the value 512 */
        const char *want;
    } cases[] = {
        {512, -1, -1, NULL},
        {2, -1, -1, "permutation has 2 entries, but the tensor has 512 columns"},
        {513, -1, -1, "permutation has 513 entries, but the tensor has 512 columns"},
        {512, 300, -1, "permutation index 300: value 511 is a duplicate (already at index 0)"},
        {512, -1, 7, "permutation index 7: value 512 is out of range 0..511"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t at = (size_t)sprintf(text, "[");
        for (int64_t j = 0; j < cases[c].n; j++) {
            int64_t v = 511 - j;
            if (j == cases[c].dup) v = 511;
            if (j == cases[c].big) v = 512;
            at += (size_t)sprintf(text + at, "%s%lld", j ? "," : "", (long long)(v < 0 ? 0 : v));
        }
        sprintf(text + at, "]");
        base_perm = text;
        gb b;
        layout L;
        build_base(&b, &L);
        if (!cases[c].want) {
            sq_error err = {0};
            sq_gguf *g = NULL;
            CHECK_MSG(sq_gguf_open_memory(b.p, b.n, "mal.gguf", &g, &err) == SQ_OK, "%s", err.msg);
            const sq_gguf_tensor *t = g ? sq_gguf_find_tensor(g, "t.sq") : NULL;
            CHECK(t && t->sq.perm && t->sq.n_cols == 512 && t->sq.perm[0] == 511 && t->sq.perm[511] == 0);
            sq_gguf_close(g);
        } else {
            EXPECT_FAIL(&b, SQ_EFORMAT, "bad smarterquant permutation in key 't.sq.smarterquant.permutation'");
            EXPECT_FAIL(&b, SQ_EFORMAT, cases[c].want);
        }
    }
    const char *bad[] = {"[1,x]", "[01,2]", "[", "{}"};
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        base_perm = bad[c];
        gb b;
        layout L;
        build_base(&b, &L);
        EXPECT_FAIL(&b, SQ_EFORMAT, "bad smarterquant permutation in key 't.sq.smarterquant.permutation': integer array");
    }
    base_perm = "[]";
    free(text);
}

/* Truncation at every byte: each prefix fails, with a message for its section. */
static void test_truncation_every_byte(void)
{
    gb b;
    layout L;
    build_base(&b, &L);
    const size_t full = b.n;
    int bad_section = 0, not_failed = 0;
    for (size_t cut = 0; cut < full; cut++) {
        uint8_t *c = malloc(cut ? cut : 1);
        memcpy(c, b.p, cut);
        sq_error err = {0};
        sq_gguf *g = NULL;
        const sq_status st = sq_gguf_open_memory(c, cut, "mal.gguf", &g, &err);
        if (st == SQ_OK || !strstr(err.msg, "mal.gguf: offset ")) {
            not_failed++;
            fprintf(stderr, "cut %zu: %s\n", cut, err.msg);
        } else {
            /* the count checks may speak first: "tensor count N is impossible" in the key section */
            const char *want = cut < 24 ? "too small"
                               : cut < L.kv_end ? (strstr(err.msg, "tensor count") ? "is impossible" : "key")
                               : cut < L.infos_end ? "tensor"
                               : cut < L.data_start ? "the data section would start at offset"
                               : "runs past the end of the file";
            if (!strstr(err.msg, want)) {
                bad_section++;
                fprintf(stderr, "cut %zu: wanted '%s' in: %s\n", cut, want, err.msg);
            }
        }
        sq_gguf_close(g);
        free(c);
    }
    CHECK_INT(not_failed, 0);
    CHECK_INT(bad_section, 0);
}

/* The demo model cut at every section boundary (and one byte either side). */
static void test_truncation_demo_boundaries(void)
{
    char path[1024];
    if (!harness_shared_file(path, sizeof path, "models/sqdemo-f16.gguf")) {
        if (access("models/sqdemo-f16.gguf", R_OK) != 0) SKIP("../shared absent and no vendored demo model");
        snprintf(path, sizeof path, "models/sqdemo-f16.gguf"); /* the copy vendored in the repository */
    }
    size_t n = 0;
    uint8_t *buf = harness_read_file(path, &n);
    sq_gguf *g = NULL;
    sq_error err = {0};
    CHECK_INT(sq_gguf_open_memory(buf, n, "demo", &g, &err), SQ_OK);
    if (!g) {
        free(buf);
        return;
    }
    size_t cuts[256];
    int nc = 0;
    cuts[nc++] = 0;
    cuts[nc++] = 24;
    for (int64_t i = 0; i < sq_gguf_n_kv(g); i++) {
        uint64_t len;
        const uint8_t *raw = sq_gguf_kv_raw(g, i, &len);
        cuts[nc++] = (size_t)(raw - buf);       /* start of the value */
        cuts[nc++] = (size_t)(raw - buf) + len; /* end of the value */
    }
    cuts[nc++] = (size_t)sq_gguf_data_offset(g);
    for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
        cuts[nc++] = (size_t)((const uint8_t *)t->data - buf) + 1;
        cuts[nc++] = (size_t)((const uint8_t *)t->data - buf + t->nbytes);
    }
    sq_gguf_close(g);
    int failures = 0, ok = 0;
    for (int k = 0; k < nc; k++) {
        for (int dlt = -1; dlt <= 1; dlt++) {
            const size_t cut = cuts[k] + (size_t)dlt;
            if (cut >= n || (cut == 0 && dlt < 0)) continue;
            const sq_status st = sq_gguf_open_memory(buf, cut, "demo", &g, &err);
            if (st == SQ_OK || !strstr(err.msg, "demo: offset ")) {
                failures++;
                fprintf(stderr, "demo cut at %zu: %s\n", cut, st == SQ_OK ? "opened" : err.msg);
            } else {
                ok++;
            }
            sq_gguf_close(g);
            g = NULL;
        }
    }
    CHECK_INT(failures, 0);
    CHECK(ok > 150);
    free(buf);
}

/* Seeded random mutations of the base file: never a crash, every failure explained. */
static void test_random_mutations(void)
{
    gb base;
    layout L;
    build_base(&base, &L);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int unexplained = 0, opened = 0;
    for (int it = 0; it < 4000; it++) {
        uint8_t *c = malloc(base.n);
        memcpy(c, base.p, base.n);
        const int flips = 1 + (int)(rng % 4);
        for (int f = 0; f < flips; f++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            const size_t at = (size_t)((rng >> 33) % L.infos_end);
            c[at] = (uint8_t)(rng >> 17);
        }
        sq_error err = {0};
        sq_gguf *g = NULL;
        if (sq_gguf_open_memory(c, base.n, "mut", &g, &err) == SQ_OK) {
            opened++;
            char out[256];
            for (int64_t i = 0; i < sq_gguf_n_kv(g); i++) sq_gguf_kv_format(g, i, 3, 0, out, sizeof out);
            for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) {
                const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
                volatile uint8_t s = 0;
                for (uint64_t k = 0; k < t->nbytes; k++) s ^= ((const uint8_t *)t->data)[k];
                (void)s;
            }
        } else if (!strstr(err.msg, "mut: offset ")) {
            unexplained++;
        }
        sq_gguf_close(g);
        free(c);
    }
    CHECK_INT(unexplained, 0);
    CHECK(opened > 0); /* some mutations (in string bytes) keep the file valid */
}

static void test_file_errors(void)
{
    sq_error err = {0};
    sq_gguf *g = NULL;
    CHECK_INT(sq_gguf_open("/nonexistent/x.gguf", &g, &err), SQ_EIO);
    CHECK_CONTAINS(err.msg, "/nonexistent/x.gguf: cannot open");
    CHECK_INT(sq_gguf_open("/", &g, &err), SQ_EIO);
    CHECK_CONTAINS(err.msg, "not a regular file");
    CHECK_INT(sq_gguf_open_memory(NULL, 0, NULL, &g, &err), SQ_EFORMAT);
    CHECK_CONTAINS(err.msg, "<memory>: offset 0: file is 0 bytes");
    sq_gguf_close(NULL);
    CHECK(sq_gguf_key(NULL, 0) == NULL && sq_gguf_n_kv(NULL) == 0 && sq_gguf_find_tensor(NULL, "x") == NULL);
}

int main(void)
{
    RUN(test_base_is_valid);
    RUN(test_header);
    RUN(test_lying_lengths);
    RUN(test_bad_types);
    RUN(test_nesting_depth);
    RUN(test_alignment);
    RUN(test_duplicates);
    RUN(test_shapes);
    RUN(test_offsets);
    RUN(test_smarterquant_meta);
    RUN(test_smarterquant_perm);
    RUN(test_truncation_every_byte);
    RUN(test_truncation_demo_boundaries);
    RUN(test_random_mutations);
    RUN(test_file_errors);
    return harness_finish("gguf_malformed");
}
