/*
 * fuzz_util.h — small helpers shared by the libFuzzer targets: a strict
 * UTF-8 validator (no overlongs, no surrogates, nothing past U+10FFFF) and
 * a way to hand bytes to APIs that only take a path (a memfd seen through
 * /proc/self/fd).
 */
#ifndef QUANTD_FUZZ_UTIL_H
#define QUANTD_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

static inline int fz_utf8_valid(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int k;
        unsigned cp, min;
        if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        for (int j = 1; j <= k; j++) {
            if (i + (size_t)j >= n || (s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += (size_t)k + 1;
    }
    return 1;
}

/* A memory file holding data[0..n), reachable by the path written to
 * path. Reuses fd across calls (pass -1 the first time). Returns the fd or
 * -1. */
static inline int fz_memfile(int fd, const void *data, size_t n, char *path,
                             size_t cap)
{
    if (fd < 0)
        fd = memfd_create("fuzz", 0);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, 0) || (n && pwrite(fd, data, n, 0) != (ssize_t)n))
        return -1;
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

#endif
