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
            "usage: sq plan -m MODEL --imatrix FILE (--target-bpw B | --target-size SIZE) [options]\n"
            "Chooses per weight tensor a column permutation (most important columns first) and the four\n"
            "segment block types that minimise the importance-weighted quantization error under the size\n"
            "budget, measuring every candidate type by really quantizing it, and writes the SmarterQuant\n"
            "configuration for `sq quantize`. Prints per tensor the types, bits per weight and predicted\n"
            "error, and the model's total size and bits per weight.\n"
            "  -m, --model FILE        the model to plan (GGUF, usually F16 or F32)\n"
            "  --imatrix FILE          importance matrix (llama.cpp GGUF or legacy .dat); required unless\n"
            "                          --no-imatrix is given\n"
            "  --no-imatrix            plan without one (uniform importance; types that need one are skipped)\n"
            "  --target-bpw B          bits per weight over all tensors (data bytes * 8 / weights)\n"
            "  --target-size SIZE      size of the whole output file: bytes, or with a K, M or G suffix\n"
            "                          (powers of 1024)\n"
            "  -o, --output FILE       configuration to write (default " SQ_CONFIG_DEFAULT_NAME ")\n"
            "  --tensors REGEX         plan only tensors whose name matches (POSIX extended regex, searched);\n"
            "                          default: every weight llama-quantize would quantize (2-D *.weight)\n"
            "  --types LIST            candidate types, comma-separated names or ids (default:\n"
            "                          q2_K,q3_K,iq4_xs,q4_K,q5_K,q6_K,q8_0,q4_0,q5_0,iq4_nl,q5_1)\n"
            "  --base-ftype TYPE       file type `sq quantize` will use for the tensors not planned, to size\n"
            "                          them (default Q4_K_M; with the default --tensors only norms remain)\n"
            "  --perm auto|on|off      permute columns: per group where it lowers the error (auto, default),\n"
            "                          always, or never\n"
            "  --norm rel|abs          error normalisation: relative to each tensor's output energy (rel,\n"
            "                          default) or the raw importance-weighted error (abs)\n"
            "  --sensitivity FILE      per-tensor sensitivities, lines \"TENSOR WEIGHT [ACT_Q8_K ACT_Q8_0]\": a\n"
            "                          tensor's normalised error is multiplied by its weight (default 1), e.g.\n"
            "                          the KL divergence per unit of relative error (bench/sensitivity.sh or\n"
            "                          --sensitivity-out); the optional costs of its activations quantized to\n"
            "                          q8_K / q8_0 are added to candidates with those activations\n"
            "  --calib FILE            calibration text: unless --sensitivity gives them, the sensitivities\n"
            "                          are measured in-process: the model (llama architecture) is run on\n"
            "                          chunks of it, each tensor alone quantized to the --calib-types, and\n"
            "                          the KL divergence from the unquantized model is divided by the\n"
            "                          relative error (see docs/plan.md)\n"
            "  --calib-chunks N        chunks of calibration text (default 6)\n"
            "  --calib-ctx N           tokens per chunk (default 512, at most the model's context)\n"
            "  --calib-types LIST      one or two measuring types (default q3_K,q5_K: the slope between them)\n"
            "  --calib-act TYPE|none   also measure each tensor at TYPE, whose activations are q8_0 or q8_1\n"
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
        w[n].name = strdup(name);
        w[n].weight = v;
        w[n].act_q8_K = ak;
        w[n].act_q8_0 = a0;
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
                      int act_type)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "sq plan: --sensitivity-out %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    fprintf(f, "# sensitivity: KL divergence per unit of relative error, measured by sq plan --calib\n");
    fprintf(f, "# model %s, %d chunks of %s\n# TENSOR WEIGHT%s # then type, relative error, KLD per point\n", model,
            chunks, calib, act_type > 0 ? " ACT_Q8_K ACT_Q8_0" : "");
    for (int64_t i = 0; i < sq_plan_sens_count(s); i++) {
        const sq_plan_sensitivity *e = sq_plan_sens_at(s, i);
        fprintf(f, "%s %.6g", e->name, e->weight);
        if (act_type > 0) fprintf(f, " %.6g %.6g", e->act_q8_K, e->act_q8_0);
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

static void on_calib(void *ud, const char *tensor, int i, int n)
{
    if (*(const bool *)ud) return;
    fprintf(stderr, "\rsq plan: calibrating %d/%d %-40s", i + 1, n, tensor);
    if (i + 1 == n) fprintf(stderr, "\n");
}

int sq_cmd_plan(int argc, char **argv)
{
    const char *model_path = NULL, *imatrix_path = NULL, *out_path = SQ_CONFIG_DEFAULT_NAME, *sens_path = NULL;
    sq_plan_params p = {0};
    int types[32], ctypes[32];
    const char *calib_path = NULL, *sens_out = NULL;
    sq_plan_calib_params cp = {0};
    bool measure_kld = false;
    const char *calib_flag = NULL; /* a --calib-* tuning flag given (they need --calib) */
    int refine = 0;
    bool no_imatrix = false, dry_run = false, quiet = false;
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                        \
    do {                                                                    \
        if (!v) {                                                           \
            fprintf(stderr, "sq plan: %s needs a value (see --help)\n", a); \
            return 2;                                                       \
        }                                                                   \
        i++;                                                                \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            NEED_VALUE();
            model_path = v;
        } else if (!strcmp(a, "--imatrix")) {
            NEED_VALUE();
            imatrix_path = v;
        } else if (!strcmp(a, "--no-imatrix")) {
            no_imatrix = true;
        } else if (!strcmp(a, "--target-bpw")) {
            NEED_VALUE();
            char *end = NULL;
            p.target_bpw = strtod(v, &end);
            if (!end || *end || !(p.target_bpw > 0) || !(p.target_bpw < 64)) {
                fprintf(stderr, "sq plan: --target-bpw %s: want a number of bits per weight in (0, 64)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--target-size")) {
            NEED_VALUE();
            p.target_bytes = parse_size(v);
            if (!p.target_bytes) {
                fprintf(stderr, "sq plan: --target-size %s: want a size in bytes, or with a K, M or G suffix\n", v);
                return 2;
            }
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            NEED_VALUE();
            out_path = v;
        } else if (!strcmp(a, "--tensors")) {
            NEED_VALUE();
            p.tensors = v;
        } else if (!strcmp(a, "--types")) {
            NEED_VALUE();
            char bad[64];
            int n = parse_types(v, types, (int)(sizeof types / sizeof types[0]), bad, sizeof bad);
            if (n <= 0) {
                fprintf(stderr, "sq plan: --types %s: '%s' is not a type (names such as q4_K, or ids)\n", v, bad);
                return 2;
            }
            p.types = types;
            p.n_types = n;
        } else if (!strcmp(a, "--base-ftype")) {
            NEED_VALUE();
            p.base_ftype = v;
        } else if (!strcmp(a, "--perm")) {
            NEED_VALUE();
            if (!strcmp(v, "auto")) p.perm = SQ_PLAN_PERM_AUTO;
            else if (!strcmp(v, "on")) p.perm = SQ_PLAN_PERM_ON;
            else if (!strcmp(v, "off")) p.perm = SQ_PLAN_PERM_OFF;
            else {
                fprintf(stderr, "sq plan: --perm %s: want auto, on or off\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--norm")) {
            NEED_VALUE();
            if (!strcmp(v, "rel")) p.norm = SQ_PLAN_NORM_REL;
            else if (!strcmp(v, "abs")) p.norm = SQ_PLAN_NORM_ABS;
            else {
                fprintf(stderr, "sq plan: --norm %s: want rel or abs\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--sensitivity")) {
            NEED_VALUE();
            sens_path = v;
        } else if (!strcmp(a, "--calib")) {
            NEED_VALUE();
            calib_path = v;
        } else if (!strcmp(a, "--calib-chunks")) {
            NEED_VALUE();
            calib_flag = a;
            if (!sq_arg_int("plan", a, v, 1, 100000, &cp.n_chunks)) return 2;
        } else if (!strcmp(a, "--calib-ctx")) {
            NEED_VALUE();
            calib_flag = a;
            if (!sq_arg_int("plan", a, v, 8, 1 << 20, &cp.n_ctx)) return 2;
        } else if (!strcmp(a, "--calib-types")) {
            NEED_VALUE();
            calib_flag = a;
            char bad[64];
            int n = parse_types(v, ctypes, (int)(sizeof ctypes / sizeof ctypes[0]), bad, sizeof bad);
            if (n <= 0 || n > 2) {
                fprintf(stderr, "sq plan: --calib-types %s: want one or two type names or ids\n", v);
                return 2;
            }
            cp.types = ctypes;
            cp.n_types = n;
        } else if (!strcmp(a, "--calib-act")) {
            NEED_VALUE();
            calib_flag = a;
            if (!strcmp(v, "none")) {
                cp.act_type = -1;
            } else {
                cp.act_type = sq_type_from_name(v);
                if (cp.act_type <= 0) {
                    fprintf(stderr, "sq plan: --calib-act %s: want a type name (q8_0, q5_0, ...) or none\n", v);
                    return 2;
                }
            }
        } else if (!strcmp(a, "--sensitivity-out")) {
            NEED_VALUE();
            sens_out = v;
        } else if (!strcmp(a, "--calib-refine")) {
            NEED_VALUE();
            if (!sq_arg_int("plan", a, v, 0, 100, &refine)) return 2;
        } else if (!strcmp(a, "--measure-kld")) {
            measure_kld = true;
        } else if (!strcmp(a, "--granularity")) {
            NEED_VALUE();
            if (!strcmp(v, "segment")) p.granularity = SQ_PLAN_GRAN_SEGMENT;
            else if (!strcmp(v, "tensor")) p.granularity = SQ_PLAN_GRAN_TENSOR;
            else {
                fprintf(stderr, "sq plan: --granularity %s: want segment or tensor\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--prior")) {
            NEED_VALUE();
            if (!strcmp(v, "none")) {
                p.prior = SQ_PLAN_PRIOR_NONE;
            } else if (!strcmp(v, "auto")) {
                p.prior = SQ_PLAN_PRIOR_MIX;
                p.prior_ftype = NULL;
            } else if (sq_ftype_parse(v)) {
                p.prior = SQ_PLAN_PRIOR_MIX;
                p.prior_ftype = v;
            } else {
                fprintf(stderr, "sq plan: --prior %s: want auto, none or a file type (Q4_K_M, ...)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--no-share-perm")) {
            p.no_share = true;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VALUE();
            char *end = NULL;
            threads = strtol(v, &end, 10);
            if (!end || *end || threads < 1 || threads > 1024) {
                fprintf(stderr, "sq plan: --threads %s: want a number from 1 to 1024\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--sample-rows")) {
            NEED_VALUE();
            char *end = NULL;
            long long n = strtoll(v, &end, 10);
            if (!end || *end || n < 0) {
                fprintf(stderr, "sq plan: --sample-rows %s: want a row count (0: every row)\n", v);
                return 2;
            }
            p.sample_rows = n == 0 ? -1 : n;
        } else if (!strcmp(a, "--dry-run")) {
            dry_run = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else {
            fprintf(stderr, "sq plan: unknown argument '%s' (see --help)\n", a);
            return 2;
        }
#undef NEED_VALUE
    }
    if (!model_path) {
        fprintf(stderr, "sq plan: no model (-m FILE)\n");
        return 2;
    }
    if (!imatrix_path && !no_imatrix) {
        fprintf(stderr, "sq plan: no importance matrix (--imatrix FILE, or --no-imatrix)\n");
        return 2;
    }
    if ((p.target_bpw > 0) == (p.target_bytes > 0)) {
        fprintf(stderr, "sq plan: give exactly one of --target-bpw and --target-size\n");
        return 2;
    }
    p.n_threads = threads > 0 ? (int)threads : 1;
    if (cp.act_type == 0) {
        /* the default: activation costs from q8_0 whenever the two measuring types are K-quants */
        bool k_quants = !cp.types;
        if (cp.types && cp.n_types == 2) {
            const sq_type_info *a0 = sq_type_info_get(cp.types[0]), *a1 = sq_type_info_get(cp.types[1]);
            k_quants = a0 && a1 && a0->vec_dot_type == SQ_TYPE_Q8_K && a1->vec_dot_type == SQ_TYPE_Q8_K;
        }
        if (k_quants) cp.act_type = SQ_TYPE_Q8_0;
    }
    if (cp.act_type < 0) cp.act_type = 0;
    if (sens_path && sens_out) {
        fprintf(stderr, "sq plan: --sensitivity-out writes measured sensitivities; --sensitivity reads them\n");
        return 2;
    }
    if ((sens_out || measure_kld || refine || calib_flag) && !calib_path) {
        fprintf(stderr, "sq plan: %s needs --calib TEXT\n",
                sens_out ? "--sensitivity-out" : measure_kld ? "--measure-kld" : refine ? "--calib-refine" : calib_flag);
        return 2;
    }
    {
        /* the configuration must not replace one of the inputs */
        const char *inputs[] = {model_path, imatrix_path, sens_path, calib_path};
        for (int k = 0; k < 4; k++)
            if (inputs[k] && (sq_gguf_same_file(out_path, inputs[k]) || (sens_out && sq_gguf_same_file(sens_out, inputs[k])))) {
                fprintf(stderr, "sq plan: -o %s: is the input %s; it would be replaced (choose another output)\n",
                        out_path, inputs[k]);
                return 2;
            }
    }

    if (!sq_arg_output_ok("plan", out_path)) return 1;
    if (sens_out && !sq_arg_output_ok("plan", sens_out)) return 1; /* before a calibration of minutes */
    sq_error err = {0};
    sq_gguf *g_owned = NULL;
    const sq_gguf *g = NULL;
    sq_model *model = NULL;
    sq_plan_sens *sens = NULL;
    sq_token *ctoks = NULL;
    sq_imatrix *im = NULL;
    sq_plan *plan = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = 1;
    sq_plan_weight *weights = NULL;
    int n_weights = 0;
    if (sens_path) {
        if (load_weights_file(sens_path, &weights, &n_weights) != 0) goto out;
        p.weights = weights;
        p.n_weights = n_weights;
    }
    if (calib_path ? sq_model_load(model_path, &model, &err) != SQ_OK : sq_gguf_open_model(model_path, &g_owned, &err) != SQ_OK) {
        fprintf(stderr, "sq plan: %s\n", err.msg);
        goto out;
    }
    g = model ? sq_model_gguf(model) : g_owned;
    if (imatrix_path && !no_imatrix && sq_imatrix_load(imatrix_path, &im, &err) != SQ_OK) {
        fprintf(stderr, "sq plan: %s\n", err.msg);
        goto out;
    }
    if (calib_path) {
        cp.n_threads = p.n_threads;
        cp.tensors = p.tensors; /* only what is planned */
        if (calib_tokens(g, calib_path, &ctoks, &cp.n_tokens, &cp.bos) != 0) goto out;
        cp.tokens = ctoks;
        cp.progress = on_calib;
        cp.ud = &quiet;
    }
    if (calib_path && !sens_path) {
        double t0 = sq_time_now();
        if (sq_plan_measure_sensitivity(model, im, &cp, &sens, &err) != SQ_OK) {
            fprintf(stderr, "sq plan: %s: calibration: %s\n", model_path, err.msg);
            goto out;
        }
        p.weights = sq_plan_sens_weights(sens);
        p.n_weights = (int)sq_plan_sens_count(sens);
        printf("calibrated %d tensors in %.2f s on %s (base mean -log p %.4f)\n", p.n_weights, sq_time_now() - t0,
               calib_path, sq_plan_sens_base_nll(sens));
        if (sens_out && write_sens(sens_out, sens, model_path, calib_path,
                                   cp.n_chunks > 0 ? cp.n_chunks : SQ_PLAN_CALIB_DEFAULT_CHUNKS, cp.act_type) != 0)
            goto out;
    }
    if (sq_plan_create(g, im, &p, &plan, &err) != SQ_OK) {
        if (imatrix_path && !no_imatrix)
            fprintf(stderr, "sq plan: %s with --imatrix %s: %s\n", model_path, imatrix_path, err.msg);
        else
            fprintf(stderr, "sq plan: %s: %s\n", model_path, err.msg);
        goto out;
    }
    if (refine > 0) {
        double kld = 0.0;
        if (sq_plan_refine(model, im, &p, &cp, refine, &plan, &kld, &err) != SQ_OK) {
            fprintf(stderr, "sq plan: %s: refining the plan: %s\n", model_path, err.msg);
            goto out;
        }
        printf("refined: %d rounds, the best plan measured mean KL divergence %.6f on the calibration chunks\n",
               refine, kld);
        measure_kld = false; /* measured already */
    }
    for (int64_t i = 0; i < sq_plan_n_warnings(plan); i++) fprintf(stderr, "sq plan: warning: %s\n", sq_plan_warning(plan, i));
    if (sq_plan_config_text(plan, &text, &len, &err) != SQ_OK) {
        fprintf(stderr, "sq plan: %s\n", err.msg);
        goto out;
    }
    if (check_config(text, len, out_path, g, im) != 0) goto out;

    const sq_plan_totals *tot = sq_plan_get_totals(plan);
    if (!quiet) {
        printf("%-28s %11s %-30s %5s %10s %6s %11s %10s %7s\n", "tensor", "shape", " types (segments 0,1,2,3+)", "perm",
               "bytes", "bpw", "rel.error", "weight", "mix");
        for (int64_t i = 0; i < sq_plan_n_tensors(plan); i++) {
            const sq_plan_tensor *t = sq_plan_tensor_at(plan, i);
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)t->cols, (long long)t->rows);
            printf("%-28s %11s", t->name, shape);
            print_types(t->types, t->cols);
            const char *perm = !t->perm ? "-" : (t->group != i ? "shared" : "yes");
            printf(" %5s %10llu %6.3f %11.4e %10.4g %7s\n", perm, (unsigned long long)t->bytes, t->bpw, t->rel_error,
                   t->weight, t->prior_type >= 0 ? sq_type_name(t->prior_type) : "-");
        }
    }
    printf("planned %lld tensors in %.2f s: predicted error %.6e (%s), lambda %.4e\n", (long long)tot->n_planned,
           tot->seconds, tot->error,
           p.norm == SQ_PLAN_NORM_ABS ? "absolute" : (p.n_weights ? "sensitivity-weighted relative errors" : "sum of relative errors"),
           tot->lambda);
    printf("model: %llu bytes of tensor data, %.4f bits per weight over %lld weights; predicted file size %llu bytes "
           "(%.2f MiB)",
           (unsigned long long)tot->data_bytes, tot->bpw, (long long)tot->n_elements, (unsigned long long)tot->file_bytes,
           (double)tot->file_bytes / (1024.0 * 1024.0));
    if (p.target_bytes) printf(", target %llu bytes\n", (unsigned long long)p.target_bytes);
    else printf(", target %.4f bpw\n", p.target_bpw);
    if (measure_kld) {
        double kld = 0.0;
        if (sq_plan_measure_kld(model, im, plan, &cp, &kld, &err) != SQ_OK) {
            fprintf(stderr, "sq plan: %s: measuring the plan: %s\n", model_path, err.msg);
            goto out;
        }
        printf("measured: mean KL divergence %.6f on the calibration chunks\n", kld);
    }
    if (!dry_run) {
        if (sq_plan_write_config(plan, out_path, &err) != SQ_OK) {
            fprintf(stderr, "sq plan: %s\n", err.msg);
            goto out;
        }
        printf("wrote %s\n", out_path);
    }
    rc = 0;
out:
    free_weights(weights, n_weights);
    free(text);
    sq_plan_free(plan);
    sq_imatrix_free(im);
    sq_plan_sens_free(sens);
    free(ctoks);
    sq_model_free(model);
    sq_gguf_close(g_owned);
    return rc;
}
