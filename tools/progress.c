/*
 * tools/progress.c — the tools' progress display and their checked writes
 * to stdout; see progress.h for what it shows where.
 */
#include "progress.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sq/base.h"
#include "sq/gguf.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *tool_name = "";

void sq_progress_set_tool(const char *cmd) { tool_name = cmd ? cmd : ""; }

/* The failed write's way out: as a fatal signal does (tools/cmds.h), the
 * temporary files go first, then the message, then the exit. _exit: other
 * threads may be inside the library, and stdout is what failed. */
static void stdout_failed(int e)
{
    sq_gguf_writer_unlink_temps();
    fprintf(stderr, "sq %s: standard output: %s; stopped (no partial output file is left)\n", tool_name,
            e ? strerror(e) : "write error");
    _exit(1);
}

void sq_stdout_flush_or_die(void)
{
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) stdout_failed(errno);
}

/* Where the display goes: SQ_PROGRESS, else a terminal or plain lines. */
static sq_progress_mode choose_mode(void)
{
    const char *env = getenv("SQ_PROGRESS");
    if (env && !strcmp(env, "off")) return SQ_PROGRESS_OFF;
    if (env && !strcmp(env, "plain")) return SQ_PROGRESS_PLAIN;
    if (env && !strcmp(env, "tty")) return SQ_PROGRESS_TTY;
    return isatty(STDERR_FILENO) ? SQ_PROGRESS_TTY : SQ_PROGRESS_PLAIN;
}

/* Whether stdout and stderr are one file, pipe or terminal. */
static bool same_destination(void)
{
    struct stat a, b;
    if (fstat(STDOUT_FILENO, &a) != 0 || fstat(STDERR_FILENO, &b) != 0) return false;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

void sq_progress_start(sq_progress *p, const char *label, const char *unit, int64_t total)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "");
    p->total = total;
    p->mode = choose_mode();
    p->shared = same_destination();
    p->t0 = sq_time_now();
}

/* "12 s", "3 m 05 s", "1 h 02 m". */
static void duration(char *buf, size_t n, double s)
{
    const long t = s < 0 ? 0 : (long)(s + 0.5);
    if (t < 60) snprintf(buf, n, "%ld s", t);
    else if (t < 3600) snprintf(buf, n, "%ld m %02ld s", t / 60, t % 60);
    else snprintf(buf, n, "%ld h %02ld m", t / 3600, t / 60 % 60);
}

/* The status text: "LABEL: 37/214 tensors (17%) DETAIL  12 s, ETA 54 s". */
static void compose(const sq_progress *p, char *buf, size_t n, double now)
{
    const double el = now - p->t0;
    char e[32], r[32];
    duration(e, sizeof e, el);
    int k = snprintf(buf, n, "%s: ", p->label);
    if (p->total > 0 && p->unit[0])
        k += snprintf(buf + k, n - (size_t)k, "%lld/%lld %s (%.0f%%)", (long long)p->done, (long long)p->total,
                      p->unit, 100.0 * (double)p->done / (double)p->total);
    else if (p->total > 0)
        k += snprintf(buf + k, n - (size_t)k, "%.0f%%", 100.0 * (double)p->done / (double)p->total);
    else
        k += snprintf(buf + k, n - (size_t)k, "%lld %s", (long long)p->done, p->unit);
    if (p->detail[0] && (size_t)k < n) k += snprintf(buf + k, n - (size_t)k, " %s", p->detail);
    if ((size_t)k >= n) return;
    if (p->total > 0 && p->done >= p->total) {
        snprintf(buf + k, n - (size_t)k, ", done in %s", e);
    } else if (p->total > 0 && p->done > 0) {
        duration(r, sizeof r, el * (double)(p->total - p->done) / (double)p->done);
        snprintf(buf + k, n - (size_t)k, "  %s, ETA %s", e, r);
    } else {
        snprintf(buf + k, n - (size_t)k, "  %s", e);
    }
}

/* Columns of the terminal on stderr (80 when unknown). */
static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10) return ws.ws_col;
    return 80;
}

static void erase(sq_progress *p)
{
    if (p->mode == SQ_PROGRESS_TTY && p->shown) {
        fputs("\r\033[K", stderr);
        p->shown = false;
    }
}

/* Draws the status line in place (terminal) or prints a plain line. */
static void draw(sq_progress *p, double now)
{
    char line[512];
    compose(p, line, sizeof line, now);
    p->t_last = now;
    if (p->mode == SQ_PROGRESS_TTY) {
        const int w = term_width() - 1; /* a full line would wrap and break the '\r' */
        fprintf(stderr, "\r%.*s\033[K", w, line);
        p->shown = true;
    } else {
        if (p->shared && p->out_partial) fputc('\n', stderr); /* after perplexity's "[1]..,[2].." */
        p->out_partial = false;
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

void sq_progress_update(sq_progress *p, int64_t done, const char *fmt, ...)
{
    if (p->mode == SQ_PROGRESS_OFF) return;
    pthread_mutex_lock(&lock);
    p->done = done;
    p->detail[0] = 0;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->detail, sizeof p->detail, fmt, ap);
        va_end(ap);
    }
    const double now = sq_time_now();
    const bool last = p->total > 0 && done >= p->total, first = p->t_last == 0;
    const double gap = p->mode == SQ_PROGRESS_TTY ? 0.1 : SQ_PROGRESS_PLAIN_SECONDS;
    if (first || last || now - p->t_last >= gap) draw(p, now);
    pthread_mutex_unlock(&lock);
}

void sq_progress_clear(sq_progress *p)
{
    pthread_mutex_lock(&lock);
    erase(p);
    fflush(stderr);
    pthread_mutex_unlock(&lock);
}

/* Appends n bytes to the held stdout text; false when out of memory. */
static bool hold(sq_progress *p, const char *s, size_t n)
{
    if (p->held_len + n + 1 > p->held_cap) {
        size_t cap = p->held_cap ? p->held_cap : 256;
        while (cap < p->held_len + n + 1) cap *= 2;
        char *nb = realloc(p->held, cap);
        if (!nb) return false;
        p->held = nb;
        p->held_cap = cap;
    }
    memcpy(p->held + p->held_len, s, n);
    p->held_len += n;
    return true;
}

/* Writes the held text up to its last newline (all of it when `all`) to
 * stdout, above the status line, which is drawn again if it was shown. */
static void release(sq_progress *p, bool all)
{
    size_t n = p->held_len;
    if (!all)
        while (n > 0 && p->held[n - 1] != '\n') n--;
    if (n == 0) return;
    const bool was_shown = p->shown;
    erase(p);
    fwrite(p->held, 1, n, stdout);
    sq_stdout_flush_or_die();
    memmove(p->held, p->held + n, p->held_len - n);
    p->held_len -= n;
    if (was_shown) draw(p, sq_time_now());
}

void sq_progress_printf(sq_progress *p, const char *fmt, ...)
{
    char small[1024], *text = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n >= (int)sizeof small) {
        text = malloc((size_t)n + 1);
        if (!text) return;
        va_start(ap, fmt);
        vsnprintf(text, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (p) pthread_mutex_lock(&lock);
    if (p && p->mode == SQ_PROGRESS_TTY && p->shared && hold(p, text, (size_t)n)) {
        release(p, false);
    } else {
        fwrite(text, 1, (size_t)n, stdout);
        sq_stdout_flush_or_die();
        if (p && n > 0) p->out_partial = text[n - 1] != '\n';
    }
    if (p) pthread_mutex_unlock(&lock);
    if (text != small) free(text);
}

void sq_progress_end(sq_progress *p)
{
    pthread_mutex_lock(&lock);
    erase(p);
    fflush(stderr);
    release(p, true);
    free(p->held);
    p->held = NULL;
    p->held_len = p->held_cap = 0;
    p->mode = SQ_PROGRESS_OFF;
    pthread_mutex_unlock(&lock);
}
