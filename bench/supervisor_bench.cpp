// supervisor_bench: the costs of `Supervisor` against standard-library floors.
//
// Every figure is the median of several repetitions (5; 3 with --quick), with the minimum and
// maximum beside it. A library figure and its floor are measured side by side in the same run:
// their repetitions alternate (library first on even repetitions, floor first on odd ones), and
// where a scenario allows it (start+stop, get) they also alternate in short slices within each
// repetition, so that a burst of outside load hits both sides alike. Each ratio is the median of
// the per-repetition ratios. Targets are reported, not enforced: the exit code is 0 unless a
// scenario could not be measured (an unexpected error, no threads left...).
//
// Scenarios (the `Worker` runnable calls `ready()` and returns when it returns):
//  1. start+stop: `start(k)` + `stop(k)` inside `run`, against a thread that signals readiness,
//     is told to finish, and is joined.
//  2. get and visit: hits and misses over 1,000 running processes, from 1 and 2 threads, and how
//     each scales to 2 threads. Floor: one `std::unordered_map` behind one `std::shared_mutex`,
//     the handle copied out (get) or only read under the lock (visit: the callback reads the
//     pointer through the `const std::shared_ptr&`). Context row, no target: copying the
//     `std::shared_ptr` handles alone, from a shared vector of the same 1,000, 2T/1T against a
//     read of their raw pointers -- the bound of any `get` that returns a `shared_ptr` copy (each
//     copy writes its reference count, a cache line the two cores then fight over).
//  3. lifecycle over 10,000 processes, one `run` per repetition: restore (`run` to the callback,
//     a ManualClock so that the initial wait ends only when every start has finished), resident
//     memory per idle process, restart passes over the running entries (driven by the clock;
//     thread count checked around them), and shutdown (callback return to `run` return). Floors:
//     10,000 threads spawned/woken/joined; the pass: iterate the table and probe a hash set.
//
// Output: a table for people, then, last, one line of JSON for machines.
//
//   supervisor_bench [--quick] [--only=start_stop|get|lifecycle] [--reps=N] [--cycles=N]
//                    [--processes=N] [--side=library|floor] [--spin=NS] [--reuse]
//
// Linux only for the memory and thread counts (/proc/self/status). Standard library only.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <supervisor/supervisor.hpp>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>  // malloc_trim: give freed heap back so that each RSS sample starts clean.
#endif

namespace {

using Clock = std::chrono::steady_clock;
using Key = std::uint64_t;

/// The runnable of every scenario: ready at once, returns as soon as `ready` returns.
struct Worker {
  void run(const std::stop_token& /*force*/, supervisor::Ready& ready) const { ready(); }
};
using WorkerPtr = std::shared_ptr<Worker>;
using Table = supervisor::MapTable<Key, WorkerPtr>;
using Sup = supervisor::Supervisor<Key, WorkerPtr>;

/// A failure of the benchmark itself (not a missed target).
class BenchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---- configuration -------------------------------------------------------------------------

/// Which side of the start+stop scenario runs (profiling only: `--side=`).
enum class Side { both, library, floor };

struct Config {
  bool quick = false;
  std::string only;                // empty: every scenario
  int reps = 5;                    // repetitions per figure
  int cycles = 20'000;             // start+stop cycles per repetition
  std::size_t processes = 10'000;  // restore / memory / shutdown
  std::size_t get_processes = 1'000;
  double get_seconds = 1.0;  // measuring time per get/visit/copy figure, over its repetitions
  int slices = 8;            // library/floor alternations within one repetition
  Side side = Side::both;
};

// ---- small helpers ---------------------------------------------------------------------------

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// A field of /proc/self/status ("VmRSS", "Threads"), as its leading number; -1 if unavailable.
long proc_status(std::string_view field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > field.size() && line.compare(0, field.size(), field) == 0 &&
        line[field.size()] == ':') {
      return std::strtol(line.c_str() + field.size() + 1, nullptr, 10);
    }
  }
  return -1;
}

long rss_kib() {
  const long v = proc_status("VmRSS");
  if (v < 0) {
    throw BenchError("cannot read VmRSS from /proc/self/status (the memory figures need Linux)");
  }
  return v;
}

long thread_count() {
  const long v = proc_status("Threads");
  if (v < 0) {
    throw BenchError("cannot read Threads from /proc/self/status");
  }
  return v;
}

/// Returns freed heap to the system, so that a resident-set sample does not reuse what the
/// previous repetition freed. A no-op outside glibc.
void trim_heap() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        return line.substr(line.find_first_not_of(' ', colon + 1));
      }
    }
  }
  return "unknown CPU";
}

std::string limits_hint() {
  std::string hint = " (threads-max " + read_first_line("/proc/sys/kernel/threads-max") +
                     ", pid_max " + read_first_line("/proc/sys/kernel/pid_max") +
                     ", vm.max_map_count " + read_first_line("/proc/sys/vm/max_map_count");
  std::ifstream limits("/proc/self/limits");
  std::string line;
  while (std::getline(limits, line)) {
    if (line.rfind("Max processes", 0) == 0 || line.rfind("Max stack size", 0) == 0) {
      std::istringstream words(line.substr(14));
      std::string soft;
      words >> soft;
      hint += line[4] == 'p' ? ", max user processes (ulimit -u) " + soft
                             : ", stack size " + soft + " bytes";
    }
  }
  return hint + ")";
}

std::string describe_exception(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

/// Bounds a wait on the ManualClock, so that a broken library makes the benchmark fail instead
/// of hang: its token is requested after `bound`.
class WaitBound {
 public:
  explicit WaitBound(std::chrono::seconds bound)
      : thread_([this, bound](const std::stop_token& over) {
          std::mutex mutex;
          std::condition_variable_any cv;
          std::unique_lock lock(mutex);
          cv.wait_for(lock, over, bound, [] { return false; });
          if (!over.stop_requested()) {
            expired_.request_stop();
          }
        }) {}

  [[nodiscard]] std::stop_token token() const { return expired_.get_token(); }

 private:
  std::stop_source expired_;
  std::jthread thread_;  // Last: stopped and joined first.
};

/// Collects what the supervisor reports to `Options::on_error`: in a benchmark, any report is
/// an internal error (a failed background start, most likely for lack of threads).
class ErrorSink {
 public:
  void add(const supervisor::ErrorReport<Key>& report) {
    std::lock_guard lock(mutex_);
    if (count_++ == 0) {
      first_ = std::string(supervisor::to_string(report.source)) + " failed" +
               (report.key != nullptr ? " for key " + std::to_string(*report.key) : "") + ": " +
               describe_exception(report.error);
    }
  }

  void check(const std::string& where) const {
    std::lock_guard lock(mutex_);
    if (count_ != 0) {
      throw BenchError(where + ": the supervisor reported " + std::to_string(count_) +
                       " error(s), the first: " + first_ + limits_hint());
    }
  }

 private:
  mutable std::mutex mutex_;
  std::size_t count_ = 0;
  std::string first_;
};

/// The library's tuning knobs under test (`--spin=NS`, `--reuse`); the defaults otherwise.
supervisor::Options<Key>& tuning() {
  static supervisor::Options<Key> options;
  return options;
}

supervisor::Options<Key> bench_options(const std::shared_ptr<supervisor::ManualClock>& clock,
                                       ErrorSink& errors) {
  supervisor::Options<Key> options;
  options.handoff_spin = tuning().handoff_spin;
  options.reuse_threads = tuning().reuse_threads;
  // A manual clock never moves on its own: the initial wait ends only when every start of the
  // initial pass has finished, and no restart pass runs unless the benchmark advances it.
  options.clock = clock;
  options.restart_interval = std::chrono::minutes(1);
  options.on_error = [&errors](const supervisor::ErrorReport<Key>& report) { errors.add(report); };
  return options;
}

/// The `i`-th key: scattered 64-bit values (splitmix64, a bijection, so keys never collide).
/// Consecutive integers would flatter the floors: `std::hash<std::uint64_t>` is the identity, so
/// an `std::unordered_map` walked in key order touches its buckets and nodes sequentially.
Key key_at(std::uint64_t i) {
  std::uint64_t z = i + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31U);
}

/// A table of rows `key_at(0)` ... `key_at(n - 1)`.
std::shared_ptr<Table> make_table(std::size_t n) {
  auto table = std::make_shared<Table>();
  for (std::size_t i = 0; i < n; ++i) {
    table->insert_or_assign(key_at(i), std::make_shared<Worker>());
  }
  return table;
}

// ---- statistics and results ------------------------------------------------------------------

struct Stats {
  double median = 0;
  double min = 0;
  double max = 0;
};

Stats stats_of(std::vector<double> values) {
  if (values.empty()) {
    throw BenchError("no samples");
  }
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  const double median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return {median, values.front(), values.back()};
}

/// Paired samples: the library's figure and its floor, one pair per repetition.
struct Paired {
  std::vector<double> lib;
  std::vector<double> floor;
};

enum class TargetKind { none, ratio_at_most, median_at_most, median_at_least, max_at_most };

struct Target {
  TargetKind kind = TargetKind::none;
  double value = 0;
};

struct GoReference {
  double low = 0;
  double high = 0;
};

struct Row {
  std::string name;
  std::string label;
  std::string unit;
  Stats lib;
  std::optional<Stats> floor;
  std::optional<Stats> ratio;  // lib / floor, the median of the per-repetition ratios
  std::string floor_note;
  Target target;
  std::optional<GoReference> go;

  [[nodiscard]] std::string target_text() const {
    char buf[64];
    switch (target.kind) {
      case TargetKind::none:
        return "";
      case TargetKind::ratio_at_most:
        std::snprintf(buf, sizeof buf, "ratio <= %g", target.value);
        break;
      case TargetKind::median_at_most:
        std::snprintf(buf, sizeof buf, "<= %g", target.value);
        break;
      case TargetKind::median_at_least:
        std::snprintf(buf, sizeof buf, ">= %g", target.value);
        break;
      case TargetKind::max_at_most:
        std::snprintf(buf, sizeof buf, "max <= %g", target.value);
        break;
    }
    return buf;
  }

  [[nodiscard]] std::optional<bool> met() const {
    switch (target.kind) {
      case TargetKind::none:
        return std::nullopt;
      case TargetKind::ratio_at_most:
        return ratio && ratio->median <= target.value;
      case TargetKind::median_at_most:
        return lib.median <= target.value;
      case TargetKind::median_at_least:
        return lib.median >= target.value;
      case TargetKind::max_at_most:
        return lib.max <= target.value;
    }
    return std::nullopt;
  }

  /// -1: faster than the whole Go range, 0: within it, 1: slower. Lower is better for every row
  /// that has a Go reference.
  [[nodiscard]] std::optional<int> versus_go() const {
    if (!go) {
      return std::nullopt;
    }
    if (lib.median < go->low) {
      return -1;
    }
    return lib.median <= go->high ? 0 : 1;
  }
};

Row paired_row(std::string name, std::string label, std::string unit, const Paired& samples,
               std::string floor_note, Target target = {},
               std::optional<GoReference> go = std::nullopt) {
  Row row{std::move(name),       std::move(label), std::move(unit),
          stats_of(samples.lib), std::nullopt,     std::nullopt,
          std::move(floor_note), target,           go};
  if (!samples.floor.empty()) {
    row.floor = stats_of(samples.floor);
    std::vector<double> ratios;
    for (std::size_t i = 0; i < samples.lib.size() && i < samples.floor.size(); ++i) {
      ratios.push_back(samples.lib[i] / samples.floor[i]);
    }
    row.ratio = stats_of(std::move(ratios));
  }
  return row;
}

// ---- scenario 1: start + stop cycle ----------------------------------------------------------

/// The floor of one cycle: a thread that signals readiness and waits to be told to finish, then
/// a join.
class FloorCycle {
 public:
  void operator()() {
    ready_ = false;
    finish_ = false;
    std::thread thread([this] {
      std::unique_lock lock(mutex_);
      ready_ = true;
      ready_cv_.notify_one();
      finish_cv_.wait(lock, [this] { return finish_; });
    });
    {
      std::unique_lock lock(mutex_);
      ready_cv_.wait(lock, [this] { return ready_; });
      finish_ = true;
    }
    finish_cv_.notify_one();
    thread.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_cv_;
  std::condition_variable finish_cv_;
  bool ready_ = false;
  bool finish_ = false;
};

/// One repetition: microseconds per cycle of the library (`start(k)` + `stop(k)` inside `run`)
/// and of the floor, interleaved in `slices` slices so that a burst of outside load hits both.
/// `side` (profiling only) restricts it to one of them; the other figure is then 0.
std::pair<double, double> start_stop_repetition(const Config& config, bool floor_first) {
  const int cycles = config.cycles;
  const int slices = config.slices;
  const bool lib_on = config.side != Side::floor;
  const bool floor_on = config.side != Side::library;
  auto table = std::make_shared<Table>();
  auto clock = std::make_shared<supervisor::ManualClock>();
  ErrorSink errors;
  Sup sup(table, bench_options(clock, errors));
  double lib_seconds = 0;
  double floor_seconds = 0;
  sup.run([&] {
    const Key key = 42;
    // Present in the table, but inserted after the initial pass: the key is ours to start.
    table->insert_or_assign(key, std::make_shared<Worker>());
    auto lib_cycle = [&] {
      std::error_code ec;
      if (!sup.start(key, ec) || ec) {
        throw BenchError("start(" + std::to_string(key) + ") failed: " + ec.message());
      }
      sup.stop(key, ec);
      if (ec) {
        throw BenchError("stop(" + std::to_string(key) + ") failed: " + ec.message());
      }
    };
    FloorCycle floor_cycle;
    auto timed = [](bool on, int n, auto& cycle) {
      if (!on) {
        return 0.0;
      }
      const auto t0 = Clock::now();
      for (int i = 0; i < n; ++i) {
        cycle();
      }
      return seconds_since(t0);
    };
    const int warm_up = std::min(cycles / 20, 100);
    timed(lib_on, warm_up, lib_cycle);
    timed(floor_on, warm_up, floor_cycle);
    for (int slice = 0; slice < slices; ++slice) {
      const int n = cycles / slices + (slice < cycles % slices ? 1 : 0);
      if ((slice % 2 == 0) != floor_first) {
        lib_seconds += timed(lib_on, n, lib_cycle);
        floor_seconds += timed(floor_on, n, floor_cycle);
      } else {
        floor_seconds += timed(floor_on, n, floor_cycle);
        lib_seconds += timed(lib_on, n, lib_cycle);
      }
    }
  });
  errors.check("start+stop");
  return {lib_seconds * 1e6 / cycles, floor_seconds * 1e6 / cycles};
}

std::vector<Row> scenario_start_stop(const Config& config) {
  Paired samples;
  for (int rep = 0; rep < config.reps; ++rep) {
    const auto [lib, floor] = start_stop_repetition(config, rep % 2 == 1);
    samples.lib.push_back(config.side == Side::floor ? floor : lib);
    if (config.side == Side::both) {
      samples.floor.push_back(floor);
    }
  }
  if (config.side != Side::both) {
    const bool floor = config.side == Side::floor;
    return {paired_row(floor ? "start_stop_cycle_floor_only" : "start_stop_cycle_library_only",
                       floor ? "start+stop floor only" : "start+stop library only", "us/cycle",
                       samples, "")};
  }
  return {paired_row("start_stop_cycle", "start+stop cycle", "us/cycle", samples,
                     "std::thread + ready/finish handshake (mutex+condvar) + join",
                     {TargetKind::ratio_at_most, 1.25}, GoReference{4.1, 4.8})};
}

// ---- scenario 2: get and visit ---------------------------------------------------------------

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
      ns[t].lib.push_back(tally[0][t].ns_per_get());
      ns[t].floor.push_back(tally[1][t].ns_per_get());
    }
    scaling.lib.push_back(tally[0][1].gets_per_second() / tally[0][0].gets_per_second());
    scaling.floor.push_back(tally[1][1].gets_per_second() / tally[1][0].gets_per_second());
  }
};

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
  Sup sup(table, bench_options(clock, errors));
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

// ---- scenarios 3, 4, 5: restore, restart pass, memory, shutdown ------------------------------

struct LifecycleSample {
  double restore_us = 0;  // per entry
  // Restart passes, per entry: the pass's own work (from `iterate` to `close`, on the loop
  // thread) and the pass end to end (advance the clock ... the loop has re-armed), each cold
  // (caches flushed first) and warm (the second of two back-to-back passes).
  double pass_cold_us = 0;
  double pass_warm_us = 0;
  double pass_end_to_end_us = 0;
  double pass_end_to_end_warm_us = 0;
  double floor_cold_us = 0;
  double floor_warm_us = 0;
  double floor_end_to_end_us = 0;
  double threads_started = 0;
  double rss_kib = 0;      // per process
  double shutdown_us = 0;  // per process
};

/// A `Table` that forwards to a `MapTable` and times each iteration from `iterate()` to the
/// cursor's `close()`: the work of a restart pass, without the thread wake-ups around it (on a
/// virtual machine, waking an idle virtual CPU alone can take milliseconds).
class TimedTable {
 public:
  class Cursor {
   public:
    Cursor(Table::Cursor inner, TimedTable& owner, Clock::time_point began)
        : inner_(std::move(inner)), owner_(&owner), began_(began) {}
    bool next() { return inner_.next(); }
    [[nodiscard]] std::pair<Key, WorkerPtr> get() { return inner_.get(); }
    void close() {
      inner_.close();
      owner_->last_ns_.store(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - began_).count(),
          std::memory_order_release);
    }

   private:
    Table::Cursor inner_;
    TimedTable* owner_;
    Clock::time_point began_;
  };

  explicit TimedTable(std::shared_ptr<Table> table) : table_(std::move(table)) {}

  [[nodiscard]] std::optional<WorkerPtr> get(const Key& key) const { return table_->get(key); }
  Cursor iterate() {
    const auto began = Clock::now();
    return Cursor(table_->iterate(), *this, began);
  }

  /// Microseconds from the last `iterate()` to its cursor's `close()`.
  [[nodiscard]] double last_iteration_us() const {
    return static_cast<double>(last_ns_.load(std::memory_order_acquire)) / 1e3;
  }

 private:
  std::shared_ptr<Table> table_;
  std::atomic<std::int64_t> last_ns_{0};
};

/// Evicts the caches by writing a buffer larger than the last-level cache, so that a pass that
/// follows starts cold, as a real pass a minute after the last one does.
class CacheFlusher {
 public:
  void operator()() {
    for (std::size_t i = 0; i < buffer_.size(); i += 64) {
      buffer_[i] = static_cast<char>(buffer_[i] + 1);
    }
    sink_.fetch_add(static_cast<unsigned char>(buffer_[64]), std::memory_order_relaxed);
  }

 private:
  static inline std::atomic<unsigned> sink_{0};
  std::vector<char> buffer_ = std::vector<char>(std::size_t{64} << 20U);
};

struct FloorPass {
  double cold_us = 0;        // per row, the first pass, timed inside the thread
  double warm_us = 0;        // per row, the second pass, back to back on the same thread
  double end_to_end_us = 0;  // per row, from spawning the thread to joining it, less the second
};

/// The floor of a restart pass: iterate the same table and probe a set of the running keys, twice
/// in a row on a thread of its own (like the library's passes, which run on the restart-loop
/// thread).
FloorPass floor_passes(const Table& table, const std::unordered_set<Key>& running) {
  double work_us[2] = {0, 0};
  std::size_t found = 0;
  std::size_t rows = 0;
  const auto spawned = Clock::now();
  std::thread([&] {
    for (double& us : work_us) {
      const auto t0 = Clock::now();
      auto cursor = table.iterate();
      found = 0;
      rows = 0;
      while (cursor.next()) {
        const auto row = cursor.get();
        found += running.count(row.first);
        ++rows;
      }
      cursor.close();
      us = seconds_since(t0) * 1e6;
    }
  }).join();
  const double total_us = seconds_since(spawned) * 1e6;
  if (rows == 0 || found != rows) {
    throw BenchError("floor pass: key set and table disagree");
  }
  const auto n = static_cast<double>(rows);
  return {work_us[0] / n, work_us[1] / n, (total_us - work_us[1]) / n};
}

/// One life of a supervisor over `table` (every entry not yet running): restore; restart passes
/// over the running entries, cold and warm, each beside its floor; then shutdown.
LifecycleSample library_lifecycle(const std::shared_ptr<Table>& table,
                                  const std::unordered_set<Key>& keys, bool floor_first) {
  const std::size_t n = keys.size();
  auto clock = std::make_shared<supervisor::ManualClock>();
  ErrorSink errors;
  const auto options = bench_options(clock, errors);
  const auto interval = options.restart_interval;
  auto timed = std::make_shared<TimedTable>(table);
  Sup sup(timed, options);
  LifecycleSample sample;

  trim_heap();
  const long rss_before = rss_kib();
  Clock::time_point callback_returned;
  const auto run_called = Clock::now();
  sup.run([&] {
    sample.restore_us = seconds_since(run_called) * 1e6 / static_cast<double>(n);
    const long rss_running = rss_kib();
    // Thread creation failures show up as background-start errors: report those, not a count.
    errors.check("restore");
    if (const auto running = sup.keys().size(); running != n) {
      throw BenchError("restore: " + std::to_string(running) + " of " + std::to_string(n) +
                       " processes running after the initial wait");
    }
    sample.rss_kib = static_cast<double>(rss_running - rss_before) / static_cast<double>(n);

    const WaitBound bound(std::chrono::seconds(60));
    // One restart pass, driven by the clock: (work, end to end), microseconds per entry.
    auto library_pass = [&] {
      if (!clock->wait_for_sleepers(1, bound.token())) {
        throw BenchError("restart pass: the restart loop never waited on the clock");
      }
      const auto arms = clock->arms();
      const auto t0 = Clock::now();
      clock->advance(interval);
      // The loop re-arms only after the pass has finished.
      if (!clock->wait_for_arms(arms + 1, bound.token())) {
        throw BenchError("restart pass: the restart loop never re-armed");
      }
      const double end_to_end = seconds_since(t0) * 1e6;
      return std::pair{timed->last_iteration_us() / static_cast<double>(n),
                       end_to_end / static_cast<double>(n)};
    };
    CacheFlusher flush;
    const long threads_before = thread_count();
    for (int round = 0; round < 2; ++round) {
      if ((round == 0) == floor_first) {
        flush();
        const auto floor = floor_passes(*table, keys);
        sample.floor_cold_us = floor.cold_us;
        sample.floor_warm_us = floor.warm_us;
        sample.floor_end_to_end_us = floor.end_to_end_us;
      } else {
        flush();
        std::tie(sample.pass_cold_us, sample.pass_end_to_end_us) = library_pass();
        std::tie(sample.pass_warm_us, sample.pass_end_to_end_warm_us) = library_pass();
      }
    }
    const long threads_after = thread_count();
    sample.threads_started = static_cast<double>(threads_after - threads_before);
    if (const auto running = sup.keys().size(); running != n) {
      throw BenchError("restart pass: " + std::to_string(running) + " processes afterwards, not " +
                       std::to_string(n));
    }
    callback_returned = Clock::now();
  });
  sample.shutdown_us = seconds_since(callback_returned) * 1e6 / static_cast<double>(n);
  errors.check("shutdown");
  return sample;
}

struct FloorLifecycleSample {
  double restore_us = 0;   // per thread: spawn, wait until every thread signalled readiness
  double rss_kib = 0;      // per idle thread
  double shutdown_us = 0;  // per thread: wake each through its own signal, join all
};

FloorLifecycleSample floor_lifecycle(std::size_t n) {
  struct Slot {
    std::mutex mutex;
    std::condition_variable cv;
    bool stop = false;
  };
  FloorLifecycleSample sample;
  trim_heap();
  const long rss_before = rss_kib();
  const auto slots = std::make_unique<Slot[]>(n);
  std::mutex ready_mutex;
  std::condition_variable ready_cv;
  std::size_t ready = 0;
  std::vector<std::thread> threads;
  threads.reserve(n);
  auto stop_and_join = [&] {
    for (std::size_t i = 0; i < threads.size(); ++i) {
      {
        std::lock_guard lock(slots[i].mutex);
        slots[i].stop = true;
      }
      slots[i].cv.notify_one();
    }
    for (auto& thread : threads) {
      thread.join();
    }
  };

  const auto t0 = Clock::now();
  try {
    for (std::size_t i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        {
          std::lock_guard lock(ready_mutex);
          if (++ready == n) {
            ready_cv.notify_one();
          }
        }
        std::unique_lock lock(slots[i].mutex);
        slots[i].cv.wait(lock, [&] { return slots[i].stop; });
      });
    }
  } catch (const std::system_error& e) {
    const std::size_t made = threads.size();
    stop_and_join();
    throw BenchError("floor: could not create thread " + std::to_string(made + 1) + " of " +
                     std::to_string(n) + ": " + e.what() + limits_hint());
  }
  {
    std::unique_lock lock(ready_mutex);
    ready_cv.wait(lock, [&] { return ready == n; });
  }
  sample.restore_us = seconds_since(t0) * 1e6 / static_cast<double>(n);
  sample.rss_kib = static_cast<double>(rss_kib() - rss_before) / static_cast<double>(n);
  const auto t1 = Clock::now();
  stop_and_join();
  sample.shutdown_us = seconds_since(t1) * 1e6 / static_cast<double>(n);
  return sample;
}

std::vector<Row> scenario_lifecycle(const Config& config) {
  const std::size_t n = config.processes;
  auto table = make_table(n);
  std::unordered_set<Key> keys;
  for (std::size_t i = 0; i < n; ++i) {
    keys.insert(key_at(i));
  }

  Paired restore;
  Paired pass_cold;
  Paired pass_warm;
  Paired pass_end_to_end;
  Paired pass_end_to_end_warm;
  Paired threads_started;
  Paired memory;
  Paired shutdown;
  for (int rep = 0; rep < config.reps; ++rep) {
    LifecycleSample lib;
    FloorLifecycleSample flo;
    if (rep % 2 == 0) {
      lib = library_lifecycle(table, keys, false);
      flo = floor_lifecycle(n);
    } else {
      flo = floor_lifecycle(n);
      lib = library_lifecycle(table, keys, true);
    }
    restore.lib.push_back(lib.restore_us);
    restore.floor.push_back(flo.restore_us);
    pass_cold.lib.push_back(lib.pass_cold_us);
    pass_cold.floor.push_back(lib.floor_cold_us);
    pass_warm.lib.push_back(lib.pass_warm_us);
    pass_warm.floor.push_back(lib.floor_warm_us);
    pass_end_to_end.lib.push_back(lib.pass_end_to_end_us);
    pass_end_to_end.floor.push_back(lib.floor_end_to_end_us);
    pass_end_to_end_warm.lib.push_back(lib.pass_end_to_end_warm_us);
    pass_end_to_end_warm.floor.push_back(lib.floor_warm_us);
    threads_started.lib.push_back(lib.threads_started);
    memory.lib.push_back(lib.rss_kib);
    memory.floor.push_back(flo.rss_kib);
    shutdown.lib.push_back(lib.shutdown_us);
    shutdown.floor.push_back(flo.shutdown_us);
  }
  const std::string count = std::to_string(n);
  return {
      paired_row("restore", "restore (run -> callback)", "us/entry", restore,
                 count + " std::threads spawned, each signals readiness", {}, GoReference{9, 11}),
      paired_row("restart_pass", "restart pass: work, cold", "us/entry", pass_cold,
                 "MapTable::iterate + std::unordered_set probe on a thread, caches flushed; "
                 "library: iterate()..close() on the loop thread",
                 {TargetKind::ratio_at_most, 3}),
      paired_row("restart_pass_warm", "restart pass: work, warm", "us/entry", pass_warm,
                 "the same, second of two back-to-back passes on the same thread"),
      paired_row("restart_pass_end_to_end", "restart pass: end to end, cold", "us/entry",
                 pass_end_to_end,
                 "spawn a thread, iterate + probe, join (caches flushed); library: advance() .. "
                 "re-armed"),
      paired_row("restart_pass_end_to_end_warm", "restart pass: end to end, warm", "us/entry",
                 pass_end_to_end_warm,
                 "the warm floor (no thread hand-off); library: advance() .. re-armed", {},
                 GoReference{0.5, 1.0}),
      paired_row("restart_pass_threads_started", "threads started by the pass", "threads",
                 threads_started, "", {TargetKind::max_at_most, 0}),
      paired_row("memory_per_process", "resident memory, idle", "KiB/process", memory,
                 count + " idle std::threads on a condvar", {TargetKind::median_at_most, 16},
                 GoReference{6.1, 6.1}),
      paired_row("shutdown", "shutdown (callback -> return)", "us/process", shutdown,
                 "wake each thread by its own condvar, join all", {TargetKind::ratio_at_most, 1.5},
                 GoReference{2, 2}),
  };
}

// ---- output ----------------------------------------------------------------------------------

std::string number(double v) {
  char buf[32];
  const double a = v < 0 ? -v : v;
  std::snprintf(buf, sizeof buf,
                a >= 1000  ? "%.0f"
                : a >= 100 ? "%.1f"
                : a >= 10  ? "%.2f"
                           : "%.3f",
                v);
  return buf;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) {
    return "null";  // JSON has no NaN or infinity
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string machine_description() {
  std::string host = read_first_line("/proc/sys/kernel/hostname");
  if (host.empty()) {
    host = "unknown host";
  }
  return host + ", " + std::to_string(std::thread::hardware_concurrency()) + " cores, " +
         cpu_model();
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  char buf[32] = "unknown";
  if (const std::tm* t = std::gmtime(&now); t != nullptr) {
    utc = *t;
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  }
  return buf;
}

/// The width of the label column: the longest label, at least 31.
int label_width(const std::vector<Row>& rows) {
  std::size_t width = 31;
  for (const auto& row : rows) {
    width = std::max(width, row.label.size());
  }
  return static_cast<int>(width);
}

void print_table(const std::vector<Row>& rows) {
  const int w = label_width(rows);
  std::printf("\n%-*s %-12s %9s %9s %9s | %9s  %-6s %-13s | %-13s %s\n", w, "scenario", "unit",
              "median", "min", "max", "floor", "ratio", "(min-max)", "target", "met");
  std::printf("%s\n", std::string(static_cast<std::size_t>(w) + 95, '-').c_str());
  for (const auto& row : rows) {
    std::string ratio;
    std::string ratio_range;
    if (row.ratio) {
      ratio = number(row.ratio->median);
      ratio_range = "(" + number(row.ratio->min) + "-" + number(row.ratio->max) + ")";
    }
    const auto met = row.met();
    std::printf("%-*s %-12s %9s %9s %9s | %9s  %-6s %-13s | %-13s %s\n", w, row.label.c_str(),
                row.unit.c_str(), number(row.lib.median).c_str(), number(row.lib.min).c_str(),
                number(row.lib.max).c_str(), row.floor ? number(row.floor->median).c_str() : "",
                ratio.c_str(), ratio_range.c_str(), row.target_text().c_str(),
                met ? (*met ? "yes" : "NO") : "");
  }
  std::printf("\nFloors:\n");
  for (const auto& row : rows) {
    if (!row.floor_note.empty()) {
      std::printf("  %-*s %s\n", w, row.label.c_str(), row.floor_note.c_str());
    }
  }
}

void print_go(const std::vector<Row>& rows) {
  std::printf("\nThe Go original on this machine (reference figures from the issue):\n");
  const int w = label_width(rows);
  std::printf("%-*s %-12s %11s %11s   %s\n", w, "scenario", "unit", "Go", "ours", "beat Go?");
  std::printf("%s\n", std::string(static_cast<std::size_t>(w) + 70, '-').c_str());
  for (const auto& row : rows) {
    const auto verdict = row.versus_go();
    if (!verdict) {
      continue;
    }
    char go[32];
    if (row.go->low == row.go->high) {
      std::snprintf(go, sizeof go, "~%g", row.go->low);
    } else {
      std::snprintf(go, sizeof go, "%g-%g", row.go->low, row.go->high);
    }
    std::string text;
    if (*verdict < 0) {
      text = "yes, " + number(row.go->low / row.lib.median) + "x faster than Go's best";
    } else if (*verdict == 0) {
      text = "tie: within Go's range";
    } else {
      text = "no, " + number(row.lib.median / row.go->high) + "x slower than Go's worst";
    }
    std::printf("%-*s %-12s %11s %11s   %s\n", w, row.label.c_str(), row.unit.c_str(), go,
                number(row.lib.median).c_str(), text.c_str());
  }
}

void print_json(const std::vector<Row>& rows, const std::vector<std::string>& errors,
                const Config& config) {
  std::string out = "{\"machine\":" + json_string(machine_description()) +
                    ",\"date\":" + json_string(utc_now()) +
                    ",\"mode\":" + json_string(config.quick ? "quick" : "full") +
                    ",\"repetitions\":" + std::to_string(config.reps) + ",\"results\":[";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    const auto met = row.met();
    const auto verdict = row.versus_go();
    const std::string target = row.target_text();
    out += std::string(i == 0 ? "" : ",") + "{\"name\":" + json_string(row.name) +
           ",\"median\":" + json_number(row.lib.median) + ",\"min\":" + json_number(row.lib.min) +
           ",\"max\":" + json_number(row.lib.max) + ",\"unit\":" + json_string(row.unit) +
           ",\"floor_median\":" + (row.floor ? json_number(row.floor->median) : "null") +
           ",\"ratio\":" + (row.ratio ? json_number(row.ratio->median) : "null") +
           ",\"target\":" + (target.empty() ? "null" : json_string(target)) +
           ",\"met\":" + (met ? (*met ? "true" : "false") : "null") +
           ",\"go_low\":" + (row.go ? json_number(row.go->low) : "null") +
           ",\"go_high\":" + (row.go ? json_number(row.go->high) : "null") +
           ",\"beats_go\":" + (verdict ? (*verdict < 0 ? "true" : "false") : "null") + "}";
  }
  out += "],\"errors\":[";
  for (std::size_t i = 0; i < errors.size(); ++i) {
    out += (i == 0 ? "" : ",") + json_string(errors[i]);
  }
  out += "]}";
  std::printf("%s\n", out.c_str());
}

// ---- main ------------------------------------------------------------------------------------

bool parse_count(std::string_view arg, std::string_view prefix, long& out) {
  if (arg.substr(0, prefix.size()) != prefix) {
    return false;
  }
  const std::string value(arg.substr(prefix.size()));
  char* end = nullptr;
  out = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || out <= 0) {
    throw BenchError("bad value in " + std::string(arg));
  }
  return true;
}

Config parse_args(int argc, char** argv) {
  Config config;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (std::find(args.begin(), args.end(), "--quick") != args.end()) {
    config.quick = true;
    config.reps = 3;
    config.cycles = 2'000;
    config.processes = 1'000;
    config.get_seconds = 0.2;
    config.slices = 4;
  }
  for (const auto arg : args) {
    long value = 0;
    if (arg == "--quick") {
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: supervisor_bench [--quick] [--only=start_stop|get|lifecycle] [--reps=N]\n"
          "                        [--cycles=N] [--processes=N] [--side=library|floor]\n"
          "  --quick       a few seconds: smaller counts, 3 repetitions (the CI smoke test)\n"
          "  --only=S      run one scenario\n"
          "  --side=X      start+stop only: run one side, for profiling (no ratio)\n"
          "  --spin=NS     Options::handoff_spin in nanoseconds (0: no spinning)\n"
          "  --reuse       Options::reuse_threads = true (park finished threads for reuse)\n");
      std::exit(0);
    }
    if (arg.substr(0, 7) == "--only=") {
      config.only = std::string(arg.substr(7));
      if (config.only != "start_stop" && config.only != "get" && config.only != "lifecycle") {
        throw BenchError("unknown scenario in " + std::string(arg));
      }
    } else if (arg == "--side=library" || arg == "--side=floor") {
      config.side = arg == "--side=library" ? Side::library : Side::floor;
    } else if (arg == "--reuse") {
      tuning().reuse_threads = true;
    } else if (arg.substr(0, 7) == "--spin=") {
      tuning().handoff_spin = std::chrono::nanoseconds(std::strtol(arg.data() + 7, nullptr, 10));
    } else if (parse_count(arg, "--reps=", value)) {
      config.reps = static_cast<int>(value);
    } else if (parse_count(arg, "--cycles=", value)) {
      config.cycles = static_cast<int>(value);
    } else if (parse_count(arg, "--processes=", value)) {
      config.processes = static_cast<std::size_t>(value);
    } else {
      throw BenchError("unknown argument " + std::string(arg) + " (try --help)");
    }
  }
  return config;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  try {
    config = parse_args(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "supervisor_bench: %s\n", e.what());
    return 2;
  }

  std::printf("supervisor_bench (%s): %d repetitions per figure, library and floor alternating\n",
              config.quick ? "--quick" : "full", config.reps);
  std::printf("machine: %s\ndate: %s\nlimits:%s\n", machine_description().c_str(),
              utc_now().c_str(), limits_hint().c_str());
  std::printf("library options: handoff_spin=%lld ns, reuse_threads=%s\n",
              static_cast<long long>(tuning().handoff_spin.count()),
              tuning().reuse_threads ? "on" : "off");
  std::printf(
      "sizes: %d start+stop cycles; get and visit over %zu processes, %.2f s per figure; "
      "restore, memory and shutdown over %zu processes\n",
      config.cycles, config.get_processes, config.get_seconds, config.processes);
  std::fflush(stdout);

  struct Scenario {
    const char* name;
    std::function<std::vector<Row>(const Config&)> run;
  };
  const Scenario scenarios[] = {
      {"start_stop", scenario_start_stop},
      {"get", scenario_get},
      {"lifecycle", scenario_lifecycle},
  };

  std::vector<Row> rows;
  std::vector<std::string> errors;
  const auto t0 = Clock::now();
  for (const auto& scenario : scenarios) {
    if (!config.only.empty() && config.only != scenario.name) {
      continue;
    }
    const auto started = Clock::now();
    try {
      auto produced = scenario.run(config);
      rows.insert(rows.end(), produced.begin(), produced.end());
      std::printf("  %-10s done in %.1f s\n", scenario.name, seconds_since(started));
    } catch (const std::exception& e) {
      std::string what = e.what();
      if (const auto* failure = dynamic_cast<const std::system_error*>(&e);
          failure != nullptr && failure->code() == std::errc::resource_unavailable_try_again) {
        what += " -- could not create a thread" + limits_hint();
      }
      errors.push_back(std::string(scenario.name) + ": " + what);
      std::printf("  %-10s FAILED after %.1f s: %s\n", scenario.name, seconds_since(started),
                  what.c_str());
    }
    std::fflush(stdout);
  }

  // Every scenario joins what it started: nothing but this thread may be left.
  if (const long threads = proc_status("Threads"); threads > 1) {
    errors.push_back(std::to_string(threads - 1) + " thread(s) still running at exit");
  }

  print_table(rows);
  print_go(rows);
  std::size_t missed = 0;
  for (const auto& row : rows) {
    if (const auto met = row.met(); met && !*met) {
      ++missed;
    }
  }
  std::printf("\n%zu of %zu targets missed (reported, not enforced). Total time %.1f s.\n", missed,
              static_cast<std::size_t>(std::count_if(
                  rows.begin(), rows.end(), [](const Row& r) { return r.met().has_value(); })),
              seconds_since(t0));
  for (const auto& error : errors) {
    std::printf("ERROR: %s\n", error.c_str());
  }
  print_json(rows, errors, config);
  return errors.empty() ? 0 : 1;
}
