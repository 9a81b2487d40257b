#ifndef OPENELM_SERVER_WORK_QUEUE_H_
#define OPENELM_SERVER_WORK_QUEUE_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace openelm::server {

// A few threads of our own for the blocking part of a request (tokenizing
// and chat rendering take up to seconds for large prompts), so that gRPC's
// reaction threads only hand work over and stay free for cheap RPCs such as
// health checks.
//
// Bounded: Schedule() refuses a task when `max_queued` already wait, and the
// caller answers RESOURCE_EXHAUSTED instead of letting the queue grow.
//
// Thread-safe. The destructor stops taking tasks, runs the ones queued and
// joins the threads.
class WorkQueue {
 public:
  WorkQueue(int num_threads, int max_queued);
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues `task`; false when the queue is full or shutting down.
  bool Schedule(std::function<void()> task);

  int num_threads() const { return static_cast<int>(threads_.size()); }
  int max_queued() const { return max_queued_; }

 private:
  void Run();

  const int max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace openelm::server

#endif  // OPENELM_SERVER_WORK_QUEUE_H_
