/*
 * reader_internal.h — the reader's handle, shared by reader.c (open,
 * validation, index) and kv.c (typed getters, value formatting).
 *
 * Ownership: the handle owns the mapping (when it made one), the label copy
 * and one index block (kv records, tensor records, hash tables, string-array
 * offsets and the NUL-terminated name pool). Everything an accessor returns
 * points into the map or the index block and lives until sq_gguf_close().
 */
#ifndef SQ_GGUF_READER_INTERNAL_H
#define SQ_GGUF_READER_INTERNAL_H

#include "gguf_internal.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

/* One key/value pair as found in the file (offsets are file offsets). */
typedef struct sq__gguf_kv {
    const char *key;      /* NUL-terminated copy in the name pool */
    uint64_t key_len;
    uint64_t at;          /* offset of the key's length field (for messages) */
    sq_gguf_type type;
    uint64_t val_off;     /* first byte of the value (after the type field) */
    uint64_t val_size;    /* bytes of the value as stored */
    sq_gguf_type arr_type;   /* arrays: element type */
    uint64_t arr_n;          /* arrays: element count */
    uint64_t arr_data;       /* arrays: offset of the first element */
    const uint64_t *str_off; /* arrays of strings: offset of each string's length field */
} sq__gguf_kv;

struct sq_gguf {
    const uint8_t *base; /* the file bytes (map or caller's buffer) */
    uint64_t size;
    bool mapped;         /* base is our mmap (unmapped at close) */
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    int64_t n_kv, n_tensors;
    sq__gguf_kv *kvs;
    sq_gguf_tensor *tensors;
    uint64_t *tensor_at;   /* offset of each tensor info (for messages) */
    int64_t *kv_hash;      /* open addressing, slot = index + 1, 0 = empty */
    uint64_t kv_hash_mask;
    int64_t *t_hash;
    uint64_t t_hash_mask;
    void *block;           /* the one index allocation */
    /* A split model (sq_gguf_open_model over gguf-split shards): this handle
     * owns every shard; its key/value fields above are borrowed from shards[0]
     * (base, kvs, kv_hash point into that shard), while tensors, tensor_at,
     * t_hash and tensor_shard live in this handle's own block. NULL / 0 for
     * an ordinary handle. */
    struct sq_gguf **shards;
    int n_shards;
    int32_t *tensor_shard; /* shard index of each tensor */
    int32_t **sq_perms;    /* the permutation of each SmarterQuant tensor (owned; NULL: none), or NULL */
    char label[];          /* path or caller's label */
};

/* FNV-1a hash of a name given in two parts (b may be empty); the hash
 * tables of keys and tensors use it. */
uint64_t sq__gguf_hash2(const char *a, size_t alen, const char *b, size_t blen);

/* Index of the key made of two concatenated parts (b may be empty), or -1. */
int64_t sq__gguf_find_key2(const sq_gguf *g, const char *a, size_t alen, const char *b, size_t blen);

/* The three SmarterQuant values of tensor `name` in g's key list (sqmeta.c). */
void sq__gguf_sqmeta_reader_vals(const sq_gguf *g, const char *name, sq__gguf_val v[3]);

/* Little-endian loads from the (possibly unaligned) file bytes. */
static inline uint32_t sq__le32(const uint8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}
static inline uint64_t sq__le64(const uint8_t *p)
{
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    return v;
}

#endif /* SQ_GGUF_READER_INTERNAL_H */
