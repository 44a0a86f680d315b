// The daemon's heap: how the allocator is tuned at start, how freed memory is handed back to the
// kernel once the daemon is idle, and the figures GET /v1/status reports (docs/configuration.md,
// "Memory"). Keys never come from this heap: they live in sodium_malloc'd, locked pages
// (crypto/secret.h), which these calls do not touch.
#pragma once

#include <cstdint>

namespace phivault::daemon {

// "jemalloc" when jemalloc is the process's allocator (phivaultd, built with PHIVAULT_JEMALLOC: it
// is tuned by its malloc_conf in daemon/main.cc and returns freed pages to the kernel by time),
// else "glibc" (the tests, the tools, sanitizer builds).
const char* AllocatorName();

// With glibc: tunes malloc for a daemon with a thread per connection; call first thing in main(),
// before other threads start. Two arenas (each thread otherwise gets one of up to 8 x cores, and
// every arena keeps its own freed memory), and fixed thresholds: blocks of 4 MiB or more
// (memtable arena blocks, the largest request bodies) are mapped and unmapped on their own, and
// an arena's top is returned once 8 MiB of it is free. glibc's default raises both thresholds each
// time a large block is freed, after which such blocks stay in the heap for good. Not lower: with
// a 128 KiB threshold every filter block RocksDB read outside its cache (about 1 MiB at 1M
// records) was a fresh mapping, and 15 % of the daemon's CPU went to faulting it in (perf;
// docs/benchmarks.md, daemon memory). With jemalloc it does nothing.
void TuneAllocator();

// Returns freed heap pages of every arena to the kernel (jemalloc: purges every arena; glibc:
// malloc_trim(0), which takes each arena's lock in turn while it walks that arena's free chunks):
// call when idle.
void ReleaseFreedMemory();

struct MemoryFigures {
  uint64_t rss_bytes = 0;          // resident set (VmRSS)
  uint64_t heap_in_use_bytes = 0;  // allocated and not freed (arenas and mapped blocks)
  uint64_t heap_free_bytes = 0;    // freed but still held by the allocator's arenas
                                   // (jemalloc: resident heap pages minus what is allocated)
};
// Now; zeros where the system does not say.
MemoryFigures ReadMemoryFigures();

}  // namespace phivault::daemon
