/*
 * deps.h — the quantizer's view of modules built in parallel branches.
 *
 * While a module (GGUF reader/writer, SmarterQuant row packer, thread pool)
 * has not landed in this branch, its functions are declared weak here, so the
 * library still links and the code paths that need it report
 * SQ_EUNSUPPORTED ("... not in this build"); tests skip them. Once a module is
 * merged, its SQ__WEAK_* switch below is removed and the references are
 * ordinary (strong) ones again.
 */
#ifndef SQ_QUANTIZE_DEPS_H
#define SQ_QUANTIZE_DEPS_H

#include "sq/blocks.h"
#include "sq/gguf.h"
#include "sq/matmul.h"
#include "sq/sqtensor.h"

#define SQ__WEAK_GGUF 0
#define SQ__WEAK_SQTENSOR 0
#define SQ__WEAK_POOL 1

#if SQ__WEAK_GGUF
#pragma weak sq_gguf_open
#pragma weak sq_gguf_open_memory
#pragma weak sq_gguf_close
#pragma weak sq_gguf_path
#pragma weak sq_gguf_find_key
#pragma weak sq_gguf_n_kv
#pragma weak sq_gguf_key
#pragma weak sq_gguf_kv_type
#pragma weak sq_gguf_arr_type
#pragma weak sq_gguf_arr_n
#pragma weak sq_gguf_arr_str
#pragma weak sq_gguf_get_i64
#pragma weak sq_gguf_get_u32
#pragma weak sq_gguf_get_str
#pragma weak sq_gguf_n_tensors
#pragma weak sq_gguf_tensor_at
#pragma weak sq_gguf_find_tensor
#pragma weak sq_gguf_writer_open
#pragma weak sq_gguf_writer_copy_kvs
#pragma weak sq_gguf_writer_set_u32
#pragma weak sq_gguf_writer_set_bool
#pragma weak sq_gguf_writer_set_str
#pragma weak sq_gguf_writer_set_arr_str
#pragma weak sq_gguf_writer_remove_key
#pragma weak sq_gguf_writer_add_tensor
#pragma weak sq_gguf_writer_write
#pragma weak sq_gguf_writer_finish
#pragma weak sq_gguf_writer_abort
#define SQ__HAVE_GGUF() (sq_gguf_open_memory != NULL && sq_gguf_writer_open != NULL)
#else
#define SQ__HAVE_GGUF() 1
#endif

#if SQ__WEAK_SQTENSOR
#pragma weak sq_pack_row
#pragma weak sq_perm_validate
#pragma weak sq_perm_gather
#pragma weak sq_weight_mixed
#pragma weak sq_weight_get_row
#define SQ__HAVE_SQTENSOR() (sq_pack_row != NULL && sq_perm_validate != NULL)
#else
#define SQ__HAVE_SQTENSOR() 1
#endif

#if SQ__WEAK_POOL
#pragma weak sq_threadpool_create
#pragma weak sq_threadpool_free
#pragma weak sq_threadpool_run
#define SQ__HAVE_POOL() (sq_threadpool_create != NULL)
#else
#define SQ__HAVE_POOL() 1
#endif

#endif /* SQ_QUANTIZE_DEPS_H */
