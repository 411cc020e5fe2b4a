// A coroutine process's root frame in its record's block (frame_room.hpp): where frames go, what
// a type learns, and what happens when `run` makes another task of the same size first. Each
// test uses a runnable type of its own: what a type has learned is kept per type, for good.

#include <coroutine>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
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
  std::vector<FrameHome> homes;  // the byte after each root frame, read by the frame itself
  std::size_t frame_size = 0;    // the root frame's size, once the test knows it
  bool helper_first = false;
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
    }
    return body(probe, ready, true);
  }
  // The frame keeps its own reference: the helper's frame outlives the record's runnable.
  // NOLINTNEXTLINE(performance-unnecessary-value-param)
  static Task<> body(std::shared_ptr<Probe> probe, AsyncReady& ready, bool root) {
    if (root) {
      auto* const frame = static_cast<std::byte*>(co_await FrameAddress{});
      // Known by now even for the first life: learned once `run` returned, before any resume.
      const std::size_t size =
          probe->frame_size != 0 ? probe->frame_size : FrameRoomHint<Placed>::room() - 1;
      const std::lock_guard lock(probe->mutex);
      probe->homes.push_back(static_cast<FrameHome>(frame[size]));
    }
    co_await ready;
  }
};

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
    for (const char* key : {"a", "b", "c"}) {
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
};

}  // namespace

TEST_CASE("frame room: after a type's first process, each root frame is in its record's block",
          "[coroutine][frame_room]") {
  using R = Placed<1>;
  R runnable;
  REQUIRE(FrameRoomHint<R>::room() == 0);
  PlacedRig<R> rig(runnable);
  for (const char* key : {"a", "b", "c"}) {
    (void)rig.sup->start(key);
    rig.sup->stop(key);
  }
  rig.end();
  CHECK(rig.reports.entries().empty());
  REQUIRE(FrameRoomHint<R>::room() > 0);  // learned from the first
  CHECK(runnable.probe->homes ==
        std::vector<FrameHome>{FrameHome::heap, FrameHome::room, FrameHome::room});
}

TEST_CASE(
    "frame room: a task made on the side first keeps its record for good, and the type "
    "gets no more room",
    "[coroutine][frame_room]") {
  using R = Placed<2>;
  R runnable;
  PlacedRig<R> rig(runnable);
  (void)rig.sup->start("a");  // learns the frame's size
  rig.sup->stop("a");
  REQUIRE(FrameRoomHint<R>::room() > 0);
  runnable.probe->frame_size = FrameRoomHint<R>::room() - 1;
  runnable.probe->helper_first = true;
  {
#if defined(FRAME_ROOM_TEST_ASAN)
    const __lsan::ScopedDisabler kept_for_good;  // the record is leaked on purpose
#endif
    (void)rig.sup->start("b");  // the helper takes the room; the root frame goes to the heap
    rig.sup->stop("b");
  }
  runnable.probe->helper_first = false;
  CHECK(FrameRoomHint<R>::room() == 0);
  (void)rig.sup->start("c");
  rig.sup->stop("c");
  rig.end();
  CHECK(rig.reports.entries().empty());
  // b's root frame went to the heap (the helper had the room), and c's: no more room.
  CHECK(runnable.probe->homes ==
        std::vector<FrameHome>{FrameHome::heap, FrameHome::heap, FrameHome::heap});
  FrameRoomHint<R>::learn(runnable.probe->frame_size);  // learns nothing: disabled for good
  CHECK(FrameRoomHint<R>::room() == 0);
  // The helper outlives the process and its supervisor's run: freeing its frame reads the byte
  // after it, in the record's block, which must still be there (AddressSanitizer tells).
  REQUIRE(runnable.probe->helper.has_value());
  runnable.probe->helper.reset();
}

TEST_CASE("frame room: an offer gives its room to the first frame of its size, once",
          "[frame_room]") {
  struct Maker {
    static Task<> small() { co_return; }
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
  first.destroy();  // frees nothing: the storage is ours
  CHECK(static_cast<FrameHome>(storage[size]) == FrameHome::room);
}
