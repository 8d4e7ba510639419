/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors reader: open
 * arbitrary bytes with qd_st_open_mem and, when accepted, check what the
 * header promises: every tensor is found by its name, lies inside the
 * buffer, has n_bytes == numel * dtype size, and the tensors tile the data
 * section in offset order.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quantd/safetensors.h"

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qd_st_t *st = NULL;
    if (qd_st_open_mem(data, size, &st))
        return 0;
    const uint8_t *end = data + size;
    const uint8_t *next = NULL;
    for (int64_t i = 0; i < qd_st_n_tensors(st); i++) {
        const qd_st_tensor_t *t = qd_st_tensor(st, i);
        if (!t || qd_st_find(st, t->name) != t)
            __builtin_trap();
        size_t es = qd_st_dtype_size(t->dtype);
        if (!es || t->n_dims < 0 || t->n_dims > QD_ST_MAX_DIMS)
            __builtin_trap();
        int64_t numel = 1;
        for (int d = 0; d < t->n_dims; d++)
            numel *= t->shape[d];
        if (numel != t->numel || (size_t)numel * es != t->n_bytes)
            __builtin_trap();
        const uint8_t *p = t->data;
        if (p < data || p > end || t->n_bytes > (size_t)(end - p))
            __builtin_trap();
        if (next && p != next)
            __builtin_trap();
        next = p + t->n_bytes;
        if (t->n_bytes)
            sink += p[0] + p[t->n_bytes - 1];
        sink += strlen(t->name) + strlen(qd_st_dtype_name(t->dtype));
    }
    if (next && next != end)
        __builtin_trap(); /* trailing bytes must have been refused */
    const char *m = qd_st_metadata(st, "format");
    if (m)
        sink += strlen(m);
    qd_st_close(st);
    return 0;
}
