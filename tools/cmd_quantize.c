/*
 * cmd_quantize.c — sq quantize: llama-quantize's command line, plus
 * SmarterQuant tensors from a configuration file.
 *
 *   sq quantize [options] IN.gguf OUT.gguf TYPE [NTHREADS]
 *
 * Flags are parsed here; every decision is made by the library
 * (sq/quantize.h), which reports progress through a callback we print.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmds.h"
#include "sq/gguf.h"
#include "sq/quantize.h"
#include "sq/sqconfig.h"

/* The current folder's default config, as messages name it. */
#define DEFAULT_SQ_CONFIG "./" SQ_CONFIG_DEFAULT_NAME

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sq quantize [options] IN.gguf [OUT.gguf] TYPE [NTHREADS]\n"
            "\n"
            "Quantizes a GGUF model as llama-quantize does (same per-tensor types, same bytes),\n"
            "with SmarterQuant tensors (mixed block types inside a tensor) where a config asks.\n"
            "IN.gguf may be the first shard of a split model (NAME-00001-of-0000N.gguf). Without\n"
            "OUT.gguf the output is IN.gguf's folder/ggml-model-TYPE.gguf (as llama-quantize).\n"
            "\n"
            "options:\n"
            "  --imatrix FILE             importance matrix (llama.cpp GGUF format or legacy .dat)\n"
            "  --pure                     no k-quant mixes: every tensor the file type's default type\n"
            "  --output-tensor-type T     ggml type for output.weight (e.g. q8_0)\n"
            "  --token-embedding-type T   ggml type for token_embd.weight\n"
            "  --tensor-type REGEX=T      tensors whose name matches REGEX (POSIX extended, searched)\n"
            "                             get type T; repeatable, the last matching one wins\n"
            "  --tensor-type-file FILE    REGEX=T entries separated by spaces or newlines\n"
            "  --leave-output-tensor      leave output.weight as it is\n"
            "  --include-weights NAME     use the imatrix only for weights whose name contains NAME\n"
            "                             (repeatable)\n"
            "  --exclude-weights NAME     do not use the imatrix for weights whose name contains NAME\n"
            "                             (repeatable; not together with --include-weights)\n"
            "  --override-kv KEY=TYPE:VALUE  set a metadata key in the output; TYPE int, float, bool\n"
            "                             or str (repeatable)\n"
            "  --keep-split               a split input (NAME-00001-of-0000N.gguf) gives a split output:\n"
            "                             OUT minus .gguf, -00001-of-0000N.gguf ..., the same tensors in\n"
            "                             each shard (default: one output file)\n"
            "  --prune-layers L0,L1,...   drop these layers (blk.N.*); the rest are renumbered and\n"
            "                             ARCH.block_count follows\n"
            "  --allow-requantize         allow quantized input (dequantized first); SmarterQuant\n"
            "                             input tensors are dequantized and un-permuted\n"
            "  --dry-run                  print the plan and the resulting size, write nothing\n"
            "  --sq-config PATH           SmarterQuant config (JSON: tensor -> [types, perm]);\n"
            "                             default: " DEFAULT_SQ_CONFIG " when present (sq plan\n"
            "                             writes it): its tensors become SmarterQuant whatever TYPE\n"
            "                             says, a notice says so before any work and in the last line\n"
            "  --no-sq-config             skip " DEFAULT_SQ_CONFIG "\n"
            "  --strict                   a config key naming no tensor, or types of 1-3 or 5+ entries,\n"
            "                             is an error (default: a warning)\n"
            "  --sq-auto-fallback         a SmarterQuant block type that does not fit a segment is\n"
            "                             replaced by llama.cpp's fallback type (default: error)\n"
            "  -q, --quiet                no per-tensor lines\n"
            "  -h, --help                 this text\n"
            "\n"
            "TYPE is a file type name or number (those this build writes):\n");
    for (int i = 0; i < sq_ftype_count(); i++) {
        const sq_ftype_info *fi = sq_ftype_at(i);
        if (!sq_ftype_supported(fi)) continue; /* only what this build writes */
        if (fi->copy) fprintf(f, "          %-9s: %s\n", fi->name, fi->desc);
        else fprintf(f, "  %2d  or  %-9s: %s\n", fi->ftype, fi->name, fi->desc);
    }
}

/* A ggml type by name ("q8_0", case-insensitive) or id; -1 if unknown. */
static int parse_type(const char *s)
{
    int t = sq_type_from_name(s);
    if (t >= 0) return t;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end != s && *end == 0 && sq_type_info_get((int)v)) return (int)v;
    return -1;
}

/* Adds one REGEX=TYPE entry; 2 on a usage error (message printed). */
static int add_tensor_type(const char *v, sq_tensor_type_override *ov, char **ov_text, int *n)
{
    const char *eq = strrchr(v, '=');
    if (!eq || eq == v || !eq[1]) {
        fprintf(stderr, "sq quantize: --tensor-type '%s': expected REGEX=TYPE\n", v);
        return 2;
    }
    const int t = parse_type(eq + 1);
    if (t < 0) {
        fprintf(stderr, "sq quantize: --tensor-type '%s': unknown ggml type '%s'\n", v, eq + 1);
        return 2;
    }
    /* llama-quantize lower-cases the pattern (tensor names are lower case) */
    char *pat = strndup(v, (size_t)(eq - v));
    if (!pat) return 1;
    for (char *c = pat; *c; c++) *c = (char)tolower((unsigned char)*c);
    ov_text[*n] = pat;
    ov[*n].pattern = pat;
    ov[*n].type = t;
    (*n)++;
    return 0;
}

/* Parses --prune-layers' comma-separated layer numbers into layers[*n];
 * false (message printed) on an empty or non-numeric entry. */
static bool parse_prune_layers(const char *arg, int *layers, int *n, int max)
{
    const char *p = arg;
    for (;;) {
        char *end = NULL;
        errno = 0;
        const long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 1000000 || errno || (*end != ',' && *end != 0) || *n >= max) {
            fprintf(stderr, "sq quantize: --prune-layers '%s': expected layer numbers separated by commas (e.g. 3,7)\n",
                    arg);
            return false;
        }
        layers[(*n)++] = (int)v;
        if (*end == 0) return true;
        p = end + 1;
    }
}

/* Parses KEY=TYPE:VALUE (llama.cpp's --override-kv); false on a bad one. */
static bool parse_kv_override(const char *arg, sq_kv_override *o)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || eq - arg >= 128) return false;
    char *key = strndup(arg, (size_t)(eq - arg));
    if (!key) return false;
    const char *v = eq + 1;
    memset(o, 0, sizeof *o);
    o->key = key;
    char *end = NULL;
    if (!strncmp(v, "int:", 4)) {
        o->kind = SQ_KV_INT;
        o->i = strtoll(v + 4, &end, 10);
        if (end != v + 4 && !*end) return true;
    } else if (!strncmp(v, "float:", 6)) {
        o->kind = SQ_KV_FLOAT;
        o->f = strtod(v + 6, &end);
        if (end != v + 6 && !*end) return true;
    } else if (!strncmp(v, "bool:", 5)) {
        o->kind = SQ_KV_BOOL;
        if (!strcmp(v + 5, "true") || !strcmp(v + 5, "false")) {
            o->b = v[5] == 't';
            return true;
        }
    } else if (!strncmp(v, "str:", 4) && strlen(v + 4) < 128) {
        o->kind = SQ_KV_STR;
        o->s = v + 4;
        return true;
    }
    free(key);
    o->key = NULL;
    return false;
}

typedef struct printer {
    bool quiet;
    bool dry_run;
    bool imatrix;        /* one was given: say which quantized tensors it has no entry for */
    sq_progress progress; /* started at the first tensor written */
} printer;

static double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

/* One tensor's line, llama-quantize style: index, name, shape, types, sizes. */
static void print_tensor(printer *pr, const sq_quantize_tensor_plan *t)
{
    char shape[64];
    int n = snprintf(shape, sizeof shape, "%lld", (long long)t->ne[0]);
    for (int d = 1; d < t->n_dims && n < (int)sizeof shape; d++)
        n += snprintf(shape + n, sizeof shape - (size_t)n, " x %lld", (long long)t->ne[d]);
    char to[96];
    if (!t->quantize) {
        snprintf(to, sizeof to, "%s%s", t->smarterquant ? "SQ " : "", "(copy)");
    } else if (t->smarterquant) {
        snprintf(to, sizeof to, "SQ[%s %s %s %s]%s", sq_type_name(t->sq_types[0]), sq_type_name(t->sq_types[1]),
                 sq_type_name(t->sq_types[2]), sq_type_name(t->sq_types[3]), t->sq_permuted ? " perm" : "");
    } else if (t->fallback) {
        snprintf(to, sizeof to, "%s (fallback from %s)", sq_type_name(t->out_type), sq_type_name(t->fallback_from));
    } else {
        snprintf(to, sizeof to, "%s", sq_type_name(t->out_type));
    }
    char from[32], ms[32] = "";
    snprintf(from, sizeof from, "%s%s", t->in_smarterquant ? "SQ " : "", sq_type_name(t->in_type));
    if (!pr->dry_run) snprintf(ms, sizeof ms, " %7.1f ms", t->seconds * 1e3);
    const sq_type_info *oti = sq_type_info_get(t->out_type);
    const bool no_entry = pr->imatrix && t->quantize && !t->has_imatrix && oti && oti->is_quantized;
    sq_progress_printf(&pr->progress, "[%4d/%4d] %-32s %-18s %7s -> %-28s %8.3f MiB -> %8.3f MiB%s%s\n", t->index,
                       t->count, t->name, shape, from, to, mib(t->in_bytes), mib(t->out_bytes), ms,
                       no_entry ? "  (no imatrix entry)" : "");
}

/* The library's events: warnings to stderr, information and tensor lines to
 * stdout; while writing, the progress display (a status line with ETA on a
 * terminal; with -q in a log, a plain line now and then). */
static void on_event(void *ud, sq_quantize_event_kind kind, const char *text, const sq_quantize_tensor_plan *t)
{
    printer *pr = ud;
    if (kind == SQ_QEVENT_WARNING) {
        sq_progress_clear(&pr->progress);
        fprintf(stderr, "warning: %s\n", text);
        return;
    }
    if (kind == SQ_QEVENT_INFO) {
        sq_progress_printf(&pr->progress, "%s\n", text);
        return;
    }
    if (!pr->dry_run && t->index == 1) {
        sq_progress_start(&pr->progress, "sq quantize", "tensors", t->count);
        if (!pr->quiet && pr->progress.mode == SQ_PROGRESS_PLAIN) pr->progress.mode = SQ_PROGRESS_OFF; /* the lines are */
    }
    if (!pr->quiet) print_tensor(pr, t);
    if (!pr->dry_run) sq_progress_update(&pr->progress, t->index, "%s", t->name);
}

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* What the command line asked for, and the arrays it fills. */
typedef struct quant_opts {
    sq_quantize_params p;
    sq_tensor_type_override *ov; /* --tensor-type entries, their patterns in ov_text */
    char **ov_text;
    int max_ov;
    const char **incl, **excl; /* --include-weights, --exclude-weights */
    int n_incl, n_excl;
    sq_kv_override *kvo;
    int *prune, max_prune;
    const char *cfg_path;
    bool no_sq_config;
    bool cfg_implicit; /* cfg_path is the current folder's default, not asked for by a flag */
    printer pr;
    const char *pos[4]; /* IN [OUT] TYPE [NTHREADS] */
    int npos;
    const char *in, *out;
    const sq_ftype_info *fi;
    char default_out[4200];
} quant_opts;

static bool opts_alloc(quant_opts *o, int argc)
{
    memset(o, 0, sizeof *o);
    o->p.output_tensor_type = -1;
    o->p.token_embedding_type = -1;
    o->max_ov = argc + 1;
    o->ov = calloc((size_t)o->max_ov, sizeof *o->ov);
    o->ov_text = calloc((size_t)o->max_ov, sizeof *o->ov_text);
    o->incl = calloc((size_t)argc + 1, sizeof *o->incl);
    o->excl = calloc((size_t)argc + 1, sizeof *o->excl);
    o->kvo = calloc((size_t)argc + 1, sizeof *o->kvo);
    return o->ov && o->ov_text && o->incl && o->excl && o->kvo;
}

static void opts_free(quant_opts *o)
{
    for (int k = 0; k < o->p.n_overrides; k++) free(o->ov_text[k]);
    for (int k = 0; k < o->p.n_kv_overrides; k++) free((char *)o->kvo[k].key);
    free(o->ov_text);
    free(o->ov);
    free(o->incl);
    free(o->excl);
    free(o->kvo);
    free(o->prune);
}

/* --tensor-type-file: REGEX=TYPE entries separated by white space. False
 * after a message. */
static bool read_tensor_type_file(const char *path, quant_opts *o)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "sq quantize: --tensor-type-file %s: cannot open: %s\n", path, strerror(errno));
        return false;
    }
    char tok[4096];
    bool ok = true;
    while (ok && fscanf(f, "%4095s", tok) == 1) {
        if (o->p.n_overrides >= o->max_ov) {
            sq_tensor_type_override *o2 = realloc(o->ov, (size_t)(o->max_ov * 2) * sizeof *o->ov);
            char **t2 = o2 ? realloc(o->ov_text, (size_t)(o->max_ov * 2) * sizeof *o->ov_text) : NULL;
            if (o2) o->ov = o2;
            if (t2) o->ov_text = t2;
            if (!o2 || !t2) break;
            o->max_ov *= 2;
        }
        ok = add_tensor_type(tok, o->ov, o->ov_text, &o->p.n_overrides) == 0;
    }
    fclose(f);
    return ok;
}

/* The flags that steer llama.cpp's per-tensor rules: --imatrix and its
 * --include/--exclude-weights, --pure, --leave-output-tensor,
 * --output-tensor-type, --token-embedding-type, --tensor-type(-file).
 * Returns whether the argument is one of them (a->failed after a bad value). */
static bool rules_flag(sq_args *a, quant_opts *o)
{
    const char *flag = sq_args_cur(a), *v = NULL;
    if (sq_args_is(a, NULL, "--imatrix")) {
        o->p.imatrix_path = sq_args_value(a);
    } else if (sq_args_is(a, NULL, "--include-weights") || sq_args_is(a, NULL, "--exclude-weights")) {
        if ((v = sq_args_value(a))) {
            if (flag[2] == 'i') o->incl[o->n_incl++] = v;
            else o->excl[o->n_excl++] = v;
        }
    } else if (sq_args_is(a, NULL, "--pure")) {
        o->p.pure = true;
    } else if (sq_args_is(a, NULL, "--leave-output-tensor")) {
        o->p.leave_output_tensor = true;
    } else if (sq_args_is(a, NULL, "--output-tensor-type") || sq_args_is(a, NULL, "--token-embedding-type")) {
        if (!(v = sq_args_value(a))) return true;
        const int t = parse_type(v);
        if (t < 0) {
            fprintf(stderr, "sq quantize: %s: unknown ggml type '%s'\n", flag, v);
            a->failed = true;
        } else if (flag[2] == 'o') {
            o->p.output_tensor_type = t;
        } else {
            o->p.token_embedding_type = t;
        }
    } else if (sq_args_is(a, NULL, "--tensor-type")) {
        if ((v = sq_args_value(a)) && add_tensor_type(v, o->ov, o->ov_text, &o->p.n_overrides) != 0) a->failed = true;
    } else if (sq_args_is(a, NULL, "--tensor-type-file")) {
        if ((v = sq_args_value(a)) && !read_tensor_type_file(v, o)) a->failed = true;
    } else {
        return false;
    }
    return true;
}

/* The output file's shape and metadata: --keep-split, --prune-layers,
 * --override-kv, --allow-requantize, --dry-run, -q. */
static bool file_flag(sq_args *a, quant_opts *o)
{
    const char *v = NULL;
    if (sq_args_is(a, NULL, "--keep-split")) {
        o->p.keep_split = true;
    } else if (sq_args_is(a, NULL, "--prune-layers")) {
        if (!(v = sq_args_value(a))) return true;
        const int more = (int)strlen(v) / 2 + 1;
        int *np = realloc(o->prune, (size_t)(o->max_prune + more) * sizeof *np);
        if (!np) {
            a->failed = true;
            return true;
        }
        o->prune = np;
        o->max_prune += more;
        if (!parse_prune_layers(v, o->prune, &o->p.n_prune_layers, o->max_prune)) a->failed = true;
        o->p.prune_layers = o->prune;
    } else if (sq_args_is(a, NULL, "--override-kv")) {
        if (!(v = sq_args_value(a))) return true;
        if (!parse_kv_override(v, &o->kvo[o->p.n_kv_overrides])) {
            fprintf(stderr, "sq quantize: --override-kv '%s': expected KEY=TYPE:VALUE with TYPE int, float, bool or str\n",
                    v);
            a->failed = true;
        } else {
            o->p.n_kv_overrides++;
        }
    } else if (sq_args_is(a, NULL, "--allow-requantize")) {
        o->p.allow_requantize = true;
    } else if (sq_args_is(a, NULL, "--dry-run")) {
        o->p.dry_run = o->pr.dry_run = true;
    } else if (sq_args_is(a, "-q", "--quiet")) {
        o->pr.quiet = true;
    } else {
        return false;
    }
    return true;
}

/* SmarterQuant: --sq-config, --no-sq-config, --strict, --sq-auto-fallback. */
static bool smarterquant_flag(sq_args *a, quant_opts *o)
{
    if (sq_args_is(a, NULL, "--sq-config")) o->cfg_path = sq_args_value(a);
    else if (sq_args_is(a, NULL, "--no-sq-config")) o->no_sq_config = true;
    else if (sq_args_is(a, NULL, "--strict")) o->p.strict = true;
    else if (sq_args_is(a, NULL, "--sq-auto-fallback")) o->p.sq_auto_fallback = true;
    else return false;
    return true;
}

/* IN [OUT] TYPE [N], read as llama-quantize reads them: when the second
 * argument is a file type, OUT was left out (then, unless --dry-run, the
 * output is IN's folder/ggml-model-TYPE.gguf) and a third one is N. Returns
 * -1 to go on, else the exit status. */
static int positionals(quant_opts *o)
{
    const char **pos = o->pos, *type = NULL, *nthreads = NULL;
    if (o->npos >= 2 && sq_ftype_parse(pos[1])) {
        o->in = pos[0], type = pos[1], nthreads = o->npos > 2 ? pos[2] : NULL;
        if (o->npos > 3)
            return sq_usage_error("quantize", "too many arguments ('%s' after IN.gguf TYPE NTHREADS)", pos[3]);
        if (!o->p.dry_run) {
            const char *slash = strrchr(o->in, '/');
            snprintf(o->default_out, sizeof o->default_out, "%.*sggml-model-%s.gguf",
                     slash ? (int)(slash - o->in + 1) : 0, o->in, sq_ftype_parse(type)->name);
            o->out = o->default_out;
        }
    } else if (o->npos >= 3 && sq_ftype_parse(pos[2])) {
        o->in = pos[0], o->out = pos[1], type = pos[2], nthreads = o->npos > 3 ? pos[3] : NULL;
    } else if (o->npos >= 2) {
        return sq_usage_error("quantize", "unknown file type '%s'", pos[o->npos >= 3 ? 2 : 1]);
    } else {
        return sq_usage_error("quantize", "expected IN.gguf [OUT.gguf] TYPE [NTHREADS]");
    }
    o->fi = sq_ftype_parse(type);
    o->p.ftype = o->fi->ftype;
    o->p.copy = o->fi->copy;
    if (nthreads && !sq_arg_int("quantize", "NTHREADS", nthreads, 1, 1024, &o->p.n_threads)) return 2;
    return -1;
}

/* Reads the command line into o; returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, quant_opts *o)
{
    sq_args a = sq_args_start("quantize", argc, argv);
    for (; sq_args_more(&a); sq_args_next(&a)) {
        const char *s = sq_args_cur(&a);
        if (sq_args_help(&a)) {
            usage(stdout);
            return 0;
        }
        if (rules_flag(&a, o) || file_flag(&a, o) || smarterquant_flag(&a, o)) continue;
        if (s[0] == '-' && s[1] && !(s[1] >= '0' && s[1] <= '9')) return sq_args_unknown(&a); /* "-5": a bad NTHREADS */
        if (o->npos == 4) return sq_usage_error("quantize", "too many arguments ('%s')", s);
        o->pos[o->npos++] = s;
    }
    if (a.failed) return 2;
    if (o->n_incl && o->n_excl)
        return sq_usage_error("quantize", "--include-weights and --exclude-weights cannot be used together");
    sq_quantize_params *p = &o->p;
    p->overrides = o->ov;
    p->imatrix_include = o->incl;
    p->n_imatrix_include = o->n_incl;
    p->imatrix_exclude = o->excl;
    p->n_imatrix_exclude = o->n_excl;
    p->kv_overrides = o->kvo;
    o->pr.imatrix = p->imatrix_path != NULL;
    return positionals(o);
}

/* The SmarterQuant config: --sq-config's, else ./default.smarterquant.json
 * when present (unless --no-sq-config); its enabled entries become
 * p->sq_tensors (in *sqt, the caller frees). Returns 0, or 1 after a message. */
static int load_sq_config(quant_opts *o, sq_config **cfg, sq_quantize_sqtensor **sqt)
{
    sq_quantize_params *p = &o->p;
    if (!o->cfg_path && !o->no_sq_config && file_exists(DEFAULT_SQ_CONFIG)) {
        o->cfg_path = DEFAULT_SQ_CONFIG;
        o->cfg_implicit = true;
    }
    if (!o->cfg_path) {
        printf("SmarterQuant config: none\n");
        return 0;
    }
    sq_warnings warns = {0};
    sq_error e = {0};
    const bool ok = sq_config_load(o->cfg_path, cfg, &warns, &e) == SQ_OK &&
                    (!p->strict || sq_config_check_strict(*cfg, &e) == SQ_OK);
    for (size_t k = 0; k < warns.count && ok; k++) fprintf(stderr, "warning: %s\n", warns.items[k]);
    sq_warnings_free(&warns);
    if (!ok) {
        fprintf(stderr, "sq quantize: %s\n", e.msg);
        if (o->cfg_implicit)
            fprintf(stderr, "sq quantize: (" DEFAULT_SQ_CONFIG " was found in the current folder and read by default; "
                            "--no-sq-config skips it)\n");
        return 1;
    }
    const int64_t n = sq_config_count(*cfg);
    if (!(*sqt = calloc((size_t)(n ? n : 1), sizeof **sqt))) return 1;
    for (int64_t k = 0; k < n; k++) {
        const sq_config_entry *ce = sq_config_entry_at(*cfg, k);
        if (!ce->enabled) continue;
        sq_quantize_sqtensor *q = &(*sqt)[p->n_sq_tensors++];
        q->name = ce->name;
        memcpy(q->types, ce->types, sizeof q->types);
        q->perm = ce->perm;
        q->perm_len = ce->perm_len;
    }
    p->sq_tensors = *sqt;
    p->sq_config_label = o->cfg_path;
    printf("SmarterQuant config: %s (%d tensor%s)\n", o->cfg_path, p->n_sq_tensors, p->n_sq_tensors == 1 ? "" : "s");
    if (o->cfg_implicit) /* a file left by sq plan must not change the output unnoticed */
        fprintf(stderr,
                "sq quantize: note: using " DEFAULT_SQ_CONFIG ", found in the current folder (no --sq-config given): "
                "%d tensor%s SmarterQuant instead of %s, a file stock llama.cpp cannot load; --no-sq-config "
                "skips it\n",
                p->n_sq_tensors, p->n_sq_tensors == 1 ? " becomes" : "s become", o->fi->name);
    return 0;
}

/* The last line: the file type written, never silently other than the one
 * asked for: "file type: Q8_0 + SmarterQuant (9.61 bpw): 2 tensors from
 * CONFIG ...". */
static void print_file_type(const quant_opts *o, const sq_quantize_stats *stats)
{
    const char *label = sq_ftype_label(o->fi->ftype);
    const char *dry = o->p.dry_run ? " (dry run)" : "";
    if (o->fi->copy) label = "COPY (tensors copied as they are)";
    if (stats->n_smarterquant == 0) {
        printf("file type: %s%s\n", label, dry);
        return;
    }
    const double n = stats->n_elements > 0 ? (double)stats->n_elements : 1.0;
    printf("file type: %s + SmarterQuant (%.2f bpw)%s: %d tensor%s from %s%s; stock llama.cpp cannot load it\n", label,
           (double)stats->out_bytes * 8.0 / n, dry, stats->n_smarterquant, stats->n_smarterquant == 1 ? "" : "s",
           o->cfg_path ? o->cfg_path : "the input's SmarterQuant tensors",
           o->cfg_implicit ? " (found in the current folder, not asked for by a flag; --no-sq-config skips it)" : "");
}

/* The lines after a successful run: files, sizes, counts. */
static void print_summary(const quant_opts *o, const sq_quantize_stats *stats)
{
    if (stats->n_pruned_tensors > 0) printf("pruned %d tensors\n", stats->n_pruned_tensors);
    for (int k = 0; k < stats->n_files && stats->n_files > 1; k++) {
        char path[4200];
        sq_quantize_out_path(path, sizeof path, o->out ? o->out : "OUT.gguf", k, stats->n_files);
        printf("%s %s\n", k == 0 ? (o->p.dry_run ? "would write" : "wrote") : "     ", path);
    }
    const double n = stats->n_elements > 0 ? (double)stats->n_elements : 1.0;
    printf("model size = %9.2f MiB (%.2f bpw)\n", mib(stats->in_bytes), (double)stats->in_bytes * 8.0 / n);
    printf("quant size = %9.2f MiB (%.2f bpw)%s\n", mib(stats->out_bytes), (double)stats->out_bytes * 8.0 / n,
           o->p.dry_run ? "  (dry run)" : "");
    printf("%d tensors, %d quantized, %d SmarterQuant, %d width fallbacks; %.2f s\n", stats->n_tensors,
           stats->n_quantized, stats->n_smarterquant, stats->n_fallback, stats->seconds);
    print_file_type(o, stats);
}

/* Quantizes (or plans, with --dry-run) and prints the summary. Returns 0 or 1. */
static int run_quantize(quant_opts *o)
{
    sq_quantize_params *p = &o->p;
    if (p->dry_run) printf("planning %s as %s (dry run: nothing is written)\n", o->in, o->fi->name);
    else printf("quantizing %s to %s as %s\n", o->in, o->out, o->fi->name);
    p->on_event = on_event;
    p->event_ud = &o->pr;
    sq_quantize_stats stats;
    sq_error e = {0};
    if (!p->dry_run) sq_install_cleanup_handlers();
    const sq_status st = sq_quantize_file(o->in, o->out, p, &stats, &e);
    sq_progress_end(&o->pr.progress);
    if (st != SQ_OK) {
        fprintf(stderr, "sq quantize: %s\n", e.msg);
        return 1;
    }
    print_summary(o, &stats);
    return 0;
}

int sq_cmd_quantize(int argc, char **argv)
{
    quant_opts o;
    sq_config *cfg = NULL;
    sq_quantize_sqtensor *sqt = NULL;
    int rc = 1;
    if (!opts_alloc(&o, argc)) fprintf(stderr, "sq quantize: out of memory\n");
    else if ((rc = parse_args(argc, argv, &o)) < 0 && (rc = load_sq_config(&o, &cfg, &sqt)) == 0)
        rc = run_quantize(&o);
    free(sqt);
    sq_config_free(cfg);
    opts_free(&o);
    return rc;
}
