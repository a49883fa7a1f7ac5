/* Test shim (LD_PRELOAD): pthread_create fails with EAGAIN once a budget set by ov2_test_thread_budget(n) is spent,
 * as it does when the system refuses a thread (RLIMIT_NPROC, cgroup pids.max, no memory for the stack). -1: no limit.
 * Used by tests/codec/test_thread_refusal.py; a real limit (RLIMIT_AS) also makes glibc abort in threads that did
 * start (no memory for their thread-local data), which no library can prevent, so the tests inject the refusal. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

static atomic_int budget = -1;

void ov2_test_thread_budget(int n) { atomic_store(&budget, n); }

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
  static create_fn real;
  if (!real) real = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
  int b = atomic_load(&budget);
  while (b >= 0) {
    if (b == 0) return EAGAIN;
    if (atomic_compare_exchange_weak(&budget, &b, b - 1)) break;
  }
  return real(thread, attr, fn, arg);
}
