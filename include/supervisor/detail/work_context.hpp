#pragma once

/// \file
/// Which work of the library the calling thread is doing, so that a call that would wait for the
/// calling thread itself fails at once instead of waiting forever.

namespace supervisor::detail {

/// One link of a thread's chain of work: `owner` is what the thread works for (a process record,
/// or a supervisor whose `run` it is inside), `outer` the work that started it (the supervisor a
/// process belongs to; the process a nested supervisor runs in). A call that waits for `owner`
/// to finish would wait for itself if `owner` is anywhere on the calling thread's chain.
///
/// Links live on the stacks (or in the records) of the work they describe, and each piece of work
/// ends only after everything it started: a supervisor joins its processes' threads before `run`
/// returns, a `leaf` joins its body's thread. So every link is valid while a thread can reach it.
struct WorkContext {
  const void* owner = nullptr;
  const WorkContext* outer = nullptr;
};

/// The innermost work of the calling thread, or null.
inline const WorkContext*& current_work() noexcept {
  thread_local const WorkContext* current = nullptr;
  return current;
}

/// Whether the work that `link` describes is, directly or through nested work, for `owner`.
inline bool chain_works_for(const WorkContext* link, const void* owner) noexcept {
  for (; link != nullptr; link = link->outer) {
    if (link->owner == owner) {
      return true;
    }
  }
  return false;
}

/// Whether the calling thread works, directly or through nested work, for `owner`.
inline bool works_for(const void* owner) noexcept { return chain_works_for(current_work(), owner); }

/// Makes `link` the calling thread's innermost work until destroyed.
class WorkScope {
 public:
  explicit WorkScope(const WorkContext* link) noexcept : saved_(current_work()) {
    current_work() = link;
  }
  ~WorkScope() { current_work() = saved_; }
  WorkScope(const WorkScope&) = delete;
  WorkScope& operator=(const WorkScope&) = delete;

 private:
  const WorkContext* saved_;
};

}  // namespace supervisor::detail
