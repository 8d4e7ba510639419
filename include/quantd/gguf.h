/*
 * gguf.h — GGUF v2/v3 reader (mmap, fully validated) and writer.
 *
 * File layout (little-endian):
 *   u32 magic "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
 *   n_kv  × { string key | u32 value_type | value }
 *   n_tensors × { string name | u32 n_dims (1..4) | u64 ne[n_dims]
 *                 | u32 ggml_type | u64 offset (relative to data section) }
 *   padding to general.alignment (u32, default 32, a power of two)
 *   data section: each tensor at its offset, offsets aligned
 *   string = u64 length + bytes (no NUL); array = u32 elem_type + u64 count
 *   + elements (arrays of arrays allowed).
 *
 * The reader treats every byte as hostile: each count, length, dimension,
 * type id and offset is checked against the file size with overflow-safe
 * arithmetic before anything is allocated from it. Failures return
 * QD_EFORMAT (or QD_EUNSUPPORTED / QD_ENOMEM / QD_EIO) with qd_errmsg()
 * naming what was wrong and where (byte offset, key, tensor).
 */
#ifndef QUANTD_GGUF_H
#define QUANTD_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/quant.h"

typedef enum {
    QD_GGUF_UINT8 = 0,
    QD_GGUF_INT8 = 1,
    QD_GGUF_UINT16 = 2,
    QD_GGUF_INT16 = 3,
    QD_GGUF_UINT32 = 4,
    QD_GGUF_INT32 = 5,
    QD_GGUF_FLOAT32 = 6,
    QD_GGUF_BOOL = 7,
    QD_GGUF_STRING = 8,
    QD_GGUF_ARRAY = 9,
    QD_GGUF_UINT64 = 10,
    QD_GGUF_INT64 = 11,
    QD_GGUF_FLOAT64 = 12,
    QD_GGUF_VTYPE_COUNT
} qd_gguf_vtype_t;

#define QD_GGUF_MAX_DIMS 4
#define QD_GGUF_DEFAULT_ALIGNMENT 32

typedef struct qd_gguf qd_gguf_t;

/* The key of quantd's import caches (convert/hf_import.c): the signature
 * of the sources. Only files that carry it may hold quantd's own tensor
 * types (the reader refuses them elsewhere). */
#define QD_GGUF_KEY_IMPORT_SIGNATURE "quantd.import.signature"

typedef struct {
    const char *name;             /* NUL-terminated, owned by the reader */
    qd_type_t type;
    int n_dims;
    int64_t ne[QD_GGUF_MAX_DIMS]; /* ne[0] fastest; unused dims are 1 */
    uint64_t offset;              /* relative to the data section */
    size_t n_bytes;
    const void *data;             /* inside the read-only mapping */
} qd_gguf_tensor_t;

/* How a file is brought in. qd_model_load follows a process-wide choice
 * (set at start-up: the commands that run models — serve, run, bench,
 * perplexity, imatrix — choose QD_GGUF_READ unless told otherwise, the
 * file tools keep the default QD_GGUF_MMAP); everything else that opens a
 * file (headers, metadata, the file tools) maps it:
 *  QD_GGUF_READ: read into private anonymous memory, backed by
 *    transparent huge pages where the kernel allows. Decode streams the
 *    weights about 10% faster than through 4 KiB file pages (fewer TLB
 *    misses; the hardware prefetcher stops at page boundaries), and the
 *    copy is immune to the file changing on disk afterwards.
 *  QD_GGUF_MMAP (default): map the file read-only: pages shared with the page cache
 *    and other processes, read on first touch, guarded against the file
 *    being truncated (quantd/mapguard.h). */
typedef enum { QD_GGUF_READ, QD_GGUF_MMAP } qd_gguf_load_t;
void qd_gguf_set_load(qd_gguf_load_t how);
/* The same by name ("read" or "mmap", as the model_load option spells
 * it); QD_EINVAL with a message for any other. */
int qd_gguf_set_load_name(const char *name);
qd_gguf_load_t qd_gguf_get_load(void);

/* Open and validate a file, mapped. *out freed with qd_gguf_close. On
 * failure *out is NULL and qd_errmsg() says why. */
int qd_gguf_open(const char *path, qd_gguf_t **out);
/* The same, read or mapped as `how` says (qd_model_load: qd_gguf_get_load). */
int qd_gguf_open_as(const char *path, qd_gguf_load_t how, qd_gguf_t **out);
/* Same over a caller-owned buffer (fuzzing, tests); buf must outlive g. */
int qd_gguf_open_mem(const void *buf, size_t n_bytes, qd_gguf_t **out);
void qd_gguf_close(qd_gguf_t *g);

uint32_t qd_gguf_version(const qd_gguf_t *g);
uint32_t qd_gguf_alignment(const qd_gguf_t *g);
size_t qd_gguf_data_offset(const qd_gguf_t *g); /* absolute, in the file */
size_t qd_gguf_file_size(const qd_gguf_t *g);
/* Always 0 for a file read into memory (QD_GGUF_READ). For a mapped one:
 * 1 if the file shrank while mapped and a read past its new end was
 * absorbed (zeros read instead; see quantd/mapguard.h): everything
 * computed from the mapping since is garbage. */
int qd_gguf_damaged(const qd_gguf_t *g);

/* ---- metadata --------------------------------------------------------- */
int64_t qd_gguf_n_kv(const qd_gguf_t *g);
const char *qd_gguf_kv_key(const qd_gguf_t *g, int64_t i);
qd_gguf_vtype_t qd_gguf_kv_type(const qd_gguf_t *g, int64_t i);
/* Index of key, or -1. */
int64_t qd_gguf_find_key(const qd_gguf_t *g, const char *key);

/* Scalar getters by key: 0, QD_ENOTFOUND (absent) or QD_EINVAL (wrong type
 * or out of the target's range). Integer getters accept any integer type
 * whose value fits; float getters accept F32/F64 and integers. */
int qd_gguf_get_u32(const qd_gguf_t *g, const char *key, uint32_t *out);
int qd_gguf_get_i32(const qd_gguf_t *g, const char *key, int32_t *out);
int qd_gguf_get_u64(const qd_gguf_t *g, const char *key, uint64_t *out);
int qd_gguf_get_f32(const qd_gguf_t *g, const char *key, float *out);
int qd_gguf_get_bool(const qd_gguf_t *g, const char *key, int *out);
/* String value (NUL-terminated copy owned by g; *len excludes the NUL and
 * may be shorter than strlen if the value has embedded NULs — use len). */
int qd_gguf_get_str(const qd_gguf_t *g, const char *key, const char **out,
                    size_t *len);

/* Arrays, by kv index. For nested arrays, qd_gguf_arr_sub gives element j
 * as an array view. */
typedef struct {
    const qd_gguf_t *g;
    qd_gguf_vtype_t elem_type;
    uint64_t n;
    const void *impl; /* reader-internal */
} qd_gguf_arr_t;
int qd_gguf_get_arr(const qd_gguf_t *g, const char *key, qd_gguf_arr_t *out);
int qd_gguf_kv_arr(const qd_gguf_t *g, int64_t i, qd_gguf_arr_t *out);
/* Element j of a numeric array converted to double / int64 (bool → 0/1). */
double qd_gguf_arr_f64(const qd_gguf_arr_t *a, uint64_t j);
int64_t qd_gguf_arr_i64(const qd_gguf_arr_t *a, uint64_t j);
/* Element j of a string array (NUL-terminated, owned by g). */
const char *qd_gguf_arr_str(const qd_gguf_arr_t *a, uint64_t j, size_t *len);
/* Element j of an array of arrays. */
int qd_gguf_arr_sub(const qd_gguf_arr_t *a, uint64_t j, qd_gguf_arr_t *out);
/* Scalar kv value rendered as text for `inspect` (strings quoted, arrays
 * abbreviated past max_elems). Returns bytes written (snprintf-like). */
int qd_gguf_kv_format(const qd_gguf_t *g, int64_t i, char *buf, size_t cap,
                      int max_elems);

/* ---- tensors ---------------------------------------------------------- */
int64_t qd_gguf_n_tensors(const qd_gguf_t *g);
const qd_gguf_tensor_t *qd_gguf_tensor(const qd_gguf_t *g, int64_t i);
const qd_gguf_tensor_t *qd_gguf_find_tensor(const qd_gguf_t *g,
                                            const char *name);

/* ---- writer ----------------------------------------------------------- */
typedef struct qd_gguf_writer qd_gguf_writer_t;

qd_gguf_writer_t *qd_gguf_writer_create(void); /* NULL on OOM */
void qd_gguf_writer_destroy(qd_gguf_writer_t *w);
/* Setters replace an existing key of the same name. 0 or QD_ENOMEM. */
int qd_gguf_writer_set_u32(qd_gguf_writer_t *w, const char *key, uint32_t v);
int qd_gguf_writer_set_i32(qd_gguf_writer_t *w, const char *key, int32_t v);
int qd_gguf_writer_set_u64(qd_gguf_writer_t *w, const char *key, uint64_t v);
int qd_gguf_writer_set_f32(qd_gguf_writer_t *w, const char *key, float v);
int qd_gguf_writer_set_bool(qd_gguf_writer_t *w, const char *key, int v);
int qd_gguf_writer_set_str(qd_gguf_writer_t *w, const char *key,
                           const char *v);
/* Array of n scalars of elem_type (not STRING/ARRAY), raw LE elements. */
int qd_gguf_writer_set_arr(qd_gguf_writer_t *w, const char *key,
                           qd_gguf_vtype_t elem_type, const void *data,
                           uint64_t n);
int qd_gguf_writer_set_arr_str(qd_gguf_writer_t *w, const char *key,
                               const char *const *v, uint64_t n);
/* Copy kv i of a reader verbatim (any type, nested arrays included). */
int qd_gguf_writer_copy_kv(qd_gguf_writer_t *w, const qd_gguf_t *g,
                           int64_t i);
/* Raw escape hatch for tests that build malformed files: set the version
 * written (default 3) and alignment (default 32, via general.alignment). */
void qd_gguf_writer_set_version(qd_gguf_writer_t *w, uint32_t version);
/* Add a tensor; data (n_bytes = qd_row_size(type, ne[0]) * rows) is copied
 * unless copy == 0, in which case it must outlive the writer. */
int qd_gguf_writer_add_tensor(qd_gguf_writer_t *w, const char *name,
                              qd_type_t type, int n_dims, const int64_t *ne,
                              const void *data, size_t n_bytes, int copy);
/* Write the whole file (atomically: to PATH.tmp then rename). */
int qd_gguf_writer_write(qd_gguf_writer_t *w, const char *path);
/* Write into a malloc'd buffer (*buf freed by caller with qd_free). */
int qd_gguf_writer_write_mem(qd_gguf_writer_t *w, void **buf, size_t *n);
/* A copy of g — every kv (the string key set to value, added or replaced)
 * and every tensor — written to path: a model given a chat template, for
 * instance. */
int qd_gguf_write_with_str(const qd_gguf_t *g, const char *key, const char *value,
                           const char *path);

#endif /* QUANTD_GGUF_H */
