#pragma once

// The user types the supervisor runs with in this binary, each with its own injection points: a
// key whose copy, hash and equality may throw; a scripted runnable whose copy and move may throw;
// a table (a MapTable inside) whose every call may throw.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <supervisor/supervisor.hpp>
#include <utility>

#include "../support.hpp"
#include "inject.hpp"

namespace fault {

struct FaultKey {
  std::string name;

  FaultKey() = default;
  explicit FaultKey(std::string n) : name(std::move(n)) {}
  FaultKey(const FaultKey& other) : name(other.name) { point(Kind::key); }
  FaultKey(FaultKey&&) noexcept = default;
  FaultKey& operator=(const FaultKey&) = default;
  FaultKey& operator=(FaultKey&&) noexcept = default;
  ~FaultKey() = default;
};

struct FaultHash {
  std::size_t operator()(const FaultKey& key) const {
    point(Kind::key);
    return std::hash<std::string>{}(key.name);
  }
};

struct FaultEqual {
  bool operator()(const FaultKey& a, const FaultKey& b) const {
    point(Kind::key);
    return a.name == b.name;
  }
};

/// What a `Worker` does; its events let the scenario wait without sleeping.
struct Script {
  enum class Start { ready, exit_before_ready, throw_before_ready };
  enum class Stop { clean, ignore_graceful, throw_error };
  Start start = Start::ready;
  Stop stop = Stop::clean;
  std::stop_source early;  // requested: `ready` returns, the process exits on its own

  test::Event entered;
  test::Event readied;
  test::Event ready_returned;
  test::Event returned;
  std::atomic<int> live{0};
};

/// The runnable: a handle on a `Script`. Its own code runs quiet; the library's `ready` loud.
struct Worker {
  std::shared_ptr<Script> script;

  Worker() = default;
  explicit Worker(std::shared_ptr<Script> s) : script(std::move(s)) {}
  Worker(const Worker& other) : script(other.script) { point(Kind::runnable_copy); }
  // Not noexcept, on purpose: a runnable's move may throw, and the library must cope.
  Worker(Worker&& other) : script(std::move(other.script)) {  // NOLINT
    point(Kind::runnable_move);
  }
  Worker& operator=(const Worker&) = default;
  Worker& operator=(Worker&&) noexcept = default;
  ~Worker() = default;

  void run(std::stop_token force, supervisor::Ready& ready) const {
    Quiet quiet;
    if (!script) {
      return;  // A moved-from handle: the library ran what it should not have; nothing to do.
    }
    Script& s = *script;
    ++s.live;
    struct Leave {
      Script& s;
      ~Leave() {
        --s.live;
        s.returned.notify();
      }
    } leave{s};
    s.entered.notify();
    switch (s.start) {
      case Script::Start::ready:
        break;
      case Script::Start::exit_before_ready:
        return;
      case Script::Start::throw_before_ready:
        throw std::runtime_error("worker failed to start");
    }
    s.readied.notify();
    {
      Loud loud;
      ready(s.early.get_token());
    }
    s.ready_returned.notify();
    switch (s.stop) {
      case Script::Stop::clean:
        return;
      case Script::Stop::ignore_graceful: {
        std::mutex m;
        std::condition_variable_any cv;
        std::unique_lock lock(m);
        cv.wait(lock, force, [] { return false; });
        return;
      }
      case Script::Stop::throw_error:
        throw std::runtime_error("worker failed");
    }
  }
};

/// The coroutine runnable (`CoroutineRunnable`) that plays a `Script` as `Worker` does, on the
/// supervisor's executor. Its own code runs quiet, in scopes that end before each suspension:
/// `Quiet` is per thread, and the coroutine may go on on another one. `co_await ready` and the
/// wait for force are the library's, and loud; so is the frame's allocation (the library's
/// `Task`), which a fault may fail: `run` then throws before the process ever ran.
struct CoWorker {
  std::shared_ptr<Script> script;

  CoWorker() = default;
  explicit CoWorker(std::shared_ptr<Script> s) : script(std::move(s)) {}
  CoWorker(const CoWorker& other) : script(other.script) { point(Kind::runnable_copy); }
  // Not noexcept, on purpose, as `Worker`'s.
  CoWorker(CoWorker&& other)  // NOLINT
      : script(std::move(other.script)) {
    point(Kind::runnable_move);
  }
  CoWorker& operator=(const CoWorker&) = default;
  CoWorker& operator=(CoWorker&&) noexcept = default;
  ~CoWorker() = default;

  supervisor::Task<> run(std::stop_token force, supervisor::AsyncReady& ready) const {
    if (!script) {
      co_return;  // A moved-from handle, as for `Worker`.
    }
    Script& s = *script;
    struct Leave {
      Script& s;
      ~Leave() {
        Quiet quiet;
        --s.live;
        s.returned.notify();
      }
    };
    {
      Quiet quiet;
      ++s.live;
    }
    Leave leave{s};
    {
      Quiet quiet;
      s.entered.notify();
      switch (s.start) {
        case Script::Start::ready:
          break;
        case Script::Start::exit_before_ready:
          co_return;
        case Script::Start::throw_before_ready:
          throw std::runtime_error("worker failed to start");
      }
      s.readied.notify();
    }
    co_await ready(s.early.get_token());
    {
      Quiet quiet;
      s.ready_returned.notify();
      if (s.stop == Script::Stop::throw_error) {
        throw std::runtime_error("worker failed");
      }
    }
    if (s.stop == Script::Stop::ignore_graceful) {
      co_await supervisor::until_stopped(force, ready.executor());  // where it runs
    }
  }
};

/// A MapTable whose every call, and its cursor's, is an injection point of kind `table`; over
/// `Worker`s (`FaultTable`) or `CoWorker`s (`CoFaultTable`).
template <class W>
class BasicFaultTable {
 public:
  using Map = supervisor::MapTable<FaultKey, W, FaultHash, FaultEqual>;

  class Cursor {
   public:
    explicit Cursor(typename Map::Cursor inner) : inner_(std::move(inner)) {}
    bool next() {
      point(Kind::table);
      return inner_.next();
    }
    std::pair<FaultKey, W> get() {
      point(Kind::table);
      return inner_.get();
    }
    void close() {
      inner_.close();  // Release the rows even when the close then fails.
      point(Kind::table);
    }

   private:
    typename Map::Cursor inner_;
  };

  explicit BasicFaultTable(std::shared_ptr<Map> map) : map_(std::move(map)) {}

  std::optional<W> get(const FaultKey& key) {
    point(Kind::table);
    return map_->get(key);
  }
  Cursor iterate() {
    point(Kind::table);
    return Cursor(map_->iterate());
  }

 private:
  std::shared_ptr<Map> map_;
};

using FaultTable = BasicFaultTable<Worker>;
using CoFaultTable = BasicFaultTable<CoWorker>;

}  // namespace fault
