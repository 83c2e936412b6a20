/*
 * test_cli_firstrun.c — what a new user ran into on a fresh clone (issue 15),
 * each checked as the user typed it:
 *  - every tool words an unknown option and a missing value the same way;
 *  - config checks: types of three entries is an error with --strict; a
 *    missing comma is reported at the bad token's first character, saying
 *    where the comma is missing;
 *  - sq quantize --help lists exactly the file types this build writes;
 *  - labels are llama.cpp's file-type names ("Q4_K - Medium"), SmarterQuant
 *    said plainly ("Q4_K - Medium + SmarterQuant (5.05 bpw)"), in
 *    perplexity's model line, bench's table, serve's /v1/models and inspect;
 * Uses the vendored demo model (models/sqdemo-f16.gguf), so it runs without
 * ../shared.
 */
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"
#include "sq/quantize.h"

static char dir[512];
static char out[1 << 17];

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* One wording for usage errors in every tool: "sq CMD: unknown option 'X'"
 * and "sq CMD: FLAG needs a value", each with the --help hint, exit 2. */
static void test_option_wording(void)
{
    static const struct {
        const char *cmd, *value_flag;
    } tools[] = {
        {"quantize", "--imatrix"}, {"run", "-m"},         {"perplexity", "-m"}, {"bench", "-m"},
        {"serve", "--port"},       {"imatrix", "-o"},     {"plan", "--imatrix"}, {"tokenize", "-m"},
        {"inspect", NULL},         {"blocks quantize", "--imatrix"},
    };
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        char args[256], want[256];
        snprintf(args, sizeof args, "%s --bogus-flag", tools[i].cmd);
        snprintf(want, sizeof want, "sq %s: unknown option '--bogus-flag'\n(sq %s --help lists every flag)\n",
                 tools[i].cmd, tools[i].cmd);
        tu_expect_sq(dir, args, 2, want, out, sizeof out);
        CHECK_MSG(count_lines(out) == 2, "sq %s: %d lines:\n%s", args, count_lines(out), out);
        if (!tools[i].value_flag) continue;
        snprintf(args, sizeof args, "%s %s", tools[i].cmd, tools[i].value_flag);
        snprintf(want, sizeof want, "sq %s: %s needs a value\n(sq %s --help lists every flag)\n", tools[i].cmd,
                 tools[i].value_flag, tools[i].cmd);
        tu_expect_sq(dir, args, 2, want, out, sizeof out);
        CHECK_MSG(count_lines(out) == 2, "sq %s: %d lines:\n%s", args, count_lines(out), out);
    }
}

/* sq quantize --strict with a config whose entry has three types; a
 * config with a comma missing at the end of line 3. Nothing is written. */
static void test_config_checks(void)
{
    tu_write_text(dir, "three.json", "{\n  \"blk.0.attn_q.weight\": [[14, 13, 12], []]\n}\n");
    tu_expect_sq(dir, "quantize -q --strict --sq-config three.json M.gguf o.gguf Q8_0 1", 1,
                 "sq quantize: three.json:2:3: tensor blk.0.attn_q.weight: types has 3 entries, not 4", out, sizeof out);
    tu_expect_sq(dir, "quantize -q --sq-config three.json M.gguf o.gguf Q8_0 1", 0,
                 "warning: three.json:2:3: tensor blk.0.attn_q.weight: not SmarterQuant-processed", out, sizeof out);
    tu_write_text(dir, "comma.json",
                  "{\n  \"blk.0.attn_q.weight\": [[14, 13, 12, 12], []],\n  \"blk.0.attn_k.weight\": [[14, 13, 12, 12], []]\n"
                  "  \"blk.0.attn_v.weight\": [[14, 13, 12, 12], []]\n}\n");
    tu_expect_sq(dir, "quantize -q --sq-config comma.json M.gguf o2.gguf Q8_0 1", 1,
                 "sq quantize: comma.json:4:3: syntax error: '}' expected (a ',' missing at the end of line 3?)", out,
                 sizeof out);
    CHECK(!tu_any_file_with(dir, "o2.gguf"));
    CHECK(!tu_any_file_with(dir, ".tmp"));
    char p[700];
    snprintf(p, sizeof p, "%s/o.gguf", dir);
    unlink(p);
}

/* The vendored importance matrix (absolute path: the tools run in dir). */
static const char *imatrix_path(void)
{
    static char p[1024];
    if (!p[0] && getcwd(p, sizeof p - 64)) strcat(p, "/data/sqdemo.imatrix.gguf");
    return p;
}

/* Every file type: listed by `sq quantize --help` exactly when a dry run of
 * the demo model to it succeeds (with an importance matrix). */
static void test_quantize_help_types(void)
{
    tu_expect_sq(dir, "quantize --help", 0, "TYPE is a file type name or number", out, sizeof out);
    const char *list = strstr(out, "TYPE is a file type name or number");
    if (!list) return;
    char *help = strdup(list);
    int n_listed = 0;
    for (int i = 0; i < sq_ftype_count(); i++) {
        const sq_ftype_info *fi = sq_ftype_at(i);
        char needle[64], args[1400];
        snprintf(needle, sizeof needle, " %s", fi->name);
        bool listed = false;
        for (const char *q = help; (q = strstr(q, needle)) != NULL; q++) {
            const char *colon = q + strlen(needle);
            while (*colon == ' ') colon++;
            if (*colon == ':') listed = true;
        }
        n_listed += listed;
        snprintf(args, sizeof args, "quantize --dry-run -q --no-sq-config --imatrix '%s' M.gguf %s", imatrix_path(),
                 fi->name);
        const int rc = tu_run_sq(dir, args, out, sizeof out);
        CHECK_MSG((rc == 0) == listed, "%s: %s by --help, but a dry run %s:\n%s", fi->name,
                  listed ? "listed" : "not listed", rc == 0 ? "succeeds" : "fails", out);
    }
    CHECK(n_listed >= 20); /* the legacy and K-quant types, F16, BF16, F32, COPY at least */
    free(help);
}

/* `sq serve -m MODEL --port 0` in dir, GET path with curl, then SIGINT;
 * returns the body (malloc'd) or NULL. */
static char *serve_get(const char *model, const char *path)
{
    char cmd[4000];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && ('%s' serve -m %s --port 0 > serve.log 2>&1 & echo $! > serve.pid); pid=$(cat serve.pid); "
             "for i in $(seq 200); do grep -q 'listening on' serve.log && break; sleep 0.05; done; "
             "port=$(sed -n 's/.*listening on http:[/][/]127.0.0.1:\\([0-9]*\\).*/\\1/p' serve.log); "
             "curl -s --max-time 10 http://127.0.0.1:$port%s; kill -INT $pid; "
             "for i in $(seq 200); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done",
             dir, harness_sq_bin(), model, path);
    int rc = 0;
    return tu_popen_read(cmd, &rc);
}

/* The bpw quantize reported ("quant size = ... (X bpw)") in out. */
static double quant_bpw(const char *text)
{
    const char *q = strstr(text, "quant size =");
    const char *paren = q ? strchr(q, '(') : NULL;
    return paren ? atof(paren + 1) : -1.0;
}

/* A Q4_K_M file and one with two SmarterQuant tensors: every tool shows
 * llama.cpp's file-type name, and SmarterQuant with the file's bpw. */
static void test_labels(void)
{
    char args[1600];
    tu_write_text(dir, "two.json", "{\"blk.0.ffn_down.weight\": [[14, 13, 12, 12], []],\n"
                                   " \"blk.1.attn_q.weight\": [[\"q8_0\", \"q4_K\", \"q4_K\", \"q4_K\"], []]}\n");
    snprintf(args, sizeof args, "quantize -q --no-sq-config --imatrix '%s' M.gguf plain.gguf Q4_K_M 2", imatrix_path());
    tu_expect_sq(dir, args, 0, NULL, out, sizeof out);
    snprintf(args, sizeof args, "quantize -q --sq-config two.json --imatrix '%s' M.gguf sq.gguf Q4_K_M 2",
             imatrix_path());
    tu_expect_sq(dir, args, 0, NULL, out, sizeof out);
    char sq_label[96];
    snprintf(sq_label, sizeof sq_label, "Q4_K - Medium + SmarterQuant (%.2f bpw)", quant_bpw(out));
    char heldout[1024];
    if (!getcwd(heldout, sizeof heldout - 32)) return;
    strcat(heldout, "/data/heldout.txt");
    static const struct {
        const char *file;
        bool sq;
    } files[] = {{"plain.gguf", false}, {"sq.gguf", true}};
    for (int k = 0; k < 2; k++) {
        const char *want = files[k].sq ? sq_label : "Q4_K - Medium";
        snprintf(args, sizeof args, "perplexity -m %s -f '%s' -c 64 --chunks 1 -t 1", files[k].file, heldout);
        tu_expect_sq(dir, args, 0, want, out, sizeof out);
        snprintf(args, sizeof args, "bench -m %s -p 8 -n 0 -r 1 -t 1", files[k].file);
        tu_expect_sq(dir, args, 0, want, out, sizeof out);
        snprintf(args, sizeof args, "inspect %s", files[k].file);
        tu_expect_sq(dir, args, 0, want, out, sizeof out);
        snprintf(args, sizeof args, "inspect --json %s", files[k].file);
        tu_expect_sq(dir, args, 0, want, out, sizeof out);
        char *body = serve_get(files[k].file, "/v1/models");
        CHECK_MSG(body && strstr(body, want), "/v1/models of %s lacks '%s': %s", files[k].file, want,
                  body ? body : "(none)");
        free(body);
        if (!files[k].sq) CHECK(strstr(out, "+ SmarterQuant") == NULL);
    }
}

int main(void)
{
    if (access(harness_sq_bin(), X_OK) != 0) {
        fprintf(stderr, "SKIP: %s not built\n", harness_sq_bin());
        harness_skipped++;
        return harness_finish("cli_firstrun");
    }
    char model[1024];
    if (!getcwd(model, sizeof model - 64)) return 1;
    strcat(model, "/models/sqdemo-f16.gguf");
    if (!harness_tmpdir(dir, sizeof dir)) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    char link_path[700];
    snprintf(link_path, sizeof link_path, "%s/M.gguf", dir);
    if (symlink(model, link_path) != 0) {
        fprintf(stderr, "cannot link the demo model\n");
        return 1;
    }
    RUN(test_option_wording);
    RUN(test_config_checks);
    RUN(test_quantize_help_types);
    RUN(test_labels);
    tu_rm_rf(dir);
    return harness_finish("cli_firstrun");
}
