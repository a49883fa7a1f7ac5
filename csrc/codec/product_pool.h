// Off-thread per-frame products.
//
// A requested frame's products (its luma copy, RGB, dense motion, coding cost, residual and the request's post
// hook, e.g. block scores) are pure functions of decoded pictures that no later decoding step changes. The
// decoding thread makes the sequential part (the pictures, the exported vectors, the choice of references) and
// hands the rest to this pool as a task, so that with num_threads >= 2 the products of frame i are computed while
// frame i + 1 decodes, or by a parallel worker that would otherwise wait. Which thread runs a task never changes
// what it computes (reader.cpp, docs/decoding.md).
//
// Tasks run smallest key first (the frame index: the consumer's next frame first). Any thread may run queued
// tasks (help), `wait` runs a task on the waiting thread when no one has started it, and a task's exception is
// rethrown by `wait`. Helper threads are optional (0: only callers run tasks).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ov2 {

class ProductPool {
 public:
  struct Task {
    int64_t key = 0;
    uint64_t seq = 0;
    std::function<void()> fn;
    int state = 0;  // 0 queued, 1 running, 2 done
    std::exception_ptr error;
  };
  using TaskPtr = std::shared_ptr<Task>;

  explicit ProductPool(int helpers);
  ~ProductPool();  // stops the helpers (after their current task); queued tasks are dropped
  ProductPool(const ProductPool&) = delete;
  ProductPool& operator=(const ProductPool&) = delete;

  TaskPtr submit(int64_t key, std::function<void()> fn);
  // Blocks until `t` is done (running it here when it is still queued); rethrows its exception. With
  // `help_others`, while another thread runs `t` this thread runs queued tasks (smallest key first) instead of
  // sleeping: for a caller with nothing else to do (the consumer of a sequential stream), not for a task.
  void wait(const TaskPtr& t, bool help_others = false);
  // Whether `t` has finished (without waiting).
  bool done(const TaskPtr& t);
  // Runs the queued task with the smallest key on this thread; false when none is queued.
  bool help();
  size_t queued();
  // Called after every submit, outside the pool's lock (owners wake threads that help).
  void set_on_submit(std::function<void()> f) { on_submit_ = std::move(f); }

 private:
  TaskPtr take_locked();  // the queued task with the smallest (key, seq), or null
  void run(const TaskPtr& t);
  void helper_loop();

  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::vector<TaskPtr> queue_;
  uint64_t seq_ = 0;
  bool stop_ = false;
  int helping_waiters_ = 0;  // threads in wait(t, help_others = true): submit wakes them
  std::function<void()> on_submit_;
  std::vector<std::thread> threads_;
};

}  // namespace ov2
