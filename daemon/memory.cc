#include "daemon/memory.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdio>

namespace phivault::daemon {
namespace {

constexpr int kArenas = 2;
constexpr int kMmapThresholdBytes = 4 << 20;
constexpr int kTrimThresholdBytes = 8 << 20;

}  // namespace

void TuneAllocator() {
  mallopt(M_ARENA_MAX, kArenas);
  mallopt(M_MMAP_THRESHOLD, kMmapThresholdBytes);
  mallopt(M_TRIM_THRESHOLD, kTrimThresholdBytes);
}

void ReleaseFreedMemory() { malloc_trim(0); }

MemoryFigures ReadMemoryFigures() {
  MemoryFigures f;
  if (std::FILE* statm = std::fopen("/proc/self/statm", "r"); statm != nullptr) {
    unsigned long long size = 0;
    unsigned long long resident = 0;
    if (std::fscanf(statm, "%llu %llu", &size, &resident) == 2) {
      f.rss_bytes = resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    }
    std::fclose(statm);
  }
  const struct mallinfo2 mi = mallinfo2();
  f.heap_in_use_bytes = mi.uordblks + mi.hblkhd;
  f.heap_free_bytes = mi.fordblks;
  return f;
}

}  // namespace phivault::daemon
