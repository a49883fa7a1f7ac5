#include "codec/product_pool.h"

#include <algorithm>
#include <system_error>

namespace ov2 {

ProductPool::ProductPool(int helpers) {
  // A thread the system refuses (resource limits) is a helper fewer: the consumer and the decoding threads run
  // what is queued themselves, so the output is the same; a std::thread left joinable would abort the process.
  for (int i = 0; i < helpers; ++i) {
    try {
      threads_.emplace_back([this] { helper_loop(); });
    } catch (const std::system_error&) {
      break;
    }
  }
}

ProductPool::~ProductPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

ProductPool::TaskPtr ProductPool::submit(int64_t key, std::function<void()> fn) {
  auto t = std::make_shared<Task>();
  t->key = key;
  t->fn = std::move(fn);
  bool helping = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    t->seq = seq_++;
    queue_.push_back(t);
    helping = helping_waiters_ > 0;
  }
  work_cv_.notify_one();
  if (helping) done_cv_.notify_all();  // a waiter that helps may take it
  if (on_submit_) on_submit_();
  return t;
}

ProductPool::TaskPtr ProductPool::take_locked() {
  if (queue_.empty()) return nullptr;
  auto best = queue_.begin();  // the queue is short (a few frames): a linear scan
  for (auto it = queue_.begin() + 1; it != queue_.end(); ++it)
    if ((*it)->key < (*best)->key || ((*it)->key == (*best)->key && (*it)->seq < (*best)->seq)) best = it;
  TaskPtr t = std::move(*best);
  queue_.erase(best);
  t->state = 1;
  return t;
}

void ProductPool::run(const TaskPtr& t) {
  try {
    t->fn();
  } catch (...) {
    t->error = std::current_exception();
  }
  std::function<void()> drop;
  {
    std::lock_guard<std::mutex> lk(mu_);
    drop.swap(t->fn);  // the captured inputs (pictures) are released below, outside the lock
    t->state = 2;
  }
  done_cv_.notify_all();
}

void ProductPool::wait(const TaskPtr& t, bool help_others) {
  if (!t) return;
  std::unique_lock<std::mutex> lk(mu_);
  if (t->state == 0) {
    auto it = std::find(queue_.begin(), queue_.end(), t);
    if (it != queue_.end()) queue_.erase(it);
    t->state = 1;
    lk.unlock();
    run(t);
    lk.lock();
  }
  if (help_others) {
    ++helping_waiters_;
    while (t->state != 2) {
      done_cv_.wait(lk, [&] { return t->state == 2 || !queue_.empty(); });
      if (t->state == 2) break;
      TaskPtr other = take_locked();
      lk.unlock();
      run(other);
      lk.lock();
    }
    --helping_waiters_;
  }
  done_cv_.wait(lk, [&] { return t->state == 2; });
  if (t->error) {
    std::exception_ptr e = t->error;
    t->error = nullptr;  // rethrown once
    lk.unlock();
    std::rethrow_exception(e);
  }
}

bool ProductPool::done(const TaskPtr& t) {
  if (!t) return true;
  std::lock_guard<std::mutex> lk(mu_);
  return t->state == 2;
}

bool ProductPool::help() {
  TaskPtr t;
  {
    std::lock_guard<std::mutex> lk(mu_);
    t = take_locked();
  }
  if (!t) return false;
  run(t);
  return true;
}

size_t ProductPool::queued() {
  std::lock_guard<std::mutex> lk(mu_);
  return queue_.size();
}

void ProductPool::helper_loop() {
  for (;;) {
    TaskPtr t;
    {
      std::unique_lock<std::mutex> lk(mu_);
      work_cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      t = take_locked();
    }
    run(t);
  }
}

}  // namespace ov2
