/*
 * util.h — helpers shared by the unit test files.
 */
#ifndef QUANTD_TESTS_UNIT_UTIL_H
#define QUANTD_TESTS_UNIT_UTIL_H

#include <stdint.h>

/* Load the model at path and decode toks[0..n) (n <= 64) as one batch, on
 * one thread with an f32 KV cache: the logits of every token (all) or of
 * the last one only, rows of *n_vocab floats (free() them). Fails the
 * test on any error. */
float *tu_logits(const char *path, const int32_t *toks, int n, int all, int32_t *n_vocab);

#endif
