// The countdown, and the replaced global allocation functions that consult it.

#include "inject.hpp"

#include <execinfo.h>

#include <cstdlib>
#include <supervisor/detail/fault_injection.hpp>

namespace fault {
namespace {

// Plain atomics and a constant-initialised thread_local: usable from operator new at any time,
// before main, on any thread, without allocating.
std::atomic<Kind> g_kind{Kind::none};
std::atomic<long> g_target{0};
std::atomic<long> g_count{0};
std::atomic<long> g_fired{0};
thread_local bool t_quiet = false;

// Where the last fault fired, kept without allocating, for `dump_fired_trace`.
void* g_fired_frames[48];
std::atomic<int> g_fired_depth{0};

void record_trace() noexcept {
  const bool was_quiet = t_quiet;
  t_quiet = true;  // backtrace may allocate the first time (it loads the unwinder)
  g_fired_depth.store(backtrace(g_fired_frames, 48));
  t_quiet = was_quiet;
}

/// Counts one opportunity of `kind`; returns its N if it must fault, else 0.
long take(Kind kind) noexcept {
  if (g_kind.load(std::memory_order_acquire) != kind || t_quiet) {
    return 0;
  }
  const long n = g_count.fetch_add(1, std::memory_order_acq_rel) + 1;
  if (n != g_target.load(std::memory_order_acquire)) {
    return 0;
  }
  g_fired.store(n, std::memory_order_release);
  record_trace();
  return n;
}

std::atomic<long> g_recovered{0};

void thread_hook(supervisor::detail::FaultPoint where) {
  if (where == supervisor::detail::FaultPoint::schedule_recovered) {
    g_recovered.store(current_tag(), std::memory_order_release);  // must not throw here
    return;
  }
  if (where == supervisor::detail::FaultPoint::run_waits_for_calls ||
      where == supervisor::detail::FaultPoint::failed_launch_recorded) {
    return;  // not a fault: a seam for the test that holds a call there
  }
  point(Kind::thread);
}

}  // namespace

std::string_view to_string(Kind kind) {
  switch (kind) {
    case Kind::none:
      return "none";
    case Kind::alloc:
      return "alloc";
    case Kind::thread:
      return "thread";
    case Kind::key:
      return "key";
    case Kind::runnable_copy:
      return "runnable_copy";
    case Kind::runnable_move:
      return "runnable_move";
    case Kind::table:
      return "table";
    case Kind::hook:
      return "hook";
  }
  return "?";
}

void arm(Kind kind, long n) {
  g_kind.store(Kind::none, std::memory_order_release);
  g_count.store(0, std::memory_order_release);
  g_fired.store(0, std::memory_order_release);
  g_recovered.store(0, std::memory_order_release);
  g_target.store(n, std::memory_order_release);
  g_kind.store(kind, std::memory_order_release);
}

void disarm() { g_kind.store(Kind::none, std::memory_order_release); }
long count() { return g_count.load(std::memory_order_acquire); }
long fired() { return g_fired.load(std::memory_order_acquire); }
long recovered() { return g_recovered.load(std::memory_order_acquire); }

void point(Kind kind) {
  if (const long n = take(kind)) {
    if (kind == Kind::thread) {
      throw InjectedSystemError(n);
    }
    throw InjectedError(kind, n);
  }
}

long take_alloc() noexcept { return take(Kind::alloc); }

void dump_fired_trace() noexcept { backtrace_symbols_fd(g_fired_frames, g_fired_depth.load(), 2); }

void install_thread_hook() { supervisor::detail::fault_hook.store(&thread_hook); }

long tag_of(const std::exception_ptr& error) noexcept {
  if (!error) {
    return 0;
  }
  try {
    std::rethrow_exception(error);
  } catch (...) {
    return current_tag();
  }
}

long current_tag() noexcept {
  try {
    throw;
  } catch (const InjectedError& e) {
    return e.tag;
  } catch (const InjectedBadAlloc& e) {
    return e.tag;
  } catch (const InjectedSystemError& e) {
    return e.tag;
  } catch (...) {
    return 0;
  }
}

Quiet::Quiet() noexcept : previous_(t_quiet) { t_quiet = true; }
Quiet::~Quiet() { t_quiet = previous_; }
Loud::Loud() noexcept : previous_(t_quiet) { t_quiet = false; }
Loud::~Loud() { t_quiet = previous_; }

}  // namespace fault

#if !defined(FAULT_NO_NEW_REPLACEMENT)

// ---- The replaced global allocation functions ---------------------------------------------------
//
// malloc and free underneath (aligned_alloc for the aligned forms), so that the sanitizers, which
// intercept malloc, still see every block. A fault throws (or returns null) before allocating.

namespace {

void* allocate(std::size_t size) {
  if (const long n = fault::take_alloc()) {
    throw fault::InjectedBadAlloc(n);
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) {
    return p;
  }
  throw std::bad_alloc();
}

void* allocate_aligned(std::size_t size, std::align_val_t align) {
  if (const long n = fault::take_alloc()) {
    throw fault::InjectedBadAlloc(n);
  }
  const auto a = static_cast<std::size_t>(align);
  // aligned_alloc wants a size that is a multiple of the alignment.
  const std::size_t rounded = (size + a - 1) / a * a;
  if (void* p = std::aligned_alloc(a, rounded == 0 ? a : rounded)) {
    return p;
  }
  throw std::bad_alloc();
}

}  // namespace

void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void* operator new(std::size_t size, std::align_val_t align) {
  return allocate_aligned(size, align);
}
void* operator new[](std::size_t size, std::align_val_t align) {
  return allocate_aligned(size, align);
}
void* operator new(std::size_t size, const std::nothrow_t& /*tag*/) noexcept {
  try {
    return allocate(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t& /*tag*/) noexcept {
  try {
    return allocate(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t size, std::align_val_t align,
                   const std::nothrow_t& /*tag*/) noexcept {
  try {
    return allocate_aligned(size, align);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, std::align_val_t align,
                     const std::nothrow_t& /*tag*/) noexcept {
  try {
    return allocate_aligned(size, align);
  } catch (...) {
    return nullptr;
  }
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t /*size*/) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t /*size*/) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t /*align*/) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t /*align*/) noexcept { std::free(p); }
void operator delete(void* p, std::size_t /*size*/, std::align_val_t /*align*/) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t /*size*/, std::align_val_t /*align*/) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t& /*tag*/) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t& /*tag*/) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t /*align*/, const std::nothrow_t& /*tag*/) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t /*align*/,
                       const std::nothrow_t& /*tag*/) noexcept {
  std::free(p);
}

#endif  // !FAULT_NO_NEW_REPLACEMENT
