/*
 * testutil.h — small helpers several test files share: running the `sq`
 * tool and capturing its output, counting and removing files in a test's
 * temporary directory, writing a text file, a deterministic random source.
 * Header-only (static functions), included after harness.h.
 */
#ifndef SQ_TESTUTIL_H
#define SQ_TESTUTIL_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

/* Runs `sq ARGS` in dir (NULL: here); captures stdout+stderr into out[cap]
 * (NUL-terminated). Returns the exit status, -1 when it did not exit. */
static inline int tu_run_sq(const char *dir, const char *args, char *out, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>&1", dir ? dir : ".", harness_sq_bin(), args);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    const size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    const int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Number of directory entries (besides . and ..) whose name starts with prefix. */
static inline int tu_count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

/* Whether any entry of dir has `part` in its name (e.g. ".tmp-": a writer's leftover). */
static inline bool tu_any_file_with(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, part)) found = true;
    closedir(d);
    return found;
}

static inline void tu_write_text(const char *dir, const char *name, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Removes a flat directory and its files. */
static inline void tu_rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        remove(p);
    }
    closedir(d);
    remove(dir);
}

/* xorshift64: the same sequence on every run. */
static uint64_t tu_rng_state = 0x9e3779b97f4a7c15ull;
static inline uint32_t tu_rnd(void)
{
    tu_rng_state ^= tu_rng_state << 13;
    tu_rng_state ^= tu_rng_state >> 7;
    tu_rng_state ^= tu_rng_state << 17;
    return (uint32_t)(tu_rng_state >> 11);
}

/* Roughly Gaussian in (-2, 2) (a sum of four uniforms). */
static inline float tu_rnd_gauss(void)
{
    float s = 0;
    for (int i = 0; i < 4; i++) s += (float)(tu_rnd() & 0xffff) / 65536.0f - 0.5f;
    return s;
}

#endif /* SQ_TESTUTIL_H */
