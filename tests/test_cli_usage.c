/*
 * test_cli_usage.c — the second QA pass over the tools, as a llama.cpp user
 * runs them (regression checks for what it found and fixed):
 *  - sq quantize reads IN [OUT] TYPE [NTHREADS] as llama-quantize does:
 *    "IN Q4_K_M 2" used to be read as OUT=Q4_K_M TYPE=2 (Q4_0), and a left-out
 *    OUT now gives IN's folder/ggml-model-TYPE.gguf; "-x" is an unknown flag,
 *    not a positional argument;
 *  - --chunks 0 of perplexity/imatrix is refused (it used to mean "all");
 *  - a usage error is one line plus a pointer to --help (no screen of usage);
 *  - serve names the range of a bad number and takes -a; run takes -s;
 *  - perplexity --kl-divergence-base checks its folder before loading the
 *    model, and an interrupted run leaves no temporary base file;
 *  - an imatrix with a negative importance is refused by quantize;
 *  - a SmarterQuant config error found against the model names the file;
 *  - a split model with a missing shard: every model-reading command names
 *    the shard and exits 1;
 *  - an output that exists but is no regular file (a pipe, a folder; as root
 *    /dev/null) is refused before any work: the temporary file renamed onto
 *    it used to replace the pipe (or fail on the folder after all the work).
 */
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"
#include "sq/gguf.h"
#include "sq/imatrix.h"

static char dir[512];
static char out[1 << 16];

static bool exists_in(const char *d, const char *name)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", d, name);
    return access(p, F_OK) == 0;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* IN [OUT] TYPE [NTHREADS] as llama-quantize reads them. */
static void test_quantize_positionals(void)
{
    /* the file type is the second argument: the third is NTHREADS, not the type */
    tu_expect_sq(dir, "quantize --dry-run -q --no-sq-config M.gguf Q4_K_M 1", 0, "as Q4_K_M (dry run", out, sizeof out);
    CHECK(strstr(out, "as Q4_0") == NULL);
    /* OUT left out: IN's folder/ggml-model-TYPE.gguf, nothing in the current folder */
    char p[700], q[700];
    snprintf(q, sizeof q, "%s/sub", dir);
    CHECK(mkdir(q, 0755) == 0);
    snprintf(p, sizeof p, "%s/M.gguf", dir);
    snprintf(q, sizeof q, "%s/sub/M.gguf", dir);
    CHECK(link(p, q) == 0);
    tu_expect_sq(dir, "quantize -q --no-sq-config sub/M.gguf q8_0 1", 0, "quantizing sub/M.gguf to sub/ggml-model-Q8_0.gguf",
                 out, sizeof out);
    snprintf(q, sizeof q, "%s/sub", dir);
    CHECK(exists_in(q, "ggml-model-Q8_0.gguf"));
    CHECK(!exists_in(dir, "ggml-model-Q8_0.gguf"));
    snprintf(p, sizeof p, "%s/sub/ggml-model-Q8_0.gguf", dir);
    sq_gguf *g = NULL;
    sq_error e = {0};
    CHECK_MSG(sq_gguf_open(p, &g, &e) == SQ_OK, "%s", e.msg);
    if (g) {
        int64_t ft = -1;
        CHECK(sq_gguf_get_i64(g, "general.file_type", &ft, &e) == SQ_OK);
        CHECK_INT(ft, 7); /* LLAMA_FTYPE_MOSTLY_Q8_0 */
    }
    sq_gguf_close(g);
    unlink(p);
    snprintf(p, sizeof p, "%s/sub/M.gguf", dir);
    unlink(p);
    rmdir(q);
    /* the same without a folder: written here */
    tu_expect_sq(dir, "quantize -q --no-sq-config M.gguf COPY", 0, "to ggml-model-COPY.gguf", out, sizeof out);
    CHECK(exists_in(dir, "ggml-model-COPY.gguf"));
    snprintf(p, sizeof p, "%s/ggml-model-COPY.gguf", dir);
    unlink(p);

    static const struct {
        const char *args, *needle;
    } bad[] = {
        {"quantize -x M.gguf o.gguf q4_0", "unknown option '-x'"},
        {"quantize M.gguf", "expected IN.gguf [OUT.gguf] TYPE [NTHREADS]"},
        {"quantize M.gguf bogus", "unknown file type 'bogus'"},
        {"quantize M.gguf o.gguf bogus", "unknown file type 'bogus'"},
        {"quantize M.gguf o.gguf q4_0 -1", "NTHREADS '-1': want an integer from 1 to 1024"},
        {"quantize M.gguf q4_0 2 extra", "too many arguments ('extra'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) tu_expect_sq(dir, bad[i].args, 2, bad[i].needle, out, sizeof out);
    CHECK(!exists_in(dir, "o.gguf"));
    CHECK(!tu_any_file_with(dir, ".tmp-"));
}

/* Usage errors: exit 2, the message naming the flag and the range, and at
 * most two lines (the message and where --help is). */
static void test_usage_errors(void)
{
    static const struct {
        const char *args, *needle;
    } cases[] = {
        {"perplexity -m M.gguf -f T.txt --chunks 0", "--chunks '0': want -1 (every chunk) or a count"},
        {"perplexity -m M.gguf -f T.txt --chunks -2", "--chunks '-2'"},
        {"imatrix -m M.gguf -f T.txt --chunks 0", "--chunks '0': want -1"},
        {"serve -m M.gguf --port 70000", "--port '70000': want an integer from 0 to 65535"},
        {"serve -m M.gguf -np 0", "-np '0': want an integer from 1 to 256"},
        {"serve -m M.gguf -c -1", "-c '-1': want an integer from 0 to"},
        {"run -m M.gguf -s -3", "-s '-3': want a non-negative integer"},
        {"serve -m M.gguf --host bogus", "--host 'bogus': want a numeric IPv4 or IPv6 address"},
        {"run -m M.gguf --bogus", "unknown option '--bogus'"},
        {"perplexity --bogus", "'--bogus'"},
        {"bench -m M.gguf --bogus", "'--bogus'"},
        {"bench -m M.gguf -p 0 -n 0", "sq bench: -p and -n are both 0: nothing to measure"},
        {"imatrix --bogus", "'--bogus'"},
        {"serve --bogus x", "'--bogus'"},
        {"tokenize --bogus", "'--bogus'"},
        {"tokenize -m M.gguf", "exactly one of -p, -f, --test"},
        {"inspect --bogus", "'--bogus'"},
        {"inspect", "a FILE to show is required"},
        {"quantize --bogus M.gguf o.gguf q4_0", "--bogus"},
        {"plan --bogus", "--bogus"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tu_expect_sq(dir, cases[i].args, 2, cases[i].needle, out, sizeof out);
        CHECK_MSG(count_lines(out) <= 2, "sq %s: %d lines of output, want at most 2:\n%s", cases[i].args,
                  count_lines(out), out);
    }
    /* accepted spellings: they reach the model (a missing file here) */
    tu_expect_sq(dir, "serve -a name -m nofile.gguf", 1, "nofile.gguf: cannot open", out, sizeof out);
    tu_expect_sq(dir, "serve --host localhost -m nofile.gguf", 1, "nofile.gguf: cannot open", out, sizeof out);
    tu_expect_sq(dir, "serve --host ::1 -m nofile.gguf", 1, "nofile.gguf: cannot open", out, sizeof out);
    tu_expect_sq(dir, "run -m nofile.gguf -s 5", 1, "nofile.gguf: cannot open", out, sizeof out);
    tu_expect_sq(dir, "perplexity -m nofile.gguf -f T.txt --chunks -1", 1, "nofile.gguf: cannot open", out, sizeof out);
    /* a context beyond the model's training context runs, with a warning (as llama.cpp) */
    tu_expect_sq(dir, "run -m M.gguf -c 1024 -p hi -n 1 --temp 0 -t 1", 0,
                 "warning: -c 1024 is beyond the model's training context of 512 tokens", out, sizeof out);
    tu_expect_sq(dir, "run -m M.gguf -c 512 -p hi -n 1 --temp 0 -t 1", 0, NULL, out, sizeof out);
    CHECK(strstr(out, "training context") == NULL);
}

/* --kl-divergence-base: a missing folder fails before the model is loaded. */
static void test_kld_base_folder(void)
{
    /* a text too short for two chunks: said once, with the numbers */
    tu_expect_sq(dir, "imatrix -m M.gguf -f T.txt -o im.gguf", 1,
                 "sq imatrix: the calibration text has 13 tokens; at least 1024 (2 x context 512) are needed", out,
                 sizeof out);
    CHECK(!exists_in(dir, "im.gguf"));
    tu_expect_sq(dir, "perplexity -m M.gguf -f T.txt --kl-divergence-base nodir/x.kld", 1,
                 "sq perplexity: nodir/x.kld: cannot write in folder nodir", out, sizeof out);
    CHECK(strstr(out, "model:") == NULL); /* not loaded */
}

/* Whether dir holds perplexity's temporary base file ("x.kld.tmpPID"). */
static bool kld_tmp_present(void) { return tu_any_file_with(dir, "x.kld.tmp"); }

/* SIGINT/SIGTERM while perplexity writes its base file: the temporary file is
 * removed and the tool dies of the signal; no x.kld appears. */
static void test_kld_signal_cleanup(void)
{
    char text[1024];
    if (!getcwd(text, sizeof text - 32)) SKIP("no cwd");
    strcat(text, "/data/heldout.txt");
    if (access(text, R_OK) != 0) SKIP("data/heldout.txt absent");
    static const int sigs[] = {SIGINT, SIGTERM};
    for (int k = 0; k < 2; k++) {
        const pid_t pid = fork();
        if (pid == 0) {
            signal(SIGINT, SIG_DFL); /* a background job may inherit SIGINT ignored */
            signal(SIGTERM, SIG_DFL);
            if (chdir(dir) != 0) _exit(127);
            if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(127);
            execl(harness_sq_bin(), harness_sq_bin(), "perplexity", "-m", "M.gguf", "-f", text, "-c", "64", "-t", "1",
                  "--kl-divergence-base", "x.kld", (char *)NULL);
            _exit(127);
        }
        CHECK(pid > 0);
        if (pid <= 0) return;
        bool seen = false;
        for (int i = 0; i < 2000 && !seen; i++) { /* at most ~10 s */
            seen = kld_tmp_present();
            if (!seen) {
                struct timespec ts = {0, 5000000};
                nanosleep(&ts, NULL);
            }
        }
        CHECK_MSG(seen, "no temporary base file appeared");
        kill(pid, sigs[k]);
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (seen)
            CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == sigs[k], "perplexity did not die of signal %d (status %d)",
                      sigs[k], st);
        CHECK_MSG(!kld_tmp_present(), "the temporary base file is left after signal %d", sigs[k]);
        CHECK(!exists_in(dir, "x.kld"));
    }
}

/* A legacy imatrix with a negative value (index 7): refused, naming the entry. */
static void test_negative_imatrix(void)
{
    static const char name[] = "blk.0.ffn_down.weight";
    char p[700];
    snprintf(p, sizeof p, "%s/neg.dat", dir);
    CHECK(tu_write_legacy_imatrix(p, name, 1536, 7, -2.0f));
    tu_expect_sq(dir, "quantize -q --no-sq-config --imatrix neg.dat M.gguf o.gguf q4_K 1", 1,
                 "neg.dat: entry 'blk.0.ffn_down.weight' has a negative importance value -2 at index 7", out,
                 sizeof out);
    CHECK(!exists_in(dir, "o.gguf"));
    sq_imatrix *im = NULL;
    sq_error e = {0};
    CHECK(sq_imatrix_load(p, &im, &e) == SQ_EFORMAT);
    CHECK_CONTAINS(e.msg, "negative importance");
    sq_imatrix_free(im);
    unlink(p);
}

/* A config whose permutation does not fit the tensor: the message names the
 * config file as well as the tensor. */
static void test_config_error_names_file(void)
{
    tu_write_text(dir, "badperm.json", "{\"blk.0.ffn_down.weight\": [[14, 13, 12, 12], [1, 0]]}\n");
    tu_expect_sq(dir, "quantize -q --sq-config badperm.json M.gguf o.gguf q4_K 1", 1,
                 "badperm.json: tensor blk.0.ffn_down.weight: permutation has 2 entries, but the tensor has 1536 columns",
                 out, sizeof out);
    CHECK(!exists_in(dir, "o.gguf"));
    CHECK(!tu_any_file_with(dir, ".tmp-"));
}

/* The demo model cut into two shards (split keys as gguf-split writes
 * them); then shard 2 is removed: every command that reads a model names it. */
static void test_split_missing_shard(void)
{
    char src[1200], base[700];
    snprintf(src, sizeof src, "%s/M.gguf", dir);
    snprintf(base, sizeof base, "%s/S", dir);
    sq_error e = {0};
    const sq_status st = tu_split_model(src, base, 2, &e);
    CHECK_MSG(st == SQ_OK, "%s", e.msg);
    if (st != SQ_OK) return;
    /* whole: it runs (one greedy token) */
    tu_expect_sq(dir, "run -m S-00001-of-00002.gguf -p hi -n 1 --temp 0 -t 1", 0, NULL, out, sizeof out);
    char p2[800];
    sq_gguf_split_path(p2, sizeof p2, base, 1, 2);
    CHECK(unlink(p2) == 0);
    static const char *const cmds[] = {
        "run -m S-00001-of-00002.gguf -p hi -n 1",
        "perplexity -m S-00001-of-00002.gguf -f T.txt",
        "bench -m S-00001-of-00002.gguf -p 8 -n 0 -r 1",
        "imatrix -m S-00001-of-00002.gguf -f T.txt -o im.gguf",
        "serve -m S-00001-of-00002.gguf --port 0",
        "tokenize -m S-00001-of-00002.gguf -p hi",
        "quantize -q --no-sq-config S-00001-of-00002.gguf o.gguf q8_0",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        tu_expect_sq(dir, cmds[i], 1, "S-00001-of-00002.gguf: shard 2 of 2: S-00002-of-00002.gguf: cannot open", out,
                     sizeof out);
    CHECK(!exists_in(dir, "im.gguf"));
    CHECK(!exists_in(dir, "o.gguf"));
    tu_expect_sq(dir, "inspect S-00001-of-00002.gguf", 0, "showing this file alone", out, sizeof out);
    char p1[800];
    sq_gguf_split_path(p1, sizeof p1, base, 0, 2);
    unlink(p1);
}

/* Outputs that are a pipe or a folder: refused up front, left as they were. */
static void test_output_not_regular(void)
{
    char fifo[700], folder[700];
    snprintf(fifo, sizeof fifo, "%s/ff", dir);
    snprintf(folder, sizeof folder, "%s/adir", dir);
    CHECK(mkfifo(fifo, 0644) == 0);
    CHECK(mkdir(folder, 0755) == 0);
    float rows[32];
    for (int i = 0; i < 32; i++) rows[i] = (float)i / 8.0f;
    char p[700];
    snprintf(p, sizeof p, "%s/R.f32", dir);
    FILE *f = fopen(p, "wb");
    CHECK(f && fwrite(rows, sizeof rows, 1, f) == 1);
    if (f) fclose(f);
    static const struct {
        const char *args, *needle;
    } cases[] = {
        {"quantize -q --no-sq-config M.gguf ff q8_0 1", "ff: exists and is not a regular file (a device, pipe or socket)"},
        {"quantize -q --no-sq-config M.gguf adir q8_0 1", "adir: exists and is not a regular file (a folder)"},
        {"imatrix -m M.gguf -f T.txt -o ff", "sq imatrix: ff: exists and is not a regular file"},
        {"plan -m M.gguf --no-imatrix --target-bpw 5 -o ff", "sq plan: ff: exists and is not a regular file"},
        {"perplexity -m M.gguf -f T.txt --kl-divergence-base ff", "sq perplexity: ff: exists and is not a regular file"},
        {"blocks quantize q8_0 32 R.f32 ff", "ff: exists and is not a regular file"},
        {"blocks quantize q8_0 32 R.f32 adir", "adir: exists and is not a regular file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tu_expect_sq(dir, cases[i].args, 1, cases[i].needle, out, sizeof out);
        CHECK_MSG(strstr(out, "model:") == NULL, "sq %s: loaded the model first", cases[i].args);
    }
    struct stat sb;
    CHECK(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode));
    CHECK(lstat(folder, &sb) == 0 && S_ISDIR(sb.st_mode));
    CHECK(!tu_any_file_with(dir, ".tmp"));
    unlink(fifo);
    rmdir(folder);
    unlink(p);
}

/* sq plan: the calibration flags need --calib; the sensitivity output's
 * folder is checked before any work; an imatrix that does not fit names the
 * imatrix file; a mistyped SQ_ISA is reported, not silently ignored. */
static void test_plan_and_env_errors(void)
{
    tu_expect_sq(dir, "plan -m M.gguf --no-imatrix --target-bpw 5 --calib-chunks 2 -o p.json", 2,
                 "--calib-chunks needs --calib TEXT", out, sizeof out);
    tu_expect_sq(dir, "plan -m M.gguf --no-imatrix --target-bpw 5 --calib-act q8_0 -o p.json", 2,
                 "--calib-act needs --calib TEXT", out, sizeof out);
    tu_expect_sq(dir, "plan -m M.gguf --no-imatrix --target-bpw 5 --calib T.txt --sensitivity-out nodir/s.txt -o p.json",
                 1, "nodir/s.txt", out, sizeof out);
    CHECK(strstr(out, "calibrated") == NULL); /* refused before calibrating */
    CHECK(!exists_in(dir, "p.json"));
    /* a legacy imatrix whose one entry has the wrong width */
    char p[700];
    snprintf(p, sizeof p, "%s/narrow.dat", dir);
    CHECK(tu_write_legacy_imatrix(p, "blk.0.ffn_down.weight", 10, -1, 0.0f));
    tu_expect_sq(dir, "plan -m M.gguf --imatrix narrow.dat --target-bpw 5 -o p.json", 1, "--imatrix narrow.dat", out,
                 sizeof out);
    CHECK_CONTAINS(out, "blk.0.ffn_down.weight has 10 values");
    CHECK(!exists_in(dir, "p.json"));
    unlink(p);
    tu_expect_sq(dir, "version", 0, "sq ", out, sizeof out);
    CHECK(strstr(out, "warning") == NULL);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cd '%s' && SQ_ISA=avx-512 '%s' version 2>&1", dir, harness_sq_bin());
    int rc = 0;
    char *got = tu_popen_read(cmd, &rc);
    CHECK(got != NULL);
    if (got) {
        CHECK_INT(rc, 0);
        CHECK_CONTAINS(got, "SQ_ISA='avx-512' is not one of scalar, avx2, avx512, amx");
        free(got);
    }
}

/* sq serve beside an unrelated default.smarterquant.json (a plain model):
 * one line saying the file is ignored, not a warning per tensor. */
static void test_serve_default_config(void)
{
    char sub[700], cmd[2000];
    snprintf(sub, sizeof sub, "%s/srv", dir);
    CHECK(mkdir(sub, 0755) == 0);
    tu_write_text(sub, "default.smarterquant.json",
                  "{\"blk.0.attn_q.weight\": [[13, 12, 11, 12], []], \"blk.0.attn_k.weight\": [[13, 12, 11, 12], []],\n"
                  " \"blk.0.attn_v.weight\": [[13, 12, 11, 12], []], \"blk.0.ffn_up.weight\": [[13, 12, 11, 12], []],\n"
                  " \"blk.1.attn_q.weight\": [[13, 12, 11, 12], []], \"blk.1.attn_k.weight\": [[13, 12, 11, 12], []],\n"
                  " \"blk.1.attn_v.weight\": [[13, 12, 11, 12], []], \"blk.1.ffn_up.weight\": [[13, 12, 11, 12], []],\n"
                  " \"blk.2.attn_q.weight\": [[13, 12, 11, 12], []], \"blk.2.attn_k.weight\": [[13, 12, 11, 12], []]}\n");
    const int port = 20000 + (int)(getpid() % 20000);
    snprintf(cmd, sizeof cmd, "cd '%s' && timeout -s INT 3 '%s' serve -m ../M.gguf --port %d 2>&1", sub, harness_sq_bin(),
             port);
    int rc = 0;
    char *got = tu_popen_read(cmd, &rc);
    CHECK(got != NULL);
    if (got) {
        CHECK_CONTAINS(got, "default.smarterquant.json ignored: the model has no SmarterQuant tensors");
        CHECK(strstr(got, "warning") == NULL);
        free(got);
    }
    /* named explicitly, it is compared: 10 conflicts, 5 shown and a count */
    snprintf(cmd, sizeof cmd, "cd '%s' && timeout -s INT 3 '%s' serve -m ../M.gguf --port %d --sq-config default.smarterquant.json 2>&1",
             sub, harness_sq_bin(), port);
    got = tu_popen_read(cmd, &rc);
    CHECK(got != NULL);
    if (got) {
        CHECK_CONTAINS(got, "... and 5 more like these");
        CHECK_CONTAINS(got, "10 entries, 10 conflict(s)");
        free(got);
    }
    tu_rm_rf(sub);
}

int main(void)
{
    if (access(harness_sq_bin(), X_OK) != 0) {
        fprintf(stderr, "SKIP: %s not built\n", harness_sq_bin());
        harness_skipped++;
        return harness_finish("cli_usage");
    }
    char src[1024];
    if (!harness_shared_file(src, sizeof src, "models/sqdemo-f16.gguf")) {
        fprintf(stderr, "SKIP: ../shared/models/sqdemo-f16.gguf absent\n");
        harness_skipped++;
        return harness_finish("cli_usage");
    }
    if (!harness_tmpdir(dir, sizeof dir)) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/M.gguf'", src, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot copy the demo model\n");
        return 1;
    }
    tu_write_text(dir, "T.txt", "Once upon a time there was a model.\n");
    RUN(test_quantize_positionals);
    RUN(test_usage_errors);
    RUN(test_kld_base_folder);
    RUN(test_kld_signal_cleanup);
    RUN(test_negative_imatrix);
    RUN(test_config_error_names_file);
    RUN(test_split_missing_shard);
    RUN(test_plan_and_env_errors);
    RUN(test_serve_default_config);
    RUN(test_output_not_regular);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return harness_finish("cli_usage");
}
