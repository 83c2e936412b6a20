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

#define DEFAULT_SQ_CONFIG "default.smarterquant.json"

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
            "                             default: ./" DEFAULT_SQ_CONFIG " if present\n"
            "  --no-sq-config             ignore ./" DEFAULT_SQ_CONFIG "\n"
            "  --strict                   a config key naming no tensor is an error (default: warning)\n"
            "  --sq-auto-fallback         a SmarterQuant block type that does not fit a segment is\n"
            "                             replaced by llama.cpp's fallback type (default: error)\n"
            "  -q, --quiet                no per-tensor lines\n"
            "  -h, --help                 this text\n"
            "\n"
            "TYPE is a file type name or number:\n");
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
    bool imatrix; /* one was given: say which quantized tensors it has no entry for */
} printer;

static double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

static void on_event(void *ud, sq_quantize_event_kind kind, const char *text, const sq_quantize_tensor_plan *t)
{
    const printer *pr = ud;
    if (kind == SQ_QEVENT_WARNING) {
        fprintf(stderr, "warning: %s\n", text);
        return;
    }
    if (kind == SQ_QEVENT_INFO) {
        printf("%s\n", text);
        return;
    }
    if (pr->quiet) return;
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
    char from[32];
    snprintf(from, sizeof from, "%s%s", t->in_smarterquant ? "SQ " : "", sq_type_name(t->in_type));
    printf("[%4d/%4d] %-32s %-18s %7s -> %-28s %8.3f MiB -> %8.3f MiB", t->index, t->count, t->name, shape, from, to,
           mib(t->in_bytes), mib(t->out_bytes));
    if (!pr->dry_run) printf(" %7.1f ms", t->seconds * 1e3);
    const sq_type_info *oti = sq_type_info_get(t->out_type);
    if (pr->imatrix && t->quantize && !t->has_imatrix && oti && oti->is_quantized) printf("  (no imatrix entry)");
    printf("\n");
    fflush(stdout);
}

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int sq_cmd_quantize(int argc, char **argv)
{
    sq_quantize_params p;
    memset(&p, 0, sizeof p);
    p.output_tensor_type = -1;
    p.token_embedding_type = -1;
    int max_ov = argc + 1;
    sq_tensor_type_override *ov = calloc((size_t)max_ov, sizeof *ov);
    char **ov_text = calloc((size_t)max_ov, sizeof *ov_text);
    const char **incl = calloc((size_t)argc + 1, sizeof *incl), **excl = calloc((size_t)argc + 1, sizeof *excl);
    sq_kv_override *kvo = calloc((size_t)argc + 1, sizeof *kvo);
    int *prune = NULL, max_prune = 0;
    int n_incl = 0, n_excl = 0;
    const char *cfg_path = NULL;
    sq_config *cfg = NULL;
    sq_quantize_sqtensor *sqt = NULL;
    bool no_sq_config = false;
    printer pr = {false, false, false};
    const char *pos[4];
    int npos = 0, rc = 1;
    if (!ov || !ov_text || !incl || !excl || !kvo) {
        fprintf(stderr, "sq quantize: out of memory\n");
        goto done;
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(a, "--imatrix") && has_val) {
            p.imatrix_path = argv[++i];
        } else if (!strcmp(a, "--pure")) {
            p.pure = true;
        } else if (!strcmp(a, "--leave-output-tensor")) {
            p.leave_output_tensor = true;
        } else if (!strcmp(a, "--keep-split")) {
            p.keep_split = true;
        } else if (!strcmp(a, "--prune-layers") && has_val) {
            const char *v = argv[++i];
            const int more = (int)strlen(v) / 2 + 1;
            int *np = realloc(prune, (size_t)(max_prune + more) * sizeof *np);
            if (!np) goto done;
            prune = np;
            max_prune += more;
            if (!parse_prune_layers(v, prune, &p.n_prune_layers, max_prune)) {
                rc = 2;
                goto done;
            }
            p.prune_layers = prune;
        } else if (!strcmp(a, "--allow-requantize")) {
            p.allow_requantize = true;
        } else if (!strcmp(a, "--dry-run")) {
            p.dry_run = pr.dry_run = true;
        } else if (!strcmp(a, "--strict")) {
            p.strict = true;
        } else if (!strcmp(a, "--sq-auto-fallback")) {
            p.sq_auto_fallback = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            pr.quiet = true;
        } else if (!strcmp(a, "--sq-config") && has_val) {
            cfg_path = argv[++i];
        } else if (!strcmp(a, "--no-sq-config")) {
            no_sq_config = true;
        } else if ((!strcmp(a, "--output-tensor-type") || !strcmp(a, "--token-embedding-type")) && has_val) {
            const int t = parse_type(argv[++i]);
            if (t < 0) {
                fprintf(stderr, "sq quantize: %s: unknown ggml type '%s'\n", a, argv[i]);
                rc = 2;
                goto done;
            }
            if (a[2] == 'o') p.output_tensor_type = t;
            else p.token_embedding_type = t;
        } else if (!strcmp(a, "--tensor-type") && has_val) {
            if ((rc = add_tensor_type(argv[++i], ov, ov_text, &p.n_overrides)) != 0) goto done;
            rc = 1;
        } else if (!strcmp(a, "--tensor-type-file") && has_val) {
            const char *path = argv[++i];
            FILE *f = fopen(path, "r");
            if (!f) {
                fprintf(stderr, "sq quantize: --tensor-type-file %s: cannot open: %s\n", path, strerror(errno));
                rc = 2;
                goto done;
            }
            char tok[4096];
            while (fscanf(f, "%4095s", tok) == 1) {
                if (p.n_overrides >= max_ov) {
                    sq_tensor_type_override *o2 = realloc(ov, (size_t)(max_ov * 2) * sizeof *ov);
                    char **t2 = o2 ? realloc(ov_text, (size_t)(max_ov * 2) * sizeof *ov_text) : NULL;
                    if (o2) ov = o2;
                    if (t2) ov_text = t2;
                    if (!o2 || !t2) break;
                    max_ov *= 2;
                }
                if ((rc = add_tensor_type(tok, ov, ov_text, &p.n_overrides)) != 0) {
                    fclose(f);
                    goto done;
                }
            }
            fclose(f);
            rc = 1;
        } else if ((!strcmp(a, "--include-weights") || !strcmp(a, "--exclude-weights")) && has_val) {
            if (a[2] == 'i') incl[n_incl++] = argv[++i];
            else excl[n_excl++] = argv[++i];
        } else if (!strcmp(a, "--override-kv") && has_val) {
            if (!parse_kv_override(argv[++i], &kvo[p.n_kv_overrides])) {
                fprintf(stderr, "sq quantize: --override-kv '%s': expected KEY=TYPE:VALUE with TYPE int, float, bool "
                                "or str\n", argv[i]);
                rc = 2;
                goto done;
            }
            p.n_kv_overrides++;
        } else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) { /* "-5": a bad NTHREADS */
            fprintf(stderr, "sq quantize: unknown option or missing value: %s\n", a);
            sq_usage_hint("quantize");
            rc = 2;
            goto done;
        } else if (npos < 4) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "sq quantize: too many arguments ('%s')\n", a);
            rc = 2;
            goto done;
        }
    }
    p.overrides = ov;
    if (n_incl && n_excl) {
        fprintf(stderr, "sq quantize: --include-weights and --exclude-weights cannot be used together\n");
        rc = 2;
        goto done;
    }
    p.imatrix_include = incl;
    p.n_imatrix_include = n_incl;
    p.imatrix_exclude = excl;
    p.n_imatrix_exclude = n_excl;
    p.kv_overrides = kvo;
    pr.imatrix = p.imatrix_path != NULL;

    /* IN [OUT] TYPE [N], read as llama-quantize reads them: when the second
     * argument is a file type, OUT was left out (then, unless --dry-run, the
     * output is IN's folder/ggml-model-TYPE.gguf) and a third one is N. */
    const char *in = NULL, *out = NULL, *type = NULL, *nthreads = NULL;
    char default_out[4200];
    if (npos >= 2 && sq_ftype_parse(pos[1])) {
        in = pos[0], type = pos[1], nthreads = npos > 2 ? pos[2] : NULL;
        if (npos > 3) {
            fprintf(stderr, "sq quantize: too many arguments ('%s' after IN.gguf TYPE NTHREADS)\n", pos[3]);
            sq_usage_hint("quantize");
            rc = 2;
            goto done;
        }
        if (!p.dry_run) {
            const char *slash = strrchr(in, '/');
            snprintf(default_out, sizeof default_out, "%.*sggml-model-%s.gguf", slash ? (int)(slash - in + 1) : 0, in,
                     sq_ftype_parse(type)->name);
            out = default_out;
        }
    } else if (npos >= 3 && sq_ftype_parse(pos[2])) {
        in = pos[0], out = pos[1], type = pos[2], nthreads = npos > 3 ? pos[3] : NULL;
    } else {
        if (npos >= 3) fprintf(stderr, "sq quantize: unknown file type '%s'\n", pos[2]);
        else if (npos == 2) fprintf(stderr, "sq quantize: unknown file type '%s'\n", pos[1]);
        else fprintf(stderr, "sq quantize: expected IN.gguf [OUT.gguf] TYPE [NTHREADS]\n");
        sq_usage_hint("quantize");
        rc = 2;
        goto done;
    }
    const sq_ftype_info *fi = sq_ftype_parse(type);
    p.ftype = fi->ftype;
    p.copy = fi->copy;
    if (nthreads) {
        char *end = NULL;
        long v = strtol(nthreads, &end, 10);
        if (end == nthreads || *end || v < 1 || v > 1024) {
            fprintf(stderr, "sq quantize: NTHREADS '%s': want an integer from 1 to 1024\n", nthreads);
            rc = 2;
            goto done;
        }
        p.n_threads = (int)v;
    }

    /* SmarterQuant config: explicit path, else the default file here */
    if (!cfg_path && !no_sq_config && file_exists(DEFAULT_SQ_CONFIG)) cfg_path = DEFAULT_SQ_CONFIG;
    if (cfg_path) {
        sq_warnings warns = {0};
        sq_error e = {0};
        sq_status st = sq_config_load(cfg_path, &cfg, &warns, &e);
        for (size_t k = 0; k < warns.count; k++) fprintf(stderr, "warning: %s\n", warns.items[k]);
        sq_warnings_free(&warns);
        if (st != SQ_OK) {
            fprintf(stderr, "sq quantize: %s\n", e.msg);
            goto done_cfg;
        }
        const int64_t n = sq_config_count(cfg);
        sqt = calloc((size_t)(n ? n : 1), sizeof *sqt);
        if (!sqt) goto done_cfg;
        for (int64_t k = 0; k < n; k++) {
            const sq_config_entry *ce = sq_config_entry_at(cfg, k);
            if (!ce->enabled) continue;
            sq_quantize_sqtensor *q = &sqt[p.n_sq_tensors++];
            q->name = ce->name;
            memcpy(q->types, ce->types, sizeof q->types);
            q->perm = ce->perm;
            q->perm_len = ce->perm_len;
        }
        p.sq_tensors = sqt;
        p.sq_config_label = cfg_path;
        printf("SmarterQuant config: %s (%d tensor%s)\n", cfg_path, p.n_sq_tensors, p.n_sq_tensors == 1 ? "" : "s");
    } else {
        printf("SmarterQuant config: none\n");
    }

    {
        if (p.dry_run) printf("planning %s as %s (dry run: nothing is written)\n", in, fi->name);
        else printf("quantizing %s to %s as %s\n", in, out, fi->name);
        p.on_event = on_event;
        p.event_ud = &pr;
        sq_quantize_stats stats;
        sq_error e = {0};
        if (!p.dry_run) sq_install_cleanup_handlers();
        sq_status st = sq_quantize_file(in, out, &p, &stats, &e);
        if (st != SQ_OK) {
            fprintf(stderr, "sq quantize: %s\n", e.msg);
        } else {
            if (stats.n_pruned_tensors > 0) printf("pruned %d tensors\n", stats.n_pruned_tensors);
            for (int k = 0; k < stats.n_files && stats.n_files > 1; k++) {
                char path[4200];
                sq_quantize_out_path(path, sizeof path, out ? out : "OUT.gguf", k, stats.n_files);
                printf("%s %s\n", k == 0 ? (p.dry_run ? "would write" : "wrote") : "     ", path);
            }
            const double n = stats.n_elements > 0 ? (double)stats.n_elements : 1.0;
            printf("model size = %9.2f MiB (%.2f bpw)\n", mib(stats.in_bytes), (double)stats.in_bytes * 8.0 / n);
            printf("quant size = %9.2f MiB (%.2f bpw)%s\n", mib(stats.out_bytes), (double)stats.out_bytes * 8.0 / n,
                   p.dry_run ? "  (dry run)" : "");
            printf("%d tensors, %d quantized, %d SmarterQuant, %d width fallbacks; %.2f s\n", stats.n_tensors,
                   stats.n_quantized, stats.n_smarterquant, stats.n_fallback, stats.seconds);
            rc = 0;
        }
    }
done_cfg:
done:
    free(sqt);
    sq_config_free(cfg);
    for (int k = 0; k < p.n_overrides; k++) free(ov_text[k]);
    for (int k = 0; k < p.n_kv_overrides; k++) free((char *)kvo[k].key);
    free(ov_text);
    free(ov);
    free(incl);
    free(excl);
    free(kvo);
    free(prune);
    return rc;
}
