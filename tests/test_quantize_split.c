/*
 * test_quantize_split.c — split models (gguf-split shards) and the
 * llama-quantize flags --keep-split and --prune-layers, on tiny synthetic
 * llama models written here with the library's GGUF writer:
 *  - sq_gguf_open_model joins shards into one handle (same tensors and bytes
 *    as the unsplit model, each tensor's shard, the first shard's metadata)
 *    and refuses every inconsistent set with a message naming the file;
 *  - quantizing a split input without --keep-split gives the very file the
 *    unsplit input gives; with --keep-split the same shards, each a valid
 *    file on its own (SmarterQuant keys travel with their tensor);
 *  - --prune-layers drops blocks, renumbers the rest, fixes block_count and
 *    per-layer arrays, and moves SmarterQuant keys with their tensors;
 *  - the tool: flags, messages, and no output file after an error;
 *  - the writer's all-or-nothing finish of several files;
 *  - the engine loads a split demo model to the same logits (when
 *    ../shared is there).
 */
#include <unistd.h>

#include "harness.h"
#include "testutil.h"
#include "sq/blocks.h"
#include "sq/engine.h"
#include "sq/gguf.h"
#include "sq/quantize.h"

#define W 64 /* columns of every matrix */

/* ---- a tiny model: token_embd, output_norm, output, then per layer
 * attn_norm, attn_q, ffn_down (3 + 3 * n_layer tensors) ---- */

static int n_model_tensors(int n_layer) { return 3 + 3 * n_layer; }

static void tensor_def(int i, char *name, size_t n, int64_t ne[2], int *type)
{
    static const char *const top[] = {"token_embd.weight", "output_norm.weight", "output.weight"};
    static const char *const per[] = {"attn_norm.weight", "attn_q.weight", "ffn_down.weight"};
    const char *base = i < 3 ? top[i] : per[(i - 3) % 3];
    if (i < 3) snprintf(name, n, "%s", base);
    else snprintf(name, n, "blk.%d.%s", (i - 3) / 3, base);
    const bool vec = strstr(base, "norm") != NULL;
    ne[0] = W;
    ne[1] = vec ? 1 : (i < 3 ? 32 : W);
    *type = vec ? SQ_TYPE_F32 : SQ_TYPE_F16;
}

/* Deterministic content from the tensor's name, so a tensor has the same
 * bytes in every file it is written to. */
static void tensor_data(const char *name, int type, int64_t n, void *out)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *c = name; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    for (int64_t k = 0; k < n; k++) {
        h ^= h << 13, h ^= h >> 7, h ^= h << 17;
        const float v = ((float)(h >> 40) / 16777216.0f - 0.5f) * 0.2f;
        if (type == SQ_TYPE_F32) ((float *)out)[k] = 1.0f + v;
        else ((sq_fp16 *)out)[k] = sq_f32_to_fp16(v);
    }
}

/* Writes one file holding tensors [t0, t1) of an n_layer model: with meta,
 * the model's key/values (incl. a per-layer array); with count > 0 the
 * split keys (split.no = no, split.count = count, split.tensors.count =
 * tcount). dup >= 0 adds tensor dup once more at the end (a bad shard). */
static bool write_file(const char *path, int n_layer, bool meta, int no, int count, int tcount, int t0, int t1, int dup)
{
    sq_gguf_writer *w = NULL;
    sq_error e = {0};
    if (sq_gguf_writer_open(path, &w, &e) != SQ_OK) return false;
    sq_status st = SQ_OK;
    if (meta) {
        uint32_t ff[64];
        for (int l = 0; l < n_layer; l++) ff[l] = 100u + (uint32_t)l;
        st = sq_gguf_writer_set_str(w, "general.architecture", "llama", &e);
        if (!st) st = sq_gguf_writer_set_str(w, "general.name", "tiny", &e);
        if (!st) st = sq_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)n_layer, &e);
        if (!st) st = sq_gguf_writer_set_u32(w, "llama.attention.head_count", 4, &e);
        if (!st) st = sq_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 4, &e);
        if (!st) st = sq_gguf_writer_set_arr(w, "llama.feed_forward_length", SQ_GGUF_UINT32, ff, (uint64_t)n_layer, &e);
        if (!st) st = sq_gguf_writer_set_u32(w, "general.file_type", 1, &e);
    }
    if (!st && count > 0) {
        st = sq_gguf_writer_set_u16(w, SQ_GGUF_KEY_SPLIT_NO, (uint16_t)no, &e);
        if (!st) st = sq_gguf_writer_set_u16(w, SQ_GGUF_KEY_SPLIT_COUNT, (uint16_t)count, &e);
        if (!st) st = sq_gguf_writer_set_i32(w, SQ_GGUF_KEY_SPLIT_TENSORS, tcount, &e);
    }
    int idx[200], n = 0;
    for (int i = t0; i < t1; i++) idx[n++] = i;
    if (dup >= 0) idx[n++] = dup;
    for (int k = 0; k < n && !st; k++) {
        char name[64];
        int64_t ne[2];
        int type;
        tensor_def(idx[k], name, sizeof name, ne, &type);
        st = sq_gguf_writer_add_tensor(w, name, ne[1] > 1 ? 2 : 1, ne, type, sq_row_size(type, ne[0]) * (uint64_t)ne[1],
                                       &e);
    }
    for (int k = 0; k < n && !st; k++) {
        char name[64];
        int64_t ne[2];
        int type;
        tensor_def(idx[k], name, sizeof name, ne, &type);
        const size_t bytes = sq_row_size(type, ne[0]) * (size_t)ne[1];
        void *buf = malloc(bytes);
        tensor_data(name, type, ne[0] * ne[1], buf);
        st = sq_gguf_writer_write(w, buf, bytes, &e);
        free(buf);
    }
    if (st) {
        sq_gguf_writer_abort(w);
        return false;
    }
    return sq_gguf_writer_finish(w, &e) == SQ_OK;
}

/* The first tensor of shard k when nt tensors are cut into n shards. */
static int shard_start(int k, int nt, int n) { return k * nt / n; }

/* dir/PREFIX-0000k-of-0000N.gguf for every k: a good split of the model. */
static bool write_split(const char *dir, const char *prefix, int n_layer, int n)
{
    const int nt = n_model_tensors(n_layer);
    for (int k = 0; k < n; k++) {
        char base[512], path[600];
        snprintf(base, sizeof base, "%s/%s", dir, prefix);
        sq_gguf_split_path(path, sizeof path, base, k, n);
        if (!write_file(path, n_layer, k == 0, k, n, nt, shard_start(k, nt, n), shard_start(k + 1, nt, n), -1))
            return false;
    }
    return true;
}

static const char *in_dir(char *buf, size_t n, const char *dir, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
    return buf;
}

/* Every tensor of `want` is in `got` with the same shape, type and bytes. */
static void check_same_tensors(const sq_gguf *got, const sq_gguf *want)
{
    CHECK_INT(sq_gguf_n_tensors(got), sq_gguf_n_tensors(want));
    for (int64_t i = 0; i < sq_gguf_n_tensors(want); i++) {
        const sq_gguf_tensor *a = sq_gguf_tensor_at(want, i), *b = sq_gguf_find_tensor(got, a->name);
        CHECK_MSG(b != NULL, "tensor %s missing", a->name);
        if (!b) continue;
        CHECK_MSG(a->type == b->type && a->nbytes == b->nbytes && a->ne[0] == b->ne[0] && a->ne[1] == b->ne[1] &&
                      memcmp(a->data, b->data, a->nbytes) == 0,
                  "tensor %s differs", a->name);
    }
}

static int64_t get_int(const sq_gguf *g, const char *key)
{
    int64_t v = -1;
    sq_gguf_get_i64(g, key, &v, NULL);
    return v;
}

/* COPY: every tensor copied as it is. */
static sq_quantize_params copy_params(void)
{
    sq_quantize_params c = tu_quantize_params(0, 1);
    c.copy = true;
    return c;
}

/* ---- tests ---- */

static void test_open_split(void)
{
    char dir[256], p1[600], p2[600], pre[600];
    CHECK(harness_tmpdir(dir, sizeof dir) != NULL);
    CHECK(write_file(in_dir(p1, sizeof p1, dir, "m.gguf"), 4, true, 0, 0, 0, 0, n_model_tensors(4), -1));
    CHECK(write_split(dir, "s", 4, 3));
    sq_error e = {0};
    sq_gguf *whole = NULL, *split = NULL, *one = NULL;
    CHECK_MSG(sq_gguf_open_model(p1, &whole, &e) == SQ_OK, "%s", e.msg);
    CHECK_MSG(sq_gguf_open_model(in_dir(p2, sizeof p2, dir, "s-00001-of-00003.gguf"), &split, &e) == SQ_OK, "%s",
              e.msg);
    CHECK(sq_gguf_open(p2, &one, &e) == SQ_OK);
    if (whole && split && one) {
        CHECK_INT(sq_gguf_n_shards(whole), 1);
        CHECK(sq_gguf_shard(whole, 0) == whole && sq_gguf_shard(whole, 1) == NULL);
        CHECK_INT(sq_gguf_n_shards(split), 3);
        CHECK_INT(sq_gguf_n_tensors(one), 5); /* the first file alone: its own tensors */
        check_same_tensors(split, whole);
        CHECK_INT(get_int(split, "llama.block_count"), 4);
        CHECK_INT(get_int(split, SQ_GGUF_KEY_SPLIT_COUNT), 3);
        const int nt = n_model_tensors(4);
        for (int64_t i = 0; i < sq_gguf_n_tensors(split); i++) {
            const int want = i < shard_start(1, nt, 3) ? 0 : i < shard_start(2, nt, 3) ? 1 : 2;
            CHECK_INT(sq_gguf_tensor_shard(split, sq_gguf_tensor_at(split, i)), want);
        }
        CHECK_INT(sq_gguf_tensor_shard(split, sq_gguf_tensor_at(whole, 0)), -1);
        CHECK_CONTAINS(sq_gguf_path(sq_gguf_shard(split, 2)), "/s-00003-of-00003.gguf");
        CHECK(sq_gguf_shard(split, 3) == NULL);
    }
    sq_gguf_close(whole);
    sq_gguf_close(split);
    sq_gguf_close(one);
    CHECK(sq_gguf_split_prefix(pre, sizeof pre, "a/b-00002-of-00010.gguf", 1, 10) && !strcmp(pre, "a/b"));
    CHECK(!sq_gguf_split_prefix(pre, sizeof pre, "a/b-00002-of-00010.gguf", 0, 10));
    CHECK(!sq_gguf_split_prefix(pre, sizeof pre, "-00001-of-00001.gguf", 0, 1));
    sq_gguf_split_path(pre, sizeof pre, "x/y", 9, 12);
    CHECK_STR(pre, "x/y-00010-of-00012.gguf");
    tu_rm_rf(dir);
}

/* Opens dir/name as a model: it must fail with a message containing want. */
static void expect_open_error(const char *dir, const char *name, const char *want, const char *want2)
{
    char p[600];
    sq_error e = {0};
    sq_gguf *g = NULL;
    CHECK_MSG(sq_gguf_open_model(in_dir(p, sizeof p, dir, name), &g, &e) != SQ_OK, "%s opened", name);
    CHECK(g == NULL);
    CHECK_CONTAINS(e.msg, want);
    if (want2) CHECK_CONTAINS(e.msg, want2);
    sq_gguf_close(g);
}

static void test_split_errors(void)
{
    char dir[256], p[600], q[600];
    CHECK(harness_tmpdir(dir, sizeof dir) != NULL);
    const int nt = n_model_tensors(2); /* 9 tensors: shards [0,3) [3,6) [6,9) */
    CHECK(write_split(dir, "s", 2, 3));
    /* a later shard given */
    expect_open_error(dir, "s-00002-of-00003.gguf", "shard 2 of 3", "give the first shard, ");
    expect_open_error(dir, "s-00002-of-00003.gguf", "s-00001-of-00003.gguf", NULL);
    /* the first shard under another name */
    CHECK(rename(in_dir(p, sizeof p, dir, "s-00001-of-00003.gguf"), in_dir(q, sizeof q, dir, "plain.gguf")) == 0);
    expect_open_error(dir, "plain.gguf", "must be named PREFIX-00001-of-00003.gguf", NULL);
    CHECK(rename(q, p) == 0);
    /* a missing shard */
    CHECK(rename(in_dir(p, sizeof p, dir, "s-00003-of-00003.gguf"), in_dir(q, sizeof q, dir, "away")) == 0);
    expect_open_error(dir, "s-00001-of-00003.gguf", "s-00003-of-00003.gguf", "cannot open");
    expect_open_error(dir, "s-00001-of-00003.gguf", "shard 3 of 3", NULL);
    CHECK(rename(q, p) == 0);
    /* shard 2 with another split.count / split.no / without the keys */
    const char *s2 = in_dir(p, sizeof p, dir, "s-00002-of-00003.gguf");
    CHECK(write_file(s2, 2, false, 1, 4, nt, 3, 6, -1));
    expect_open_error(dir, "s-00001-of-00003.gguf", "split.count is 4", "s-00002-of-00003.gguf");
    CHECK(write_file(s2, 2, false, 2, 3, nt, 3, 6, -1));
    expect_open_error(dir, "s-00001-of-00003.gguf", "split.no is 2", "s-00002-of-00003.gguf");
    CHECK(write_file(s2, 2, false, 0, 0, nt, 3, 6, -1));
    expect_open_error(dir, "s-00001-of-00003.gguf", "not a shard of the split model", NULL);
    /* a tensor in two shards (then the counts add up to one too many) */
    CHECK(write_file(s2, 2, false, 1, 3, nt + 1, 3, 6, 0));
    CHECK(write_file(in_dir(q, sizeof q, dir, "s-00001-of-00003.gguf"), 2, true, 0, 3, nt + 1, 0, 3, -1));
    expect_open_error(dir, "s-00001-of-00003.gguf", "tensor 'token_embd.weight' is in shard", "and again in shard");
    /* split.tensors.count wrong */
    CHECK(write_split(dir, "s", 2, 3));
    CHECK(write_file(in_dir(q, sizeof q, dir, "s-00001-of-00003.gguf"), 2, true, 0, 3, 99, 0, 3, -1));
    expect_open_error(dir, "s-00001-of-00003.gguf", "split.tensors.count says 99 tensors, but the 3 shards hold 9",
                      NULL);
    tu_rm_rf(dir);
}

/* Without --keep-split a split input gives exactly the unsplit input's file;
 * with it, the same shards, each valid alone, together the same tensors. */
static void test_quantize_split_input(void)
{
    char dir[256], in1[600], in3[600], o1[600], o2[600], ok[600], path[600];
    CHECK(harness_tmpdir(dir, sizeof dir) != NULL);
    const int nt = n_model_tensors(4);
    CHECK(write_file(in_dir(in1, sizeof in1, dir, "m.gguf"), 4, true, 0, 0, 0, 0, nt, -1));
    CHECK(write_split(dir, "s", 4, 3));
    in_dir(in3, sizeof in3, dir, "s-00001-of-00003.gguf");
    sq_quantize_params p = tu_quantize_params(SQ_FTYPE_Q8_0, 1);
    sq_quantize_stats st1, st2, st3;
    sq_error e = {0};
    CHECK_MSG(sq_quantize_file(in1, in_dir(o1, sizeof o1, dir, "one.gguf"), &p, &st1, &e) == SQ_OK, "%s", e.msg);
    CHECK_MSG(sq_quantize_file(in3, in_dir(o2, sizeof o2, dir, "joined.gguf"), &p, &st2, &e) == SQ_OK, "%s", e.msg);
    CHECK_INT(st2.n_files, 1);
    CHECK(tu_files_equal(o1, o2));

    /* --keep-split, with a SmarterQuant tensor in the last shard */
    int32_t perm[W];
    for (int i = 0; i < W; i++) perm[i] = (i * 5 + 3) % W;
    sq_quantize_sqtensor sqt = {"blk.3.ffn_down.weight", {SQ_TYPE_Q4_0, SQ_TYPE_Q8_0, SQ_TYPE_Q8_0, SQ_TYPE_Q8_0},
                                perm, W};
    p.sq_tensors = &sqt;
    p.n_sq_tensors = 1;
    p.keep_split = true;
    CHECK_MSG(sq_quantize_file(in3, in_dir(ok, sizeof ok, dir, "k.gguf"), &p, &st3, &e) == SQ_OK, "%s", e.msg);
    CHECK_INT(st3.n_files, 3);
    CHECK(access(ok, F_OK) != 0); /* k.gguf itself is not written */
    CHECK_INT(tu_count_files(dir, "k-"), 3);
    sq_gguf *in = NULL, *out = NULL, *ref = NULL;
    CHECK(sq_gguf_open_model(in3, &in, &e) == SQ_OK);
    CHECK(sq_gguf_open(o1, &ref, &e) == SQ_OK);
    for (int k = 0; k < 3 && in; k++) {
        sq_gguf *f = NULL;
        sq_quantize_out_path(path, sizeof path, ok, k, 3);
        CHECK_MSG(sq_gguf_open(path, &f, &e) == SQ_OK, "shard %d alone: %s", k, e.msg);
        if (!f) continue;
        CHECK_INT(get_int(f, SQ_GGUF_KEY_SPLIT_NO), k);
        CHECK_INT(sq_gguf_kv_type(f, sq_gguf_find_key(f, SQ_GGUF_KEY_SPLIT_NO)), SQ_GGUF_UINT16);
        CHECK_INT(get_int(f, SQ_GGUF_KEY_SPLIT_COUNT), 3);
        CHECK_INT(get_int(f, SQ_GGUF_KEY_SPLIT_TENSORS), nt);
        CHECK_INT(sq_gguf_find_key(f, "general.architecture") >= 0, k == 0);
        /* the same tensors as the input's shard, in the same order */
        const sq_gguf *src = sq_gguf_shard(in, k);
        CHECK_INT(sq_gguf_n_tensors(f), sq_gguf_n_tensors(src));
        for (int64_t i = 0; i < sq_gguf_n_tensors(f) && i < sq_gguf_n_tensors(src); i++)
            CHECK_STR(sq_gguf_tensor_at(f, i)->name, sq_gguf_tensor_at(src, i)->name);
        if (k == 2) {
            const sq_gguf_tensor *t = sq_gguf_find_tensor(f, "blk.3.ffn_down.weight");
            CHECK(t && t->smarterquant && t->sq.types[0] == SQ_TYPE_Q4_0);
            CHECK_INT(sq_gguf_n_kv(f), 6); /* split keys + this tensor's three */
        }
        sq_gguf_close(f);
    }
    CHECK_MSG(sq_gguf_open_model(ok, &out, &e) != SQ_OK, "k.gguf should not exist");
    sq_quantize_out_path(path, sizeof path, ok, 0, 3);
    CHECK_MSG(sq_gguf_open_model(path, &out, &e) == SQ_OK, "%s", e.msg);
    if (out && ref) {
        /* every plain tensor as in the single-file output; the SmarterQuant one is new */
        CHECK_INT(sq_gguf_n_tensors(out), nt);
        for (int64_t i = 0; i < sq_gguf_n_tensors(ref); i++) {
            const sq_gguf_tensor *a = sq_gguf_tensor_at(ref, i), *b = sq_gguf_find_tensor(out, a->name);
            CHECK_MSG(b != NULL, "%s missing", a->name);
            if (!b || !strcmp(a->name, "blk.3.ffn_down.weight")) continue;
            CHECK_MSG(a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0, "%s differs", a->name);
        }
        const sq_gguf_tensor *t = sq_gguf_find_tensor(out, "blk.3.ffn_down.weight");
        CHECK(t && t->smarterquant);
        CHECK(sq_gguf_find_key(out, "blk.3.ffn_down.weight.smarterquant.permutation") >= 0);
    }
    sq_gguf_close(out);
    out = NULL;
    /* the split SmarterQuant output copied back into one file keeps its tensor */
    sq_quantize_params c = copy_params();
    CHECK_MSG(sq_quantize_file(path, in_dir(o2, sizeof o2, dir, "back.gguf"), &c, NULL, &e) == SQ_OK, "%s", e.msg);
    CHECK(sq_gguf_open(o2, &out, &e) == SQ_OK);
    if (out) {
        const sq_gguf_tensor *t = sq_gguf_find_tensor(out, "blk.3.ffn_down.weight");
        CHECK(t && t->smarterquant);
        CHECK_INT(sq_gguf_find_key(out, SQ_GGUF_KEY_SPLIT_NO), -1);
    }
    sq_gguf_close(out);
    sq_gguf_close(in);
    sq_gguf_close(ref);
    tu_rm_rf(dir);
}

static void test_prune_layers(void)
{
    char dir[256], in1[600], o1[600], o2[600], path[600];
    CHECK(harness_tmpdir(dir, sizeof dir) != NULL);
    CHECK(write_file(in_dir(in1, sizeof in1, dir, "m.gguf"), 4, true, 0, 0, 0, 0, n_model_tensors(4), -1));
    sq_quantize_params p = tu_quantize_params(SQ_FTYPE_Q8_0, 1);
    sq_error e = {0};
    CHECK(sq_quantize_file(in1, in_dir(o1, sizeof o1, dir, "full.gguf"), &p, NULL, &e) == SQ_OK);
    const int prune[] = {3, 1, 1}; /* any order, repeats allowed */
    p.prune_layers = prune;
    p.n_prune_layers = 3;
    sq_quantize_stats st;
    CHECK_MSG(sq_quantize_file(in1, in_dir(o2, sizeof o2, dir, "pruned.gguf"), &p, &st, &e) == SQ_OK, "%s", e.msg);
    CHECK_INT(st.n_pruned_tensors, 6);
    sq_gguf *full = NULL, *g = NULL;
    CHECK(sq_gguf_open(o1, &full, &e) == SQ_OK);
    CHECK(sq_gguf_open(o2, &g, &e) == SQ_OK);
    if (full && g) {
        CHECK_INT(sq_gguf_n_tensors(g), n_model_tensors(2));
        CHECK_INT(get_int(g, "llama.block_count"), 2);
        int64_t idx = -1;
        sq_gguf_type et;
        uint64_t n = 0;
        CHECK(sq_gguf_get_arr(g, "llama.feed_forward_length", &idx, &et, &n, NULL) == SQ_OK && n == 2);
        int64_t v0 = 0, v1 = 0;
        sq_gguf_arr_get_int(g, idx, 0, &v0, NULL);
        sq_gguf_arr_get_int(g, idx, 1, &v1, NULL);
        CHECK(v0 == 100 && v1 == 102); /* layers 0 and 2 are left */
        CHECK(sq_gguf_find_tensor(g, "blk.2.attn_q.weight") == NULL);
        /* new blk.1 is old blk.2: the same bytes as in the unpruned output */
        static const char *const sfx[] = {"attn_norm.weight", "attn_q.weight", "ffn_down.weight"};
        for (int k = 0; k < 3; k++) {
            char a[64], b[64];
            snprintf(a, sizeof a, "blk.2.%s", sfx[k]);
            snprintf(b, sizeof b, "blk.1.%s", sfx[k]);
            const sq_gguf_tensor *x = sq_gguf_find_tensor(full, a), *y = sq_gguf_find_tensor(g, b);
            CHECK_MSG(x && y && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes), "%s -> %s", a, b);
        }
    }
    sq_gguf_close(full);
    sq_gguf_close(g);
    g = NULL;
    /* errors: a layer that does not exist, all layers */
    const int bad[] = {4};
    p.prune_layers = bad;
    p.n_prune_layers = 1;
    CHECK(sq_quantize_file(in1, in_dir(o2, sizeof o2, dir, "bad.gguf"), &p, NULL, &e) == SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "layer 4 does not exist (the model has layers 0 to 3)");
    const int all[] = {0, 1, 2, 3};
    p.prune_layers = all;
    p.n_prune_layers = 4;
    CHECK(sq_quantize_file(in1, o2, &p, NULL, &e) == SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "would remove all 4 layers");
    CHECK(access(o2, F_OK) != 0);

    /* split input, --keep-split, a SmarterQuant tensor renumbered */
    CHECK(write_split(dir, "s", 4, 3));
    int32_t perm[W];
    for (int i = 0; i < W; i++) perm[i] = W - 1 - i;
    sq_quantize_sqtensor sqt = {"blk.3.attn_q.weight", {SQ_TYPE_Q4_0, SQ_TYPE_Q8_0, SQ_TYPE_Q8_0, SQ_TYPE_Q8_0}, perm,
                                W};
    sq_quantize_params ks = tu_quantize_params(SQ_FTYPE_Q8_0, 1);
    ks.keep_split = true;
    ks.sq_tensors = &sqt;
    ks.n_sq_tensors = 1;
    const int one[] = {1};
    ks.prune_layers = one;
    ks.n_prune_layers = 1;
    CHECK_MSG(sq_quantize_file(in_dir(in1, sizeof in1, dir, "s-00001-of-00003.gguf"),
                               in_dir(o2, sizeof o2, dir, "ps.gguf"), &ks, &st, &e) == SQ_OK,
              "%s", e.msg);
    CHECK_INT(st.n_files, 3);
    sq_quantize_out_path(path, sizeof path, o2, 0, 3);
    CHECK_MSG(sq_gguf_open_model(path, &g, &e) == SQ_OK, "%s", e.msg);
    if (g) {
        CHECK_INT(sq_gguf_n_tensors(g), n_model_tensors(3));
        CHECK_INT(get_int(g, SQ_GGUF_KEY_SPLIT_TENSORS), n_model_tensors(3));
        CHECK_INT(get_int(g, "llama.block_count"), 3);
        const sq_gguf_tensor *t = sq_gguf_find_tensor(g, "blk.2.attn_q.weight");
        CHECK(t && t->smarterquant);
        CHECK(sq_gguf_find_key(g, "blk.2.attn_q.weight.smarterquant.block_types") >= 0);
        CHECK_INT(sq_gguf_find_key(g, "blk.3.attn_q.weight.smarterquant.block_types"), -1);
        CHECK(sq_gguf_find_tensor(g, "blk.3.attn_q.weight") == NULL);
    }
    sq_gguf_close(g);
    g = NULL;
    /* pruning the SmarterQuant output again: its keys follow the tensor or go */
    sq_quantize_params c = copy_params();
    const int zero[] = {0};
    c.prune_layers = zero;
    c.n_prune_layers = 1;
    CHECK_MSG(sq_quantize_file(path, in_dir(o1, sizeof o1, dir, "pp.gguf"), &c, NULL, &e) == SQ_OK, "%s", e.msg);
    CHECK(sq_gguf_open(o1, &g, &e) == SQ_OK);
    if (g) {
        const sq_gguf_tensor *t = sq_gguf_find_tensor(g, "blk.1.attn_q.weight");
        CHECK(t && t->smarterquant);
        CHECK_INT(sq_gguf_find_key(g, "blk.2.attn_q.weight.smarterquant.enabled"), -1);
        CHECK_INT(get_int(g, "llama.block_count"), 2);
    }
    sq_gguf_close(g);
    tu_rm_rf(dir);
}

static void test_tool(void)
{
    char dir[256], out[16384];
    CHECK(harness_tmpdir(dir, sizeof dir) != NULL);
    CHECK(write_split(dir, "s", 2, 2));
    tu_expect_sq(dir, "quantize --keep-split --no-sq-config s-00001-of-00002.gguf t.gguf Q8_0 1", 0,
                 "wrote t-00001-of-00002.gguf", out, sizeof out);
    CHECK_CONTAINS(out, "t-00002-of-00002.gguf");
    CHECK_INT(tu_count_files(dir, "t-"), 2);
    tu_expect_sq(dir, "quantize --prune-layers 0 --no-sq-config s-00001-of-00002.gguf p.gguf Q8_0 1", 0,
                 "pruned 3 tensors", out, sizeof out);
    tu_expect_sq(dir, "quantize --prune-layers 1,x s-00001-of-00002.gguf u.gguf Q8_0", 2, "--prune-layers '1,x'", out,
                 sizeof out);
    /* sq plan reads a split model whole: the same plan as from the one-file copy */
    tu_expect_sq(dir, "quantize --no-sq-config s-00001-of-00002.gguf one.gguf F16", 0, "one.gguf", out, sizeof out);
    tu_expect_sq(dir, "plan -m s-00001-of-00002.gguf --no-imatrix --target-bpw 6 -o sp.json", 0, "bits per weight", out,
                 sizeof out);
    tu_expect_sq(dir, "plan -m one.gguf --no-imatrix --target-bpw 6 -o op.json", 0, "bits per weight", out, sizeof out);
    {
        /* the same entries; their order follows each file's tensor order (quantize writes llama.cpp's) */
        char cmd[1400], a[600], b[600];
        snprintf(cmd, sizeof cmd, "cd '%s' && sort sp.json > sp.sorted && sort op.json > op.sorted", dir);
        CHECK(system(cmd) == 0);
        CHECK(tu_files_equal(in_dir(a, sizeof a, dir, "sp.sorted"), in_dir(b, sizeof b, dir, "op.sorted")));
    }
    tu_expect_sq(dir, "quantize --help", 0, "--keep-split", out, sizeof out);
    CHECK_CONTAINS(out, "--prune-layers");
    /* a missing shard: a message naming it, and no output at all */
    char p[600], q[600];
    CHECK(rename(in_dir(p, sizeof p, dir, "s-00002-of-00002.gguf"), in_dir(q, sizeof q, dir, "x")) == 0);
    tu_expect_sq(dir, "quantize --keep-split --no-sq-config s-00001-of-00002.gguf u.gguf Q8_0", 1,
                 "s-00002-of-00002.gguf: cannot open", out, sizeof out);
    CHECK_INT(tu_count_files(dir, "u"), 0);
    CHECK(!tu_any_file_with(dir, ".tmp-"));
    /* inspect: the first shard shows the model, a lone shard is shown alone */
    CHECK(rename(q, p) == 0);
    tu_expect_sq(dir, "inspect t-00001-of-00002.gguf", 0, "split model: 2 files", out, sizeof out);
    CHECK_CONTAINS(out, "shard 2");
    tu_expect_sq(dir, "inspect t-00002-of-00002.gguf", 0, "showing this file alone", out, sizeof out);
    tu_rm_rf(dir);
}

/* finish_all: one incomplete writer and no file is renamed. */
static void test_writer_all_or_nothing(void)
{
    char dir[256], a[600], b[600];
    CHECK(harness_tmpdir(dir, sizeof dir) != NULL);
    sq_gguf_writer *w[2] = {NULL, NULL};
    sq_error e = {0};
    const int64_t ne[1] = {8};
    const float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(sq_gguf_writer_open(in_dir(a, sizeof a, dir, "a.gguf"), &w[0], &e) == SQ_OK);
    CHECK(sq_gguf_writer_open(in_dir(b, sizeof b, dir, "b.gguf"), &w[1], &e) == SQ_OK);
    for (int k = 0; k < 2; k++) CHECK(sq_gguf_writer_add_tensor(w[k], "x", 1, ne, SQ_TYPE_F32, 32, &e) == SQ_OK);
    CHECK(sq_gguf_writer_write(w[0], v, 32, &e) == SQ_OK);
    CHECK(sq_gguf_writer_write(w[1], v, 16, &e) == SQ_OK); /* half of it */
    CHECK(sq_gguf_writer_finish_all(w, 2, &e) == SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "b.gguf: tensor 'x' got 16 of its 32 bytes");
    CHECK(access(a, F_OK) != 0 && access(b, F_OK) != 0);
    CHECK(!tu_any_file_with(dir, ".tmp-"));
    /* both complete: both renamed */
    CHECK(sq_gguf_writer_open(a, &w[0], &e) == SQ_OK);
    CHECK(sq_gguf_writer_open(b, &w[1], &e) == SQ_OK);
    for (int k = 0; k < 2; k++) {
        CHECK(sq_gguf_writer_add_tensor(w[k], "x", 1, ne, SQ_TYPE_F32, 32, &e) == SQ_OK);
        CHECK(sq_gguf_writer_write(w[k], v, 32, &e) == SQ_OK);
    }
    CHECK(sq_gguf_writer_finish_all(w, 2, &e) == SQ_OK);
    CHECK(access(a, F_OK) == 0 && access(b, F_OK) == 0);
    tu_rm_rf(dir);
}

/* The demo model cut into two shards evaluates to the same logits. */
static void test_engine_split(void)
{
    char model[1024];
    if (!harness_shared_file(model, sizeof model, "models/sqdemo-f16.gguf")) SKIP("no shared demo model");
    char dir[256], p0[600], base[600];
    CHECK(harness_tmpdir(dir, sizeof dir) != NULL);
    sq_error e = {0};
    in_dir(base, sizeof base, dir, "demo");
    const sq_status st = tu_split_model(model, base, 2, &e);
    CHECK_MSG(st == SQ_OK, "%s", e.msg);
    sq_gguf_split_path(p0, sizeof p0, base, 0, 2);
    sq_model *ma = NULL, *mb = NULL;
    sq_context *ca = NULL, *cb = NULL;
    const sq_context_params cp = {64, 64, 1, SQ_TYPE_F16};
    CHECK_MSG(sq_model_load(model, &ma, &e) == SQ_OK, "%s", e.msg);
    CHECK_MSG(sq_model_load(p0, &mb, &e) == SQ_OK, "split: %s", e.msg);
    if (ma && mb && sq_context_create(ma, &cp, &ca, &e) == SQ_OK && sq_context_create(mb, &cp, &cb, &e) == SQ_OK) {
        const int32_t toks[4] = {1, 15, 300, 42};
        CHECK(sq_eval(ca, toks, 4, 1, &e) == SQ_OK);
        CHECK(sq_eval(cb, toks, 4, 1, &e) == SQ_OK);
        const int nv = sq_model_hparams(ma)->n_vocab;
        CHECK(memcmp(sq_get_logits(ca), sq_get_logits(cb), (size_t)nv * sizeof(float)) == 0);
    }
    sq_context_free(ca);
    sq_context_free(cb);
    sq_model_free(ma);
    sq_model_free(mb);
    tu_rm_rf(dir);
}

int main(void)
{
    RUN(test_open_split);
    RUN(test_split_errors);
    RUN(test_quantize_split_input);
    RUN(test_prune_layers);
    RUN(test_tool);
    RUN(test_writer_all_or_nothing);
    RUN(test_engine_split);
    return harness_finish("quantize_split");
}
