/*
 * unicode.c — UTF-8 coding, category lookup (binary search over the
 * generated range table) and the GPT-2 byte alphabet. See unicode.h.
 */
#include "engine/unicode.h"

uint32_t qd__utf8_decode(const char *s, size_t n, size_t *len)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    size_t need;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
        need = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        need = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        need = 4;
        cp = c & 0x07;
    } else {
        *len = 1;
        return 0xFFFD;
    }
    if (need > n) {
        *len = 1;
        return 0xFFFD;
    }
    for (size_t i = 1; i < need; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *len = 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (u[i] & 0x3F);
    }
    *len = need;
    return cp;
}

int qd__utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp > 0x10FFFF)
        cp = 0xFFFD;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = 0xC0 | (cp >> 6);
        o[1] = 0x80 | (cp & 0x3F);
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = 0xE0 | (cp >> 12);
        o[1] = 0x80 | ((cp >> 6) & 0x3F);
        o[2] = 0x80 | (cp & 0x3F);
        return 3;
    }
    o[0] = 0xF0 | (cp >> 18);
    o[1] = 0x80 | ((cp >> 12) & 0x3F);
    o[2] = 0x80 | ((cp >> 6) & 0x3F);
    o[3] = 0x80 | (cp & 0x3F);
    return 4;
}

/* Strict validity of one sequence at s: its length, 0 if invalid, or -1 if
 * it is a valid but truncated prefix. */
static int utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n)
            return -1;
        unsigned char b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80)
            return 0;
    }
    return need;
}

int qd__utf8_check(const char *s, size_t n)
{
    return utf8_seq((const unsigned char *)s, n);
}

size_t qd__utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        int k = utf8_seq(u + i, n - i);
        if (k <= 0)
            break;
        i += (size_t)k;
    }
    return i;
}

unsigned qd__ucat(uint32_t cp)
{
    if (cp >= 0x110000)
        return 0;
    size_t lo = 0, hi = qd__ucd_n_ranges; /* first[lo] <= cp < first[hi] */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (qd__ucd_ranges[mid].first <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return qd__ucd_ranges[lo].flags;
}

uint32_t qd__unicode_tolower(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    size_t lo = 0, hi = qd__ucd_n_lower;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (qd__ucd_lower[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < qd__ucd_n_lower && qd__ucd_lower[lo].cp == cp)
        return qd__ucd_lower[lo].to;
    return cp;
}

uint32_t qd__unicode_nfd_first(uint32_t cp)
{
    size_t lo = 0, hi = qd__ucd_n_nfd;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (qd__ucd_nfd[mid].last < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < qd__ucd_n_nfd && qd__ucd_nfd[lo].first <= cp &&
        cp <= qd__ucd_nfd[lo].last)
        return qd__ucd_nfd[lo].nfd;
    return cp;
}

/* Bytes that are printable Latin-1 map to themselves; the other 68 map to
 * U+0100.. in byte order (the GPT-2 bytes_to_unicode table). */
static int byte_is_direct(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
           (b >= 0xAE && b <= 0xFF);
}

uint32_t qd__byte_to_cpt(uint8_t b)
{
    if (byte_is_direct(b))
        return b;
    uint32_t n = 0;
    for (unsigned i = 0; i < b; i++)
        n += !byte_is_direct(i);
    return 0x100 + n;
}

int qd__cpt_to_byte(uint32_t cp)
{
    if (cp < 0x100)
        return byte_is_direct(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68)
        return -1;
    uint32_t n = cp - 0x100;
    for (unsigned i = 0; i < 256; i++)
        if (!byte_is_direct(i) && n-- == 0)
            return (int)i;
    return -1;
}
