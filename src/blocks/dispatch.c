/*
 * dispatch.c — builds the kernel table once (scalar families, then the SIMD
 * overrides the CPU supports) and implements the public entry points of
 * sq/blocks.h on top of it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "kernels.h"

static sq__kernels scalar_table[SQ_TYPE_COUNT];
static sq__kernels active_table[SQ_TYPE_COUNT];
static sq__quantize_ws ws_table[SQ_TYPE_COUNT];
static sq_isa active_isa = SQ_ISA_SCALAR;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
/* F16C (CPUID leaf 1, ECX bit 29) and AVX512_BF16 (leaf 7 sub-leaf 1, EAX
 * bit 5) are read directly: clang 14's __builtin_cpu_supports lacks both. */
static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    return (c >> 29) & 1;
}

static bool cpu_has_avx512bf16(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
    return (a >> 5) & 1;
}

/* AMX tiles usable by this process: the CPU has AMX-TILE and AMX-INT8
 * (CPUID leaf 7, EDX bits 24 and 25), the OS enabled their state in XCR0
 * (bits 17 and 18), and Linux grants this process the tile data state
 * (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, 18; once per
 * process, before any thread uses a tile). Anything missing: no AMX. */
static bool cpu_amx_usable(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!((d >> 24) & 1) || !((d >> 25) & 1)) return false;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) return false; /* OSXSAVE: xgetbv works */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if (((lo >> 17) & 3) != 3) return false;
#if defined(__linux__)
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
#else
    return false;
#endif
}
#endif

/* The best ISA of this CPU (computed once: the AMX permission request is a system call). */
static sq_isa cpu_isa_detect(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("bmi2") && cpu_has_avx512bf16())
        return cpu_amx_usable() ? SQ_ISA_AMX : SQ_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c())
        return SQ_ISA_AVX2;
#endif
    return SQ_ISA_SCALAR;
}

static sq_isa cpu_isa_value;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static void cpu_isa_init(void) { cpu_isa_value = cpu_isa_detect(); }

static sq_isa cpu_isa(void)
{
    pthread_once(&cpu_once, cpu_isa_init);
    return cpu_isa_value;
}

sq_isa sq__cpu_isa(void) { return cpu_isa(); }

static void build_table(sq_isa isa)
{
    memcpy(active_table, scalar_table, sizeof active_table);
    if (isa >= SQ_ISA_AVX2) sq__register_avx2(active_table);
    if (isa >= SQ_ISA_AVX512) sq__register_avx512(active_table);
    if (isa >= SQ_ISA_AMX) sq__register_avx512_vbmi(active_table);
    active_isa = isa;
}

/* The ISA the environment asks for, never above what the CPU has:
 * SQ_ISA=scalar|avx2|avx512|amx caps it (other values are ignored), and
 * SQ_FORCE_SCALAR (set and not "0") forces scalar. For benchmarking and
 * testing the lower paths on a machine that has the higher ones. */
static sq_isa env_isa(sq_isa max)
{
    const char *force = getenv("SQ_FORCE_SCALAR");
    if (force && *force && strcmp(force, "0") != 0) return SQ_ISA_SCALAR;
    const char *want = getenv("SQ_ISA");
    sq_isa isa;
    if (!want || !sq_isa_from_name(want, &isa)) return max;
    return isa < max ? isa : max;
}

static void init_tables(void)
{
    sq__register_float(scalar_table);
    sq__register_legacy(scalar_table);
    sq__register_kquants(scalar_table);
    sq__register_iquants(scalar_table);
    sq__register_iq1(scalar_table);
    sq__register_iq2(scalar_table);
    sq__register_iq3(scalar_table);
    sq__register_ternary(scalar_table);
    sq__register_ik(scalar_table, ws_table);
    build_table(env_isa(cpu_isa()));
}

const sq__kernels *sq__kernel_table(void)
{
    pthread_once(&table_once, init_tables);
    return active_table;
}

const sq__quantize_ws *sq__quantize_ws_table(void)
{
    pthread_once(&table_once, init_tables);
    return ws_table;
}

const sq__kernels *sq__kernel_table_scalar(void)
{
    pthread_once(&table_once, init_tables);
    return scalar_table;
}

sq_isa sq_blocks_isa(void)
{
    pthread_once(&table_once, init_tables);
    return active_isa;
}

sq_isa sq_blocks_set_isa(sq_isa isa)
{
    pthread_once(&table_once, init_tables);
    sq_isa max = cpu_isa();
    build_table(isa < max ? isa : max);
    return active_isa;
}

const char *sq_isa_name(sq_isa isa)
{
    switch (isa) {
    case SQ_ISA_SCALAR: return "scalar";
    case SQ_ISA_AVX2: return "avx2";
    case SQ_ISA_AVX512: return "avx512";
    case SQ_ISA_AMX: return "amx";
    }
    return "unknown";
}

bool sq_isa_from_name(const char *name, sq_isa *isa)
{
    for (sq_isa i = SQ_ISA_SCALAR; i <= SQ_ISA_AMX; i++)
        if (strcmp(name, sq_isa_name(i)) == 0) {
            *isa = i;
            return true;
        }
    return false;
}

static const sq__kernels *entry(int type)
{
    if (!sq_type_info_get(type)) return NULL;
    return &sq__kernel_table()[type];
}

sq__vec_dot_fn sq__blocks_vec_dot(int type)
{
    const sq__kernels *k = entry(type);
    return k ? k->vec_dot : NULL;
}

sq__from_float_fn sq__blocks_from_float(int act_type)
{
    const sq__kernels *k = entry(act_type);
    return k ? k->from_float : NULL;
}

bool sq_blocks_can_quantize(int type)
{
    const sq__kernels *k = entry(type);
    return k && (k->quantize || sq__quantize_ws_table()[type].fn);
}

bool sq_blocks_can_dequantize(int type)
{
    const sq__kernels *k = entry(type);
    return k && k->dequantize;
}

bool sq_blocks_can_dot(int type)
{
    const sq__kernels *k = entry(type);
    const sq_type_info *ti = sq_type_info_get(type);
    return k && k->vec_dot && ti && entry(ti->vec_dot_type) && entry(ti->vec_dot_type)->from_float;
}

/* Rows of a quantizer that needs row scratch (ik's row-scale types): a stack
 * buffer covers rows up to 64 Ki values of the hungriest type; longer rows
 * get one heap buffer for the call (this entry point, not a kernel). */
static sq_status quantize_with_scratch(const sq__quantize_ws *ws, const float *src, void *dst, int64_t nrows,
                                       int64_t n_per_row, size_t row_bytes, const float *imatrix, sq_error *err)
{
    float stack_buf[4608];
    const size_t need = (size_t)ws->per_256 * (size_t)(n_per_row / 256 + 1);
    float *work = need <= sizeof stack_buf / sizeof *stack_buf ? stack_buf : malloc(need * sizeof *work);
    if (!work) return sq_error_set(err, SQ_ENOMEM, "out of memory for %zu floats of quantizer scratch", need);
    for (int64_t r = 0; r < nrows; r++)
        ws->fn(src + r * n_per_row, (char *)dst + (size_t)r * row_bytes, n_per_row, imatrix, work);
    if (work != stack_buf) free(work);
    return SQ_OK;
}

sq_status sq_quantize_rows(int type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix, sq_error *err)
{
    const sq_type_info *ti = sq_type_info_get(type);
    if (!ti) return sq_error_set(err, SQ_EINVAL, "unknown or removed type id %d", type);
    const sq__kernels *k = entry(type);
    const sq__quantize_ws *ws = &sq__quantize_ws_table()[type];
    if (!k->quantize && !ws->fn)
        return sq_error_set(err, SQ_EUNSUPPORTED, "quantizing to type %s (%d) is not supported by this build",
                            ti->name, type);
    if (n_per_row <= 0 || n_per_row % ti->block_size != 0)
        return sq_error_set(err, SQ_EINVAL, "type %s: row length %lld is not a multiple of its block size %d",
                            ti->name, (long long)n_per_row, ti->block_size);
    if (ti->needs_imatrix == SQ_IMATRIX_REQUIRED && !imatrix)
        return sq_error_set(err, SQ_EINVAL, "type %s needs an importance matrix, and none was given", ti->name);
    if (k->prepare && !k->prepare())
        return sq_error_set(err, SQ_ENOMEM, "type %s: out of memory for its codebook search tables", ti->name);
    const size_t row_bytes = sq_row_size(type, n_per_row);
    if (ws->fn) return quantize_with_scratch(ws, src, dst, nrows, n_per_row, row_bytes, imatrix, err);
    for (int64_t r = 0; r < nrows; r++)
        k->quantize(src + r * n_per_row, (char *)dst + (size_t)r * row_bytes, n_per_row, imatrix);
    return SQ_OK;
}

void sq_dequantize_row(int type, const void *src, float *dst, int64_t n)
{
    entry(type)->dequantize(src, dst, n);
}

void sq_quantize_act(int act_type, const float *x, void *dst, int64_t n)
{
    entry(act_type)->from_float(x, dst, n);
}

float sq_vec_dot(int type, int64_t n, const void *w, const void *x_act)
{
    return entry(type)->vec_dot(n, w, x_act);
}
