/*
 * test_ftype_label.c — what a file type is called (llama.cpp's display
 * names, its guess when general.file_type is absent, SmarterQuant said
 * plainly) and which file types this build writes (sq_ftype_supported).
 */
#include <unistd.h>

#include "harness.h"
#include "sq/blocks.h"
#include "sq/gguf.h"
#include "sq/quantize.h"

static char dir[512];

/* Every file type of llama-quantize's table has llama.cpp's name. */
static void test_names(void)
{
    for (int i = 0; i < sq_ftype_count(); i++) {
        const sq_ftype_info *fi = sq_ftype_at(i);
        CHECK_MSG(sq_ftype_label(fi->ftype) != NULL, "%s (%d) has no label", fi->name, fi->ftype);
    }
    CHECK_STR(sq_ftype_label(SQ_FTYPE_Q4_K_M), "Q4_K - Medium");
    CHECK_STR(sq_ftype_label(SQ_FTYPE_Q3_K_S), "Q3_K - Small");
    CHECK_STR(sq_ftype_label(SQ_FTYPE_IQ3_M), "IQ3_S mix - 3.66 bpw");
    CHECK_STR(sq_ftype_label(SQ_FTYPE_ALL_F32), "all F32");
    CHECK(sq_ftype_label(99) == NULL);
}

typedef struct tdesc {
    const char *name;
    int type;
} tdesc;

/* Writes dir/NAME with one-row tensors of 256 columns of the given types
 * (zero bytes) and, when file_type >= 0, general.file_type; returns the label. */
static void label_of(const char *name, const tdesc *ts, int n, int file_type, char *label, size_t cap)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    sq_error e = {0};
    sq_gguf_writer *w = NULL;
    sq_status st = sq_gguf_writer_open(path, &w, &e);
    if (st == SQ_OK) st = sq_gguf_writer_set_str(w, "general.architecture", "llama", &e);
    if (st == SQ_OK && file_type >= 0) st = sq_gguf_writer_set_u32(w, "general.file_type", (uint32_t)file_type, &e);
    const int64_t ne[2] = {256, 1};
    for (int i = 0; i < n && st == SQ_OK; i++)
        st = sq_gguf_writer_add_tensor(w, ts[i].name, 2, ne, ts[i].type, sq_row_size(ts[i].type, 256), &e);
    static const unsigned char zeros[1024];
    for (int i = 0; i < n && st == SQ_OK; i++) st = sq_gguf_writer_write(w, zeros, sq_row_size(ts[i].type, 256), &e);
    if (w) {
        if (st == SQ_OK) st = sq_gguf_writer_finish(w, &e);
        else sq_gguf_writer_abort(w);
    }
    CHECK_MSG(st == SQ_OK, "%s", e.msg);
    sq_gguf *g = NULL;
    label[0] = 0;
    if (st == SQ_OK && sq_gguf_open(path, &g, &e) == SQ_OK) sq_file_type_label(g, label, cap);
    sq_gguf_close(g);
    unlink(path);
}

/* general.file_type names the file; without it, llama.cpp's guess from the
 * most common tensor type (counted in name order, the first to reach a new
 * maximum wins), marked as a guess. */
static void test_file_labels(void)
{
    char label[128];
    const tdesc mix[] = {{"a.weight", SQ_TYPE_Q4_K}, {"b.weight", SQ_TYPE_Q6_K}, {"c.weight", SQ_TYPE_Q4_K},
                         {"norm.weight", SQ_TYPE_F32}};
    label_of("m1.gguf", mix, 4, SQ_FTYPE_Q4_K_M, label, sizeof label);
    CHECK_STR(label, "Q4_K - Medium");
    label_of("m2.gguf", mix, 4, SQ_FTYPE_Q5_K_S, label, sizeof label);
    CHECK_STR(label, "Q5_K - Small"); /* the key wins over the tensors */
    label_of("m3.gguf", mix, 4, -1, label, sizeof label);
    CHECK_STR(label, "(guessed) Q4_K - Medium");
    const tdesc tie1[] = {{"x.weight", SQ_TYPE_Q6_K}, {"y.weight", SQ_TYPE_Q8_0}};
    label_of("m4.gguf", tie1, 2, -1, label, sizeof label);
    CHECK_STR(label, "(guessed) Q6_K");
    const tdesc tie2[] = {{"y.weight", SQ_TYPE_Q6_K}, {"x.weight", SQ_TYPE_Q8_0}};
    label_of("m5.gguf", tie2, 2, -1, label, sizeof label);
    CHECK_STR(label, "(guessed) Q8_0");
    const tdesc f32[] = {{"x.weight", SQ_TYPE_F32}};
    label_of("m6.gguf", f32, 1, 99, label, sizeof label);
    CHECK_STR(label, "unknown, may not work");
    label_of("m7.gguf", f32, 1, -1, label, sizeof label);
    CHECK_STR(label, "(guessed) all F32");
    CHECK(strstr(label, "SmarterQuant") == NULL);
}

/* Writable file types: COPY always; never one whose own type cannot be
 * quantized; the types every build has are writable. */
static void test_writable(void)
{
    int n_writable = 0;
    for (int i = 0; i < sq_ftype_count(); i++) {
        const sq_ftype_info *fi = sq_ftype_at(i);
        const bool w = sq_ftype_supported(fi);
        n_writable += w;
        if (fi->copy) CHECK(w);
        else if (!sq_blocks_can_quantize(fi->default_type)) CHECK_MSG(!w, "%s writable without its type", fi->name);
    }
    CHECK(sq_ftype_supported(sq_ftype_parse("Q4_K_M")));
    CHECK(sq_ftype_supported(sq_ftype_parse("Q8_0")));
    CHECK(sq_ftype_supported(sq_ftype_parse("F16")));
    CHECK(!sq_ftype_supported(NULL));
    CHECK(n_writable >= 20);
}

int main(void)
{
    if (!harness_tmpdir(dir, sizeof dir)) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    RUN(test_names);
    RUN(test_file_labels);
    RUN(test_writable);
    rmdir(dir);
    return harness_finish("ftype_label");
}
