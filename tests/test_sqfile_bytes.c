/*
 * test_sqfile_bytes.c — the bytes of SmarterQuant files do not change
 * unless someone means them to.
 *
 * `sq quantize` writes the vendored demo model (models/sqdemo-f16.gguf, with
 * data/sqdemo.imatrix.gguf) four ways, and each output file's SHA-256 must
 * equal the one recorded below, measured before the SmarterQuant metadata
 * got its single owner in src/gguf (issue 11):
 *   A  F16 -> Q4_K_M with a config of seven tensors: permutations (also of
 *      token_embd and output), mixed K-quant / legacy / IQ4 segment types,
 *      one tensor without a permutation;
 *   B  A -> Q5_K_M, requantizing (--allow-requantize) with another config:
 *      SmarterQuant inputs re-planned with a new permutation, SmarterQuant
 *      inputs turned plain, plain inputs made SmarterQuant, and output.weight
 *      kept as it is (--leave-output-tensor) with its metadata;
 *   C  A copied (COPY) with --prune-layers 0: SmarterQuant tensors renamed
 *      (their keys rewritten), the pruned layer's keys gone;
 *   D  F16 split in two shards -> Q4_K_M --keep-split with A's config: each
 *      shard carries the keys of its own SmarterQuant tensors.
 * Every file is also opened by the reader, so a changed hash comes with a
 * hint whether the file is still valid. When a change of the bytes is
 * intended (a new metadata key, a quantizer fix), update the hashes and say
 * why in the commit.
 */
#include <unistd.h>

#include "harness.h"
#include "testutil.h"
#include "sq/gguf.h"

#define MODEL "models/sqdemo-f16.gguf"
#define IMATRIX "data/sqdemo.imatrix.gguf"

/* SHA-256 of the files, as written before the refactoring of issue 11. */
static const char *const WANT_A = "be0f762ff0f655095f61aacd311bd47aefd7029fa609cabbdcfb07583093b22b";
static const char *const WANT_B = "f64ea918bdcd91feb0fc108f52cd831a9324fb41a580b1f99bbc7ea621381438";
static const char *const WANT_C = "1fbd1c740ea2321baee2d161da241852a1878e2c8d5efeda78fb4d417a85157b";
static const char *const WANT_D1 = "05bc95456ab647d336492a72e2f7978abc2fb0b094a6072094d5f5e2a22f2bd3";
static const char *const WANT_D2 = "b5a48bf863d24ca46ae200e66cc68d77490a417201df3075292121d5557718fe";

/* Appends a JSON array of a permutation of 0..n-1 drawn from *seed
 * (Fisher-Yates on xorshift64) to the text at out; returns the new end. */
static char *put_perm(char *out, int n, uint64_t *seed)
{
    int *p = malloc((size_t)n * sizeof *p);
    if (!p) return out;
    for (int i = 0; i < n; i++) p[i] = i;
    for (int i = n - 1; i > 0; i--) {
        const int j = (int)(tu_xorshift64(seed) % (uint64_t)(i + 1));
        const int t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    *out++ = '[';
    for (int i = 0; i < n; i++) out += sprintf(out, "%s%d", i ? "," : "", p[i]);
    *out++ = ']';
    *out = '\0';
    free(p);
    return out;
}

/* One config entry: `"name": [types, perm]` with a random permutation of n
 * columns (n = 0: none). */
static char *put_entry(char *out, bool first, const char *name, const char *types, int n, uint64_t *seed)
{
    out += sprintf(out, "%s\n  \"%s\": [%s, ", first ? "" : ",", name, types);
    if (n > 0) out = put_perm(out, n, seed);
    else out += sprintf(out, "[]");
    out += sprintf(out, "]");
    return out;
}

/* Writes config A (seven tensors) or B (the requantizing one) into dir. */
static void write_config(const char *dir, const char *file, bool second)
{
    char *text = malloc(1 << 20), *p = text;
    if (!text) return;
    uint64_t seed = second ? 0x5eed0002u : 0x5eed0001u;
    p += sprintf(p, "{");
    if (!second) {
        p = put_entry(p, true, "token_embd.weight", "[\"q8_0\", \"q6_K\", 14, 14]", 512, &seed);
        p = put_entry(p, false, "blk.0.attn_q.weight", "[14, 12, 12, 12]", 512, &seed);
        p = put_entry(p, false, "blk.0.ffn_down.weight", "[\"q8_0\", \"q5_K\", \"iq4_xs\", \"q4_0\"]", 1536, &seed);
        p = put_entry(p, false, "blk.1.attn_v.weight", "[14, 13, 12, 12]", 0, &seed);
        p = put_entry(p, false, "blk.1.ffn_gate.weight", "[\"q5_0\", \"iq4_nl\", 3, 3]", 512, &seed);
        p = put_entry(p, false, "blk.3.ffn_up.weight", "[\"q3_K\", \"q2_K\", 10, 10]", 512, &seed);
        p = put_entry(p, false, "output.weight", "[\"q8_0\", \"q5_1\", 7, 7]", 512, &seed);
    } else {
        p = put_entry(p, true, "blk.0.attn_q.weight", "[13, \"q4_1\", 3, 3]", 512, &seed);
        p = put_entry(p, false, "blk.2.attn_k.weight", "[\"q6_K\", \"q4_K\", 12, 12]", 512, &seed);
        p = put_entry(p, false, "blk.3.ffn_down.weight", "[\"q8_0\", \"q6_K\", \"q5_K\", \"q4_K\"]", 1536, &seed);
    }
    sprintf(p, "\n}\n");
    tu_write_text(dir, file, text);
    free(text);
}

/* The SHA-256 of a file as 64 hex digits into out[65] (sha256sum). */
static bool sha256_of(const char *path, char out[65])
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    int rc = 0;
    char *s = tu_popen_read(cmd, &rc);
    const bool ok = s && rc == 0 && strlen(s) >= 64;
    if (ok) {
        memcpy(out, s, 64);
        out[64] = '\0';
    }
    free(s);
    return ok;
}

/* Checks that dir/name opens and hashes to want. */
static void check_file(const char *dir, const char *name, const char *want)
{
    char path[1100], got[65];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    sq_gguf *g = NULL;
    sq_error e = {0};
    CHECK_MSG(sq_gguf_open(path, &g, &e) == SQ_OK, "%s does not open: %s", name, e.msg);
    sq_gguf_close(g);
    CHECK_MSG(sha256_of(path, got), "sha256sum %s failed", path);
    CHECK_MSG(strcmp(got, want) == 0, "%s: sha256 %s, recorded %s (the bytes changed)", name, got, want);
}

static void test_sq_files_unchanged(void)
{
    char dir[512], out[16384], abs_model[1024], cmd[2048];
    if (access(MODEL, R_OK) != 0 || access(IMATRIX, R_OK) != 0) SKIP("run from the repository root (%s)", MODEL);
    CHECK(harness_tmpdir(dir, sizeof dir) != NULL);
    CHECK(realpath(MODEL, abs_model) != NULL);
    /* the imatrix's path is written into the file (quantize.imatrix.file): a fixed name */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/imatrix.gguf'", IMATRIX, dir);
    CHECK(system(cmd) == 0);
    write_config(dir, "a.json", false);
    write_config(dir, "b.json", true);

    snprintf(cmd, sizeof cmd, "quantize -q --strict --sq-config a.json --imatrix imatrix.gguf '%s' a.gguf Q4_K_M 2",
             abs_model);
    tu_expect_sq(dir, cmd, 0, NULL, out, sizeof out);
    check_file(dir, "a.gguf", WANT_A);

    tu_expect_sq(dir,
                 "quantize -q --strict --allow-requantize --leave-output-tensor --sq-config b.json "
                 "--imatrix imatrix.gguf a.gguf b.gguf Q5_K_M 2",
                 0, NULL, out, sizeof out);
    check_file(dir, "b.gguf", WANT_B);

    tu_expect_sq(dir, "quantize -q --no-sq-config --prune-layers 0 a.gguf c.gguf COPY 2", 0, NULL, out, sizeof out);
    check_file(dir, "c.gguf", WANT_C);

    char base[1100];
    snprintf(base, sizeof base, "%s/f16", dir);
    sq_error e = {0};
    CHECK_MSG(tu_split_model(MODEL, base, 2, &e) == SQ_OK, "split: %s", e.msg);
    tu_expect_sq(dir,
                 "quantize -q --strict --keep-split --sq-config a.json --imatrix imatrix.gguf "
                 "f16-00001-of-00002.gguf d.gguf Q4_K_M 2",
                 0, NULL, out, sizeof out);
    check_file(dir, "d-00001-of-00002.gguf", WANT_D1);
    check_file(dir, "d-00002-of-00002.gguf", WANT_D2);
    tu_rm_rf(dir);
}

int main(void)
{
    RUN(test_sq_files_unchanged);
    return harness_finish("sqfile_bytes");
}
