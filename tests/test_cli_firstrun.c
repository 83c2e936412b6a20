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
 *  - a ./default.smarterquant.json no flag asked for: quantize says so before
 *    any work (file, tensor count, how to skip it) and in its last line; a
 *    malformed one is named as the default; serve skips it on a plain model
 *    (and takes --no-sq-config);
 *  - a broken pipe or a failed write to stdout leaves no temporary file
 *    (quantize | head, perplexity --kl-divergence-base | head);
 *  - sq run says why it stopped when the context is full;
 *  - sq imatrix --output-frequency N saves as it goes (atomically), so an
 *    interrupted run keeps what it computed;
 *  - progress: a status line with an ETA on a terminal, plain lines (never a
 *    '\r') otherwise, in quantize, imatrix, perplexity, plan and plan --calib;
 *  - the smaller ones: a busy port is reported once; --imatrix of a text file
 *    says it was read as a legacy .dat; bench prints no header before a load
 *    error; plan says when the budget cannot be used up; perplexity prints no
 *    "over 0 chunks" before the real error.
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
             "curl -s --max-time 10 http://127.0.0.1:$port%s; kill -TERM $pid; "
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
    /* Q4_K_M files whose tensors are q8_0 (quick to make, also under ASan): the label is the file type's */
    tu_expect_sq(dir, "quantize -q --no-sq-config --tensor-type '.*=q8_0' M.gguf plain.gguf Q4_K_M 2", 0, NULL, out,
                 sizeof out);
    tu_expect_sq(dir, "quantize -q --sq-config two.json --tensor-type '.*=q8_0' M.gguf sq.gguf Q4_K_M 2", 0, NULL, out,
                 sizeof out);
    char sq_label[96];
    snprintf(sq_label, sizeof sq_label, "Q4_K - Medium + SmarterQuant (%.2f bpw)", quant_bpw(out));
    const char *heldout = "short.txt";
    static const struct {
        const char *file;
        bool sq;
    } files[] = {{"plain.gguf", false}, {"sq.gguf", true}};
    for (int k = 0; k < 2; k++) {
        const char *want = files[k].sq ? sq_label : "Q4_K - Medium";
        snprintf(args, sizeof args, "perplexity -m %s -f '%s' -c 16 --chunks 1 -t 1", files[k].file, heldout);
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

/* Runs a shell command in dir; stdout into *so, stderr into *se (malloc'd,
 * the caller frees); returns the shell's exit status. */
static int sh_in_dir(const char *sub, const char *cmd, char **so, char **se)
{
    char full[6000], p[1400];
    snprintf(full, sizeof full, "cd '%s/%s' && SQ='%s'; { %s; } >stdout.txt 2>stderr.txt", dir, sub, harness_sq_bin(),
             cmd);
    const int st = system(full);
    snprintf(p, sizeof p, "%s/%s/stdout.txt", dir, sub);
    *so = harness_read_file(p, NULL);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s/stderr.txt", dir, sub);
    *se = harness_read_file(p, NULL);
    unlink(p);
    if (!*so) *so = strdup("");
    if (!*se) *se = strdup("");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The last line of text (without its newline), in buf. */
static const char *last_line(const char *text, char *buf, size_t n)
{
    size_t len = strlen(text);
    while (len && text[len - 1] == '\n') len--;
    size_t start = len;
    while (start && text[start - 1] != '\n') start--;
    snprintf(buf, n, "%.*s", (int)(len - start), text + start);
    return buf;
}

/* A folder dir/NAME holding a link to the demo model as M.gguf. */
static void make_sub(const char *name)
{
    char p[800], m[800];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/%s/M.gguf", dir, name);
    snprintf(m, sizeof m, "%s/M.gguf", dir);
    CHECK(link(m, p) == 0 || symlink(m, p) == 0);
}

/* quantize beside a default.smarterquant.json it was not given by flag. */
static void test_default_config(void)
{
    make_sub("dc");
    char sub[700], *so = NULL, *se = NULL, last[1024];
    snprintf(sub, sizeof sub, "%s/dc", dir);
    tu_write_text(sub, "default.smarterquant.json", "{\"blk.0.ffn_down.weight\": [[14, 13, 12, 12], []],\n"
                                                    " \"blk.1.attn_q.weight\": [[8, 12, 12, 12], []]}\n");
    int rc = sh_in_dir("dc", "$SQ quantize M.gguf plain.gguf Q8_0 1", &so, &se);
    CHECK_INT(rc, 0);
    /* the notice: on stderr, naming the file, its tensor count and the way out */
    CHECK_CONTAINS(se, "./default.smarterquant.json");
    CHECK_CONTAINS(se, "2 tensors");
    CHECK_CONTAINS(se, "--no-sq-config");
    /* ... and in the final line: the file is not the plain Q8_0 that was asked for */
    last_line(so, last, sizeof last);
    CHECK_CONTAINS(last, "Q8_0 + SmarterQuant");
    CHECK_CONTAINS(last, "./default.smarterquant.json");
    CHECK_CONTAINS(last, "--no-sq-config");
    free(so);
    free(se);
    /* before any work: in one stream, the notice comes before the first tensor */
    tu_expect_sq(sub, "quantize M.gguf plain2.gguf Q8_0 1", 0, NULL, out, sizeof out);
    const char *notice = strstr(out, "./default.smarterquant.json"), *first = strstr(out, "[   1/");
    CHECK_MSG(notice && first && notice < first, "the notice is not before the first tensor:\n%s", out);
    /* skipped: no notice, a plain Q8_0 */
    rc = sh_in_dir("dc", "$SQ quantize --no-sq-config M.gguf plain3.gguf Q8_0 1", &so, &se);
    CHECK_INT(rc, 0);
    CHECK(strstr(se, "default.smarterquant.json") == NULL);
    last_line(so, last, sizeof last);
    CHECK_CONTAINS(last, "file type: Q8_0");
    CHECK(strstr(last, "SmarterQuant") == NULL);
    free(so);
    free(se);
    /* named by flag: no notice, but the last line still says what the file is */
    rc = sh_in_dir("dc", "$SQ quantize --sq-config default.smarterquant.json M.gguf sq.gguf Q8_0 1", &so, &se);
    CHECK_INT(rc, 0);
    CHECK(strstr(se, "--no-sq-config") == NULL);
    last_line(so, last, sizeof last);
    CHECK_CONTAINS(last, "Q8_0 + SmarterQuant");
    free(so);
    free(se);
    /* sq plan, which writes the default file, says what it will do */
    rc = sh_in_dir("dc", "$SQ plan -m M.gguf --no-imatrix --tensors blk.0.ffn_down --target-bpw 5 -q", &so, &se);
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(so, "wrote default.smarterquant.json");
    CHECK_CONTAINS(so, "sq quantize in this folder will use it");
    CHECK_CONTAINS(so, "--no-sq-config");
    free(so);
    free(se);
    /* a malformed default: named as the default of the current folder, with the way out */
    tu_write_text(sub, "default.smarterquant.json", "{ oops\n");
    rc = sh_in_dir("dc", "$SQ quantize -q M.gguf bad.gguf Q8_0 1", &so, &se);
    CHECK_INT(rc, 1);
    CHECK_CONTAINS(se, "default.smarterquant.json:1:3: syntax error");
    CHECK_CONTAINS(se, "found in the current folder");
    CHECK_CONTAINS(se, "--no-sq-config");
    free(so);
    free(se);
    tu_rm_rf(sub);
    /* every tool that reads the default file says in --help what it does and how to skip it; plan, which
     * writes it, says who reads it */
    static const char *const readers[] = {"quantize --help", "serve --help", "plan --help"};
    for (int k = 0; k < 3; k++) {
        tu_expect_sq(dir, readers[k], 0, "default.smarterquant.json", out, sizeof out);
        CHECK_MSG(strstr(out, "--no-sq-config") != NULL, "sq %s: no word of --no-sq-config", readers[k]);
    }
    CHECK_CONTAINS(out, "quantize");
    tu_expect_sq(dir, "quantize --help", 0, "whatever TYPE", out, sizeof out);
}

/* `sq serve -m M.gguf --port 0 EXTRA` in dir/sub until it listens (then
 * SIGTERM: a background job ignores SIGINT) or exits; its output in so and se, its exit status returned. */
static int serve_briefly(const char *sub, const char *extra, char **so, char **se)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "$SQ serve -m M.gguf --port 0 %s & pid=$!; for i in $(seq 400); do "
             "grep -q 'listening on' stderr.txt 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.025; "
             "done; kill -TERM $pid 2>/dev/null; wait $pid",
             extra);
    return sh_in_dir(sub, cmd, so, se);
}

/* serve beside a malformed default config: a plain model starts, saying
 * what it skipped; --no-sq-config skips it silently; named by flag, it stops. */
static void test_serve_default_config(void)
{
    make_sub("sv");
    char sub[700], *so = NULL, *se = NULL;
    snprintf(sub, sizeof sub, "%s/sv", dir);
    tu_write_text(sub, "default.smarterquant.json", "{ \"x\": [[1,1,1,1], []] oops\n");
    CHECK_INT(serve_briefly("sv", "", &so, &se), 0);
    CHECK_CONTAINS(se, "listening on");
    CHECK_CONTAINS(se, "./default.smarterquant.json skipped");
    CHECK_CONTAINS(se, "syntax error");
    free(so);
    free(se);
    CHECK_INT(serve_briefly("sv", "--no-sq-config", &so, &se), 0);
    CHECK_CONTAINS(se, "listening on");
    CHECK(strstr(se, "default.smarterquant.json") == NULL);
    free(so);
    free(se);
    const int rc = serve_briefly("sv", "--sq-config default.smarterquant.json", &so, &se);
    CHECK_INT(rc, 1);
    CHECK_CONTAINS(se, "syntax error");
    CHECK(strstr(se, "listening on") == NULL);
    free(so);
    free(se);
    tu_rm_rf(sub);
}

/* Whether dir/sub holds name and it opens as a whole GGUF file. */
static bool whole_gguf(const char *sub, const char *name)
{
    char p[900];
    snprintf(p, sizeof p, "%s/%s/%s", dir, sub, name);
    sq_gguf *g = NULL;
    const bool ok = sq_gguf_open(p, &g, NULL) == SQ_OK;
    sq_gguf_close(g);
    return ok;
}

/* A reader that goes away: quantize | head -n 1 (SIGPIPE, and with SIGPIPE
 * ignored a failed write), plan | head and > /dev/full, perplexity's base
 * file | head -c 20. Only the finished file, or nothing, is left. */
static void test_broken_pipe(void)
{
    make_sub("bp");
    char sub[700], *so = NULL, *se = NULL, p[900];
    snprintf(sub, sizeof sub, "%s/bp", dir);
    for (int k = 0; k < 3; k++) {
        sh_in_dir("bp", "$SQ quantize --no-sq-config M.gguf q.gguf Q8_0 1 | head -n 1", &so, &se);
        CHECK_MSG(!tu_any_file_with(sub, ".tmp"), "quantize | head left a temporary file (round %d)", k);
        snprintf(p, sizeof p, "%s/q.gguf", sub);
        CHECK_MSG(access(p, F_OK) != 0 || whole_gguf("bp", "q.gguf"), "a partial q.gguf is left");
        free(so);
        free(se);
    }
    sh_in_dir("bp", "trap '' PIPE; ($SQ quantize --no-sq-config M.gguf q2.gguf Q8_0 1; echo $? > rc.txt) | head -n 1",
              &so, &se);
    CHECK_CONTAINS(se, "sq quantize: standard output: Broken pipe; stopped");
    CHECK(!tu_any_file_with(sub, ".tmp"));
    snprintf(p, sizeof p, "%s/rc.txt", sub);
    char *rc = harness_read_file(p, NULL);
    CHECK_MSG(rc && atoi(rc) == 1, "exit status %s, want 1", rc ? rc : "(none)");
    free(rc);
    free(so);
    free(se);
    /* sq plan: its report's reader gone, or a full disk, stops it before the configuration is written */
    sh_in_dir("bp", "$SQ plan -m M.gguf --no-imatrix --tensors blk.0 --target-bpw 5 -o p.json | head -n 1", &so, &se);
    CHECK(!tu_any_file_with(sub, ".tmp"));
    free(so);
    free(se);
    snprintf(p, sizeof p, "%s/p.json", sub);
    unlink(p);
    CHECK_INT(sh_in_dir("bp", "$SQ plan -m M.gguf --no-imatrix --tensors blk.0 --target-bpw 5 -o p.json > /dev/full",
                        &so, &se), 1);
    CHECK_CONTAINS(se, "sq plan: standard output: No space left on device; stopped");
    CHECK_MSG(access(p, F_OK) != 0, "sq plan > /dev/full wrote p.json");
    CHECK(!tu_any_file_with(sub, ".tmp"));
    free(so);
    free(se);
    char cmd[2000];
    for (int k = 0; k < 2; k++) { /* killed by SIGPIPE; then with SIGPIPE ignored (a failed write) */
        snprintf(cmd, sizeof cmd,
                 "%s ($SQ perplexity -m M.gguf -f ../short.txt -c 32 --chunks 100 -t 1 --kl-divergence-base b.kld; "
                 "echo $? > rc.txt) | head -c 20",
                 k ? "trap '' PIPE;" : "");
        sh_in_dir("bp", cmd, &so, &se);
        CHECK_MSG(!tu_any_file_with(sub, "b.kld.tmp"), "perplexity | head left its temporary base file (%s)",
                  k ? "SIGPIPE ignored" : "SIGPIPE");
        if (k) CHECK_CONTAINS(se, "sq perplexity: standard output: Broken pipe; stopped");
        snprintf(p, sizeof p, "%s/rc.txt", sub);
        char *prc = harness_read_file(p, NULL);
        CHECK_MSG(prc && atoi(prc) == (k ? 1 : 128 + SIGPIPE), "perplexity's exit status %s", prc ? prc : "(none)");
        free(prc);
        free(so);
        free(se);
        /* only the finished file, or nothing: a b.kld that is there is read back whole */
        snprintf(p, sizeof p, "%s/b.kld", sub);
        if (access(p, F_OK) == 0) {
            CHECK_INT(sh_in_dir("bp", "$SQ perplexity -m M.gguf -t 1 --kl-divergence-base b.kld --kl-divergence", &so, &se), 0);
            free(so);
            free(se);
            unlink(p);
        }
    }
    tu_rm_rf(sub);
}

/* sq run -n 600 -c 64: stops at the full context and says so. */
static void test_run_context_full(void)
{
    tu_expect_sq(dir, "run -m M.gguf -p hi -n 600 -c 64 --temp 0 -t 1", 0, "the context of 64 tokens is full", out,
                 sizeof out);
    CHECK_CONTAINS(out, "-c");
    tu_expect_sq(dir, "run -m M.gguf -p hi -n 5 -c 64 --temp 0 -t 1", 0, NULL, out, sizeof out);
    CHECK(strstr(out, "is full") == NULL);
}

/* The chunk count of an imatrix file (-1 when it does not load). */
static int imatrix_chunks(const char *path)
{
    sq_gguf *g = NULL;
    int64_t n = -1;
    if (sq_gguf_open(path, &g, NULL) == SQ_OK && sq_gguf_get_i64(g, "imatrix.chunk_count", &n, NULL) != SQ_OK) n = -1;
    sq_gguf_close(g);
    return (int)n;
}

/* --output-frequency: the file is written every N chunks; SIGINT during a
 * long run leaves the last one whole and no temporary file. */
static void test_imatrix_output_frequency(void)
{
    char heldout[1024], args[1600], p[700];
    if (!getcwd(heldout, sizeof heldout - 32)) return;
    strcat(heldout, "/data/heldout.txt");
    snprintf(args, sizeof args, "imatrix -m M.gguf -f short.txt -c 16 --chunks 5 --output-frequency 2 -t 1 -o im5.gguf");
    tu_expect_sq(dir, args, 0, "imatrix: stored the data of 2 chunks in im5.gguf", out, sizeof out);
    CHECK_CONTAINS(out, "stored the data of 4 chunks");
    snprintf(p, sizeof p, "%s/im5.gguf", dir);
    CHECK_INT(imatrix_chunks(p), 5);
    unlink(p);
    /* interrupted: the last saved file stays, whole */
    snprintf(p, sizeof p, "%s/imi.gguf", dir);
    const pid_t pid = fork();
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        if (chdir(dir) != 0) _exit(127);
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(127);
        execl(harness_sq_bin(), harness_sq_bin(), "imatrix", "-m", "M.gguf", "-f", heldout, "-c", "16", "-t", "1",
              "--output-frequency", "3", "-o", "imi.gguf", (char *)NULL);
        _exit(127);
    }
    bool seen = false;
    for (int i = 0; i < 4000 && !seen; i++) { /* at most ~20 s */
        seen = access(p, F_OK) == 0;
        if (!seen) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK_MSG(seen, "no imatrix was saved while running");
    kill(pid, SIGINT);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGINT, "imatrix did not die of SIGINT (status %d)", st);
    const int n = imatrix_chunks(p);
    CHECK_MSG(n >= 3 && n % 3 == 0, "the saved imatrix has %d chunks, want a multiple of 3", n);
    CHECK(!tu_any_file_with(dir, "imi.gguf.tmp"));
    unlink(p);
}

/* The progress display: plain lines without '\r' (a log), a status line
 * rewritten in place with an ETA (a terminal, forced by SQ_PROGRESS=tty). */
static void test_progress(void)
{
    char cmd[3000];
    make_sub("pg");
    const struct {
        const char *args, *plain_last;
    } cmds[] = {
        {"$SQ quantize -q --no-sq-config M.gguf q.gguf Q8_0 1", "sq quantize: 39/39 tensors (100%)"},
        {"$SQ perplexity -m M.gguf -f ../short.txt -c 16 --chunks 4 -t 1", "perplexity: 4/4 chunks (100%)"},
        {"$SQ imatrix -m M.gguf -f ../short.txt -c 16 --chunks 4 -t 1 -o im.gguf", "imatrix: 4/4 chunks (100%)"},
        {"$SQ plan -m M.gguf --no-imatrix --tensors blk.0.ffn_down --target-bpw 5 --dry-run",
         "sq plan: measuring: 1/1 tensors (100%)"},
        {"$SQ plan -m M.gguf --no-imatrix --tensors blk.0.ffn_down --target-bpw 5 --dry-run --calib ../short.txt "
         "--calib-chunks 1 --calib-ctx 16",
         "sq plan: calibrating: 0/1 "},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char args[2000], *so = NULL, *se = NULL;
        snprintf(args, sizeof args, "%s", cmds[i].args);
        snprintf(cmd, sizeof cmd, "unset SQ_PROGRESS; %s", args); /* stderr is a file (a log): plain lines */
        CHECK_INT(sh_in_dir("pg", cmd, &so, &se), 0);
        CHECK_MSG(strchr(se, '\r') == NULL, "%s: a '\\r' in plain progress:\n%s", args, se);
        CHECK_CONTAINS(se, cmds[i].plain_last);
        free(so);
        free(se);
        snprintf(cmd, sizeof cmd, "SQ_PROGRESS=tty %s", args);
        CHECK_INT(sh_in_dir("pg", cmd, &so, &se), 0);
        CHECK_MSG(strchr(se, '\r') != NULL && strstr(se, "\033[K") != NULL, "%s: no status line:\n%s", args, se);
        CHECK_MSG(strstr(se, "ETA") != NULL || strstr(se, "0/1") != NULL, "%s: no ETA:\n%s", args, se);
        free(so);
        free(se);
        snprintf(cmd, sizeof cmd, "SQ_PROGRESS=off %s", args);
        CHECK_INT(sh_in_dir("pg", cmd, &so, &se), 0);
        CHECK_MSG(strstr(se, "(100%)") == NULL && strstr(se, "\r") == NULL && strstr(se, "chunks (") == NULL &&
                      strstr(se, "tensors (") == NULL,
                  "%s: progress with off:\n%s", args, se);
        free(so);
        free(se);
    }
    snprintf(cmd, sizeof cmd, "%s/pg", dir);
    tu_rm_rf(cmd);
}

/* The smaller items. */
static void test_small_items(void)
{
    /* a busy port: one line */
    char *so = NULL, *se = NULL;
    make_sub("port");
    const int port = 21000 + (int)(getpid() % 20000);
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "$SQ serve -m M.gguf --port %d > first.log 2>&1 & pid=$!; "
             "for i in $(seq 400); do grep -q 'listening on' first.log && break; sleep 0.025; done; "
             "$SQ serve -m M.gguf --port %d; rc=$?; kill -TERM $pid; wait $pid; exit $rc",
             port, port);
    const int rc = sh_in_dir("port", cmd, &so, &se);
    CHECK_INT(rc, 1);
    CHECK_CONTAINS(se, "Address already in use");
    int n_port_lines = 0;
    for (const char *q = se; (q = strstr(q, "in use")) != NULL; q++) n_port_lines++;
    CHECK_MSG(n_port_lines == 1, "the busy port is reported %d times:\n%s", n_port_lines, se);
    free(so);
    free(se);
    /* a text file as --imatrix: not a GGUF, read as legacy .dat, and why that fails */
    char readme[1024];
    if (getcwd(readme, sizeof readme - 32)) {
        strcat(readme, "/README.md");
        snprintf(cmd, sizeof cmd, "quantize -q --no-sq-config --imatrix '%s' M.gguf o.gguf Q4_K_M 1", readme);
        tu_expect_sq(dir, cmd, 1, "not a GGUF file", out, sizeof out);
        CHECK_CONTAINS(out, "legacy");
        CHECK_CONTAINS(out, ".dat");
        CHECK_CONTAINS(out, "does not fit");
    }
    /* bench: no table header before a load error */
    tu_expect_sq(dir, "bench -m nofile.gguf -p 8 -n 0 -r 1", 1, "nofile.gguf: cannot open", out, sizeof out);
    CHECK(strstr(out, "| model") == NULL);
    /* plan: a budget beyond what the candidates reach */
    tu_expect_sq(dir, "plan -m M.gguf --no-imatrix --tensors blk.0.ffn_down --target-bpw 20 --dry-run -q", 0, "cannot be used up", out, sizeof out);
    CHECK_CONTAINS(out, "the most accurate candidates give");
    /* perplexity of a text too short: the real error, no "over 0 chunks" first */
    tu_expect_sq(dir, "perplexity -m M.gguf -f T.txt", 1, "are needed for perplexity", out, sizeof out);
    CHECK(strstr(out, "over 0 chunks") == NULL);
    snprintf(cmd, sizeof cmd, "%s/port", dir);
    tu_rm_rf(cmd);
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
    tu_write_text(dir, "T.txt", "Once upon a time there was a model.\n");
    char cmd[3000]; /* a text of some 7000 tokens for the runs that need chunks */
    snprintf(cmd, sizeof cmd, "head -c 20000 data/heldout.txt > '%s/short.txt'", dir);
    if (system(cmd) != 0) return 1;
    RUN(test_option_wording);
    RUN(test_config_checks);
    RUN(test_quantize_help_types);
    RUN(test_labels);
    RUN(test_default_config);
    RUN(test_serve_default_config);
    RUN(test_broken_pipe);
    RUN(test_run_context_full);
    RUN(test_imatrix_output_frequency);
    RUN(test_progress);
    RUN(test_small_items);
    tu_rm_rf(dir);
    return harness_finish("cli_firstrun");
}
