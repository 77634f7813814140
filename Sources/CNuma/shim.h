#pragma once
#include <numa.h>
#include <numaif.h>
#include <sys/syscall.h>
#include <unistd.h>

/// memfd_create(name, MFD_CLOEXEC) through syscall(2): glibc declares memfd_create only under _GNU_SOURCE,
/// which Swift's Glibc module does not set. Returns the descriptor or -1 (errno set).
static inline int kv_memfd_create(const char *name) { return (int)syscall(SYS_memfd_create, name, 1u); }
