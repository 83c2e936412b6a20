/*
 * error.c — status codes and error messages kept in an sq_error.
 */
#include "sq/base.h"

#include <stdio.h>
#include <string.h>

sq_status sq_error_set(sq_error *err, sq_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void sq_error_prefix(sq_error *err, const char *fmt, ...)
{
    if (!err) return;
    char prefix[SQ_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[SQ_ERROR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
}

void sq_error_clear(sq_error *err)
{
    if (!err) return;
    err->code = SQ_OK;
    err->msg[0] = '\0';
}

const char *sq_status_name(sq_status s)
{
    switch (s) {
    case SQ_OK: return "ok";
    case SQ_EIO: return "io error";
    case SQ_EFORMAT: return "format error";
    case SQ_EINVAL: return "invalid argument";
    case SQ_ENOMEM: return "out of memory";
    case SQ_EUNSUPPORTED: return "unsupported";
    case SQ_ENOTFOUND: return "not found";
    case SQ_ETYPE: return "type mismatch";
    case SQ_ERANGE: return "out of range";
    }
    return "unknown status";
}
