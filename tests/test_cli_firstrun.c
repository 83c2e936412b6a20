/*
 * test_cli_firstrun.c — what a new user ran into on a fresh clone (issue 15),
 * each checked as the user typed it:
 *  - every tool words an unknown option and a missing value the same way;
 *  - ...
 * Uses the vendored demo model (models/sqdemo-f16.gguf), so it runs without
 * ../shared.
 */
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"

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
    tu_rm_rf(dir);
    return harness_finish("cli_firstrun");
}
