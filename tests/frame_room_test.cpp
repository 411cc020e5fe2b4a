// A coroutine process's root frame in its record's block (frame_room.hpp): where frames go, what
// a type learns, and what happens when `run` makes another task of the same size first. Each
// test uses a runnable type of its own: what a type has learned is kept per type, for good.

#include <coroutine>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include "catch_shim.hpp"
#include "supervisor/supervisor.hpp"
#include "support.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define FRAME_ROOM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FRAME_ROOM_TEST_ASAN 1
#endif
#endif
#if defined(FRAME_ROOM_TEST_ASAN)
#include <sanitizer/lsan_interface.h>
#endif

namespace {

using supervisor::AsyncReady;
using supervisor::Task;
using supervisor::detail::FrameHome;
using supervisor::detail::FrameOffer;
using supervisor::detail::FrameRoom;
using supervisor::detail::FrameRoomHint;

/// `co_await FrameAddress{}`: the address of the awaiting coroutine's frame, without suspending.
struct FrameAddress {
  void* address = nullptr;
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> self) noexcept {
    address = self.address();
    return false;
  }
  [[nodiscard]] void* await_resume() const noexcept { return address; }
};

/// Where each life's root frame came from, and the helper task a life made on the side.
struct Probe {
  std::mutex mutex;
  // The byte after each root frame, read by the frame itself once its size is known (the first
  // life's is not yet: its type learns the size from two).
  std::vector<std::optional<FrameHome>> homes;
  std::size_t frame_size = 0;       // the root frame's size, once the test knows it
  bool helper_first = false;        // make a helper first, and keep it
  bool helper_discarded = false;    // make a helper first, and destroy it at once
  bool throw_after_helper = false;  // with `helper_first`: then throw instead of returning
  std::optional<Task<>> helper;
};

/// A coroutine runnable whose `run` is a plain function returning `body`'s task; if told to,
/// it first makes another task of `body` (same coroutine, same frame size) and keeps it.
template <int Tag>
struct Placed {
  std::shared_ptr<Probe> probe = std::make_shared<Probe>();

  Task<> run(const std::stop_token& /*force*/, AsyncReady& ready) const {
    if (probe->helper_first) {
      probe->helper.emplace(body(probe, ready, false));
      if (probe->throw_after_helper) {
        throw std::runtime_error("no root task");
      }
    }
    if (probe->helper_discarded) {
      (void)body(probe, ready, false);
    }
    return body(probe, ready, true);
  }
  // The frame keeps its own reference: the helper's frame outlives the record's runnable.
  // NOLINTNEXTLINE(performance-unnecessary-value-param)
  static Task<> body(std::shared_ptr<Probe> probe, AsyncReady& ready, bool root) {
    if (root) {
      auto* const frame = static_cast<std::byte*>(co_await FrameAddress{});
      const std::size_t known = FrameRoomHint<Placed>::room();
      const std::size_t size = probe->frame_size != 0 ? probe->frame_size : known - 1;
      const std::lock_guard lock(probe->mutex);
      if (probe->frame_size != 0 || known != 0) {
        probe->homes.emplace_back(static_cast<FrameHome>(frame[size]));
      } else {
        probe->homes.emplace_back();
      }
    }
    co_await ready;
  }
};

using Homes = std::vector<std::optional<FrameHome>>;

/// A supervisor of `R` on a pool of its own, with `run` on a thread of its own.
template <class R>
struct PlacedRig {
  supervisor::ThreadPool pool{1};
  std::shared_ptr<supervisor::MapTable<std::string, R>> table =
      std::make_shared<supervisor::MapTable<std::string, R>>();
  test::Reports<std::string> reports;
  std::optional<supervisor::Supervisor<std::string, R>> sup;
  std::stop_source finish;
  test::Event in_callback;
  std::optional<test::Background> runner;

  /// The table is empty when `run` begins (nothing restored); the keys are added after.
  explicit PlacedRig(const R& runnable) {
    supervisor::Options<std::string> options;
    options.executor = pool;
    options.on_error = reports.hook();
    options.restart_interval = std::chrono::hours(1);
    sup.emplace(table, options);
    runner.emplace([this] {
      sup->run([this](const std::stop_token& stopping) {
        in_callback.notify();
        test::wait_until_either(stopping, finish.get_token());
      });
    });
    REQUIRE(in_callback.wait());
    for (const char* key : {"a", "b", "c", "d"}) {
      table->insert_or_assign(key, runnable);
    }
  }
  PlacedRig(const PlacedRig&) = delete;
  PlacedRig& operator=(const PlacedRig&) = delete;
  ~PlacedRig() { end(); }
  void end() {
    finish.request_stop();
    runner.reset();
  }
  /// Starts and stops "a" and "b": `R` learns its root frame's size (from two alike).
  void learn_frame_size() {
    for (const char* key : {"a", "b"}) {
      (void)sup->start(key);
      sup->stop(key);
    }
    REQUIRE(FrameRoomHint<R>::room() > 0);
  }
  /// Ends `run`, then lets go of the supervisor and its table (and their runnables).
  void end_and_drop() {
    end();
    sup.reset();
    table.reset();
  }
};

}  // namespace

// What every coroutine process's frame holds besides its locals: its task's promise and, while it
// is parked, the awaiter of `co_await ready`. At a million processes each byte is a megabyte: the
// plain awaiter holds no token and no stop callback (72 bytes), the promise its hooks through a
// pointer to a static table (16). A `run` that only awaits `ready` had a 216-byte frame with both
// (g++ 12); now 128 (g++ 12) or 96-104 (clang 14).
namespace {
struct OnlyReady {
  Task<> run(std::stop_token /*force*/, AsyncReady& ready) const { co_await ready; }
};
}  // namespace

TEST_CASE("frame room: a run that only awaits ready has a frame of a few pointers' worth",
          "[coroutine][frame_room]") {
#if defined(_MSC_VER)
  CHECK(sizeof(AsyncReady::Awaiter) <= 3 * sizeof(void*));  // `[[no_unique_address]]` ignored
#else
  CHECK(sizeof(AsyncReady::Awaiter) == 2 * sizeof(void*));
#endif
  CHECK(sizeof(supervisor::detail::TaskPromise<void>) <= 5 * sizeof(void*));
  CHECK(sizeof(supervisor::detail::TaskPromise<std::error_code>) <=
        5 * sizeof(void*) + sizeof(std::optional<std::error_code>));
  PlacedRig<OnlyReady> rig(OnlyReady{});
  rig.learn_frame_size();
  rig.end();
  CHECK(rig.reports.entries().empty());
  const std::size_t frame = FrameRoomHint<OnlyReady>::room() - 1;  // the room: frame + 1 byte
  CHECK(frame <= 20 * sizeof(void*));
}

TEST_CASE("frame room: once a type's root frame had one size twice, it is in its record's block",
          "[coroutine][frame_room]") {
  using R = Placed<1>;
  R runnable;
  REQUIRE(FrameRoomHint<R>::room() == 0);
  PlacedRig<R> rig(runnable);
  for (const char* key : {"a", "b", "c", "d"}) {
    (void)rig.sup->start(key);
    rig.sup->stop(key);
  }
  rig.end();
  CHECK(rig.reports.entries().empty());
  REQUIRE(FrameRoomHint<R>::room() > 0);  // learned from the first two
  CHECK(runnable.probe->homes ==
        Homes{std::nullopt, FrameHome::heap, FrameHome::room, FrameHome::room});
}

TEST_CASE(
    "frame room: a task made on the side first and kept keeps its record for good, and "
    "the type gets no more room",
    "[coroutine][frame_room]") {
  using R = Placed<2>;
  R runnable;
  PlacedRig<R> rig(runnable);
  rig.learn_frame_size();
  runnable.probe->frame_size = FrameRoomHint<R>::room() - 1;
  runnable.probe->helper_first = true;
  {
#if defined(FRAME_ROOM_TEST_ASAN)
    const __lsan::ScopedDisabler kept_for_good;  // the record is leaked on purpose
#endif
    (void)rig.sup->start("c");  // the helper takes the room; the root frame goes to the heap
    rig.sup->stop("c");
  }
  runnable.probe->helper_first = false;
  CHECK(FrameRoomHint<R>::room() == 0);
  (void)rig.sup->start("d");
  rig.sup->stop("d");
  rig.end_and_drop();
  CHECK(rig.reports.entries().empty());
  // c's root frame went to the heap (the helper had the room), and d's: no more room.
  CHECK(runnable.probe->homes ==
        Homes{std::nullopt, FrameHome::heap, FrameHome::heap, FrameHome::heap});
  FrameRoomHint<R>::learn(runnable.probe->frame_size);  // learns nothing: disabled for good
  FrameRoomHint<R>::learn(runnable.probe->frame_size);
  CHECK(FrameRoomHint<R>::room() == 0);
  // The probe's owners: this test's runnable, the helper's frame, and c's record, kept.
  CHECK(runnable.probe.use_count() == 3);
  // The helper outlives the process and its supervisor: freeing its frame reads the byte after
  // it, in the record's block, which must still be there (AddressSanitizer tells).
  REQUIRE(runnable.probe->helper.has_value());
  runnable.probe->helper.reset();
  CHECK(runnable.probe.use_count() == 2);
}

TEST_CASE("frame room: a task made on the side and kept by a `run` that throws keeps its record",
          "[coroutine][frame_room]") {
  using R = Placed<4>;
  R runnable;
  PlacedRig<R> rig(runnable);
  rig.learn_frame_size();
  runnable.probe->helper_first = true;
  runnable.probe->throw_after_helper = true;
  {
#if defined(FRAME_ROOM_TEST_ASAN)
    const __lsan::ScopedDisabler kept_for_good;
#endif
    CHECK_THROWS_AS(rig.sup->start("c"), std::runtime_error);
  }
  rig.end_and_drop();
  CHECK(FrameRoomHint<R>::room() == 0);
  // This test's runnable, the helper's frame, and c's record, kept.
  CHECK(runnable.probe.use_count() == 3);
  runnable.probe->helper.reset();  // reads the byte after it, in c's block (ASan tells)
  CHECK(runnable.probe.use_count() == 2);
}

TEST_CASE(
    "frame room: a task made on the side first and destroyed at once leaves the room to "
    "the root",
    "[coroutine][frame_room]") {
  using R = Placed<3>;
  R runnable;
  PlacedRig<R> rig(runnable);
  rig.learn_frame_size();
  runnable.probe->helper_discarded = true;
  (void)rig.sup->start("c");  // the helper takes the room and gives it back; then the root
  rig.sup->stop("c");
  rig.end_and_drop();
  CHECK(rig.reports.entries().empty());
  CHECK(FrameRoomHint<R>::room() > 0);  // nothing kept, nothing disabled
  CHECK(runnable.probe->homes == Homes{std::nullopt, FrameHome::heap, FrameHome::room});
  CHECK(runnable.probe.use_count() == 1);
}

TEST_CASE("frame room: an offer gives its room to the first frame of its size, once",
          "[frame_room]") {
  struct Maker {
    // Not inlined: Clang would otherwise elide the frame's allocation (it never escapes here),
    // and no `operator new` would be seen.
    [[gnu::noinline]] static Task<> small() { co_return; }
  };
  // Learn the size of `small`'s frame: the first heap frame under an offer with no room.
  std::size_t size = 0;
  {
    FrameOffer offer(FrameRoom{});
    Task<> task = Maker::small();
    auto handle = task.release();
    size = offer.root_frame_size(handle.address());
    handle.destroy();
  }
  REQUIRE(size > 0);
  alignas(__STDCPP_DEFAULT_NEW_ALIGNMENT__) std::byte storage[512];
  REQUIRE(size + 1 <= sizeof storage);
  const FrameRoom room{storage, static_cast<std::uint32_t>(size + 1)};
  FrameOffer offer(room);
  auto first = Maker::small().release();
  auto second = Maker::small().release();
  CHECK(first.address() == storage);
  CHECK(second.address() != storage);
  CHECK(static_cast<FrameHome>(storage[size]) == FrameHome::room);
  CHECK_FALSE(offer.room_taken_by_other(first.address()));
  CHECK(offer.room_taken_by_other(second.address()));
  CHECK(offer.root_frame_size(first.address()) == 0);  // in the room: nothing to learn
  CHECK(offer.root_frame_size(second.address()) == size);
  {
    FrameOffer inner(FrameRoom{});  // nests: the inner offer has no room to give
    auto third = Maker::small().release();
    CHECK(third.address() != storage);
    CHECK(inner.root_frame_size(third.address()) == size);
    third.destroy();
  }
  second.destroy();
  first.destroy();  // frees nothing (the storage is ours) and gives the room back
  CHECK(static_cast<FrameHome>(storage[size]) == FrameHome::room);
  CHECK_FALSE(offer.room_taken_by_other(nullptr));
  auto fourth = Maker::small().release();
  CHECK(fourth.address() == storage);
  offer.disarm();
  auto fifth = Maker::small().release();  // not the offer's any more
  CHECK(fifth.address() != storage);
  CHECK(offer.room_taken_by_other(fifth.address()));  // what it saw stays readable
  fifth.destroy();
  fourth.destroy();
}

namespace {
/// A runnable aligned beyond what `operator new` gives: its records get no room.
struct alignas(64) Wide {
  std::shared_ptr<Probe> probe = std::make_shared<Probe>();
  Task<> run(const std::stop_token& /*force*/, AsyncReady& ready) const { co_await ready; }
};
}  // namespace

TEST_CASE("frame room: a record aligned beyond operator new's gets none, and works as before",
          "[coroutine][frame_room]") {
  static_assert(alignof(Wide) > __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  Wide runnable;
  PlacedRig<Wide> rig(runnable);
  for (const char* key : {"a", "b", "c"}) {
    (void)rig.sup->start(key);
    rig.sup->stop(key);
  }
  rig.end_and_drop();
  CHECK(rig.reports.entries().empty());
  CHECK(FrameRoomHint<Wide>::room() > 0);  // learned, but never given
  CHECK(runnable.probe.use_count() == 1);
}
