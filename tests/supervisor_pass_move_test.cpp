// A restart pass whose runnable's move throws, at each of the moves a row makes on its way from
// the table to its process: the failure is that key's alone. Every other row still starts, the
// failure is reported once (with its key once the pass has it), and the pass goes on. A key
// that already runs is never moved into a start, so its runnable's moves cannot fail it.

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "catch_shim.hpp"
#include "support.hpp"

using supervisor::ErrorSource;
using test::Probe;
using test::Startup;

namespace {

/// Set once the table is filled: the set-up's own moves never throw.
std::atomic<bool> g_armed{false};

/// A `Probe` that throws on its `throw_at`-th move since it was last copied (the table hands out
/// copies), and only if it is the bad row. The count travels with the moved-to object.
struct MoveBomb {
  Probe probe;
  bool bad = false;
  int throw_at = 0;
  int moves = 0;

  MoveBomb() = default;
  MoveBomb(Probe p, bool is_bad, int at) : probe(std::move(p)), bad(is_bad), throw_at(at) {}
  MoveBomb(const MoveBomb& other) : probe(other.probe), bad(other.bad), throw_at(other.throw_at) {}
  // Not noexcept, on purpose.
  MoveBomb(MoveBomb&& other)  // NOLINT(performance-noexcept-move-constructor)
      : probe(std::move(other.probe)),
        bad(other.bad),
        throw_at(other.throw_at),
        moves(other.moves + 1) {
    if (bad && moves == throw_at && g_armed.load()) {
      throw std::runtime_error("runnable move failed");
    }
  }
  MoveBomb& operator=(const MoveBomb&) = default;
  MoveBomb& operator=(MoveBomb&&) noexcept = default;  // MapTable's insert_or_assign
  ~MoveBomb() = default;

  void run(std::stop_token force, supervisor::Ready& ready) const {
    probe.run(std::move(force), ready);
  }
};

using Sup = supervisor::Supervisor<std::string, MoveBomb>;
using Table = supervisor::MapTable<std::string, MoveBomb>;

struct Seen {
  ErrorSource source;
  bool has_key;
  std::string key;
};

}  // namespace

TEST_CASE("a runnable whose move throws in a pass fails its own key's start alone",
          "[supervisor][failure]") {
  // Twenty rows span several of the pass's batches. For each move a row makes (the count past
  // the last one never throws), the bad row fails and nothing else does.
  constexpr int rows = 20;
  const std::string bad_key = "k7";
  bool threw_in_start = false;
  for (int throw_at = 1; throw_at <= 8; ++throw_at) {
    CAPTURE(throw_at);
    auto table = std::make_shared<Table>();
    for (int i = 0; i < rows; ++i) {
      const std::string key = "k" + std::to_string(i);
      table->insert_or_assign(key, MoveBomb(Probe::with(Startup::ready), key == bad_key, throw_at));
    }
    g_armed = true;
    struct Disarm {
      ~Disarm() { g_armed = false; }
    } disarm;
    auto seen = std::make_shared<std::vector<Seen>>();
    supervisor::Options<std::string> options;
    options.clock = std::make_shared<supervisor::ManualClock>();
    options.on_error = [seen](const supervisor::ErrorReport<std::string>& report) {
      seen->push_back({report.source, report.key != nullptr,
                       report.key != nullptr ? *report.key : std::string()});
    };
    Sup sup(table, options);
    std::vector<std::string> running;
    sup.run([&] { running = sup.keys(); });  // the hook runs on the pass's thread: before this

    std::vector<std::string> others;
    for (int i = 0; i < rows; ++i) {
      if ("k" + std::to_string(i) != bad_key) {
        others.push_back("k" + std::to_string(i));
      }
    }
    std::sort(running.begin(), running.end());
    std::sort(others.begin(), others.end());
    const bool bad_runs = std::find(running.begin(), running.end(), bad_key) != running.end();
    std::erase(running, bad_key);
    CHECK(running == others);  // no other row lost, whichever move threw
    if (bad_runs) {
      CHECK(seen->empty());  // past the moves a row makes: nothing threw
      continue;
    }
    REQUIRE(seen->size() == 1);
    const Seen& report = seen->front();
    CHECK(report.source != ErrorSource::iterate);  // the pass did not end over one row
    if (report.source == ErrorSource::start) {
      threw_in_start = true;
      CHECK(report.has_key);
      CHECK(report.key == bad_key);
    } else {
      CHECK(report.source == ErrorSource::row);  // while the row was read: no key yet
    }
  }
  CHECK(threw_in_start);  // some move was the start's own, not the reading's
}

TEST_CASE("a pruning pass never moves a running key's runnable so one that cannot be moved runs on",
          "[supervisor][failure]") {
  // The pass sees that the key runs before it would move the row into a start: only reading the
  // row moves it (and a failure there is a `row`, which makes the pass prune nothing). Past those
  // moves nothing throws: the key is seen, not started, and not pruned.
  const std::string bad_key = "k3";
  bool read_cleanly = false;
  for (int throw_at = 1; throw_at <= 8; ++throw_at) {
    CAPTURE(throw_at);
    auto table = std::make_shared<Table>();
    for (int i = 0; i < 6; ++i) {
      const std::string key = "k" + std::to_string(i);
      table->insert_or_assign(key, MoveBomb(Probe::with(Startup::ready), key == bad_key, throw_at));
    }
    auto clock = std::make_shared<supervisor::ManualClock>();
    supervisor::Options<std::string> options;
    options.clock = clock;
    options.restart_interval = std::chrono::minutes(1);
    options.prune = true;
    auto reports = std::make_shared<std::atomic<int>>(0);
    auto row_reports = std::make_shared<std::atomic<int>>(0);
    options.on_error = [reports, row_reports](const supervisor::ErrorReport<std::string>& r) {
      ++*reports;
      *row_reports += r.source == ErrorSource::row ? 1 : 0;
    };
    // A prune asks for the stop within the pass, before the loop arms its next wait.
    auto bad_stops = std::make_shared<std::atomic<int>>(0);
    options.on_event = [bad_stops, bad_key](const supervisor::Event<std::string>& event) {
      if (event.kind == supervisor::EventKind::stop_requested && event.key == bad_key) {
        ++*bad_stops;
      }
    };
    Sup sup(table, options);
    struct Disarm {
      ~Disarm() { g_armed = false; }
    } disarm;
    std::vector<std::string> before;
    std::vector<std::string> after;
    int stops_in_pass = -1;
    sup.run([&] {
      before = sup.keys();
      g_armed = true;  // from the next pass on
      REQUIRE(clock->wait_for_sleepers(1));
      const auto arms = clock->arms();
      clock->advance(options.restart_interval);
      REQUIRE(clock->wait_for_arms(arms + 1));
      g_armed = false;
      after = sup.keys();
      stops_in_pass = bad_stops->load();  // before the shutdown stops every key
    });
    std::sort(before.begin(), before.end());
    std::sort(after.begin(), after.end());
    CHECK(before.size() == 6);
    CHECK(after == before);     // the bad key still runs, and so does every other
    CHECK(stops_in_pass == 0);  // not even asked to stop
    CHECK(*reports <= 1);
    CHECK(*reports == *row_reports);  // only reading the row moved it: no start, no cut pass
    read_cleanly = read_cleanly || *reports == 0;
  }
  CHECK(read_cleanly);  // some count lay past the reading's moves: the start path was reached
}
