/*
 * mapguard.h — survive a mapped file shrinking under us.
 *
 * Model weights are read straight from a read-only file mapping. If the
 * file is truncated in place while mapped (an editor, `cp` over it, a
 * half-finished download tool), the pages past the new end are gone and
 * the next read of them raises SIGBUS, which would kill the daemon.
 *
 * Every file mapping that holds weights is registered here. A SIGBUS
 * handler (installed on the first registration) looks up the faulting
 * address: inside a registered mapping, it maps anonymous zero pages over
 * the rest of that mapping (mmap MAP_FIXED, a plain system call), marks
 * the mapping damaged and returns, so the faulting read sees zeros and
 * the forward pass finishes with garbage instead of a crash. Whoever owns
 * the mapping polls qd_mapguard_damaged() after using it (the scheduler,
 * after every step) and throws the results away. Any other SIGBUS gets
 * the previous disposition back and is re-raised.
 *
 * The registry is a fixed array of slots with atomic fields, so the
 * handler takes no lock and allocates nothing.
 */
#ifndef QUANTD_MAPGUARD_H
#define QUANTD_MAPGUARD_H

#include <stddef.h>

#define QD_MAPGUARD_SLOTS 64

/*
 * Register the read-only private file mapping [addr, addr + len) (addr
 * page-aligned, as mmap returns it). Returns a slot number >= 0, or
 * QD_EFULL when every slot is taken (the mapping then works unguarded), or
 * QD_EINTERNAL if the handler cannot be installed.
 */
int qd_mapguard_add(const void *addr, size_t len);
/* Forget a slot before unmapping its range. A negative slot is a no-op. */
void qd_mapguard_remove(int slot);
/* 1 once a read of the slot's mapping faulted (the file shrank), else 0. */
int qd_mapguard_damaged(int slot);
/* Number of SIGBUS faults absorbed since start (all slots). */
unsigned long qd_mapguard_faults(void);

#endif /* QUANTD_MAPGUARD_H */
