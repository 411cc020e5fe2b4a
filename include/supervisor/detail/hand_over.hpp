#pragma once

/// \file
/// `hand_over_callers`: whether a coroutine process resumes a caller waiting for its start or
/// its end in its own stead (an `await_suspend` that returns the caller's handle, after which
/// another thread may already have destroyed the process's frame), or queues it on the executor.

namespace supervisor::detail {

// Clang before 19 may use the awaiting coroutine's frame as scratch space after an
// `await_suspend` that returns a handle (LLVM issues 65018 and 72006, fixed for good in 19): a
// use of freed memory once another thread has resumed and ended the coroutine. MSVC has been
// seen to write `await_suspend`'s result into the frame too. GCC keeps it off the frame. Apple's
// clang numbers its versions otherwise: it is treated as an old clang.
#if defined(__clang__)
#if __clang_major__ >= 19 && !defined(__apple_build_version__)
inline constexpr bool hand_over_callers = true;
#else
inline constexpr bool hand_over_callers = false;
#endif
#elif defined(__GNUC__)
inline constexpr bool hand_over_callers = true;
#else
inline constexpr bool hand_over_callers = false;
#endif

/// The same, dependent on the awaiting coroutine's promise type: in an awaiter's member
/// template, the branch not taken is then not compiled at all.
template <class Promise>
inline constexpr bool hand_over_callers_for = hand_over_callers;

/// A caller on the supervisor's executor resumes the process it launches or stops in its stead
/// (`run_here`), and the process resumes the caller when ready or done. Without optimization
/// (GCC at -O0, -Og and -O1) a handle returned from `await_suspend` is resumed by a nested call,
/// not a tail call: a caller that starts and stops processes in a loop would grow the stack by a
/// few frames each cycle, for good. So a thread resumes at most this many processes in a row so:
/// the next is scheduled, its caller suspends to the executor, and the nested calls all return.
inline constexpr unsigned max_run_here_in_a_row = 16;

/// How many processes this thread has resumed in a row in its callers' stead, since one of
/// them last suspended to the executor.
inline unsigned& run_here_in_a_row() noexcept {
  thread_local unsigned count = 0;
  return count;
}

}  // namespace supervisor::detail
