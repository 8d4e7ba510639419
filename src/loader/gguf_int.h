/*
 * gguf_int.h — what the GGUF reader shares with the writer (gguf_write.c)
 * and nobody else: value sizes and raw access to an encoded kv value so the
 * writer can copy it byte for byte.
 */
#ifndef QUANTD_LOADER_GGUF_INT_H
#define QUANTD_LOADER_GGUF_INT_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/gguf.h"

/* Bytes of one scalar value of type t; 0 for STRING, ARRAY and bad ids. */
size_t qd__gguf_vtype_size(uint32_t t);
/* Lower-case name ("u32", "string", ...) or "?" for a bad id. */
const char *qd__gguf_vtype_name(uint32_t t);
/* The encoded value of kv i exactly as stored in the file (for an array:
 * elem type, count and elements; for a string: length and bytes). The
 * pointer is into the reader's buffer. 0 or QD_EINVAL for a bad index. */
int qd__gguf_kv_raw(const qd_gguf_t *g, int64_t i, qd_gguf_vtype_t *type,
                    const void **val, size_t *n_bytes);

#endif
