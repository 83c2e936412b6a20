/*
 * cmd_inspect.c — sq inspect FILE [--full] [--json]: a GGUF file's header,
 * every key/value, every tensor (SmarterQuant tensors with their four block
 * types and whether they are permuted) and a summary, as text or JSON.
 *
 * It reads only the header: the reader maps the file and touches nothing
 * past the tensor infos, so it is fast on any model size.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "sq/gguf.h"
#include "sq/quantize.h"

#define ABBREV_ELEMS 8 /* array entries shown without --full */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sq inspect FILE [--full] [--json]\n"
            "Shows a GGUF file: header (version, counts, alignment, data offset), every key with its type\n"
            "and value, every tensor (name, shape, type, offset, bytes; SmarterQuant tensors with their four\n"
            "block types and whether their columns are permuted) and a summary (tensor count, bytes, bits\n"
            "per weight of the 2-D+ tensors, llama.cpp's name of the file type). Only the header is read.\n"
            "The first shard of a split model (NAME-00001-of-0000N.gguf) shows the whole model, with each\n"
            "tensor's shard.\n"
            "  --full     print arrays and long strings whole (default: first %d entries, strings cut at 160 bytes)\n"
            "  --json     print the same as one JSON object\n"
            "  -h, --help this text\n",
            ABBREV_ELEMS);
}

/* Value of kv i formatted by the library, in a malloc'd string. */
static char *format_kv(const sq_gguf *g, int64_t i, uint64_t max, unsigned flags)
{
    const size_t n = sq_gguf_kv_format(g, i, max, flags, NULL, 0);
    char *s = malloc(n + 1);
    if (s) sq_gguf_kv_format(g, i, max, flags, s, n + 1);
    return s;
}

/* A quoted (JSON or text) string in a malloc'd buffer. */
static char *quote(const char *p, size_t len, unsigned flags)
{
    const size_t n = sq_gguf_format_string(p, len, 0, flags, NULL, 0);
    char *s = malloc(n + 1);
    if (s) sq_gguf_format_string(p, len, 0, flags, s, n + 1);
    return s;
}

/* A key or tensor name for the text output: as is, or quoted with escapes
 * when it holds control characters (a file must not drive the terminal).
 * Returns buf or a malloc'd string in *owned. */
static const char *display_name(const char *name, char **owned)
{
    *owned = NULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return *owned = quote(name, strlen(name), 0);
    return name;
}

static int64_t elements(const sq_gguf_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->ne[d]; /* validated by the reader: no overflow */
    return n;
}

typedef struct summary {
    uint64_t bytes, w_bytes;
    int64_t w_elems, w_count, sq_count;
} summary;

static summary summarize(const sq_gguf *g)
{
    summary s = {0};
    for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
        s.bytes += t->nbytes;
        if (t->smarterquant) s.sq_count++;
        if (t->n_dims >= 2) {
            s.w_bytes += t->nbytes;
            s.w_elems += elements(t);
            s.w_count++;
        }
    }
    return s;
}

static double bpw(const summary *s) { return s->w_elems ? 8.0 * (double)s->w_bytes / (double)s->w_elems : 0.0; }

static int print_text(const sq_gguf *g, bool full)
{
    const uint64_t max = full ? 0 : ABBREV_ELEMS;
    printf("%s: GGUF v%u, %" PRId64 " key/values, %" PRId64 " tensors, alignment %zu, data offset %" PRIu64
           ", file size %" PRIu64 " bytes\n",
           sq_gguf_path(g), sq_gguf_version(g), sq_gguf_n_kv(g), sq_gguf_n_tensors(g), sq_gguf_alignment(g),
           sq_gguf_data_offset(g), sq_gguf_file_size(g));
    const int n_shards = sq_gguf_n_shards(g);
    if (n_shards > 1) {
        printf("split model: %d files\n", n_shards);
        for (int k = 0; k < n_shards; k++) {
            const sq_gguf *f = sq_gguf_shard(g, k);
            printf("  shard %d: %s, %" PRId64 " tensors, data offset %" PRIu64 ", file size %" PRIu64 " bytes\n", k + 1,
                   sq_gguf_path(f), sq_gguf_n_tensors(f), sq_gguf_data_offset(f), sq_gguf_file_size(f));
        }
    }
    printf("\nkey/values:\n");
    for (int64_t i = 0; i < sq_gguf_n_kv(g); i++) {
        const sq_gguf_type t = sq_gguf_kv_type(g, i);
        char type[64];
        if (t == SQ_GGUF_ARRAY)
            snprintf(type, sizeof type, "array[%s,%" PRIu64 "]", sq_gguf_type_name(sq_gguf_arr_type(g, i)),
                     sq_gguf_arr_n(g, i));
        else
            snprintf(type, sizeof type, "%s", sq_gguf_type_name(t));
        char *v = format_kv(g, i, max, 0), *owned;
        const char *key = display_name(sq_gguf_key(g, i), &owned);
        printf("  %4" PRId64 "  %-44s %-20s = %s\n", i, key ? key : "?", type, v ? v : "(out of memory)");
        free(owned);
        free(v);
    }
    printf("\ntensors:\n  %4s  %-36s %-26s %-8s %12s %12s\n", "#", "name", "shape", "type", "offset", "bytes");
    for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
        char shape[128];
        int k = snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < t->n_dims; d++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%" PRId64, d ? ", " : "", t->ne[d]);
        snprintf(shape + k, sizeof shape - (size_t)k, "]");
        char *owned;
        const char *name = display_name(t->name, &owned);
        printf("  %4" PRId64 "  %-36s %-26s %-8s %12" PRIu64 " %12" PRIu64, i, name ? name : "?", shape,
               sq_type_name(t->type), t->offset, t->nbytes);
        free(owned);
        if (n_shards > 1) printf("  shard %d", sq_gguf_tensor_shard(g, t) + 1);
        if (t->smarterquant)
            printf("  smarterquant [%s, %s, %s, %s]%s", sq_type_name(t->sq.types[0]), sq_type_name(t->sq.types[1]),
                   sq_type_name(t->sq.types[2]), sq_type_name(t->sq.types[3]),
                   t->sq.perm ? " permuted" : " not permuted");
        putchar('\n');
    }
    const summary s = summarize(g);
    printf("\nsummary: %" PRId64 " tensors (%" PRId64 " smarterquant), %" PRIu64 " bytes of tensor data (%.2f MiB); "
           "%" PRId64 " weight tensors (2-D+): %" PRId64 " elements, %" PRIu64 " bytes, %.4f bits per weight\n",
           sq_gguf_n_tensors(g), s.sq_count, s.bytes, (double)s.bytes / (1024.0 * 1024.0), s.w_count, s.w_elems,
           s.w_bytes, bpw(&s));
    char label[128];
    sq_file_type_label(g, label, sizeof label);
    printf("file type: %s\n", label);
    return 0;
}

static int print_json(const sq_gguf *g, bool full)
{
    const uint64_t max = full ? 0 : ABBREV_ELEMS;
    char *file = quote(sq_gguf_path(g), strlen(sq_gguf_path(g)), SQ_GGUF_FMT_JSON);
    printf("{\"file\": %s, \"version\": %u, \"n_kv\": %" PRId64 ", \"n_tensors\": %" PRId64
           ", \"alignment\": %zu, \"data_offset\": %" PRIu64 ", \"file_size\": %" PRIu64 ",\n \"kv\": [",
           file ? file : "null", sq_gguf_version(g), sq_gguf_n_kv(g), sq_gguf_n_tensors(g), sq_gguf_alignment(g),
           sq_gguf_data_offset(g), sq_gguf_file_size(g));
    free(file);
    for (int64_t i = 0; i < sq_gguf_n_kv(g); i++) {
        const char *key = sq_gguf_key(g, i);
        char *k = quote(key, strlen(key), SQ_GGUF_FMT_JSON);
        char *v = format_kv(g, i, max, SQ_GGUF_FMT_JSON);
        const sq_gguf_type t = sq_gguf_kv_type(g, i);
        printf("%s\n  {\"key\": %s, \"type\": \"%s\"", i ? "," : "", k ? k : "null", sq_gguf_type_name(t));
        if (t == SQ_GGUF_ARRAY) {
            const uint64_t n = sq_gguf_arr_n(g, i);
            printf(", \"elem_type\": \"%s\", \"n\": %" PRIu64 ", \"truncated\": %s",
                   sq_gguf_type_name(sq_gguf_arr_type(g, i)), n, (max && n > max) ? "true" : "false");
        }
        printf(", \"value\": %s}", v ? v : "null");
        free(k);
        free(v);
    }
    printf("],\n \"tensors\": [");
    for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
        char *name = quote(t->name, strlen(t->name), SQ_GGUF_FMT_JSON);
        printf("%s\n  {\"name\": %s, \"shape\": [", i ? "," : "", name ? name : "null");
        free(name);
        for (int d = 0; d < t->n_dims; d++) printf("%s%" PRId64, d ? ", " : "", t->ne[d]);
        printf("], \"type\": \"%s\", \"type_id\": %d, \"offset\": %" PRIu64 ", \"file_offset\": %" PRIu64
               ", \"bytes\": %" PRIu64 ", \"elements\": %" PRId64,
               sq_type_name(t->type), t->type, t->offset,
               sq_gguf_data_offset(sq_gguf_shard(g, sq_gguf_tensor_shard(g, t))) + t->offset, t->nbytes, elements(t));
        if (sq_gguf_n_shards(g) > 1) printf(", \"shard\": %d", sq_gguf_tensor_shard(g, t) + 1);
        if (t->smarterquant)
            printf(", \"smarterquant\": {\"block_types\": [%d, %d, %d, %d], \"block_type_names\": [\"%s\", \"%s\", "
                   "\"%s\", \"%s\"], \"permuted\": %s}",
                   t->sq.types[0], t->sq.types[1], t->sq.types[2], t->sq.types[3], sq_type_name(t->sq.types[0]),
                   sq_type_name(t->sq.types[1]), sq_type_name(t->sq.types[2]), sq_type_name(t->sq.types[3]),
                   t->sq.perm ? "true" : "false");
        putchar('}');
    }
    const summary s = summarize(g);
    char label[128]; /* llama.cpp's names: no character JSON would escape */
    sq_file_type_label(g, label, sizeof label);
    printf("],\n \"summary\": {\"tensors\": %" PRId64 ", \"smarterquant_tensors\": %" PRId64
           ", \"bytes\": %" PRIu64 ", \"weight_tensors\": %" PRId64 ", \"weight_elements\": %" PRId64
           ", \"weight_bytes\": %" PRIu64 ", \"bits_per_weight\": %.6f, \"file_type\": \"%s\"}}\n",
           sq_gguf_n_tensors(g), s.sq_count, s.bytes, s.w_count, s.w_elems, s.w_bytes, bpw(&s), label);
    return 0;
}

int sq_cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    bool full = false, json = false;
    sq_args a = sq_args_start("inspect", argc, argv);
    for (; sq_args_more(&a); sq_args_next(&a)) {
        const char *s = sq_args_cur(&a);
        if (sq_args_help(&a)) {
            usage(stdout);
            return 0;
        }
        if (sq_args_is(&a, NULL, "--full")) full = true;
        else if (sq_args_is(&a, NULL, "--json")) json = true;
        else if (s[0] == '-' && s[1]) return sq_args_unknown(&a);
        else if (path) return sq_usage_error("inspect", "only one FILE, got '%s' and '%s'", path, s);
        else path = s;
    }
    if (!path) return sq_usage_error("inspect", "a FILE to show is required");
    sq_error err = {0};
    sq_gguf *g = NULL;
    /* the first shard of a split model shows the whole model; a shard that
     * cannot be joined with the others (a later shard, one missing) is
     * still shown alone, with the reason on stderr */
    if (sq_gguf_open_model(path, &g, &err) != SQ_OK) {
        sq_error e1 = err;
        if (sq_gguf_open(path, &g, &err) != SQ_OK) {
            fprintf(stderr, "sq inspect: %s\n", err.msg);
            return 1;
        }
        fprintf(stderr, "sq inspect: warning: %s; showing this file alone\n", e1.msg);
    }
    const int rc = json ? print_json(g, full) : print_text(g, full);
    sq_gguf_close(g);
    if (fflush(stdout) != 0) return 1;
    return rc;
}
