/*
 * test_mapguard.c — a registered file mapping survives truncation of its
 * file (reads past the new end see zeros and mark it damaged); an
 * unregistered one still dies of SIGBUS; the GGUF reader registers its
 * mappings.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "quantd/common.h"
#include "quantd/engine.h"
#include "quantd/gguf.h"
#include "quantd/mapguard.h"

static char path[512];

/* A file of n pages of 0xAB, mapped read-only and private. */
static const unsigned char *map_pages(int n, size_t *len)
{
    const char *tmp = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    snprintf(path, sizeof path, "%s/mapguard-%d", tmp, (int)getpid());
    long ps = sysconf(_SC_PAGESIZE);
    *len = (size_t)ps * (size_t)n;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0);
    unsigned char *buf = malloc(*len);
    memset(buf, 0xAB, *len);
    cr_assert_eq(write(fd, buf, *len), (ssize_t)*len);
    free(buf);
    void *m = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    cr_assert_neq(m, MAP_FAILED);
    return m;
}

static void cleanup(void) { unlink(path); }

Test(mapguard, truncated_mapping_reads_zeros, .fini = cleanup)
{
    size_t len;
    const volatile unsigned char *m = map_pages(4, &len);
    int slot = qd_mapguard_add((const void *)m, len);
    cr_assert_geq(slot, 0);
    cr_assert_eq(m[len - 1], 0xAB);
    cr_assert_eq(qd_mapguard_damaged(slot), 0);
    cr_assert_eq(truncate(path, (off_t)(len / 4)), 0);
    unsigned long f0 = qd_mapguard_faults();
    cr_assert_eq(m[0], 0xAB, "the page before the new end stays");
    cr_assert_eq(m[len - 1], 0, "a page past the end reads as zero");
    cr_assert_eq(qd_mapguard_damaged(slot), 1);
    cr_assert_eq(m[len / 2], 0);
    cr_assert_geq(qd_mapguard_faults(), f0 + 1);
    qd_mapguard_remove(slot);
    munmap((void *)m, len);
}

/* The fault of an unregistered mapping goes to the previous disposition:
 * the process dies (by SIGBUS; under ASan its handler reports and exits). */
Test(mapguard, unguarded_mapping_still_faults, .fini = cleanup)
{
    size_t len;
    const volatile unsigned char *g = map_pages(2, &len);
    int slot = qd_mapguard_add((const void *)g, len); /* handler installed */
    cr_assert_geq(slot, 0);
    qd_mapguard_remove(slot);
    cr_assert_eq(truncate(path, 0), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        (void)g[len - 1]; /* not registered any more */
        _exit(0);         /* not reached */
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert((WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS) ||
                  (WIFEXITED(st) && WEXITSTATUS(st) != 0),
              "the fault of an unguarded mapping was absorbed (status %d)",
              st);
    munmap((void *)g, len);
}

/* stories260K.gguf copied to `path` (QD_TMP/NAME-PID.gguf), or the test
 * skipped without it. */
static void copy_stories(const char *name)
{
    const char *shared = getenv("QD_SHARED");
    char src[512];
    snprintf(src, sizeof src, "%s/gguf/stories260K.gguf", shared ? shared : "");
    if (!shared || access(src, R_OK))
        cr_skip_test("stories260K.gguf not found: QD_SHARED");
    const char *tmp = getenv("QD_TMP") ? getenv("QD_TMP") : "/tmp";
    snprintf(path, sizeof path, "%s/%s-%d.gguf", tmp, name, (int)getpid());
    FILE *a = fopen(src, "rb"), *b = fopen(path, "wb");
    cr_assert(a && b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        cr_assert_eq(fwrite(buf, 1, n, b), n);
    fclose(a);
    cr_assert_eq(fclose(b), 0);
}

Test(mapguard, gguf_model_registers_its_mapping, .fini = cleanup)
{
    copy_stories("mapguard");
    qd_model_t *m = NULL;
    cr_assert_eq(qd_gguf_get_load(), QD_GGUF_MMAP); /* the library's default */
    cr_assert_eq(qd_model_load(path, &m), 0, "%s", qd_errmsg());
    cr_assert_eq(qd_model_damaged(m), 0);
    const qd_gguf_t *g = qd_model_gguf(m);
    const qd_gguf_tensor_t *t = qd_gguf_tensor(g, qd_gguf_n_tensors(g) - 1);
    cr_assert_eq(truncate(path, (off_t)qd_gguf_data_offset(g)), 0);
    volatile unsigned char last =
        ((const unsigned char *)t->data)[t->n_bytes - 1];
    (void)last;
    cr_assert_eq(qd_model_damaged(m), 1);
    qd_model_free(m);
    /* A truncated file is refused at load with a clear message. */
    cr_assert_neq(qd_model_load(path, &m), 0);
    cr_assert(strstr(qd_errmsg(), "past") || strstr(qd_errmsg(), "end"),
              "%s", qd_errmsg());
}

/* Read into memory (as the commands that run models do), a model does
 * not see its file change: truncated after the load, its weights read as
 * before and it is not damaged. */
Test(mapguard, read_model_survives_truncation, .fini = cleanup)
{
    copy_stories("mapguard-r");
    qd_gguf_set_load(QD_GGUF_READ);
    qd_model_t *m = NULL;
    cr_assert_eq(qd_model_load(path, &m), 0, "%s", qd_errmsg());
    qd_gguf_set_load(QD_GGUF_MMAP);
    const qd_gguf_t *g = qd_model_gguf(m);
    const qd_gguf_tensor_t *t = qd_gguf_tensor(g, qd_gguf_n_tensors(g) - 1);
    unsigned char before = ((const unsigned char *)t->data)[t->n_bytes - 1];
    cr_assert_eq(truncate(path, 0), 0);
    unsigned char after = ((const unsigned char *)t->data)[t->n_bytes - 1];
    cr_assert_eq(before, after);
    cr_assert_eq(qd_model_damaged(m), 0);
    qd_model_free(m);
    /* and the empty file is refused with a message */
    cr_assert_neq(qd_model_load(path, &m), 0);
}
