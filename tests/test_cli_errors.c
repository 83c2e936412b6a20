/*
 * test_cli_errors.c — runs the built tool (SQ_BIN) on bad input, as a user
 * would, and checks the brief's rule: every bad input exits non-zero (2 for a
 * usage error) with one message naming the file/flag and the reason, and no
 * input is ever replaced and no partial or temporary file is left behind.
 * Regression checks for what QA found: atoi() options accepting "abc" and
 * "1e99"; quantize/plan/imatrix replacing their input through "./x", links or
 * hard links; a quantize interrupted by SIGINT/SIGTERM leaving its temporary.
 */
#include <dirent.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char tmpdir[512];
static char model[1024]; /* a private copy of sqdemo-f16.gguf in tmpdir */
static char err_text[8192];

/* Runs `sq ARGS` through the shell (from tmpdir) with stdout discarded and
 * stderr captured into err_text; returns the exit status, or -1 if the tool
 * did not exit normally (a crash or sanitizer abort). */
static int run_sq(const char *args)
{
    char cmd[4096], errp[600];
    snprintf(errp, sizeof errp, "%s/stderr.txt", tmpdir);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s </dev/null >/dev/null 2>'%s'", tmpdir, harness_sq_bin(), args,
             errp);
    const int st = system(cmd);
    err_text[0] = 0;
    size_t n;
    char *t = harness_read_file(errp, &n);
    if (t) {
        snprintf(err_text, sizeof err_text, "%.*s", (int)n, t);
        free(t);
    }
    return (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
}

static const char *tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
    return buf;
}

static bool write_text(const char *name, const void *data, size_t n)
{
    char p[700];
    FILE *f = fopen(tmp_path(p, sizeof p, name), "wb");
    if (!f) return false;
    const bool ok = fwrite(data, 1, n, f) == n;
    return (fclose(f) == 0) && ok;
}

/* Whether tmpdir holds a temporary output of the GGUF writer ("NAME.tmp-PID-N")
 * or of the config/blocks writers ("NAME.tmp.XXXXXX"). */
static bool leftover_tmp(void)
{
    DIR *d = opendir(tmpdir);
    bool found = false;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp-") || strstr(e->d_name, ".tmp.")) found = true;
    if (d) closedir(d);
    return found;
}

/* Whether file `name` in tmpdir has exactly the bytes of the original model. */
static bool model_intact(const char *path)
{
    char orig[1024];
    if (!harness_shared_file(orig, sizeof orig, "models/sqdemo-f16.gguf")) return false;
    size_t na, nb;
    char *a = harness_read_file(orig, &na), *b = harness_read_file(path, &nb);
    const bool same = a && b && na == nb && memcmp(a, b, na) == 0;
    free(a);
    free(b);
    return same;
}

/* Numeric options: "abc", "1e99", negative and huge values are usage errors
 * (exit 2) naming the flag and the value; atoi() used to take them as 0/1. */
static void test_numeric_options(void)
{
    static const struct {
        const char *args, *needle;
    } cases[] = {
        {"run -m M.gguf -n abc", "-n 'abc'"},
        {"run -m M.gguf -n 1e99", "-n '1e99'"},
        {"run -m M.gguf -t abc", "-t 'abc'"},
        {"run -m M.gguf -t 99999999999", "-t '99999999999'"},
        {"run -m M.gguf -c -5", "-c '-5'"},
        {"run -m M.gguf --temp abc", "--temp 'abc'"},
        {"run -m M.gguf --top-p 2", "--top-p '2'"},
        {"run -m M.gguf --seed x", "--seed 'x'"},
        {"bench -m M.gguf -p abc", "-p 'abc'"},
        {"bench -m M.gguf -r 0", "-r '0'"},
        {"perplexity -m M.gguf -f T.txt -c abc", "-c 'abc'"},
        {"perplexity -m M.gguf -f T.txt --chunks x", "--chunks 'x'"},
        {"imatrix -m M.gguf -f T.txt -t 0", "-t '0'"},
        {"imatrix -m M.gguf -f T.txt -b -1", "-b '-1'"},
        {"quantize M.gguf o.gguf q4_0 abc", "NTHREADS 'abc'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int rc = run_sq(cases[i].args);
        CHECK_MSG(rc == 2, "sq %s: exit %d, want 2", cases[i].args, rc);
        CHECK_MSG(strstr(err_text, cases[i].needle) != NULL, "sq %s: message '%s' lacks \"%s\"", cases[i].args,
                  err_text, cases[i].needle);
    }
    CHECK(!leftover_tmp());
}

/* Missing values, unknown flags, unreadable models: non-zero with a message
 * that names the flag or the file. */
static void test_bad_files_and_flags(void)
{
    static const char trunc_hdr[] = "GGUF\3\0\0\0\x27\0\0\0\0\0\0\0\x10\0\0\0\0\0\0\0";
    CHECK(write_text("empty.gguf", "", 0));
    CHECK(write_text("trunc.gguf", trunc_hdr, sizeof trunc_hdr - 1));
    CHECK(write_text("text.gguf", "hello, I am not a model\n", 24));
    static const struct {
        const char *args, *needle;
        int rc;
    } cases[] = {
        {"run -m", "-m needs a value", 2},
        {"run -m M.gguf --bogus", "--bogus", 2},
        {"quantize --bogus M.gguf o.gguf q4_0", "--bogus", 2},
        {"quantize M.gguf o.gguf bogus", "bogus", 2},
        {"inspect nofile.gguf", "nofile.gguf", 1},
        {"inspect .", "not a regular file", 1},
        {"inspect empty.gguf", "empty.gguf", 1},
        {"inspect trunc.gguf", "trunc.gguf", 1},
        {"inspect text.gguf", "not a GGUF file", 1},
        {"run -m trunc.gguf -n 1", "trunc.gguf", 1},
        {"run -m . -n 1", "not a regular file", 1},
        {"run -m M.gguf -f .", "sq run: .: not a regular file", 1},
        {"run -m M.gguf -f nofile.txt", "sq run: nofile.txt: cannot open", 1},
        {"perplexity -m M.gguf -f nofile.txt", "sq perplexity: nofile.txt: cannot open", 1},
        {"tokenize -m M.gguf -f .", "sq tokenize: .: not a regular file", 1},
        {"quantize empty.gguf o.gguf q4_0", "empty.gguf", 1},
        {"quantize --sq-config nofile.json M.gguf o.gguf q4_0", "nofile.json", 1},
        {"quantize --sq-config text.gguf M.gguf o.gguf q4_0", "text.gguf", 1},
        {"quantize --imatrix text.gguf M.gguf o.gguf q4_0", "text.gguf", 1},
        {"quantize M.gguf nodir/o.gguf q4_0", "nodir/o.gguf", 1},
        {"imatrix -m M.gguf -f T.txt -o nodir/im.gguf", "cannot write in folder nodir", 1},
        {"plan -m M.gguf --no-imatrix --target-bpw 5 -o nodir/p.json", "cannot write in folder nodir", 1},
        {"quantize --sq-config . M.gguf o.gguf q4_0", "Is a directory", 1},
        {"quantize --tensor-type-file nofile M.gguf o.gguf q4_0", "nofile: cannot open: No such file", 2},
        {"plan -m M.gguf --no-imatrix --target-bpw 0.1", "smallest possible plan", 1},
        {"perplexity -m M.gguf -f text.gguf", "tokens", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int rc = run_sq(cases[i].args);
        CHECK_MSG(rc == cases[i].rc, "sq %s: exit %d, want %d (%s)", cases[i].args, rc, cases[i].rc, err_text);
        CHECK_MSG(strstr(err_text, cases[i].needle) != NULL, "sq %s: message '%s' lacks \"%s\"", cases[i].args,
                  err_text, cases[i].needle);
    }
    char p[700];
    CHECK(access(tmp_path(p, sizeof p, "o.gguf"), F_OK) != 0);
    CHECK(!leftover_tmp());
}

/* An imatrix of another model (two entries' names swapped, so their sizes no
 * longer fit): quantize and plan name the entry and the sizes, write nothing. */
static void test_foreign_imatrix(void)
{
    char src[1024];
    if (!harness_shared_file(src, sizeof src, "golden/llama.cpp/sqdemo.imatrix.gguf")) SKIP("no golden imatrix");
    size_t n = 0;
    char *d = harness_read_file(src, &n);
    CHECK(d != NULL);
    if (!d) return;
    static const char *const names[3] = {"blk.0.ffn_down.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_XXXX.weight"};
    static const int order[3][2] = {{0, 2}, {1, 0}, {2, 1}}; /* down->XXXX, gate->down, XXXX->gate */
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i + 21 <= n; i++)
            if (!memcmp(d + i, names[order[k][0]], 21)) memcpy(d + i, names[order[k][1]], 21);
    CHECK(write_text("other.imatrix.gguf", d, n));
    free(d);
    CHECK(write_text("o.gguf", "old\n", 4));
    int rc = run_sq("quantize --imatrix other.imatrix.gguf M.gguf o.gguf q4_K");
    CHECK_INT(rc, 1);
    CHECK_CONTAINS(err_text, "other.imatrix.gguf");
    CHECK_CONTAINS(err_text, "blk.0.ffn_down.weight has 512 values");
    rc = run_sq("plan -m M.gguf --imatrix other.imatrix.gguf --target-bpw 5 -o p.json");
    CHECK_INT(rc, 1);
    CHECK_CONTAINS(err_text, "blk.0.ffn_gate.weight has 1536 values");
    char p[700];
    CHECK(access(tmp_path(p, sizeof p, "p.json"), F_OK) != 0);
    d = harness_read_file(tmp_path(p, sizeof p, "o.gguf"), &n);
    CHECK(d && n == 4 && !memcmp(d, "old\n", 4));
    free(d);
    unlink(p);
    CHECK(!leftover_tmp());
}

/* An output naming the input — literally, through "./", a symbolic or a hard
 * link — is refused before anything is written; the input keeps its bytes. */
static void test_output_is_input(void)
{
    char p[700], q[700];
    char rows[128];
    for (int i = 0; i < 128; i++) rows[i] = (char)i;
    rows[0] = 1;
    CHECK(write_text("R.f32", rows, sizeof rows));
    CHECK(symlink("M.gguf", tmp_path(p, sizeof p, "sym.gguf")) == 0);
    CHECK(link(model, tmp_path(q, sizeof q, "hard.gguf")) == 0);
    static const struct {
        const char *args, *needle;
        int rc;
    } cases[] = {
        {"quantize M.gguf M.gguf q4_0", "must differ from the input", 1},
        {"quantize M.gguf ./M.gguf q4_0", "must differ from the input", 1},
        {"quantize M.gguf sym.gguf q4_0", "must differ from the input", 1},
        {"quantize M.gguf hard.gguf q4_0", "must differ from the input", 1},
        {"plan -m M.gguf --no-imatrix --target-bpw 8 -o ./M.gguf", "would be replaced", 2},
        {"plan -m M.gguf --no-imatrix --target-bpw 8 -o sym.gguf", "would be replaced", 2},
        {"imatrix -m M.gguf -f T.txt -o hard.gguf", "would be replaced", 2},
        {"imatrix --in-file M.gguf -o ./M.gguf", "would be replaced", 2},
        {"perplexity -m M.gguf -f T.txt -c 8 --kl-divergence-base ./T.txt", "would be replaced", 2},
        {"perplexity -m M.gguf -f T.txt -c 8 --kl-divergence-base sym.gguf", "would be replaced", 2},
        {"blocks quantize q8_0 32 R.f32 ./R.f32", "would be replaced", 2},
        {"blocks dequantize f32 32 R.f32 R.f32", "would be replaced", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int rc = run_sq(cases[i].args);
        CHECK_MSG(rc == cases[i].rc, "sq %s: exit %d, want %d (%s)", cases[i].args, rc, cases[i].rc, err_text);
        CHECK_MSG(strstr(err_text, cases[i].needle) != NULL, "sq %s: message '%s' lacks \"%s\"", cases[i].args,
                  err_text, cases[i].needle);
    }
    CHECK(model_intact(model));
    size_t n = 0;
    char *t = harness_read_file(tmp_path(p, sizeof p, "T.txt"), &n);
    CHECK(t && n == 37 && !memcmp(t, "Once upon", 9));
    free(t);
    t = harness_read_file(tmp_path(p, sizeof p, "R.f32"), &n);
    CHECK(t && n == 128 && t[0] == 1 && t[127] == 127);
    free(t);
    tmp_path(p, sizeof p, "sym.gguf");
    struct stat st;
    CHECK(lstat(p, &st) == 0 && S_ISLNK(st.st_mode));
    unlink(p);
    unlink(q);
    CHECK(!leftover_tmp());
}

/* A quantize killed by SIGINT or SIGTERM while writing removes its temporary
 * file, dies of that signal, and leaves an existing output untouched. */
static void test_signal_cleanup(void)
{
    static const int sigs[] = {SIGINT, SIGTERM};
    char out[700];
    tmp_path(out, sizeof out, "out.gguf");
    for (int k = 0; k < 2; k++) {
        CHECK(write_text("out.gguf", "old\n", 4));
        const pid_t pid = fork();
        if (pid == 0) {
            /* a background job may inherit SIGINT ignored; the user's Ctrl-C is not */
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            if (chdir(tmpdir) != 0) _exit(127);
            if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(127);
            execl(harness_sq_bin(), harness_sq_bin(), "quantize", "M.gguf", "out.gguf", "q4_K", "1", (char *)NULL);
            _exit(127);
        }
        CHECK(pid > 0);
        if (pid <= 0) return;
        /* wait (at most ~10 s) until the temporary output exists, then signal */
        bool seen = false;
        for (int i = 0; i < 2000 && !seen; i++) {
            seen = leftover_tmp();
            if (!seen) {
                struct timespec ts = {0, 5000000};
                nanosleep(&ts, NULL);
            }
        }
        CHECK_MSG(seen, "no temporary file appeared during the quantization");
        kill(pid, sigs[k]);
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (seen) {
            CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == sigs[k], "quantize did not die of signal %d (status %d)",
                      sigs[k], st);
        }
        CHECK_MSG(!leftover_tmp(), "a temporary file is left after signal %d", sigs[k]);
        size_t n = 0;
        char *t = harness_read_file(out, &n);
        CHECK(t && n == 4 && memcmp(t, "old\n", 4) == 0);
        free(t);
    }
    unlink(out);
}

int main(void)
{
    if (access(harness_sq_bin(), X_OK) != 0) {
        fprintf(stderr, "SKIP: %s not built\n", harness_sq_bin());
        harness_skipped++;
        return harness_finish("cli_errors");
    }
    char src[1024];
    if (!harness_shared_file(src, sizeof src, "models/sqdemo-f16.gguf")) {
        fprintf(stderr, "SKIP: ../shared/models/sqdemo-f16.gguf absent\n");
        harness_skipped++;
        return harness_finish("cli_errors");
    }
    if (!harness_tmpdir(tmpdir, sizeof tmpdir)) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    snprintf(model, sizeof model, "%s/M.gguf", tmpdir);
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, model);
    if (system(cmd) != 0 || !write_text("T.txt", "Once upon a time there was a model.\n", 37)) {
        fprintf(stderr, "cannot prepare %s\n", tmpdir);
        return 1;
    }
    RUN(test_numeric_options);
    RUN(test_bad_files_and_flags);
    RUN(test_foreign_imatrix);
    RUN(test_output_is_input);
    RUN(test_signal_cleanup);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return harness_finish("cli_errors");
}
