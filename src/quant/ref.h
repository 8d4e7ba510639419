/*
 * ref.h — plain-C reference implementations of every tensor format
 * (quant/ref_*.c). These define the formats; SIMD kernels are tested
 * against them. Names follow <op>_<type>: to_float (dequantize),
 * from_float (reference quantization, bit-exact with ggml's _ref),
 * quantize (whole rows, optional importance weights, like
 * ggml_quantize_chunk) and vec_dot (weight row · activation row).
 */
#ifndef QUANTD_QUANT_REF_H
#define QUANTD_QUANT_REF_H

#include <stddef.h>
#include <stdint.h>

#include "quantd/quant.h"

#endif
