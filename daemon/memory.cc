#include "daemon/memory.h"

#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace phivault::daemon {
namespace {

constexpr int kArenas = 2;
constexpr int kMmapThresholdBytes = 4 << 20;
constexpr int kTrimThresholdBytes = 8 << 20;

// jemalloc's control interface when jemalloc is the process's allocator (phivaultd links it,
// daemon/CMakeLists.txt), else null: looked up at run time so that the tests, the tools and the
// sanitizer builds, which keep glibc's malloc, share this code.
using MallctlFn = int (*)(const char*, void*, size_t*, void*, size_t);
MallctlFn Mallctl() {
  static const MallctlFn fn = reinterpret_cast<MallctlFn>(dlsym(RTLD_DEFAULT, "mallctl"));
  return fn;
}

template <typename T>
bool ReadMallctl(MallctlFn mallctl, const char* name, T& out) {
  size_t size = sizeof out;
  return mallctl(name, &out, &size, nullptr, 0) == 0 && size == sizeof out;
}

}  // namespace

const char* AllocatorName() { return Mallctl() != nullptr ? "jemalloc" : "glibc"; }

void TuneAllocator() {
  if (Mallctl() != nullptr) return;  // tuned by phivaultd's malloc_conf (daemon/main.cc)
  mallopt(M_ARENA_MAX, kArenas);
  mallopt(M_MMAP_THRESHOLD, kMmapThresholdBytes);
  mallopt(M_TRIM_THRESHOLD, kTrimThresholdBytes);
}

void ReleaseFreedMemory() {
  if (MallctlFn mallctl = Mallctl()) {
    // Every arena's dirty and muzzy pages back to the kernel now (4096 is MALLCTL_ARENAS_ALL).
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    return;
  }
  malloc_trim(0);
}

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
  if (MallctlFn mallctl = Mallctl()) {
    // jemalloc's statistics are refreshed by writing its epoch.
    uint64_t epoch = 1;
    mallctl("epoch", &epoch, nullptr, &epoch, sizeof epoch);
    size_t allocated = 0;
    size_t resident = 0;
    if (ReadMallctl(mallctl, "stats.allocated", allocated) &&
        ReadMallctl(mallctl, "stats.resident", resident)) {
      f.heap_in_use_bytes = allocated;
      f.heap_free_bytes = resident > allocated ? resident - allocated : 0;
    }
    return f;
  }
  const struct mallinfo2 mi = mallinfo2();
  f.heap_in_use_bytes = mi.uordblks + mi.hblkhd;
  f.heap_free_bytes = mi.fordblks;
  return f;
}

}  // namespace phivault::daemon
