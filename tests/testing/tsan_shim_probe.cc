// Proof that the TSan stage can fail (scripts/test-sanitizers.sh tsan): two
// threads increment a counter 100000 times each, under an absl::Mutex
// ("locked") or without one ("racy"). With the shim preloaded, TSan must stay
// silent on the first and report the second; without the shim it reports
// both (Debian's Abseil is uninstrumented).
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace {
absl::Mutex mu;
long counter = 0;
}  // namespace

int main(int argc, char** argv) {
  const bool racy = argc > 1 && std::strcmp(argv[1], "racy") == 0;
  auto work = [racy] {
    for (int i = 0; i < 100000; ++i) {
      if (racy) {
        ++counter;
      } else {
        absl::MutexLock lock(&mu);
        ++counter;
      }
    }
  };
  std::thread a(work);
  std::thread b(work);
  a.join();
  b.join();
  std::printf("%ld\n", counter);
  return 0;
}
