/*
 * test_readme.c — every command README.md shows runs as written in a fresh
 * clone after `make` (issue 15): the ```sh blocks are taken in order and run
 * in one shell, in a folder laid out as a clone (data/ and models/ as the
 * repository has them, build/ holding the sq just built), each command's exit
 * status checked. Files a command needs must come from the clone or from an
 * earlier README command.
 *
 * Three kinds of line are run as a reader would, not literally:
 *  - `make ...` is checked with `make -n` in the repository (the build already
 *    happened; `make test` inside `make test` would recurse);
 *  - `sq serve ...` runs in the background until the block's other commands
 *    (curl) are done, then gets SIGTERM (a background job ignores SIGINT);
 *    a README port is replaced by a free one, in the block's curl lines too
 *    (the machine is shared);
 *  - a line ending in a backslash continues on the next.
 */
#include <unistd.h>

#include "harness.h"
#include "testutil.h"

#define MAX_CMDS 256

typedef struct readme_cmd {
    char *text;
    int block;  /* index of its ```sh block */
    int line;   /* README line number */
} readme_cmd;

/* The commands of README's ```sh blocks (comment-only and empty lines left out). */
static int read_commands(const char *readme, readme_cmd *cmds)
{
    int n = 0, block = -1, lineno = 0;
    bool in_sh = false;
    char *pending = NULL;
    int pending_line = 0;
    for (const char *p = readme; *p && n < MAX_CMDS;) {
        const char *nl = strchr(p, '\n');
        const size_t len = nl ? (size_t)(nl - p) : strlen(p);
        lineno++;
        if (!in_sh && len == 5 && !strncmp(p, "```sh", 5)) {
            in_sh = true;
            block++;
        } else if (in_sh && len >= 3 && !strncmp(p, "```", 3)) {
            in_sh = false;
        } else if (in_sh) {
            size_t k = 0;
            while (k < len && (p[k] == ' ' || p[k] == '\t')) k++;
            if (k < len && p[k] != '#') {
                const bool cont = p[len - 1] == '\\';
                const size_t old = pending ? strlen(pending) : 0, add = cont ? len - 1 : len;
                char *t = realloc(pending, old + add + 2);
                if (!t) break;
                if (!pending) pending_line = lineno;
                memcpy(t + old, p, add);
                t[old + add] = cont ? ' ' : 0;
                t[old + add + (cont ? 1 : 0)] = 0;
                pending = t;
                if (!cont) {
                    cmds[n++] = (readme_cmd){pending, block, pending_line};
                    pending = NULL;
                }
            }
        }
        p += len + (nl ? 1 : 0);
    }
    free(pending);
    return n;
}

/* s with every "8080" replaced by port (into a malloc'd string). */
static char *with_port(const char *s, int port)
{
    char *out = malloc(strlen(s) * 2 + 16), *o = out;
    if (!out) return NULL;
    while (*s) {
        if (!strncmp(s, "8080", 4)) {
            o += sprintf(o, "%d", port);
            s += 4;
        } else {
            *o++ = *s++;
        }
    }
    *o = 0;
    return out;
}

static bool starts_with_word(const char *s, const char *w)
{
    while (*s == ' ') s++;
    const size_t n = strlen(w);
    return !strncmp(s, w, n) && (s[n] == ' ' || s[n] == 0);
}

/* The shell script that runs cmds in the clone folder; each failure names the
 * README line and ends the script with exit 1. */
static void write_script(FILE *f, const readme_cmd *cmds, int n, const char *repo, int port)
{
    fprintf(f, "exec </dev/null\nserve_pid=\nfail() { echo \"README.md:$1: exit $2: $3\" >&2; "
               "[ -n \"$serve_pid\" ] && kill -TERM $serve_pid; exit 1; }\n");
    for (int i = 0; i < n; i++) {
        const bool serve_block = strstr(cmds[i].text, "8080") != NULL;
        char *c = serve_block ? with_port(cmds[i].text, port) : strdup(cmds[i].text);
        if (!c) return;
        if (starts_with_word(c, "make")) {
            const char *rest = strstr(c, "make") + 4;
            fprintf(f, "{ make -n -C '%s' %s\n} >/dev/null 2>&1 || fail %d $? 'make -n%s'\n", repo, rest, cmds[i].line,
                    rest);
        } else if (starts_with_word(c, "sq") && strstr(c, "sq serve") == strstr(c, "sq")) {
            char *hash = strstr(c, " #"); /* not in a brace group: $! must be the server itself */
            if (hash) *hash = 0;
            fprintf(f, "%s > serve.log 2>&1 & serve_pid=$!\n"
                       "for i in $(seq 1200); do grep -q 'listening on' serve.log && break; "
                       "kill -0 $serve_pid 2>/dev/null || break; sleep 0.05; done\n"
                       "grep -q 'listening on' serve.log || { cat serve.log >&2; fail %d 1 'sq serve did not start'; }\n",
                    c, cmds[i].line);
        } else {
            /* a newline before the brace: a trailing "# comment" must not swallow the check */
            fprintf(f, "{ %s\n} >> out.log 2>> err.log || { rc=$?; tail -n 20 err.log >&2; fail %d $rc \"$(sed -n %dp '%s/README.md')\"; }\n",
                    c, cmds[i].line, cmds[i].line, repo);
        }
        const bool block_ends = i + 1 == n || cmds[i + 1].block != cmds[i].block;
        if (block_ends)
            fprintf(f, "if [ -n \"$serve_pid\" ]; then kill -TERM $serve_pid; wait $serve_pid || fail %d $? 'sq serve'; "
                       "serve_pid=; fi\n",
                    cmds[i].line);
        free(c);
    }
    fprintf(f, "echo all README commands ran\n");
}

/* The clone folder: data/ copied, the demo model linked into models/, build/
 * the folder of the sq under test. */
static bool make_clone(const char *dir, const char *repo)
{
    char cmd[4000], bin[1024];
    snprintf(bin, sizeof bin, "%s", harness_sq_bin());
    char *slash = strrchr(bin, '/');
    if (slash) *slash = 0;
    else snprintf(bin, sizeof bin, ".");
    snprintf(cmd, sizeof cmd,
             "cd '%s' && cp -r '%s/data' data && mkdir models && ln -s '%s/models/sqdemo-f16.gguf' models/ && "
             "ln -s \"$(cd '%s' && cd '%s' && pwd)\" build",
             dir, repo, repo, repo, bin);
    return system(cmd) == 0;
}

/* Runs every README command; the whole log on failure. */
static void test_readme_commands(void)
{
    char repo[1024], dir[512], path[1200];
    if (!getcwd(repo, sizeof repo)) SKIP("no cwd");
    snprintf(path, sizeof path, "%s/README.md", repo);
    char *readme = harness_read_file(path, NULL);
    CHECK(readme != NULL);
    if (!readme) return;
    readme_cmd cmds[MAX_CMDS];
    const int n = read_commands(readme, cmds);
    CHECK_MSG(n >= 10, "only %d commands found in README.md's sh blocks", n);
    CHECK(harness_tmpdir(dir, sizeof dir) != NULL);
    CHECK(make_clone(dir, repo));
    snprintf(path, sizeof path, "%s/readme.sh", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        write_script(f, cmds, n, repo, 20000 + (int)(getpid() % 20000));
        fclose(f);
    }
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "cd '%s' && sh readme.sh 2>&1", dir);
    int rc = 0;
    char *got = tu_popen_read(cmd, &rc);
    CHECK_MSG(rc == 0 && got && strstr(got, "all README commands ran"), "a README command failed:\n%s",
              got ? got : "(no output)");
    free(got);
    for (int i = 0; i < n; i++) free(cmds[i].text);
    free(readme);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* Built with AddressSanitizer (make asan), sq runs the README's examples
 * (a plan, imatrix and perplexity chunks) some ten times slower: minutes of
 * the suite for code paths the other tests already run under it. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

/* The README's first command builds in parallel: a serial build was most of
 * a fresh clone's `make demo` (issue 15), so the build line gives -j. */
static void test_readme_build_is_parallel(void)
{
    char *readme = harness_read_file("README.md", NULL);
    CHECK(readme != NULL);
    if (!readme) return;
    readme_cmd cmds[MAX_CMDS];
    const int n = read_commands(readme, cmds);
    CHECK_MSG(n > 0 && starts_with_word(cmds[0].text, "make") && strstr(cmds[0].text, " -j"),
              "README.md:%d: the first command is not a parallel build (make -j...): %s", n > 0 ? cmds[0].line : 0,
              n > 0 ? cmds[0].text : "(none)");
    for (int i = 0; i < n; i++) free(cmds[i].text);
    free(readme);
}

int main(void)
{
    RUN(test_readme_build_is_parallel);
#ifdef SANITIZED
    fprintf(stderr, "SKIP: the README's commands run in the plain build (make test), not under ASan\n");
    harness_skipped++;
    return harness_finish("readme");
#endif
    if (access(harness_sq_bin(), X_OK) != 0) {
        fprintf(stderr, "SKIP: %s not built\n", harness_sq_bin());
        harness_skipped++;
        return harness_finish("readme");
    }
    RUN(test_readme_commands);
    return harness_finish("readme");
}
