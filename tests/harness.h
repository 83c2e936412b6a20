/*
 * tests/harness.h — the small test harness every tests/test_*.c uses.
 *
 * A test file defines static test functions, runs them with RUN(fn) from
 * main(), and returns harness_finish("suite"), which prints
 *     suite: N passed, N failed, N skipped
 * tests/run.sh adds the suites up into the final "N passed, N failed" line.
 * CHECK-style macros count one assertion each; a failed one prints where and why.
 */
#ifndef SQ_TEST_HARNESS_H
#define SQ_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int harness_passed, harness_failed, harness_skipped;
static const char *harness_current = "";

#define CHECK_MSG(cond, ...)                                                          \
    do {                                                                              \
        if (cond) {                                                                   \
            harness_passed++;                                                         \
        } else {                                                                      \
            harness_failed++;                                                         \
            fprintf(stderr, "FAIL %s (%s:%d): ", harness_current, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)

#define CHECK(cond) CHECK_MSG((cond), "%s", #cond)
#define CHECK_INT(a, b)                                                                  \
    do {                                                                                 \
        long long a_ = (long long)(a), b_ = (long long)(b);                             \
        CHECK_MSG(a_ == b_, "%s == %s: %lld != %lld", #a, #b, a_, b_);                 \
    } while (0)
#define CHECK_STR(a, b)                                                                  \
    do {                                                                                 \
        const char *a_ = (a), *b_ = (b);                                                \
        CHECK_MSG(a_ && b_ && strcmp(a_, b_) == 0, "%s == %s: \"%s\" != \"%s\"", #a, #b, \
                  a_ ? a_ : "(null)", b_ ? b_ : "(null)");                               \
    } while (0)
/* Substring check, for error messages. */
#define CHECK_CONTAINS(hay, needle)                                                       \
    do {                                                                                  \
        const char *h_ = (hay), *n_ = (needle);                                           \
        CHECK_MSG(h_ && n_ && strstr(h_, n_) != NULL, "\"%s\" does not contain \"%s\"",   \
                  h_ ? h_ : "(null)", n_ ? n_ : "(null)");                                \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                              \
    do {                                                                                   \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);                    \
        CHECK_MSG(fabs(a_ - b_) <= t_, "%s ~ %s: %.9g vs %.9g (tol %.3g)", #a, #b, a_, b_, t_); \
    } while (0)

/* Marks the current test as skipped (with a reason) and returns from it. */
#define SKIP(...)                                                  \
    do {                                                           \
        harness_skipped++;                                         \
        fprintf(stderr, "SKIP %s: ", harness_current);             \
        fprintf(stderr, __VA_ARGS__);                              \
        fputc('\n', stderr);                                       \
        return;                                                    \
    } while (0)

#define RUN(fn)                    \
    do {                           \
        harness_current = #fn;     \
        fn();                      \
    } while (0)

static inline int harness_finish(const char *suite)
{
    printf("%s: %d passed, %d failed, %d skipped\n", suite, harness_passed, harness_failed, harness_skipped);
    return harness_failed ? 1 : 0;
}

/* The ../shared folder (SQ_SHARED), or NULL when it is absent. */
static inline const char *harness_shared(void)
{
    const char *s = getenv("SQ_SHARED");
    if (!s || !*s) s = "../shared";
    struct stat st;
    if (stat(s, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return s;
}

/* Path of a file under ../shared into buf, or NULL when it does not exist. */
static inline const char *harness_shared_file(char *buf, size_t n, const char *rel)
{
    const char *s = harness_shared();
    if (!s) return NULL;
    snprintf(buf, n, "%s/%s", s, rel);
    struct stat st;
    return stat(buf, &st) == 0 ? buf : NULL;
}

/* The sq binary (SQ_BIN), for tests that run the tool. */
static inline const char *harness_sq_bin(void)
{
    const char *s = getenv("SQ_BIN");
    return (s && *s) ? s : "build/sq";
}

/* Reads a whole file into a malloc'd buffer with a NUL byte after its end (so
 * text files can be used as C strings); NULL on failure. */
static inline void *harness_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (buf) buf[n > 0 ? n : 0] = '\0';
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf && size) *size = (size_t)n;
    return buf;
}

/* A file under ../shared that must be exactly `want` bytes long, read into a
 * malloc'd buffer (the caller frees it). NULL when ../shared or the file is
 * absent (the caller skips), or when its size is wrong, which also counts as
 * a failed check naming the file. */
static inline void *harness_load_shared(const char *rel, size_t want)
{
    char path[1024];
    if (!harness_shared_file(path, sizeof path, rel)) return NULL;
    size_t n = 0;
    void *p = harness_read_file(path, &n);
    CHECK_MSG(p && n == want, "%s: size %zu, expected %zu", rel, n, want);
    if (p && n != want) {
        free(p);
        return NULL;
    }
    return p;
}

/* A fresh temporary directory for a test's files (under $TMPDIR or /tmp). */
static inline const char *harness_tmpdir(char *buf, size_t n)
{
    const char *t = getenv("TMPDIR");
    snprintf(buf, n, "%s/sqtest.XXXXXX", (t && *t) ? t : "/tmp");
    char *(mkdtemp)(char *);
    return mkdtemp(buf);
}

#endif /* SQ_TEST_HARNESS_H */
