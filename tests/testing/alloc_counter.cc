#include "tests/testing/alloc_counter.h"

#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <new>

// The counting global allocator: malloc/free underneath, which GCC cannot see
// through.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace openelm::testing {
namespace {
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_total{0};
std::atomic<int64_t> g_classified{0};
std::atomic<bool (*)()> g_classifier{nullptr};
const bool g_trace = std::getenv("OPENELM_ALLOC_TRACE") != nullptr;

void Count() {
  g_total.fetch_add(1, std::memory_order_relaxed);
  bool (*inside)() = g_classifier.load(std::memory_order_relaxed);
  if (inside != nullptr && inside()) g_classified.fetch_add(1, std::memory_order_relaxed);
  if (g_trace) {
    g_counting = false;  // backtrace() may allocate on its first call
    void* frames[12];
    const int n = backtrace(frames, 12);
    static constexpr char kRule[] = "---- counted allocation\n";
    (void)!write(2, kRule, sizeof(kRule) - 1);
    backtrace_symbols_fd(frames, n, 2);
    g_counting = true;
  }
}
}  // namespace

void SetAllocationClassifier(bool (*inside)()) { g_classifier = inside; }

namespace alloc_internal {
void Start() {
  g_total = 0;
  g_classified = 0;
  g_counting = true;
}
AllocationCounts Stop() {
  g_counting = false;
  return {g_total.load(), g_classified.load()};
}
}  // namespace alloc_internal

}  // namespace openelm::testing

void* operator new(size_t size) {
  if (openelm::testing::g_counting.load(std::memory_order_relaxed))
    openelm::testing::Count();
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) std::abort();
  return p;
}
void* operator new[](size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
