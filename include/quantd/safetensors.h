/*
 * safetensors.h — safetensors reader (mmap, fully validated), sharded
 * checkpoint sets, and a small writer.
 *
 * File layout (https://github.com/huggingface/safetensors, little-endian):
 *   u64 header_len | header_len bytes of UTF-8 JSON | data buffer
 * The JSON is one object. Each key except "__metadata__" names a tensor:
 *   "name": {"dtype": "F16", "shape": [d0, d1, ...],
 *            "data_offsets": [begin, end]}
 * with offsets relative to the start of the data buffer, shape row-major
 * (d0 slowest, as PyTorch). "__metadata__" is an object of string values.
 *
 * Everything in the file is untrusted. The reader enforces:
 *   - 2 <= header_len <= QD_ST_MAX_HEADER (100 MB) and <= file size - 8;
 *   - the header is a JSON object without duplicate keys;
 *   - dtype is known; shape has at most QD_ST_MAX_DIMS non-negative dims
 *     whose product (times the dtype size) does not overflow;
 *   - end - begin == numel * dtype size; the tensors, ordered by offset,
 *     are contiguous, do not overlap, start at 0 and cover the whole data
 *     buffer (no gap, no trailing bytes, nothing past end of file).
 * A failure returns QD_EFORMAT (QD_ETOOBIG, QD_EIO, QD_ENOMEM) and
 * qd_errmsg() names the file, the tensor and what was wrong.
 */
#ifndef QUANTD_SAFETENSORS_H
#define QUANTD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define QD_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
#define QD_ST_MAX_DIMS 8

typedef enum {
    QD_ST_BOOL = 0,
    QD_ST_U8,
    QD_ST_I8,
    QD_ST_U16,
    QD_ST_I16,
    QD_ST_F16,
    QD_ST_BF16,
    QD_ST_I32,
    QD_ST_F32,
    QD_ST_I64,
    QD_ST_F64,
    QD_ST_F8_E4M3,
    QD_ST_F8_E5M2,
    QD_ST_DTYPE_COUNT
} qd_st_dtype_t;

/* "F16" etc. for a valid dtype; "?" otherwise. */
const char *qd_st_dtype_name(qd_st_dtype_t t);
/* Bytes per element (0 for an invalid dtype). */
size_t qd_st_dtype_size(qd_st_dtype_t t);
/* Parse a dtype name; 0 or QD_EINVAL. */
int qd_st_dtype_from_name(const char *name, qd_st_dtype_t *out);

typedef struct {
    const char *name;                 /* owned by the file object */
    qd_st_dtype_t dtype;
    int n_dims;                       /* 0 for a scalar */
    int64_t shape[QD_ST_MAX_DIMS];    /* row-major: shape[0] slowest */
    int64_t numel;
    size_t n_bytes;
    const void *data;                 /* inside the read-only mapping */
} qd_st_tensor_t;

typedef struct qd_st qd_st_t;

/* Open and validate one .safetensors file (mapped read-only). *out freed
 * with qd_st_close. */
int qd_st_open(const char *path, qd_st_t **out);
/* Same over a caller-owned buffer that must outlive the object. */
int qd_st_open_mem(const void *buf, size_t n_bytes, qd_st_t **out);
void qd_st_close(qd_st_t *st);

int64_t qd_st_n_tensors(const qd_st_t *st);
/* Tensors in data-offset order. */
const qd_st_tensor_t *qd_st_tensor(const qd_st_t *st, int64_t i);
const qd_st_tensor_t *qd_st_find(const qd_st_t *st, const char *name);
/* __metadata__ value for key, or NULL. Owned by st. */
const char *qd_st_metadata(const qd_st_t *st, const char *key);

/* ---- checkpoint directories ------------------------------------------ */
/*
 * A Hugging Face model directory holds either model.safetensors or shards
 * listed in model.safetensors.index.json ({"weight_map": {tensor: file}}).
 * Each shard is opened once; every tensor of the weight map must be found
 * in the shard it names, and no tensor may appear in two shards. Shard file
 * names must be plain names (no '/', not "..").
 */
typedef struct qd_st_set qd_st_set_t;

int qd_st_set_open_dir(const char *dir, qd_st_set_t **out);
void qd_st_set_close(qd_st_set_t *s);
int64_t qd_st_set_n_tensors(const qd_st_set_t *s);
const qd_st_tensor_t *qd_st_set_tensor(const qd_st_set_t *s, int64_t i);
const qd_st_tensor_t *qd_st_set_find(const qd_st_set_t *s, const char *name);
int qd_st_set_n_files(const qd_st_set_t *s);
const char *qd_st_set_file_path(const qd_st_set_t *s, int i);

/* ---- writer ----------------------------------------------------------- */
/*
 * Builds a file with tensors in the order added, each 8-byte aligned
 * header padded with spaces as the reference implementation does.
 */
typedef struct qd_st_writer qd_st_writer_t;

qd_st_writer_t *qd_st_writer_create(void); /* NULL on OOM */
void qd_st_writer_destroy(qd_st_writer_t *w);
/* n_bytes must equal numel * dtype size. copy == 0: data must outlive w. */
int qd_st_writer_add(qd_st_writer_t *w, const char *name, qd_st_dtype_t dtype,
                     int n_dims, const int64_t *shape, const void *data,
                     size_t n_bytes, int copy);
int qd_st_writer_set_metadata(qd_st_writer_t *w, const char *key,
                              const char *value);
/* Write to path (via path.tmp + rename). */
int qd_st_writer_write(qd_st_writer_t *w, const char *path);

#endif /* QUANTD_SAFETENSORS_H */
