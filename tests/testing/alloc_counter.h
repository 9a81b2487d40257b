#ifndef OPENELM_TESTS_TESTING_ALLOC_COUNTER_H_
#define OPENELM_TESTS_TESTING_ALLOC_COUNTER_H_

#include <cstdint>

// Counts heap allocations (the global operator new, which the
// openelm_testing_alloc_counter object library replaces with a counting
// malloc/free pair) for tests of "the hot path allocates nothing". Link that
// library into a test executable of its own: the replacement applies to the
// whole program.
//
// OPENELM_ALLOC_TRACE=1 in the environment prints a backtrace of every
// counted allocation to stderr (resolve with addr2line -f -C -e <test>).
namespace openelm::testing {

struct AllocationCounts {
  int64_t total = 0;
  // Of `total`, those made while the classifier (if any) returned true.
  int64_t classified = 0;
};

// `inside` (may be null) sorts counted allocations, e.g. "inside a oneDNN
// primitive's execution"; it must not allocate.
void SetAllocationClassifier(bool (*inside)());

// Counts the allocations of `fn()` on any thread.
template <typename Fn>
AllocationCounts CountAllocations(Fn&& fn);

namespace alloc_internal {
void Start();
AllocationCounts Stop();
}  // namespace alloc_internal

template <typename Fn>
AllocationCounts CountAllocations(Fn&& fn) {
  alloc_internal::Start();
  fn();
  return alloc_internal::Stop();
}

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_TESTING_ALLOC_COUNTER_H_
