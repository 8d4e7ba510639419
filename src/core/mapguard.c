/*
 * mapguard.c — SIGBUS guard for file mappings (see quantd/mapguard.h).
 *
 * A slot is claimed by CAS on `state` (FREE -> CLAIMING), filled, then
 * published (CLAIMING -> LIVE, release order). The handler only looks at
 * LIVE slots. Removal flips LIVE -> FREE before the owner unmaps, so the
 * handler never remaps a range that may already belong to someone else.
 */
#include "quantd/mapguard.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "quantd/common.h"

enum { SLOT_FREE = 0, SLOT_CLAIMING, SLOT_LIVE };

typedef struct {
    _Atomic int state;
    _Atomic uintptr_t start;
    _Atomic size_t len;
    _Atomic int damaged;
} slot_t;

static slot_t slots[QD_MAPGUARD_SLOTS];
static _Atomic unsigned long n_faults;
static struct sigaction old_action;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static uintptr_t page_size;
static int install_err;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    uintptr_t a = (uintptr_t)si->si_addr;
    if (si->si_code > 0) { /* raised by a fault, not by kill/raise */
        for (int i = 0; i < QD_MAPGUARD_SLOTS; i++) {
            slot_t *s = &slots[i];
            if (atomic_load_explicit(&s->state, memory_order_acquire) !=
                SLOT_LIVE)
                continue;
            uintptr_t start = atomic_load(&s->start);
            size_t len = atomic_load(&s->len);
            if (a < start || a - start >= len)
                continue;
            uintptr_t from = a & ~(page_size - 1);
            int saved = errno;
            void *p = mmap((void *)from, start + len - from, PROT_READ,
                           MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            errno = saved;
            if (p == MAP_FAILED)
                break; /* cannot repair: fall through to the old action */
            atomic_store(&s->damaged, 1);
            atomic_fetch_add(&n_faults, 1);
            return;
        }
    }
    /* Not ours: the previous disposition handles it. Returning from a
     * fault re-executes the access, which faults again into it. */
    sigaction(sig, &old_action, NULL);
    if (si->si_code <= 0)
        raise(sig);
}

static void install(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    page_size = ps > 0 ? (uintptr_t)ps : 4096;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &old_action) != 0)
        install_err = 1;
}

int qd_mapguard_add(const void *addr, size_t len)
{
    pthread_once(&install_once, install);
    if (install_err) {
        qd_set_errmsg("mapguard: cannot install the SIGBUS handler");
        return QD_EINTERNAL;
    }
    for (int i = 0; i < QD_MAPGUARD_SLOTS; i++) {
        int expect = SLOT_FREE;
        if (!atomic_compare_exchange_strong(&slots[i].state, &expect,
                                            SLOT_CLAIMING))
            continue;
        atomic_store(&slots[i].start, (uintptr_t)addr);
        atomic_store(&slots[i].len, len);
        atomic_store(&slots[i].damaged, 0);
        atomic_store_explicit(&slots[i].state, SLOT_LIVE,
                              memory_order_release);
        return i;
    }
    qd_set_errmsg("mapguard: all %d slots in use", QD_MAPGUARD_SLOTS);
    return QD_EFULL;
}

void qd_mapguard_remove(int slot)
{
    if (slot < 0 || slot >= QD_MAPGUARD_SLOTS)
        return;
    atomic_store(&slots[slot].len, 0);
    atomic_store_explicit(&slots[slot].state, SLOT_FREE,
                          memory_order_release);
}

int qd_mapguard_damaged(int slot)
{
    if (slot < 0 || slot >= QD_MAPGUARD_SLOTS)
        return 0;
    return atomic_load(&slots[slot].damaged);
}

unsigned long qd_mapguard_faults(void) { return atomic_load(&n_faults); }
