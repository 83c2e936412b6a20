/*
 * fuzz_imatrix.c — the importance-matrix readers on arbitrary bytes: the
 * legacy .dat parser always, and the GGUF path when the input starts with
 * "GGUF" (it goes through the GGUF reader). Whatever parses must be usable:
 * every entry is looked up again and its values read.
 */
#include <stddef.h>
#include <stdint.h>

#include "sq/imatrix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sq_error err = {0};
    sq_imatrix *im = NULL;
    if (sq_imatrix_parse_dat(data, size, "fuzz", &im, &err) == SQ_OK) {
        volatile float sink = 0;
        for (int64_t i = 0; i < sq_imatrix_n_entries(im); i++) {
            int64_t n = 0;
            const float *v = sq_imatrix_find(im, sq_imatrix_entry_name(im, i), &n);
            if (v && n > 0) sink += v[0] + v[n - 1];
        }
        for (int64_t i = 0; i < sq_imatrix_n_datasets(im); i++) sink += (float)sq_imatrix_dataset(im, i)[0];
        (void)sink;
    }
    sq_imatrix_free(im);
    im = NULL;
    if (sq_imatrix_parse(data, size, "fuzz", &im, &err) == SQ_OK) (void)sq_imatrix_n_entries(im);
    sq_imatrix_free(im);
    return 0;
}
