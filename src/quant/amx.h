/*
 * amx.h — what the files built with the AMX flags share (kernels_amx.c,
 * engine/attn_amx.c): loading a tile configuration.
 */
#ifndef QUANTD_QUANT_AMX_H
#define QUANTD_QUANT_AMX_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* Palette 1 with tiles 0..7 of rows[i] rows of colsb[i] bytes (a tile
 * with 0 rows or bytes stays unconfigured). */
static inline void qd__amx_cfg_load(const int rows[8], const int colsb[8])
{
    struct {
        uint8_t palette;
        uint8_t start_row;
        uint8_t reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } __attribute__((packed, aligned(64))) c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) {
        if (rows[i] && colsb[i]) {
            c.rows[i] = (uint8_t)rows[i];
            c.colsb[i] = (uint16_t)colsb[i];
        }
    }
    /* GCC 12 does not see that LDTILECFG reads the configuration and
     * drops the stores to it; this makes them happen first. */
    __asm__ volatile("" : : "r"(&c) : "memory");
    _tile_loadconfig(&c);
}

#endif
