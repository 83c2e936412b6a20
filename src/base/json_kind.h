/*
 * json_kind.h — the JSON type of a jansson value in words ("an integer",
 * "a real number", "an array" ...), for the "must be X, got Y" messages of the
 * JSON readers (SmarterQuant config, server requests). Internal and
 * header-only, so that only the files that use jansson include it.
 */
#ifndef SQ_BASE_JSON_KIND_H
#define SQ_BASE_JSON_KIND_H

#include <jansson.h>

static inline const char *sq__json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

#endif /* SQ_BASE_JSON_KIND_H */
