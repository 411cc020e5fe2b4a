// Scenario 6, coroutine processes (`CoroutineRunnable`) over `--co-processes` keys (10,000 by
// default; 1,000,000 for the figures): restore, resident memory per idle process, a
// restart pass over the running entries, shutdown, and start+stop cycles from an outside thread
// and from a coroutine on the pool.
// Both sides run on a `ThreadPool` of the same size. The floor is the least a supervisor of
// coroutines can do: a record per key in a sharded map (a state word, the parked handle), the
// coroutine frame, and its completion as the watchdog; no history, no events, no table.

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "harness.hpp"

namespace bench {
namespace {

/// The library's side: a coroutine runnable that is ready at once and idles until stopped. It
/// never looks at force, so its `run` takes no force token (and its process makes none).
struct Session {
  std::uint32_t tag = 0;
  supervisor::Task<> run(supervisor::AsyncReady& ready) const { co_await ready; }
};
using CoTable = supervisor::MapTable<Key, Session>;
using CoSup = supervisor::Supervisor<Key, Session>;

// ---- the floor -------------------------------------------------------------------------------

/// The floor's one-shot wake-up of a caller that is a coroutine: null (armed), the fired mark,
/// or the parked caller, which the one who fires it schedules.
class Signal {
 public:
  explicit Signal(supervisor::ThreadPool& pool) : pool_(&pool) {}
  void fire() noexcept {
    void* const parked = word_.exchange(fired());
    if (parked != nullptr && parked != fired()) {
      pool_->schedule(std::coroutine_handle<>::from_address(parked));
    }
  }
  [[nodiscard]] bool await_ready() const noexcept { return word_.load() == fired(); }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    void* expected = nullptr;
    return word_.compare_exchange_strong(expected, h.address());
  }
  void await_resume() const noexcept {}

 private:
  static void* fired() noexcept {
    static char mark;
    return &mark;
  }
  supervisor::ThreadPool* pool_;
  std::atomic<void*> word_{nullptr};
};

class Floor {
 public:
  struct Record;
  struct Body {
    struct promise_type {
      Record* record = nullptr;
      Body get_return_object() noexcept {
        return Body{std::coroutine_handle<promise_type>::from_promise(*this)};
      }
      std::suspend_always initial_suspend() noexcept { return {}; }
      struct Done {
        [[nodiscard]] bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<promise_type> h) const noexcept {
          Record* record = h.promise().record;
          h.destroy();
          record->floor->finished(record);  // the watchdog: erase, count down
        }
        void await_resume() const noexcept {}
      };
      Done final_suspend() noexcept { return {}; }
      void return_void() noexcept {}
      void unhandled_exception() noexcept {}
    };
    std::coroutine_handle<promise_type> handle;
  };
  struct Record {
    Floor* floor = nullptr;
    Key key = 0;
    std::atomic<std::uintptr_t> parked{0};  // 0 armed, 1 stopped, else the parked handle
    Signal* on_ready = nullptr;             // a caller that is a coroutine, waiting
    Signal* on_done = nullptr;
  };
  struct Park {
    Record* record;
    [[nodiscard]] bool await_ready() const noexcept {
      record->floor->ready_one();
      if (record->on_ready != nullptr) {
        record->on_ready->fire();
      }
      return false;
    }
    bool await_suspend(std::coroutine_handle<> h) const noexcept {
      std::uintptr_t expected = 0;
      return record->parked.compare_exchange_strong(expected,
                                                    reinterpret_cast<std::uintptr_t>(h.address()));
    }
    void await_resume() const noexcept {}
  };

  explicit Floor(supervisor::ThreadPool& pool) : pool_(pool) {}

  void start(Key key, Signal* on_ready = nullptr, Signal* on_done = nullptr) {
    auto* record = new Record{this, key};
    record->on_ready = on_ready;
    record->on_done = on_done;
    {
      Shard& shard = shard_of(key);
      const std::lock_guard lock(shard.mutex);
      shard.records.emplace(key, record);
    }
    Body body = idle(record);
    body.handle.promise().record = record;
    live_.fetch_add(1);
    pool_.schedule(body.handle);
  }
  /// Whether `key` has a record: a restart pass's probe of a row.
  bool has(Key key) {
    Shard& shard = shard_of(key);
    const std::lock_guard lock(shard.mutex);
    return shard.records.find(key) != shard.records.end();
  }
  void stop(Key key) {
    Record* record = nullptr;
    {
      Shard& shard = shard_of(key);
      const std::lock_guard lock(shard.mutex);
      record = shard.records.at(key);
    }
    const std::uintptr_t parked = record->parked.exchange(1);
    if (parked > 1) {
      pool_.schedule(std::coroutine_handle<>::from_address(reinterpret_cast<void*>(parked)));
    }
  }
  void stop_all() {
    for (Shard& shard : shards_) {
      std::vector<Key> keys;
      {
        const std::lock_guard lock(shard.mutex);
        for (const auto& [key, record] : shard.records) {
          keys.push_back(key);
        }
      }
      for (const Key key : keys) {
        stop(key);
      }
    }
  }
  // The waits name what they wait for, so that only the step that reaches it wakes the waiter
  // (a wake-up per process would cost the floor a futex call per process, as the library's
  // pass tracker does not).
  // Each spins first for as long as the library's `start` and `stop` do
  // (`detail::coroutine_handoff_spin`): the other side is a running pool thread.
  void wait_ready(std::size_t n) {
    ready_target_.store(n);
    supervisor::detail::spin_until([&] { return ready_.load() >= n; },
                                   supervisor::detail::coroutine_handoff_spin);
    for (std::size_t seen = ready_.load(); seen < n; seen = ready_.load()) {
      ready_.wait(seen);
    }
  }
  void wait_live(std::size_t target) {
    live_target_.store(target);
    supervisor::detail::spin_until([&] { return live_.load() == target; },
                                   supervisor::detail::coroutine_handoff_spin);
    for (std::size_t seen = live_.load(); seen != target; seen = live_.load()) {
      live_.wait(seen);
    }
  }

 private:
  struct Shard {
    std::mutex mutex;
    std::unordered_map<Key, Record*> records;
  };
  static Body idle(Record* record) { co_await Park{record}; }
  Shard& shard_of(Key key) { return shards_[key % shards_.size()]; }
  void ready_one() noexcept {
    if (ready_.fetch_add(1) + 1 >= ready_target_.load()) {
      ready_.notify_all();
    }
  }
  void finished(Record* record) noexcept {
    {
      Shard& shard = shard_of(record->key);
      const std::lock_guard lock(shard.mutex);
      shard.records.erase(record->key);
    }
    Signal* const on_done = record->on_done;
    delete record;
    if (live_.fetch_sub(1) - 1 == live_target_.load()) {
      live_.notify_all();
    }
    if (on_done != nullptr) {
      on_done->fire();
    }
  }

  supervisor::ThreadPool& pool_;
  std::vector<Shard> shards_ = std::vector<Shard>(64);
  std::atomic<std::size_t> ready_{0};
  std::atomic<std::size_t> live_{0};
  std::atomic<std::size_t> ready_target_{0};  // each wait's target: see `wait_ready`
  std::atomic<std::size_t> live_target_{0};
};

struct Sample {
  double restore_us = 0;
  double rss_bytes = 0;
  double pass_us = 0;
  double shutdown_us = 0;
  double cycle_us = 0;
  double pool_cycle_us = 0;
  double cycle_one_key_us = 0;       // Go's scenario: the same key each cycle
  double pool_cycle_one_key_us = 0;  // the same, from a coroutine on the pool
};

/// Runs `driver` on the pool, as a coroutine nobody awaits, and waits here until it has finished.
void drive_on(supervisor::ThreadPool& pool, supervisor::Task<> driver) {
  // Shared: the pool's thread may still be inside `notify_all` when the wait here returns.
  const auto finished = std::make_shared<std::atomic<bool>>(false);
  std::exception_ptr failure;
  supervisor::spawn(pool, std::move(driver), [&failure, finished](std::exception_ptr e) {
    failure = std::move(e);
    finished->store(true);
    finished->notify_all();
  });
  finished->wait(false);
  if (failure) {
    std::rethrow_exception(failure);
  }
}

/// `count` start+stop cycles from a coroutine on the pool, with the awaitable forms, on the keys
/// `first + step * i` (`step` 0: one key over and over).
supervisor::Task<> library_pool_cycles(CoSup& sup, std::uint64_t first, std::uint64_t step,
                                       int count) {
  for (int i = 0; i < count; ++i) {
    const Key key = key_at(first + step * static_cast<std::uint64_t>(i));
    if (const std::error_code ec = co_await sup.async_start(key)) {
      throw BenchError("coroutine async_start: " + ec.message());
    }
    if (const std::error_code ec = co_await sup.async_stop(key)) {
      throw BenchError("coroutine async_stop: " + ec.message());
    }
  }
}

/// The same cycles on the floor: start, await ready, stop, await done.
supervisor::Task<> floor_pool_cycles(Floor& floor, supervisor::ThreadPool& pool,
                                     std::uint64_t first, std::uint64_t step, int count) {
  for (int i = 0; i < count; ++i) {
    Signal ready(pool);
    Signal done(pool);
    const Key key = key_at(first + step * static_cast<std::uint64_t>(i));
    floor.start(key, &ready, &done);
    co_await ready;
    floor.stop(key);
    co_await done;
  }
}

Sample library_side(std::size_t n, int cycles, supervisor::ThreadPool& pool, const Tuning& tuning) {
  auto table = std::make_shared<CoTable>();
  for (std::size_t i = 0; i < n; ++i) {
    table->insert_or_assign(key_at(i), Session{});
  }
  auto clock = std::make_shared<supervisor::ManualClock>();
  ErrorSink errors;
  auto options = bench_options(tuning, clock, errors);
  options.executor = pool;
  CoSup sup(table, options);
  Sample sample;
  trim_heap();
  const long rss_before = rss_kib();
  Clock::time_point callback_returned;
  const auto run_called = Clock::now();
  sup.run([&] {
    sample.restore_us = seconds_since(run_called) * 1e6 / static_cast<double>(n);
    sample.rss_bytes = static_cast<double>(rss_kib() - rss_before) * 1024 / static_cast<double>(n);
    errors.check("coroutine restore");
    if (const auto running = sup.keys().size(); running != n) {
      throw BenchError("coroutine restore: " + std::to_string(running) + " of " +
                       std::to_string(n) + " running");
    }
    const WaitBound bound(std::chrono::seconds(600));
    if (!clock->wait_for_sleepers(1, bound.token())) {
      throw BenchError("coroutine pass: the restart loop never waited on the clock");
    }
    const auto arms = clock->arms();
    const auto t0 = Clock::now();
    clock->advance(options.restart_interval);
    if (!clock->wait_for_arms(arms + 1, bound.token())) {
      throw BenchError("coroutine pass: the restart loop never re-armed");
    }
    sample.pass_us = seconds_since(t0) * 1e6 / static_cast<double>(n);
    // Start+stop cycles on keys of their own, from this (outside) thread.
    for (int i = 0; i < cycles; ++i) {
      table->insert_or_assign(key_at(n + static_cast<std::uint64_t>(i)), Session{});
    }
    const auto c0 = Clock::now();
    for (int i = 0; i < cycles; ++i) {
      const Key key = key_at(n + static_cast<std::uint64_t>(i));
      (void)sup.start(key);
      sup.stop(key);
    }
    sample.cycle_us = seconds_since(c0) * 1e6 / cycles;
    // The same from a coroutine on the pool, with the awaitable forms.
    const auto base = n + static_cast<std::uint64_t>(cycles);
    for (int i = 0; i < cycles; ++i) {
      table->insert_or_assign(key_at(base + static_cast<std::uint64_t>(i)), Session{});
    }
    const auto p0 = Clock::now();
    drive_on(pool, library_pool_cycles(sup, base, 1, cycles));
    sample.pool_cycle_us = seconds_since(p0) * 1e6 / cycles;
    // Go's scenario: one key started and stopped over and over (its row, its map bucket and
    // the allocator's blocks stay warm), with the n processes still live.
    const std::uint64_t one = base + static_cast<std::uint64_t>(cycles);
    table->insert_or_assign(key_at(one), Session{});
    const auto o0 = Clock::now();
    for (int i = 0; i < cycles; ++i) {
      (void)sup.start(key_at(one));
      sup.stop(key_at(one));
    }
    sample.cycle_one_key_us = seconds_since(o0) * 1e6 / cycles;
    const auto q0 = Clock::now();
    drive_on(pool, library_pool_cycles(sup, one, 0, cycles));
    sample.pool_cycle_one_key_us = seconds_since(q0) * 1e6 / cycles;
    callback_returned = Clock::now();
  });
  sample.shutdown_us = seconds_since(callback_returned) * 1e6 / static_cast<double>(n);
  errors.check("coroutine shutdown");
  if (const auto left = sup.keys().size(); left != 0) {
    throw BenchError("coroutine shutdown: " + std::to_string(left) + " processes left");
  }
  return sample;
}

Sample floor_side(std::size_t n, int cycles, supervisor::ThreadPool& pool) {
  Sample sample;
  // The same table as the library's, for the pass, made before the memory is measured.
  auto table = std::make_shared<CoTable>();
  for (std::size_t i = 0; i < n; ++i) {
    table->insert_or_assign(key_at(i), Session{});
  }
  trim_heap();
  const long rss_before = rss_kib();
  Floor floor(pool);
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    floor.start(key_at(i));
  }
  floor.wait_ready(n);
  sample.restore_us = seconds_since(t0) * 1e6 / static_cast<double>(n);
  sample.rss_bytes = static_cast<double>(rss_kib() - rss_before) * 1024 / static_cast<double>(n);
  // A pass: read the table as the library does (a snapshot, then row by row) and probe each key.
  const auto r0 = Clock::now();
  std::size_t running = 0;
  auto cursor = table->iterate();
  while (cursor.next()) {
    running += floor.has(cursor.get().first) ? 1 : 0;
  }
  cursor.close();
  sample.pass_us = seconds_since(r0) * 1e6 / static_cast<double>(n);
  if (running != n) {
    throw BenchError("coroutine floor pass: " + std::to_string(running) + " of " +
                     std::to_string(n) + " running");
  }
  // Each cycle waits for its stop to finish, as the library's `stop` does (and as the pool
  // cycle below does): a floor that let the stop run on while the next start began would
  // overlap the two and measure less than the row says.
  const auto c0 = Clock::now();
  for (int i = 0; i < cycles; ++i) {
    const Key key = key_at(n + static_cast<std::uint64_t>(i));
    floor.start(key);
    floor.wait_ready(n + static_cast<std::size_t>(i) + 1);
    floor.stop(key);
    floor.wait_live(n);
  }
  sample.cycle_us = seconds_since(c0) * 1e6 / cycles;
  const auto base = n + static_cast<std::uint64_t>(cycles);
  const auto p0 = Clock::now();
  drive_on(pool, floor_pool_cycles(floor, pool, base, 1, cycles));
  sample.pool_cycle_us = seconds_since(p0) * 1e6 / cycles;
  const std::uint64_t one = base + static_cast<std::uint64_t>(cycles);
  const auto o0 = Clock::now();
  for (int i = 0; i < cycles; ++i) {
    floor.start(key_at(one));
    floor.wait_ready(n + static_cast<std::size_t>(2 * cycles + i) + 1);
    floor.stop(key_at(one));
    floor.wait_live(n);
  }
  sample.cycle_one_key_us = seconds_since(o0) * 1e6 / cycles;
  const auto q0 = Clock::now();
  drive_on(pool, floor_pool_cycles(floor, pool, one, 0, cycles));
  sample.pool_cycle_one_key_us = seconds_since(q0) * 1e6 / cycles;
  const auto d0 = Clock::now();
  floor.stop_all();
  floor.wait_live(0);
  sample.shutdown_us = seconds_since(d0) * 1e6 / static_cast<double>(n);
  return sample;
}

}  // namespace

std::vector<Row> scenario_coroutines(const Config& config) {
  const std::size_t n = config.co_processes;
  const int cycles = config.quick ? 2'000 : 20'000;
  supervisor::ThreadPool pool(2);
  Paired restore;
  Paired memory;
  Paired pass;
  Paired shutdown;
  Paired cycle;
  Paired pool_cycle;
  Paired cycle_one_key;
  Paired pool_cycle_one_key;
  for (int rep = 0; rep < config.reps; ++rep) {
    Sample lib;
    Sample fl;
    if (floor_first(rep)) {
      fl = floor_side(n, cycles, pool);
      lib = library_side(n, cycles, pool, config.tuning);
    } else {
      lib = library_side(n, cycles, pool, config.tuning);
      fl = floor_side(n, cycles, pool);
    }
    restore.add(lib.restore_us, fl.restore_us);
    memory.add(lib.rss_bytes, fl.rss_bytes);
    pass.add(lib.pass_us, fl.pass_us);
    shutdown.add(lib.shutdown_us, fl.shutdown_us);
    cycle.add(lib.cycle_us, fl.cycle_us);
    pool_cycle.add(lib.pool_cycle_us, fl.pool_cycle_us);
    cycle_one_key.add(lib.cycle_one_key_us, fl.cycle_one_key_us);
    pool_cycle_one_key.add(lib.pool_cycle_one_key_us, fl.pool_cycle_one_key_us);
  }
  const std::string count = std::to_string(n);
  const std::string floor_note = count +
                                 " coroutines on the same 2-thread pool, a record each in "
                                 "a sharded map, completion as watchdog";
  return {
      paired_row("co_restore", "coroutines: restore (run -> callback)", "us/entry", restore,
                 floor_note, {TargetKind::median_at_most, 2.5}, GoReference{9, 11}),
      paired_row("co_memory", "coroutines: resident memory, idle", "bytes/process", memory,
                 floor_note, {TargetKind::median_at_most, 1024}, GoReference{6246, 6246}),
      paired_row("co_restart_pass", "coroutines: restart pass, end to end", "us/entry", pass,
                 "the same table read the same way, each key probed in the floor's sharded map",
                 {TargetKind::median_at_most, 0.2}, GoReference{0.5, 1.0}),
      paired_row("co_shutdown", "coroutines: shutdown (callback -> return)", "us/process", shutdown,
                 floor_note, {TargetKind::median_at_most, 1.5}, GoReference{2, 2}),
      paired_row("co_start_stop_outside", "coroutines: start+stop, caller outside the pool",
                 "us/cycle", cycle, "start, wait ready, stop, wait done, from an outside thread",
                 {TargetKind::median_at_most, 2}, GoReference{4.1, 4.8}),
      paired_row("co_start_stop_pool", "coroutines: start+stop, caller a coroutine on the pool",
                 "us/cycle", pool_cycle,
                 "start, await ready, stop, await done, from a coroutine on the pool",
                 {TargetKind::median_at_most, 0.5}, GoReference{4.1, 4.8}),
      paired_row("co_start_stop_outside_one_key",
                 "coroutines: start+stop of one key, caller outside the pool", "us/cycle",
                 cycle_one_key,
                 "the outside cycle's floor, on one key (the Go original's scenario)",
                 {TargetKind::median_at_most, 2}, GoReference{4.1, 4.8}),
      paired_row("co_start_stop_pool_one_key",
                 "coroutines: start+stop of one key, caller a coroutine on the pool", "us/cycle",
                 pool_cycle_one_key,
                 "the pool cycle's floor, on one key (the Go original's scenario)",
                 {TargetKind::median_at_most, 0.5}, GoReference{4.1, 4.8}),
  };
}

}  // namespace bench
