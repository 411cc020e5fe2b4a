#pragma once

// The injector: one armed kind of fault, and a countdown over that kind's opportunities, shared by
// every thread. A scenario arms it with N; the Nth opportunity from arming throws an exception
// tagged with N (or, for the nothrow allocation forms, returns null), once. Armed with 0 it only
// counts, which is how a dry run learns how many opportunities a scenario makes.
//
// Test code is not under test: a thread marks its own code `Quiet` so that only the library (and
// the user code the library calls) meets faults. Threads the library creates start loud.

#include <atomic>
#include <cstdint>
#include <exception>
#include <new>
#include <stdexcept>
#include <string_view>
#include <system_error>

namespace fault {

enum class Kind : std::uint8_t {
  none,
  alloc,          // global operator new, every form
  thread,         // supervisor::detail::fault_point(thread_create); FaultExecutor::schedule
  key,            // the key's copy constructor, its Hash and its KeyEqual
  runnable_copy,  // the runnable's copy constructor
  runnable_move,  // the runnable's move constructor
  table,          // Table::get / iterate, Cursor::next / get / close
  hook,           // Options::on_error
};

std::string_view to_string(Kind kind);

/// Arms `kind`: its `n`th opportunity faults; `n == 0` only counts. Resets the count.
void arm(Kind kind, long n);
/// No fault from here on; the count stays readable.
void disarm();
/// Opportunities of the armed kind met since `arm`.
long count();
/// The tag of the fault that fired since `arm`, or 0.
long fired();
/// The tag of the injected fault the library recovered from by design, else 0: a `schedule`
/// that threw, whose handle `ExecutorRef::schedule` resumed on the calling thread instead.
long recovered();

/// An opportunity of `kind`: throws the tagged exception if it is the armed one's turn. Does
/// nothing on a `Quiet` thread. (The allocation form lives in inject.cpp.)
void point(Kind kind);
/// Whether the next allocation on this thread must fail (used by the replaced operator new).
long take_alloc() noexcept;

/// Writes where the last fault fired to stderr (raw frames: resolve them with addr2line), for
/// triage of a finding.
void dump_fired_trace() noexcept;

/// Installs the library's thread-creation hook (idempotent).
void install_thread_hook();

/// Tagged exceptions: each knows the N it was injected at.
struct InjectedError : std::runtime_error {
  InjectedError(Kind k, long n) : std::runtime_error("injected fault"), kind(k), tag(n) {}
  Kind kind;
  long tag;
};
struct InjectedBadAlloc : std::bad_alloc {
  explicit InjectedBadAlloc(long n) : tag(n) {}
  long tag;
};
struct InjectedSystemError : std::system_error {
  explicit InjectedSystemError(long n)
      : std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                          "injected thread fault"),
        tag(n) {}
  long tag;
};

/// The tag of an injected exception, else 0 (a null or foreign exception).
long tag_of(const std::exception_ptr& error) noexcept;
/// The tag of the exception being handled (call inside a catch block), else 0.
long current_tag() noexcept;

/// Marks this thread's own code as test code: no faults on it while the guard lives.
class Quiet {
 public:
  Quiet() noexcept;
  ~Quiet();
  Quiet(const Quiet&) = delete;
  Quiet& operator=(const Quiet&) = delete;

 private:
  bool previous_;
};

/// The reverse, around a call into the library from test code.
class Loud {
 public:
  Loud() noexcept;
  ~Loud();
  Loud(const Loud&) = delete;
  Loud& operator=(const Loud&) = delete;

 private:
  bool previous_;
};

}  // namespace fault
