/*
 * common.h — error codes, logging and small helpers shared by every module.
 *
 * Errors are values: functions return 0 on success or a negative QD_E* code.
 * The codes come from one X-macro table so that qd_strerror() and the enum
 * can never disagree (the pattern of libuv's UV_ERRNO_MAP).
 */
#ifndef QUANTD_COMMON_H
#define QUANTD_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define QD_ERRNO_MAP(XX)                                                       \
    XX(AGAIN, "not ready yet, try again")                                      \
    XX(NOMEM, "out of memory")                                                 \
    XX(INVAL, "invalid argument")                                              \
    XX(IO, "input/output error")                                               \
    XX(NOENT, "no such file or entry")                                         \
    XX(FORMAT, "malformed file")                                               \
    XX(UNSUPPORTED, "unsupported feature")                                     \
    XX(RANGE, "value out of range")                                            \
    XX(OVERFLOW, "arithmetic overflow")                                        \
    XX(FULL, "capacity exhausted")                                             \
    XX(CANCELED, "operation canceled")                                         \
    XX(BUSY, "resource busy")                                                  \
    XX(TOOBIG, "too large")                                                    \
    XX(AUTH, "authentication failed")                                          \
    XX(NOTFOUND, "not found")                                                  \
    XX(INTERNAL, "internal error")

enum {
    QD_OK = 0,
#define XX(name, msg) QD_E##name,
    QD__EFIRST = -1000,
    QD_ERRNO_MAP(XX)
#undef XX
    QD__ELAST
};

/* Human-readable text for a QD_E* code (static storage, never NULL). */
const char *qd_strerror(int err);
/* Symbolic name ("QD_EFORMAT") for a code (static storage, never NULL). */
const char *qd_errname(int err);

/* ---- logging ---------------------------------------------------------- */
typedef enum {
    QD_LOG_DEBUG = 0,
    QD_LOG_INFO,
    QD_LOG_WARN,
    QD_LOG_ERROR,
    QD_LOG_OFF
} qd_log_level_t;

void qd_log_set_level(qd_log_level_t level);
qd_log_level_t qd_log_get_level(void);
/* json != 0: one JSON object per line instead of plain text. */
void qd_log_set_json(int json);
void qd_log(qd_log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void qd_logv(qd_log_level_t level, const char *module, const char *fmt,
             va_list ap);

#define QD_DEBUG(mod, ...) qd_log(QD_LOG_DEBUG, mod, __VA_ARGS__)
#define QD_INFO(mod, ...) qd_log(QD_LOG_INFO, mod, __VA_ARGS__)
#define QD_WARN(mod, ...) qd_log(QD_LOG_WARN, mod, __VA_ARGS__)
#define QD_ERROR(mod, ...) qd_log(QD_LOG_ERROR, mod, __VA_ARGS__)

/* ---- error detail ----------------------------------------------------- */
/*
 * A short message describing the last failure in this thread, set by the
 * function that returned the error (e.g. "tensor 'blk.0.attn_q.weight':
 * data at offset 123 past end of file"). Callers print it next to
 * qd_strerror(). Thread-local; overwritten by the next failure.
 */
void qd_set_errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *qd_errmsg(void);
void qd_clear_errmsg(void);

/* ---- overflow-safe size arithmetic ------------------------------------ */
/* Return 0 and store a*b (a+b) in *out, or QD_EOVERFLOW. */
static inline int qd_mul_size(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out) ? QD_EOVERFLOW : 0;
}
static inline int qd_add_size(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out) ? QD_EOVERFLOW : 0;
}

/* ---- misc ------------------------------------------------------------- */
#define QD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define QD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QD_MAX(a, b) ((a) > (b) ? (a) : (b))
#define QD_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((size_t)(a)-1))

/* Monotonic time in nanoseconds. */
uint64_t qd_now_ns(void);

/* Allocation wrappers: every allocation of request handling goes through
 * these so that tests can inject failures (qd_fail_alloc_after). */
void *qd_malloc(size_t n);
void *qd_calloc(size_t n, size_t size);
void *qd_realloc(void *p, size_t n);
char *qd_strdup(const char *s);
char *qd_strndup(const char *s, size_t n);
void qd_free(void *p);
/* Cache-line (64 B) aligned; free with qd_free_aligned. */
void *qd_malloc_aligned(size_t n, size_t align);
/* 2 MiB-aligned, with a hint for transparent huge pages (a hint only:
 * without them it is ordinary memory); free with qd_free_aligned. For
 * large buffers read in pieces all over (fewer TLB misses). */
void *qd_malloc_huge(size_t n);
void qd_free_aligned(void *p);
/* Testing hook: after `n` more successful allocations, fail every one
 * (n < 0 disables). Thread-global. */
void qd_fail_alloc_after(long n);
/* Testing hook: the n-th allocation from now (n >= 1) fails, and only that
 * one (n <= 0 disables). Thread-global; counts every thread's calls. */
void qd_fail_alloc_nth(long n);
/* Allocation failures injected by the two hooks since start. */
unsigned long qd_alloc_failures_injected(void);

#endif /* QUANTD_COMMON_H */
