// Scenario 2, get and visit: hits and misses over 1,000 running processes, from 1 and 2 threads,
// and how each scales to 2 threads. Floor: one `std::unordered_map` behind one
// `std::shared_mutex`, the handle copied out (get) or only read under the lock (visit: the
// callback reads the pointer through the `const std::shared_ptr&`). Library and floor, 1 and 2
// threads, rotate through every slice of a repetition. A context row with no target: copying the
// `std::shared_ptr` handles alone, from a shared vector of the same 1,000, 2T/1T against a read of
// their raw pointers -- the bound of any `get` that returns a `shared_ptr` copy (each copy writes
// its reference count, a cache line the two cores then fight over).

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <random>
#include <shared_mutex>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "harness.hpp"

namespace bench {
namespace {

std::atomic<std::uintptr_t> g_sink{0};  // Keeps the lookups' results alive.

/// What a batch of gets measured; sums over slices.
struct GetTally {
  double gets = 0;
  double thread_seconds = 0;  // summed over the threads
  double wall_seconds = 0;

  GetTally& operator+=(const GetTally& other) {
    gets += other.gets;
    thread_seconds += other.thread_seconds;
    wall_seconds += other.wall_seconds;
    return *this;
  }
  /// How long one get takes on one thread.
  [[nodiscard]] double ns_per_get() const { return thread_seconds * 1e9 / gets; }
  /// All threads together.
  [[nodiscard]] double gets_per_second() const { return gets / wall_seconds; }
};

/// Runs `get(key) -> uintptr_t` from `threads` threads for `seconds`, each thread cycling
/// through `keys` from its own offset.
template <class Get>
GetTally measure_gets(int threads, double seconds, const std::vector<Key>& keys, const Get& get) {
  std::atomic<int> arrived{0};
  std::atomic<bool> go{false};
  std::vector<std::uint64_t> ops(static_cast<std::size_t>(threads));
  std::vector<double> elapsed(static_cast<std::size_t>(threads));
  std::vector<std::thread> pool;
  Clock::time_point started;
  auto body = [&](std::size_t t) {
    arrived.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) {
      std::this_thread::yield();
    }
    const auto t0 = Clock::now();
    const auto deadline = started + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(seconds));
    std::size_t i = (t * keys.size()) / static_cast<std::size_t>(threads);
    std::uint64_t n = 0;
    std::uintptr_t acc = 0;
    do {
      for (int j = 0; j < 256; ++j) {
        acc += get(keys[i]);
        if (++i == keys.size()) {
          i = 0;
        }
      }
      n += 256;
    } while (Clock::now() < deadline);
    elapsed[t] = seconds_since(t0);
    ops[t] = n;
    g_sink.fetch_add(acc, std::memory_order_relaxed);
  };
  try {
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back(body, static_cast<std::size_t>(t));
    }
  } catch (...) {
    go = true;
    for (auto& thread : pool) {
      thread.join();
    }
    throw;
  }
  while (arrived.load() < threads) {
    std::this_thread::yield();
  }
  started = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& thread : pool) {
    thread.join();
  }
  GetTally tally;
  tally.wall_seconds = seconds_since(started);
  for (std::size_t t = 0; t < ops.size(); ++t) {
    tally.gets += static_cast<double>(ops[t]);
    tally.thread_seconds += elapsed[t];
  }
  return tally;
}

/// The floor of `get`: one map behind one shared mutex, the handle copied out under the lock.
class FloorMap {
 public:
  explicit FloorMap(const Table& table) {
    auto cursor = table.iterate();
    while (cursor.next()) {
      auto row = cursor.get();
      map_.emplace(row.first, std::move(row.second));
    }
    cursor.close();
  }

  [[nodiscard]] std::shared_ptr<Worker> get(Key key) const {
    std::shared_lock lock(mutex_);
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second;
  }

  /// Calls `f(const std::shared_ptr<Worker>&)` under the shared lock, without copying the
  /// handle, if `key` is present. Returns whether it was.
  template <class F>
  bool visit(Key key, F&& f) const {
    std::shared_lock lock(mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) {
      return false;
    }
    std::forward<F>(f)(std::as_const(it->second));
    return true;
  }

 private:
  mutable std::shared_mutex mutex_;
  std::unordered_map<Key, std::shared_ptr<Worker>> map_;
};

/// [library, floor][1 thread, 2 threads], each summed over a repetition's slices.
using TallyGrid = std::array<std::array<GetTally, 2>, 2>;

/// One repetition of a library/floor pair over `keys`: the four (library or floor, 1 or 2
/// threads) rotate through every slice, so that a burst of outside load hits them alike.
template <class Lib, class Floor>
TallyGrid rotate_gets(const Config& config, int rep, double slice_seconds,
                      const std::vector<Key>& keys, const Lib& lib, const Floor& floor) {
  TallyGrid tally;
  for (int slice = 0; slice < config.slices; ++slice) {
    for (int k = 0; k < 4; ++k) {
      const int which = (k + slice + rep) % 4;
      const int side = which / 2;
      const int threads = which % 2 + 1;
      tally[side][threads - 1] += side == 0 ? measure_gets(threads, slice_seconds, keys, lib)
                                            : measure_gets(threads, slice_seconds, keys, floor);
    }
  }
  return tally;
}

/// The figures of one operation over one kind of key, one sample per repetition: time per call
/// from 1 and 2 threads, and the 2T/1T throughput.
struct GetFigures {
  Paired ns[2];  // [1 thread, 2 threads]
  Paired scaling;

  void add(const TallyGrid& tally) {
    for (std::size_t t = 0; t < 2; ++t) {
      ns[t].add(tally[0][t].ns_per_get(), tally[1][t].ns_per_get());
    }
    scaling.add(tally[0][1].gets_per_second() / tally[0][0].gets_per_second(),
                tally[1][1].gets_per_second() / tally[1][0].gets_per_second());
  }
};

}  // namespace

std::vector<Row> scenario_get(const Config& config) {
  const std::size_t n = config.get_processes;
  auto table = make_table(n);
  const FloorMap floor(*table);

  std::mt19937_64 random(20230301);
  std::vector<Key> hits(n);
  std::vector<Key> misses(n);
  std::vector<Key> indices(n);  // for the handle copies: positions in `handles`
  for (std::size_t i = 0; i < n; ++i) {
    hits[i] = key_at(i);
    misses[i] = key_at((std::uint64_t{1} << 40U) + i);  // never a row: key_at is a bijection
    indices[i] = i;
  }
  std::shuffle(hits.begin(), hits.end(), random);
  std::shuffle(misses.begin(), misses.end(), random);

  auto clock = std::make_shared<supervisor::ManualClock>();
  ErrorSink errors;
  Sup sup(table, bench_options(config.tuning, clock, errors));
  // Each figure gets `get_seconds` in all, over its repetitions and their slices.
  const double slice_seconds = config.get_seconds / (config.reps * config.slices);

  // [get, visit][hit, miss]
  GetFigures figures[2][2];
  GetFigures copies;
  sup.run([&] {
    if (sup.keys().size() != n) {
      throw BenchError("get: " + std::to_string(sup.keys().size()) + " of " + std::to_string(n) +
                       " processes running");
    }
    // The runnables themselves, in the order of `hits` (the same control blocks as the table's).
    std::vector<WorkerPtr> handles;
    handles.reserve(n);
    for (const Key key : hits) {
      std::error_code ec;
      auto runnable = sup.get(key, ec);
      if (!runnable || ec || !*runnable) {
        throw BenchError("get(" + std::to_string(key) + ") of a running process failed");
      }
      int calls = 0;
      const Worker* seen = nullptr;
      const std::error_code visited = sup.visit(key, [&](const WorkerPtr& r) {
        ++calls;
        seen = r.get();
      });
      if (visited || calls != 1 || seen != runnable->get()) {
        throw BenchError("visit(" + std::to_string(key) + ") of a running process failed (" +
                         (visited ? visited.message() : "no error") + ", " + std::to_string(calls) +
                         " call(s), " + (seen == runnable->get() ? "" : "not ") +
                         "get's runnable)");
      }
      handles.push_back(std::move(*runnable));
    }
    for (const Key key : misses) {
      std::error_code ec;
      if (sup.get(key, ec) || ec != supervisor::errc::process_not_found) {
        throw BenchError("get(" + std::to_string(key) + ") of an absent key did not fail");
      }
      int calls = 0;
      const std::error_code visited = sup.visit(key, [&](const WorkerPtr& /*r*/) { ++calls; });
      if (visited != supervisor::errc::process_not_found || calls != 0) {
        throw BenchError("visit(" + std::to_string(key) + ") of an absent key did not fail");
      }
    }
    auto lib_get = [&sup](Key key) -> std::uintptr_t {
      std::error_code ec;
      auto runnable = sup.get(key, ec);
      return runnable ? reinterpret_cast<std::uintptr_t>(runnable->get()) : 1U;
    };
    auto floor_get = [&floor](Key key) -> std::uintptr_t {
      auto runnable = floor.get(key);
      return runnable ? reinterpret_cast<std::uintptr_t>(runnable.get()) : 1U;
    };
    auto lib_visit = [&sup](Key key) -> std::uintptr_t {
      std::uintptr_t seen = 1U;
      const std::error_code ec = sup.visit(
          key, [&seen](const WorkerPtr& r) { seen = reinterpret_cast<std::uintptr_t>(r.get()); });
      return ec ? 1U : seen;
    };
    auto floor_visit = [&floor](Key key) -> std::uintptr_t {
      std::uintptr_t seen = 1U;
      const bool found = floor.visit(
          key, [&seen](const WorkerPtr& r) { seen = reinterpret_cast<std::uintptr_t>(r.get()); });
      return found ? seen : 1U;
    };
    // The handle copy alone (and dropped) against a read of its raw pointer, no map, no lock.
    auto copy_handle = [&handles](Key i) -> std::uintptr_t {
      const WorkerPtr copy = handles[i];
      return reinterpret_cast<std::uintptr_t>(copy.get());
    };
    auto read_handle = [&handles](Key i) -> std::uintptr_t {
      return reinterpret_cast<std::uintptr_t>(handles[i].get());
    };
    for (int rep = 0; rep < config.reps; ++rep) {
      for (int m = 0; m < 2; ++m) {
        const int method = (m + rep) % 2;  // get first on even repetitions, visit on odd ones
        for (int kind = 0; kind < 2; ++kind) {
          const auto& keys = kind == 0 ? hits : misses;
          figures[method][kind].add(
              method == 0 ? rotate_gets(config, rep, slice_seconds, keys, lib_get, floor_get)
                          : rotate_gets(config, rep, slice_seconds, keys, lib_visit, floor_visit));
        }
      }
      copies.add(rotate_gets(config, rep, slice_seconds, indices, copy_handle, read_handle));
    }
  });
  errors.check("get");

  std::vector<Row> rows;
  auto add_rows = [&](const std::string& op, const GetFigures(&of)[2],
                      const std::string& floor_note) {
    const std::string unit = "ns/" + op;
    rows.push_back(paired_row(op + "_hit_1t", op + " hit, 1 thread", unit, of[0].ns[0], floor_note,
                              {TargetKind::ratio_at_most, 1.5}, GoReference{47, 47}));
    rows.push_back(paired_row(op + "_miss_1t", op + " miss, 1 thread", unit, of[1].ns[0],
                              floor_note, {}, GoReference{18, 18}));
    rows.push_back(
        paired_row(op + "_hit_2t", op + " hit, 2 threads (each)", unit, of[0].ns[1], floor_note));
    rows.push_back(
        paired_row(op + "_miss_2t", op + " miss, 2 threads (each)", unit, of[1].ns[1], floor_note));
    rows.push_back(paired_row(op + "_hit_scaling_2t", op + " hit, 2T/1T throughput", "x",
                              of[0].scaling, "the same map's own 2T/1T scaling",
                              {TargetKind::median_at_least, 1.7}));
    rows.push_back(paired_row(op + "_miss_scaling_2t", op + " miss, 2T/1T throughput", "x",
                              of[1].scaling, "the same map's own 2T/1T scaling",
                              {TargetKind::median_at_least, 1.7}));
  };
  add_rows("get", figures[0], "std::unordered_map + one std::shared_mutex, shared_ptr copied");
  add_rows("visit", figures[1],
           "std::unordered_map + one std::shared_mutex, shared_ptr read under the lock, no copy");
  rows.push_back(paired_row("handle_copy_scaling_2t", "shared_ptr copy alone, 2T/1T throughput",
                            "x", copies.scaling,
                            "the same vector of " + std::to_string(n) +
                                " handles, raw pointer read instead (no copy): its 2T/1T scaling"));
  return rows;
}

}  // namespace bench
