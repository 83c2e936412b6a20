/*
 * cmd_plan.c — sq plan: choose, for every weight tensor of a model, a column
 * permutation and the four segment block types under a size budget, and write
 * them as a SmarterQuant configuration (default.smarterquant.json) with a
 * report of what was chosen. The algorithm is in src/plan/plan.c and
 * docs/plan.md.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmds.h"
#include "sq/engine.h"
#include "sq/gguf.h"
#include "sq/imatrix.h"
#include "sq/plan.h"
#include "sq/quantize.h"
#include "sq/sqconfig.h"
#include "sq/tokenizer.h"
#include "sq/types.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sq plan -m MODEL --imatrix FILE --calib TEXT (--target-size SIZE | --target-bpw B) [options]\n"
            "Chooses per weight tensor a column permutation (most important columns first) and the four\n"
            "segment block types (or, with --granularity tensor, one type) that minimise the model's predicted\n"
            "output error under the size budget, measuring every candidate type by really quantizing it, and\n"
            "writes the SmarterQuant configuration for `sq quantize`. With --calib the error of each tensor is\n"
            "weighted by the model's own measured sensitivities (the best plan); without it, by llama.cpp's\n"
            "mix of the nearest size (its split of the bytes between tensors, spent better inside them; the\n"
            "tensors its rules protect keep their bits).\n"
            "Prints per tensor the types, bits per weight and predicted error, and the totals.\n"
            "  -m, --model FILE        the model to plan (GGUF, usually F16 or F32)\n"
            "  --imatrix FILE          importance matrix (llama.cpp GGUF or legacy .dat); required unless\n"
            "                          --no-imatrix is given\n"
            "  --no-imatrix            plan without one (uniform importance; types that need one are skipped)\n"
            "  --target-bpw B          bits per weight over all tensors (data bytes * 8 / weights)\n"
            "  --target-size SIZE      size of the whole output file: bytes, or with a K, M or G suffix\n"
            "                          (powers of 1024)\n"
            "  -o, --output FILE       configuration to write (default " SQ_CONFIG_DEFAULT_NAME ", which sq\n"
            "                          quantize in this folder then uses unless given --no-sq-config)\n"
            "  --granularity segment|tensor\n"
            "                          segment (default): a type per 256-column segment slot and a permutation;\n"
            "                          tensor: one type per tensor, no permutation (a standard GGUF that\n"
            "                          llama.cpp loads)\n"
            "  --tensor-types-out FILE with --granularity tensor: also write the plan as llama-quantize's\n"
            "                          --tensor-type-file (\"^NAME$=type\" lines)\n"
            "  --tensors REGEX         plan only tensors whose name matches (POSIX extended regex, searched);\n"
            "                          default: every weight llama-quantize would quantize (2-D *.weight and\n"
            "                          3-D expert tensors)\n"
            "  --types LIST            candidate types, comma-separated names or ids (default: every type this\n"
            "                          build quantizes and multiplies that llama.cpp knows; with --calib (or\n"
            "                          --sensitivity) and an importance matrix, segment plans also take\n"
            "                          ik_llama.cpp's types whose quantizers are as cheap as ggml's: q6_0,\n"
            "                          iq3_k..iq6_k, iq3_ks, iq4_ks, iq5_ks, iq2_kl)\n"
            "  --prior auto|none|FTYPE without --calib or --sensitivity: weight the tensors by llama.cpp's mix\n"
            "                          of the nearest size (auto, default) or of FTYPE (Q4_K_M, ...), or\n"
            "                          count every tensor's relative error alike (none)\n"
            "  --base-ftype TYPE       file type `sq quantize` will use for the tensors not planned, to size\n"
            "                          them (default Q4_K_M; with the default --tensors only norms remain)\n"
            "  --perm auto|on|off      permute columns: per group where it lowers the predicted error (auto,\n"
            "                          the default without --calib or --sensitivity), always (on, the default\n"
            "                          with them), or never\n"
            "  --norm rel|abs          error normalisation: relative to each tensor's output energy (rel,\n"
            "                          default) or the raw importance-weighted error (abs)\n"
            "  --sensitivity FILE      per-tensor sensitivities, lines \"TENSOR WEIGHT [ACT_Q8_K ACT_Q8_0]\": a\n"
            "                          tensor's normalised error is multiplied by its weight (default 1), e.g.\n"
            "                          the KL divergence per unit of relative error (bench/sensitivity.sh or\n"
            "                          --sensitivity-out); the optional costs of its activations quantized to\n"
            "                          q8_K / q8_0 are added to candidates with those activations\n"
            "  --calib FILE            calibration text: unless --sensitivity gives them, the model's own\n"
            "                          sensitivities are found in-process with the engine on chunks of it\n"
            "                          (llama, qwen2, qwen3, qwen3moe, gemma3, phi3), by --calib-method\n"
            "  --calib-method M        fisher (default): one forward and one backward pass per chunk give\n"
            "                          every tensor's Fisher information at once (the KL divergence a weight\n"
            "                          error is predicted to cost), whatever the number of tensors (experts\n"
            "                          included); where the backward pass does not run a model it\n"
            "                          measures instead and says so. measure: each tensor quantized to the\n"
            "                          --calib-types in turn and the model run again (a run per tensor and\n"
            "                          type: slow on large models)\n"
            "  --calib-chunks N        chunks of calibration text (default 6)\n"
            "  --calib-ctx N           tokens per chunk (default 512, at most the model's context)\n"
            "  --calib-types LIST      one or two types whose KL divergence is measured or predicted (default\n"
            "                          q3_K,q5_K: the sensitivity is the slope between them)\n"
            "  --calib-act TYPE|none   measure: also measure each tensor at TYPE, whose activations are q8_0 or q8_1\n"
            "                          (default q8_0 when both --calib-types are K-quants), to model what\n"
            "                          quantizing a product's activations costs: q8_K for the K-quants (the\n"
            "                          two-point line's intercept), q8_0/q8_1 for the 32-column types; added\n"
            "                          to each candidate's error\n"
            "  --sensitivity-out FILE  write the measured sensitivities (the --sensitivity format, with the\n"
            "                          relative errors and KL divergences as a comment per line)\n"
            "  --measure-kld           with --calib: also quantize the model as planned (in memory) and print\n"
            "                          its mean KL divergence on the calibration chunks\n"
            "  --calib-refine N        with --calib: N rounds of measuring each tensor's share of the plan's\n"
            "                          KL divergence in the plan itself and planning again with those\n"
            "                          sensitivities; keeps the plan that measured best (default 0)\n"
            "  --no-share-perm         give q/k/v and gate/up their own permutations (default: one per input)\n"
            "  --sample-rows N         measure candidates on N rows per tensor, spread evenly (default 256;\n"
            "                          0: every row)\n"
            "  -t, --threads N         threads measuring candidates (default: all cores)\n"
            "  --dry-run               plan and report, write nothing\n"
            "  -q, --quiet             no per-tensor report, only the totals\n"
            "  -h, --help              this text\n");
}

/* SIZE: a byte count, optionally with a K / M / G suffix (1024-based, an
 * optional trailing "B" or "iB" accepted). Returns 0 on a bad value. */
static uint64_t parse_size(const char *s)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0)) return 0;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1024.0; end++; break;
    case 'M': mul = 1024.0 * 1024.0; end++; break;
    case 'G': mul = 1024.0 * 1024.0 * 1024.0; end++; break;
    default: break;
    }
    if (mul > 1 && *end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return 0;
    double b = v * mul;
    if (b >= 1.8e19) return 0;
    return (uint64_t)b;
}

/* LIST: comma-separated type names or ids. Returns the count, -1 on a bad entry. */
static int parse_types(const char *list, int *out, int cap, char *bad, size_t badn)
{
    int n = 0;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char tok[32];
        if (len == 0 || len >= sizeof tok) {
            snprintf(bad, badn, "%.*s", (int)(len < 31 ? len : 31), p);
            return -1;
        }
        memcpy(tok, p, len);
        tok[len] = 0;
        int id = -1;
        char *end = NULL;
        long v = strtol(tok, &end, 10);
        if (end && *end == 0) id = (int)v;
        else id = sq_type_from_name(tok);
        if (id < 0 || !sq_type_info_get(id) || n == cap) {
            snprintf(bad, badn, "%s", tok);
            return -1;
        }
        out[n++] = id;
        p = e ? e + 1 : p + len;
    }
    return n;
}

/* Checks the configuration text the way `sq quantize --strict` will: parse,
 * then validate against every tensor of the model. */
static int check_config(const char *text, size_t len, const char *label, const sq_gguf *g, const sq_imatrix *im)
{
    sq_error err = {0};
    sq_warnings w = {0};
    sq_config *cfg = NULL;
    int rc = 0;
    if (sq_config_parse(text, len, label, &cfg, &w, &err) != SQ_OK) {
        fprintf(stderr, "sq plan: internal error: the configuration does not parse: %s\n", err.msg);
        rc = 1;
    } else {
        int64_t nt = sq_gguf_n_tensors(g);
        sq_config_tensor *ts = calloc((size_t)(nt > 0 ? nt : 1), sizeof *ts);
        if (!ts) {
            fprintf(stderr, "sq plan: out of memory\n");
            rc = 1;
        } else {
            for (int64_t i = 0; i < nt; i++) {
                const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
                int64_t n = 0;
                ts[i] = (sq_config_tensor){.name = t->name, .cols = t->ne[0], .rows = t->ne[1] * t->ne[2] * t->ne[3],
                                           .has_imatrix = im && sq_imatrix_find(im, t->name, &n) != NULL};
            }
            sq_config_options opt = {.strict = true};
            if (sq_config_validate(cfg, ts, nt, &opt, &w, &err) != SQ_OK) {
                fprintf(stderr, "sq plan: internal error: the configuration does not validate: %s\n", err.msg);
                rc = 1;
            }
            free(ts);
        }
    }
    sq_config_free(cfg);
    sq_warnings_free(&w);
    return rc;
}

/* A sensitivity file: one "TENSOR WEIGHT" pair per line, '#' starts a
 * comment. Fills *out (malloc'ed names and array); returns 0, or 1 after
 * printing the file, line and reason. */
static int load_weights_file(const char *path, sq_plan_weight **out, int *n_out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "sq plan: %s: %s\n", path, strerror(errno));
        return 1;
    }
    char line[1024];
    int n = 0, cap = 0, lineno = 0, rc = 0;
    sq_plan_weight *w = NULL;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char name[512], extra[8];
        double v, ak = 0.0, a0 = 0.0;
        int k = sscanf(line, "%511s %lf %lf %lf %7s", name, &v, &ak, &a0, extra);
        if (k <= 0) continue;
        if ((k != 2 && k != 4) || !(v > 0) || !(ak >= 0) || !(a0 >= 0)) {
            fprintf(stderr,
                    "sq plan: %s:%d: want \"TENSOR WEIGHT [ACT_Q8_K ACT_Q8_0]\" with a positive weight and "
                    "activation costs >= 0\n",
                    path, lineno);
            rc = 1;
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            sq_plan_weight *nw = realloc(w, (size_t)cap * sizeof *nw);
            if (!nw) {
                rc = 1;
                break;
            }
            w = nw;
        }
        w[n] = (sq_plan_weight){.name = strdup(name), .weight = v, .act_q8_K = ak, .act_q8_0 = a0};
        if (!w[n].name) {
            rc = 1;
            break;
        }
        n++;
    }
    fclose(f);
    *out = w;
    *n_out = n;
    return rc;
}

static void free_weights(sq_plan_weight *w, int n)
{
    for (int i = 0; i < n; i++) free((char *)w[i].name);
    free(w);
}

static void print_types(const int types[4], int64_t cols)
{
    int64_t nseg = sq_n_segments(cols);
    char buf[64];
    size_t off = 0;
    for (int s = 0; s < 4 && s < nseg; s++)
        off += (size_t)snprintf(buf + off, sizeof buf - off, "%s%s", s ? "," : "", sq_type_name(types[s]));
    printf(" %-30s", buf);
}

/* The calibration text tokenized with the model's vocabulary (BOS first when
 * the vocabulary adds one, as sq perplexity does). Returns 0, or 1 after
 * printing why. */
static int calib_tokens(const sq_gguf *g, const char *path, sq_token **toks, size_t *n, int32_t *bos)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "sq plan: --calib %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *text = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size >= 0 && fseek(f, 0, SEEK_SET) == 0) text = malloc((size_t)size + 1);
    bool ok = text && fread(text, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "sq plan: --calib %s: cannot read it\n", path);
        free(text);
        return 1;
    }
    sq_error err = {0};
    sq_vocab *voc = NULL;
    int rc = 0;
    if (sq_vocab_load_gguf(g, &voc, &err) != SQ_OK || sq_tokenize(voc, text, (size_t)size, true, false, toks, n, &err) != SQ_OK) {
        fprintf(stderr, "sq plan: --calib %s: %s\n", path, err.msg);
        rc = 1;
    } else {
        *bos = sq_vocab_add_bos(voc) ? sq_vocab_bos(voc) : -1;
    }
    sq_vocab_free(voc);
    free(text);
    return rc;
}

/* Writes measured sensitivities in the --sensitivity format (atomically). */
static int write_sens(const char *path, const sq_plan_sens *s, const char *model, const char *calib, int chunks,
                      int method, int act_type)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "sq plan: --sensitivity-out %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    const bool fisher = method != SQ_PLAN_CALIB_MEASURE, act = fisher || act_type > 0;
    fprintf(f, "# sensitivity: KL divergence per unit of relative error, %s by sq plan --calib\n",
            fisher ? "predicted from the Fisher information" : "measured");
    fprintf(f, "# model %s, %d chunks of %s\n# TENSOR WEIGHT%s # then type, relative error, %sKLD per point\n", model,
            chunks, calib, act ? " ACT_Q8_K ACT_Q8_0" : "", fisher ? "predicted " : "");
    for (int64_t i = 0; i < sq_plan_sens_count(s); i++) {
        const sq_plan_sensitivity *e = sq_plan_sens_at(s, i);
        fprintf(f, "%s %.6g", e->name, e->weight);
        if (act) fprintf(f, " %.6g %.6g", e->act_q8_K, e->act_q8_0);
        fprintf(f, " #");
        for (int k = 0; k < e->n_points; k++)
            fprintf(f, " %s %.4e %.4e", sq_type_name(e->types[k]), e->rel[k], e->kld[k]);
        if (act_type > 0) fprintf(f, " %s %.4e %.4e", sq_type_name(act_type), e->rel_act, e->kld_act);
        fprintf(f, "\n");
    }
    bool ok = !ferror(f);
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "sq plan: --sensitivity-out %s: cannot write: %s\n", path, strerror(errno));
        unlink(tmp);
        return 1;
    }
    return 0;
}

/* --calib's progress: one tensor measured at a time (before each tensor). */
static void on_calib(void *ud, const char *tensor, int i, int n)
{
    sq_progress *pr = ud;
    if (i == 0) sq_progress_start(pr, "sq plan: calibrating", strcmp(tensor, "backward pass") ? "tensors" : "chunks", n);
    sq_progress_update(pr, i, "%s", tensor);
}

/* What the command line asked for. */
typedef struct plan_opts {
    const char *model_path, *imatrix_path, *out_path, *sens_path, *calib_path, *sens_out, *types_out;
    const char *calib_flag; /* a --calib-* tuning flag given (they need --calib) */
    const char *measure_flag; /* a flag of --calib-method measure given */
    sq_plan_params p;
    sq_plan_calib_params cp;
    int types[SQ_TYPE_COUNT], ctypes[SQ_TYPE_COUNT]; /* room for every type once */
    int refine;
    long threads;
    bool measure_kld, no_imatrix, dry_run, quiet, perm_given;
} plan_opts;

/* The budget and what is planned: --target-bpw/-size, --tensors, --types,
 * --base-ftype, --perm, --norm, --no-share-perm, --granularity, --prior,
 * --sample-rows. Returns
 * whether the argument is one of them (a.failed after a bad value). */
static bool budget_flag(sq_args *a, plan_opts *o)
{
    sq_plan_params *p = &o->p;
    const char *flag = sq_args_cur(a), *v = NULL;
    int k = 0;
    if (sq_args_is(a, NULL, "--target-bpw")) {
        if (!(v = sq_args_value(a))) return true;
        char *end = NULL;
        p->target_bpw = strtod(v, &end);
        if (!end || *end || !(p->target_bpw > 0) || !(p->target_bpw < 64)) {
            fprintf(stderr, "sq plan: --target-bpw %s: want a number of bits per weight in (0, 64)\n", v);
            a->failed = true;
        }
    } else if (sq_args_is(a, NULL, "--target-size")) {
        if (!(v = sq_args_value(a))) return true;
        if (!(p->target_bytes = parse_size(v))) {
            fprintf(stderr, "sq plan: --target-size %s: want a size in bytes, or with a K, M or G suffix\n", v);
            a->failed = true;
        }
    } else if (sq_args_is(a, NULL, "--tensors")) {
        p->tensors = sq_args_value(a);
    } else if (sq_args_is(a, NULL, "--types")) {
        if (!(v = sq_args_value(a))) return true;
        char bad[64];
        const int n = parse_types(v, o->types, (int)(sizeof o->types / sizeof o->types[0]), bad, sizeof bad);
        if (n <= 0) {
            fprintf(stderr, "sq plan: --types %s: '%s' is not a type (names such as q4_K, or ids)\n", v, bad);
            a->failed = true;
        }
        p->types = o->types;
        p->n_types = n;
    } else if (sq_args_is(a, NULL, "--base-ftype")) {
        p->base_ftype = sq_args_value(a);
    } else if (sq_args_is(a, NULL, "--perm")) {
        static const sq_plan_perm_mode modes[] = {SQ_PLAN_PERM_AUTO, SQ_PLAN_PERM_ON, SQ_PLAN_PERM_OFF};
        if (sq_args_choice(a, "auto|on|off", &k)) p->perm = modes[k];
        o->perm_given = true;
    } else if (sq_args_is(a, NULL, "--norm")) {
        if (sq_args_choice(a, "rel|abs", &k)) p->norm = k == 0 ? SQ_PLAN_NORM_REL : SQ_PLAN_NORM_ABS;
    } else if (sq_args_is(a, NULL, "--no-share-perm")) {
        p->no_share = true;
    } else if (sq_args_is(a, NULL, "--granularity")) {
        if (sq_args_choice(a, "segment|tensor", &k)) p->granularity = k == 0 ? SQ_PLAN_GRAN_SEGMENT : SQ_PLAN_GRAN_TENSOR;
    } else if (sq_args_is(a, NULL, "--prior")) {
        if (!(v = sq_args_value(a))) return true;
        p->prior = !strcmp(v, "none") ? SQ_PLAN_PRIOR_NONE : SQ_PLAN_PRIOR_MIX;
        p->prior_ftype = strcmp(v, "none") && strcmp(v, "auto") ? v : NULL;
        if (p->prior_ftype && !sq_ftype_parse(v)) {
            fprintf(stderr, "sq plan: --prior %s: want auto, none or a file type (Q4_K_M, ...)\n", v);
            a->failed = true;
        }
    } else if (sq_args_is(a, NULL, "--sample-rows")) {
        if (!(v = sq_args_value(a))) return true;
        char *end = NULL;
        const long long n = strtoll(v, &end, 10);
        if (!end || *end || n < 0) {
            fprintf(stderr, "sq plan: %s %s: want a row count (0: every row)\n", flag, v);
            a->failed = true;
        }
        p->sample_rows = n == 0 ? -1 : n;
    } else {
        return false;
    }
    return true;
}

/* Sensitivities: --sensitivity, --calib and its tuning flags,
 * --sensitivity-out, --measure-kld, --calib-refine. */
static bool calib_flag(sq_args *a, plan_opts *o)
{
    sq_plan_calib_params *cp = &o->cp;
    const char *flag = sq_args_cur(a), *v = NULL;
    if (sq_args_is(a, NULL, "--sensitivity")) {
        o->sens_path = sq_args_value(a);
    } else if (sq_args_is(a, NULL, "--calib")) {
        o->calib_path = sq_args_value(a);
    } else if (sq_args_is(a, NULL, "--sensitivity-out")) {
        o->sens_out = sq_args_value(a);
    } else if (sq_args_is(a, NULL, "--measure-kld")) {
        o->measure_kld = true;
    } else if (sq_args_is(a, NULL, "--calib-refine")) {
        sq_args_int(a, 0, 100, &o->refine);
    } else if (sq_args_is(a, NULL, "--calib-method")) {
        o->calib_flag = flag;
        if (!(v = sq_args_value(a))) return true;
        if (!strcmp(v, "fisher") || !strcmp(v, "measure")) {
            cp->method = !strcmp(v, "fisher") ? SQ_PLAN_CALIB_FISHER : SQ_PLAN_CALIB_MEASURE;
        } else {
            fprintf(stderr, "sq plan: --calib-method %s: want fisher or measure\n", v);
            a->failed = true;
        }
    } else if (sq_args_is(a, NULL, "--calib-chunks")) {
        o->calib_flag = flag;
        sq_args_int(a, 1, 100000, &cp->n_chunks);
    } else if (sq_args_is(a, NULL, "--calib-ctx")) {
        o->calib_flag = flag;
        sq_args_int(a, 8, 1 << 20, &cp->n_ctx);
    } else if (sq_args_is(a, NULL, "--calib-types")) {
        o->calib_flag = flag;
        if (!(v = sq_args_value(a))) return true;
        char bad[64];
        const int n = parse_types(v, o->ctypes, (int)(sizeof o->ctypes / sizeof o->ctypes[0]), bad, sizeof bad);
        if (n <= 0 || n > 2) {
            fprintf(stderr, "sq plan: --calib-types %s: want one or two type names or ids\n", v);
            a->failed = true;
        }
        cp->types = o->ctypes;
        cp->n_types = n;
    } else if (sq_args_is(a, NULL, "--calib-act")) {
        o->calib_flag = o->measure_flag = flag;
        if (!(v = sq_args_value(a))) return true;
        const int t = sq_type_from_name(v);
        cp->act_type = !strcmp(v, "none") ? -1 : t;
        if (strcmp(v, "none") != 0 && t <= 0) {
            fprintf(stderr, "sq plan: --calib-act %s: want a type name (q8_0, q5_0, ...) or none\n", v);
            a->failed = true;
        }
    } else {
        return false;
    }
    return true;
}

/* Inputs, outputs and running: -m, --imatrix, --no-imatrix, -o,
 * --tensor-types-out, -t, --dry-run, -q. */
static bool io_flag(sq_args *a, plan_opts *o)
{
    if (sq_args_is(a, "-m", "--model")) o->model_path = sq_args_value(a);
    else if (sq_args_is(a, NULL, "--imatrix")) o->imatrix_path = sq_args_value(a);
    else if (sq_args_is(a, NULL, "--no-imatrix")) o->no_imatrix = true;
    else if (sq_args_is(a, "-o", "--output")) o->out_path = sq_args_value(a);
    else if (sq_args_is(a, NULL, "--tensor-types-out")) o->types_out = sq_args_value(a);
    else if (sq_args_is(a, "-t", "--threads")) sq_args_long(a, 1, 1024, &o->threads);
    else if (sq_args_is(a, NULL, "--dry-run")) o->dry_run = true;
    else if (sq_args_is(a, "-q", "--quiet")) o->quiet = true;
    else return false;
    return true;
}

/* The default --calib-act: activation costs from q8_0 whenever the two
 * measuring types are K-quants; -1 (none) becomes 0. */
static void default_calib_act(sq_plan_calib_params *cp)
{
    if (cp->act_type == 0) {
        bool k_quants = !cp->types;
        if (cp->types && cp->n_types == 2) {
            const sq_type_info *a0 = sq_type_info_get(cp->types[0]), *a1 = sq_type_info_get(cp->types[1]);
            k_quants = a0 && a1 && a0->vec_dot_type == SQ_TYPE_Q8_K && a1->vec_dot_type == SQ_TYPE_Q8_K;
        }
        if (k_quants) cp->act_type = SQ_TYPE_Q8_0;
    }
    if (cp->act_type < 0) cp->act_type = 0;
}

/* The flags that go together or not at all, and outputs that would replace
 * an input or cannot be written: checked before any work. Returns 0 or the
 * exit status. */
static int check_opts(plan_opts *o)
{
    if (!o->model_path) return sq_usage_error("plan", "no model (-m FILE)");
    if (!o->imatrix_path && !o->no_imatrix)
        return sq_usage_error("plan", "no importance matrix (--imatrix FILE, or --no-imatrix)");
    if ((o->p.target_bpw > 0) == (o->p.target_bytes > 0))
        return sq_usage_error("plan", "give exactly one of --target-bpw and --target-size");
    if (o->sens_path && o->sens_out)
        return sq_usage_error("plan", "--sensitivity-out writes measured sensitivities; --sensitivity reads them");
    if ((o->sens_out || o->measure_kld || o->refine || o->calib_flag) && !o->calib_path)
        return sq_usage_error("plan", "%s needs --calib TEXT",
                              o->sens_out      ? "--sensitivity-out"
                              : o->measure_kld ? "--measure-kld"
                              : o->refine      ? "--calib-refine"
                                               : o->calib_flag);
    if (o->measure_flag && o->cp.method != SQ_PLAN_CALIB_MEASURE)
        return sq_usage_error("plan", "%s needs --calib-method measure", o->measure_flag);
    if (o->types_out && o->p.granularity != SQ_PLAN_GRAN_TENSOR)
        return sq_usage_error("plan", "--tensor-types-out needs --granularity tensor (one type per tensor)");
    /* with measured sensitivities every group is permuted: measured better than the allocation's choice
       (docs/quality.md; the error model does not see what sorted columns do to the activations' blocks) */
    if (!o->perm_given && (o->calib_path || o->sens_path)) o->p.perm = SQ_PLAN_PERM_ON;
    /* the outputs must not replace one of the inputs */
    const char *inputs[] = {o->model_path, o->imatrix_path, o->sens_path, o->calib_path};
    const char *outputs[] = {o->out_path, o->sens_out, o->types_out};
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 3; j++)
            if (inputs[k] && outputs[j] && sq_gguf_same_file(outputs[j], inputs[k]))
                return sq_usage_error("plan", "%s: is the input %s; it would be replaced (choose another output)",
                                      outputs[j], inputs[k]);
    if (!sq_arg_output_ok("plan", o->out_path)) return 1;
    if (o->types_out && !sq_arg_output_ok("plan", o->types_out)) return 1;
    if (o->sens_out && !sq_arg_output_ok("plan", o->sens_out)) return 1; /* before a calibration of minutes */
    return 0;
}

/* Reads the command line into o; returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, plan_opts *o)
{
    memset(o, 0, sizeof *o);
    o->out_path = SQ_CONFIG_DEFAULT_NAME;
    o->threads = sysconf(_SC_NPROCESSORS_ONLN);
    sq_args a = sq_args_start("plan", argc, argv);
    for (; sq_args_more(&a); sq_args_next(&a)) {
        if (sq_args_help(&a)) {
            usage(stdout);
            return 0;
        }
        if (!budget_flag(&a, o) && !calib_flag(&a, o) && !io_flag(&a, o)) return sq_args_unknown(&a);
    }
    if (a.failed) return 2;
    o->p.n_threads = o->threads > 0 ? (int)o->threads : 1;
    if (o->cp.method == SQ_PLAN_CALIB_MEASURE) default_calib_act(&o->cp);
    const int rc = check_opts(o);
    return rc ? rc : -1;
}

/* What one run loads and makes; freed by run_free(). */
typedef struct plan_run {
    sq_gguf *g_owned;
    const sq_gguf *g;
    sq_model *model; /* with --calib: the engine's model (g is its file) */
    sq_imatrix *im;
    sq_plan_sens *sens;
    sq_token *ctoks;
    sq_plan_weight *weights;
    int n_weights;
    sq_plan *plan;
    char *text;
    size_t len;
    sq_progress progress;
    char phase[48]; /* the planner phase the progress line shows */
} plan_run;

/* The planner's progress: one line per phase ("measuring", ...), tensors done. */
static void on_plan(void *ud, const char *phase, int64_t done, int64_t total)
{
    plan_run *r = ud;
    if (strcmp(r->phase, phase) != 0) {
        if (r->phase[0]) sq_progress_end(&r->progress);
        snprintf(r->phase, sizeof r->phase, "%s", phase);
        char label[64];
        snprintf(label, sizeof label, "sq plan: %s", phase);
        sq_progress_start(&r->progress, label, "tensors", total);
    }
    sq_progress_update(&r->progress, done, NULL);
}

static void run_free(plan_run *r)
{
    free_weights(r->weights, r->n_weights);
    free(r->text);
    sq_plan_free(r->plan);
    sq_imatrix_free(r->im);
    sq_plan_sens_free(r->sens);
    free(r->ctoks);
    sq_model_free(r->model);
    sq_gguf_close(r->g_owned);
}

/* The sensitivity file, the model (loaded by the engine for --calib), the
 * importance matrix and the calibration tokens. Returns 0, or 1 after a
 * message. */
static int load_inputs(plan_opts *o, plan_run *r)
{
    sq_error err = {0};
    if (o->sens_path) {
        if (load_weights_file(o->sens_path, &r->weights, &r->n_weights) != 0) return 1;
        o->p.weights = r->weights;
        o->p.n_weights = r->n_weights;
    }
    if (o->calib_path ? sq_model_load(o->model_path, &r->model, &err) != SQ_OK
                      : sq_gguf_open_model(o->model_path, &r->g_owned, &err) != SQ_OK) {
        fprintf(stderr, "sq plan: %s\n", err.msg);
        return 1;
    }
    r->g = r->model ? sq_model_gguf(r->model) : r->g_owned;
    if (o->imatrix_path && !o->no_imatrix && sq_imatrix_load(o->imatrix_path, &r->im, &err) != SQ_OK) {
        fprintf(stderr, "sq plan: %s\n", err.msg);
        return 1;
    }
    if (o->calib_path) {
        sq_plan_calib_params *cp = &o->cp;
        cp->n_threads = o->p.n_threads;
        cp->tensors = o->p.tensors; /* only what is planned */
        if (calib_tokens(r->g, o->calib_path, &r->ctoks, &cp->n_tokens, &cp->bos) != 0) return 1;
        cp->tokens = r->ctoks;
        if (!o->quiet) {
            cp->progress = on_calib;
            cp->ud = &r->progress;
        }
    }
    return 0;
}

/* --calib without --sensitivity: measures the sensitivities (and writes
 * them with --sensitivity-out). Returns 0, or 1 after a message. */
static int calibrate(plan_opts *o, plan_run *r)
{
    sq_error err = {0};
    const double t0 = sq_time_now();
    const sq_status st = sq_plan_calibrate(r->model, r->im, &o->cp, o->p.sample_rows, &r->sens, &err);
    sq_progress_end(&r->progress);
    if (st != SQ_OK) {
        fprintf(stderr, "sq plan: %s: calibration: %s\n", o->model_path, err.msg);
        return 1;
    }
    o->p.weights = sq_plan_sens_weights(r->sens);
    o->p.n_weights = (int)sq_plan_sens_count(r->sens);
    if (sq_plan_sens_fallback(r->sens)) fprintf(stderr, "sq plan: note: %s\n", sq_plan_sens_fallback(r->sens));
    printf("calibrated %d tensors in %.2f s on %s (%s; base mean -log p %.4f)\n", o->p.n_weights, sq_time_now() - t0,
           o->calib_path,
           sq_plan_sens_method(r->sens) == SQ_PLAN_CALIB_MEASURE ? "measured per tensor" : "Fisher information",
           sq_plan_sens_base_nll(r->sens));
    if (o->sens_out &&
        write_sens(o->sens_out, r->sens, o->model_path, o->calib_path,
                   o->cp.n_chunks > 0 ? o->cp.n_chunks : SQ_PLAN_CALIB_DEFAULT_CHUNKS, sq_plan_sens_method(r->sens),
                   o->cp.act_type) != 0)
        return 1;
    return 0;
}

/* Plans (and with --calib-refine refines), prints the warnings, and checks
 * the configuration text as `sq quantize --strict` will. Returns 0 or 1. */
static int make_plan(plan_opts *o, plan_run *r)
{
    sq_error err = {0};
    if (!o->quiet) {
        o->p.progress = on_plan;
        o->p.progress_ud = r;
    }
    const sq_status cst = sq_plan_create(r->g, r->im, &o->p, &r->plan, &err);
    if (r->phase[0]) sq_progress_end(&r->progress);
    r->phase[0] = 0;
    if (cst != SQ_OK) {
        if (o->imatrix_path && !o->no_imatrix)
            fprintf(stderr, "sq plan: %s with --imatrix %s: %s\n", o->model_path, o->imatrix_path, err.msg);
        else
            fprintf(stderr, "sq plan: %s: %s\n", o->model_path, err.msg);
        return 1;
    }
    if (o->refine > 0) {
        double kld = 0.0;
        const sq_status st = sq_plan_refine(r->model, r->im, &o->p, &o->cp, o->refine, &r->plan, &kld, &err);
        sq_progress_end(&r->progress);
        if (st != SQ_OK) {
            fprintf(stderr, "sq plan: %s: refining the plan: %s\n", o->model_path, err.msg);
            return 1;
        }
        printf("refined: %d rounds, the best plan measured mean KL divergence %.6f on the calibration chunks\n",
               o->refine, kld);
        o->measure_kld = false; /* measured already */
    }
    for (int64_t i = 0; i < sq_plan_n_warnings(r->plan); i++)
        fprintf(stderr, "sq plan: warning: %s\n", sq_plan_warning(r->plan, i));
    if (sq_plan_config_text(r->plan, &r->text, &r->len, &err) != SQ_OK) {
        fprintf(stderr, "sq plan: %s\n", err.msg);
        return 1;
    }
    return check_config(r->text, r->len, o->out_path, r->g, r->im);
}

/* The per-tensor table (unless -q) and the totals. */
static void print_report(const plan_opts *o, const plan_run *r)
{
    const sq_plan_totals *tot = sq_plan_get_totals(r->plan);
    if (!o->quiet) {
        printf("%-28s %11s %-30s %5s %10s %6s %11s %10s %7s\n", "tensor", "shape", " types (segments 0,1,2,3+)", "perm",
               "bytes", "bpw", "rel.error", "weight", "mix");
        for (int64_t i = 0; i < sq_plan_n_tensors(r->plan); i++) {
            const sq_plan_tensor *t = sq_plan_tensor_at(r->plan, i);
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)t->cols, (long long)t->rows);
            printf("%-28s %11s", t->name, shape);
            print_types(t->types, t->cols);
            const char *perm = !t->perm ? "-" : (t->group != i ? "shared" : "yes");
            printf(" %5s %10llu %6.3f %11.4e %10.4g %7s\n", perm, (unsigned long long)t->bytes, t->bpw, t->rel_error,
                   t->weight, t->prior_type >= 0 ? sq_type_name(t->prior_type) : "-");
        }
    }
    const sq_plan_params *p = &o->p;
    printf("planned %lld tensors in %.2f s: predicted error %.6e (%s), lambda %.4e\n", (long long)tot->n_planned,
           tot->seconds, tot->error,
           p->norm == SQ_PLAN_NORM_ABS ? "absolute"
           : p->n_weights              ? "sensitivity-weighted relative errors"
           : tot->prior_ftype >= 0     ? "relative errors weighted by the prior"
                                       : "sum of relative errors",
           tot->lambda);
    if (tot->prior_ftype >= 0)
        printf("prior: llama.cpp's %s mix (%llu bytes of planned tensors), each tensor given its bytes in it; "
               "--calib TEXT measures the model's own sensitivities and plans better\n",
               sq_ftype_get(tot->prior_ftype)->name, (unsigned long long)tot->prior_bytes);
    printf("model: %llu bytes of tensor data, %.4f bits per weight over %lld weights; predicted file size %llu bytes "
           "(%.2f MiB)",
           (unsigned long long)tot->data_bytes, tot->bpw, (long long)tot->n_elements, (unsigned long long)tot->file_bytes,
           (double)tot->file_bytes / (1024.0 * 1024.0));
    if (p->target_bytes) printf(", target %llu bytes\n", (unsigned long long)p->target_bytes);
    else printf(", target %.4f bpw\n", p->target_bpw);
    if (tot->lambda <= 0 && tot->file_bytes + tot->budget_bytes / 100 < tot->budget_bytes) /* not binding */
        fprintf(stderr, "sq plan: note: the target of %llu bytes (%.4f bpw) cannot be used up: the most accurate "
                        "candidates give %llu bytes (%.4f bpw); --types can add larger types (e.g. q8_0, f16)\n",
                (unsigned long long)tot->budget_bytes, (double)tot->budget_bytes * 8.0 / (double)tot->n_elements,
                (unsigned long long)tot->file_bytes, tot->bpw);
}

/* After the report: --measure-kld, then the configuration file. */
static int finish(const plan_opts *o, plan_run *r)
{
    sq_error err = {0};
    if (o->measure_kld) {
        double kld = 0.0;
        const sq_status st = sq_plan_measure_kld(r->model, r->im, r->plan, &o->cp, &kld, &err);
        sq_progress_end(&r->progress);
        if (st != SQ_OK) {
            fprintf(stderr, "sq plan: %s: measuring the plan: %s\n", o->model_path, err.msg);
            return 1;
        }
        printf("measured: mean KL divergence %.6f on the calibration chunks\n", kld);
    }
    if (o->dry_run) return 0;
    if (sq_plan_write_config(r->plan, o->out_path, &err) != SQ_OK) {
        fprintf(stderr, "sq plan: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s\n", o->out_path);
    if (o->types_out) {
        if (sq_plan_write_tensor_types(r->plan, o->types_out, &err) != SQ_OK) {
            fprintf(stderr, "sq plan: --tensor-types-out %s\n", err.msg);
            return 1;
        }
        printf("wrote %s (llama-quantize --tensor-type-file)\n", o->types_out);
    }
    if (sq_gguf_same_file(o->out_path, SQ_CONFIG_DEFAULT_NAME))
        printf("(sq quantize in this folder will use it for every file type unless given --no-sq-config or another "
               "--sq-config)\n");
    return 0;
}

int sq_cmd_plan(int argc, char **argv)
{
    plan_opts o;
    const int prc = parse_args(argc, argv, &o);
    if (prc >= 0) return prc;
    plan_run r;
    memset(&r, 0, sizeof r);
    int rc = load_inputs(&o, &r);
    if (!rc && o.calib_path && !o.sens_path) rc = calibrate(&o, &r);
    if (!rc) rc = make_plan(&o, &r);
    if (!rc) print_report(&o, &r);
    if (!rc) sq_stdout_flush_or_die(); /* the report's reader gone, or a full disk: stop before writing the file */
    if (!rc) rc = finish(&o, &r);
    run_free(&r);
    return rc;
}
