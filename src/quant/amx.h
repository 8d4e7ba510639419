/*
 * amx.h — what the files built with the AMX flags share (kernels_amx.c,
 * engine/attn_amx.c): the tile configuration and its loading.
 */
#ifndef QUANTD_QUANT_AMX_H
#define QUANTD_QUANT_AMX_H

#include <immintrin.h>
#include <stdint.h>

typedef struct {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tile_cfg_t;

/* GCC 12 does not see that LDTILECFG reads the configuration and drops
 * the stores to a local one; this makes them happen first. */
#define CFG_LOAD(c)                                    \
    do {                                               \
        __asm__ volatile("" : : "r"(&(c)) : "memory"); \
        _tile_loadconfig(&(c));                        \
    } while (0)

#endif
