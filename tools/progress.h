/*
 * tools/progress.h — the one progress display of the tools: every long
 * command (quantize, imatrix, perplexity, plan) shows its progress through
 * this, so they all look and behave alike. The library never prints: it
 * reports through a callback (a tensor done, a chunk done), and the tool's
 * callback calls sq_progress_update().
 *
 * Where it goes (stderr), chosen once in sq_progress_start():
 *   - a terminal: one status line rewritten in place, at most 10 times a second,
 *         sq plan: 37/214 tensors (17%) blk.3.attn_q.weight  12 s, ETA 54 s
 *     cut to the terminal's width, and erased by sq_progress_end();
 *   - anything else (a log, a pipe): plain lines, never a '\r': the first
 *     step, then at most one line every SQ_PROGRESS_PLAIN_SECONDS, and the last;
 *   - SQ_PROGRESS=tty|plain|off in the environment overrides the choice
 *     (off: nothing; tests use it to see both forms).
 *
 * Text for stdout during a run goes through sq_progress_printf(): when stdout
 * is the same terminal, complete lines appear above the status line and a
 * partial line (perplexity's "[1]23.49,[2]...") is held until its newline or
 * sq_progress_end(); when stdout and stderr are one log, a plain progress line
 * starts on a line of its own. A failed write to stdout (a closed pipe with
 * SIGPIPE ignored, a full disk) ends the tool like a signal: the temporary
 * output files are removed, a message says why, exit status 1.
 *
 * Use (one at a time per process; the calls may come from any thread):
 *     sq_progress pr;
 *     sq_progress_start(&pr, "sq plan", "tensors", n_tensors);
 *     ... in the callback:  sq_progress_update(&pr, done, "%s", name);
 *     sq_progress_end(&pr);
 * total may be in any unit (weights, bytes) when `unit` is NULL: then only the
 * percentage is shown and the detail text says what it is at.
 *
 * Users: quantize (per tensor written), perplexity and imatrix (per chunk),
 * plan --calib (per tensor measured). For sq plan's planning itself (the
 * planner's library reports per tensor through its own callback), start one
 * with sq_progress_start(&pr, "sq plan", "tensors", n) in cmd_plan.c and call
 * sq_progress_update from that callback; end it before printing the table.
 */
#ifndef SQ_TOOLS_PROGRESS_H
#define SQ_TOOLS_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SQ_PROGRESS_PLAIN_SECONDS 10.0

typedef enum sq_progress_mode { SQ_PROGRESS_OFF, SQ_PROGRESS_PLAIN, SQ_PROGRESS_TTY } sq_progress_mode;

typedef struct sq_progress {
    char label[64];        /* "sq plan", "perplexity" */
    char unit[24];         /* "tensors", "chunks", or "" */
    int64_t total, done;
    sq_progress_mode mode;
    bool shared;           /* stdout goes where stderr goes (one terminal, one log) */
    bool shown;            /* the status line is on the screen (terminal) */
    bool out_partial;      /* the last stdout text did not end a line */
    double t0, t_last;     /* start, last line drawn */
    char detail[160];
    char *held;            /* stdout text held below the status line (terminal) */
    size_t held_len, held_cap;
} sq_progress;

/* Starts a display of `total` steps (total <= 0: unknown, no percentage or
 * ETA). label: what is running, printed first. unit: the steps' name, or
 * NULL to show a percentage only. */
void sq_progress_start(sq_progress *p, const char *label, const char *unit, int64_t total);
/* `done` of the total steps are finished; fmt (may be NULL) says what is
 * being worked on or the latest figure. The ETA is the time so far scaled
 * to the steps left. */
void sq_progress_update(sq_progress *p, int64_t done, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Erases the status line now (before the tool writes a warning to stderr);
 * the next update draws it again. */
void sq_progress_clear(sq_progress *p);
/* Erases the status line and writes any held stdout text. */
void sq_progress_end(sq_progress *p);
/* printf to stdout, flushed, in step with the status line (see above); p may
 * be NULL (plain printf + flush + the write check). */
void sq_progress_printf(sq_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The tool's name for the message of a failed write to stdout ("quantize"). */
void sq_progress_set_tool(const char *cmd);
/* fflush(stdout); when it fails: the temporary output files are removed,
 * "sq CMD: standard output: REASON; stopped" is printed, and the process
 * exits with status 1. For every tool that writes to stdout while it works. */
void sq_stdout_flush_or_die(void);

#endif
