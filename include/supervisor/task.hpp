#pragma once

/// \file
/// `Task<T>`: the coroutine type of coroutine runnables (`run` returns `Task<>` or
/// `Task<std::error_code>`), also usable for any helper coroutine they `co_await`.
///
/// A task is lazy: calling the coroutine function allocates its frame and runs nothing. It runs
/// when awaited (`co_await std::move(task)`), on the thread of the awaiting coroutine, which it
/// resumes when it finishes (symmetric transfer: no recursion, no thread of its own). An
/// exception that leaves the body is kept and rethrown to the awaiter, intact. A task is awaited
/// once; awaiting it again (or an empty one) throws `std::logic_error`. A task that is
/// destroyed without having been awaited destroys its frame without running it. Move-only.
///
/// Frames come from the global `operator new` (a failure throws `std::bad_alloc` from the
/// coroutine's call), with one byte after each that says where it lives: the root frame of a
/// supervised process usually lives inside the block of the process's record instead, so a
/// coroutine process costs one allocation and one free (see detail/frame_room.hpp). Should a
/// process's `run` make another task of the same frame size first, and keep it, that task takes
/// the record's room instead: the record is then never freed, since the task may outlive it.

#include <coroutine>
#include <exception>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "supervisor/detail/frame_room.hpp"
#include "supervisor/detail/work_context.hpp"

namespace supervisor {

template <class T = void>
class Task;

namespace detail {

/// What the library attaches to a task that it runs as a process, both called on the thread
/// that resumes it with the context given beside them: `begin` before the body's first
/// instruction, `end` once the body has finished (the frame is still alive; `end` may destroy
/// it), returning a coroutine to resume next on this thread, or null. Both are required, and
/// neither may throw. A table of static storage, so that a frame holds one pointer to it (a
/// million frames at scale).
struct TaskHooks {
  void (*begin)(void* context) noexcept = nullptr;
  std::coroutine_handle<> (*end)(void* context) noexcept = nullptr;
};

class TaskPromiseBase {
 public:
  struct InitialAwaiter {
    TaskPromiseBase* promise;
    [[nodiscard]] bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> /*self*/) const noexcept {}
    void await_resume() const noexcept {
      if (promise->hooks_ != nullptr) {
        promise->hooks_->begin(promise->hook_context_);
      }
    }
  };
  struct FinalAwaiter {
    [[nodiscard]] bool await_ready() const noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) const noexcept {
      TaskPromiseBase& promise = self.promise();
      if (promise.hooks_ != nullptr) {
        // May destroy the frame: touch nothing after.
        const std::coroutine_handle<> next = promise.hooks_->end(promise.hook_context_);
        return next ? next : std::noop_coroutine();
      }
      return promise.continuation_ ? promise.continuation_ : std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };

  // A process's root frame may live in its record (frame_room.hpp).
  static void* operator new(std::size_t size) { return FrameOffer::allocate(size); }
  static void operator delete(void* frame, std::size_t size) noexcept {
    FrameOffer::deallocate(frame, size);
  }

  InitialAwaiter initial_suspend() noexcept { return InitialAwaiter{this}; }
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error_ = std::current_exception(); }

  void set_continuation(std::coroutine_handle<> continuation) noexcept {
    continuation_ = continuation;
  }
  /// A process's root task: its hooks (`hooks` outlives the task) called with `context`, and
  /// `owner`, the process's link in the chain of work (work_context.hpp), as the owner of every
  /// task it awaits.
  void set_hooks(const TaskHooks& hooks, void* context, const WorkContext* owner) noexcept {
    hooks_ = &hooks;
    hook_context_ = context;
    owner_ = owner;
  }
  // The promise keeps the table's address: a temporary would dangle.
  void set_hooks(const TaskHooks&& hooks, void* context, const WorkContext* owner) = delete;
  /// The work link of the process whose root task this task runs under (awaited by it, directly
  /// or through other tasks); null outside any. Lets a call refuse to wait for the process that
  /// makes it, or for the `run` that process is part of.
  [[nodiscard]] const WorkContext* owner() const noexcept { return owner_; }
  void inherit_owner(const TaskPromiseBase& awaiting) noexcept { owner_ = awaiting.owner_; }
  [[nodiscard]] const std::exception_ptr& error() const noexcept { return error_; }

 private:
  std::coroutine_handle<> continuation_;
  const TaskHooks* hooks_ = nullptr;
  void* hook_context_ = nullptr;
  const WorkContext* owner_ = nullptr;
  std::exception_ptr error_;
};

/// `co_await CurrentOwner{}` in a task: `TaskPromiseBase::owner()` of that task, without
/// suspending.
struct CurrentOwner {
  const WorkContext* owner = nullptr;
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> self) noexcept {
    if constexpr (std::is_base_of_v<TaskPromiseBase, Promise>) {
      owner = self.promise().owner();
    }
    return false;  // goes on at once
  }
  [[nodiscard]] const WorkContext* await_resume() const noexcept { return owner; }
};

template <class T>
class TaskPromise final : public TaskPromiseBase {
 public:
  Task<T> get_return_object() noexcept;
  template <class U = T>
  requires std::is_constructible_v<T, U&&>
  void return_value(U&& value) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    value_.emplace(std::forward<U>(value));
  }
  /// The result: rethrows the body's exception, if any.
  T take() {
    if (error()) {
      std::rethrow_exception(error());
    }
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <>
class TaskPromise<void> final : public TaskPromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() const {
    if (error()) {
      std::rethrow_exception(error());
    }
  }
};

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::TaskPromise<T>;
  using handle_type = std::coroutine_handle<promise_type>;

  Task() = default;
  explicit Task(handle_type handle) noexcept : handle_(handle) {}
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { reset(); }

  /// What `co_await std::move(task)` waits on. It takes the frame over from the task, and
  /// frees it once the result has been taken.
  class Awaiter {
   public:
    explicit Awaiter(handle_type handle) noexcept : handle_(handle) {}
    Awaiter(Awaiter&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    Awaiter(const Awaiter&) = delete;
    Awaiter& operator=(const Awaiter&) = delete;
    Awaiter& operator=(Awaiter&&) = delete;
    ~Awaiter() {
      if (handle_) {
        handle_.destroy();
      }
    }

    /// An empty task (awaited already, moved from, or default-made) does not suspend: its
    /// `co_await` throws `std::logic_error`.
    [[nodiscard]] bool await_ready() const noexcept { return !handle_; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> awaiting) const noexcept {
      if constexpr (std::is_base_of_v<detail::TaskPromiseBase, Promise>) {
        handle_.promise().inherit_owner(awaiting.promise());
      }
      handle_.promise().set_continuation(awaiting);
      return handle_;
    }
    T await_resume() const {
      if (!handle_) {
        throw std::logic_error("supervisor::Task: awaited twice, or empty");
      }
      return handle_.promise().take();
    }

   private:
    handle_type handle_;
  };

  /// Runs the task on the awaiting coroutine's thread; its result, or its exception rethrown.
  /// A task is awaited once: the `co_await` empties it.
  Awaiter operator co_await() && noexcept { return Awaiter(std::exchange(handle_, {})); }

  /// The library's: takes the frame over (the task is empty afterwards).
  handle_type release() noexcept { return std::exchange(handle_, {}); }

 private:
  void reset() noexcept {
    if (handle_) {
      handle_.destroy();
      handle_ = {};
    }
  }

  handle_type handle_;
};

namespace detail {
template <class T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}

template <class>
inline constexpr bool is_task = false;
template <class T>
inline constexpr bool is_task<Task<T>> = true;
}  // namespace detail

}  // namespace supervisor
