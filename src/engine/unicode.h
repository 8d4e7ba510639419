/*
 * unicode.h — the little Unicode the tokenizers need: UTF-8 decoding with
 * the same error recovery as llama.cpp (a bad byte becomes U+FFFD and one
 * byte is skipped), general-category classes and White_Space (generated
 * from Python's unicodedata into unicode_data.c by scripts/gen_unicode.py),
 * simple lowercase and first-code-point-of-NFD maps (for WordPiece), and
 * the GPT-2 byte ⇄ code point table of byte-level BPE.
 */
#ifndef QUANTD_ENGINE_UNICODE_H
#define QUANTD_ENGINE_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Category class bits (one per code point) plus White_Space. Code points
 * past U+10FFFF have no bits at all. */
#define QD_UCAT_NUMBER 0x002     /* \p{N} */
#define QD_UCAT_LETTER 0x004     /* \p{L} */
#define QD_UCAT_SEPARATOR 0x008  /* \p{Z} */
#define QD_UCAT_MARK 0x010       /* \p{M} */
#define QD_UCAT_PUNCT 0x020      /* \p{P} */
#define QD_UCAT_SYMBOL 0x040     /* \p{S} */
#define QD_UCAT_CONTROL 0x080    /* \p{C}: Cc Cf Cs Co Cn */
#define QD_UCAT_WHITESPACE 0x100 /* White_Space property (regex \s) */

typedef struct {
    uint32_t first;
    uint16_t flags;
} qd__ucd_range_t;
typedef struct {
    uint32_t cp, to;
} qd__ucd_map_t;
typedef struct {
    uint32_t first, last, nfd;
} qd__ucd_nfd_t;

extern const qd__ucd_range_t qd__ucd_ranges[];
extern const size_t qd__ucd_n_ranges;
extern const qd__ucd_map_t qd__ucd_lower[];
extern const size_t qd__ucd_n_lower;
extern const qd__ucd_nfd_t qd__ucd_nfd[];
extern const size_t qd__ucd_n_nfd;

/* Length of the UTF-8 sequence announced by lead byte c (1 for ASCII and
 * for stray continuation bytes, 2..4 otherwise), from its high nibble. */
static inline size_t qd__utf8_len(unsigned char c)
{
    static const unsigned char lut[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                          1, 1, 1, 1, 2, 2, 3, 4};
    return lut[c >> 4];
}

/* Decode one code point from s[0..n) (n >= 1). Checks only that the
 * continuation bytes are present and well-formed; on failure returns
 * U+FFFD and *len = 1. */
uint32_t qd__utf8_decode(const char *s, size_t n, size_t *len);
/* Encode cp into out (4 bytes); code points past U+10FFFF are written as
 * U+FFFD. Returns the number of bytes. */
int qd__utf8_encode(uint32_t cp, char *out);
/* Number of bytes at the start of s[0..n) that form complete, valid UTF-8
 * (stops before the first invalid or truncated sequence). */
size_t qd__utf8_valid_prefix(const char *s, size_t n);

/* Strict check of the sequence at s[0..n) (n >= 1): its length if valid,
 * 0 if invalid, -1 if a valid sequence cut short by the end of s. */
int qd__utf8_check(const char *s, size_t n);

unsigned qd__ucat(uint32_t cp);
uint32_t qd__unicode_tolower(uint32_t cp);
/* First code point of the canonical decomposition (cp itself if none). */
uint32_t qd__unicode_nfd_first(uint32_t cp);

/* GPT-2 byte-level alphabet: byte → printable code point, and back
 * (-1 when cp is not one of the 256). */
uint32_t qd__byte_to_cpt(uint8_t b);
int qd__cpt_to_byte(uint32_t cp);

#endif
