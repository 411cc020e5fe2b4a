// Freed record blocks kept for the next record (block_cache.hpp, and the record allocator in
// frame_room.hpp that uses it). Each test caches a kind of its own: a cache is kept per kind.
// Under AddressSanitizer the cache is off (a reused block would hide a use after free), and the
// tests check that instead.

#include <atomic>
#include <cstddef>
#include <cstring>
#include <latch>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#include "catch_shim.hpp"
#include "supervisor/detail/frame_room.hpp"

namespace {

using supervisor::detail::BlockCache;
using supervisor::detail::FrameRoom;
using supervisor::detail::make_record_with_room;
using supervisor::detail::RecordWithRoomAllocator;

/// A record with room, as `ProcessCore` keeps it (`give_frame_room`, `given_frame_room`).
template <int Tag>
struct Record {
  int value = 0;
  FrameRoom room;
  explicit Record(int v) : value(v) {}
  void give_frame_room(FrameRoom given) noexcept { room = given; }
  [[nodiscard]] FrameRoom given_frame_room() const noexcept { return room; }
};

template <int Tag>
struct Plain {
  std::byte bytes[48];
};

constexpr bool caching = BlockCache<void>::capacity != 0;

}  // namespace

TEST_CASE("block cache: a record freed on another thread gives its block to the next record",
          "[block_cache]") {
  auto first = make_record_with_room<Record<1>>(64, 1);
  std::byte* const first_room = first->room.at;
  REQUIRE(first_room != nullptr);
  std::memset(first_room, 0xA5, 64);  // a frame lived there
  std::thread([record = std::move(first)]() mutable { record.reset(); }).join();
  auto second = make_record_with_room<Record<1>>(64, 2);
  CHECK(second->value == 2);
  REQUIRE(second->room.at != nullptr);
  if constexpr (caching) {
    CHECK(second->room.at == first_room);
  } else {
    CHECK(second->room.at != first_room);  // off: ASan holds freed blocks back for a while
  }
}

TEST_CASE("block cache: a block made for another room size is freed, not reused", "[block_cache]") {
  auto small = make_record_with_room<Record<2>>(64, 1);
  std::byte* const small_room = small->room.at;
  small.reset();
  auto large = make_record_with_room<Record<2>>(128, 2);
  REQUIRE(large->room.at != nullptr);
  CHECK(large->room.at != small_room);
  std::memset(large->room.at, 0x5A, 128);  // all of it is there (ASan would tell)
  CHECK(large->value == 2);
}

TEST_CASE("block cache: a room too small for its tag or larger than any frame is not given",
          "[block_cache]") {
  // Such a record is made as any other (`std::make_shared`): its allocator would read a tag
  // that does not fit, or one cut short by the room's 32-bit size.
  for (const std::size_t room :
       {std::size_t{1}, std::size_t{15}, supervisor::detail::max_frame_room + 2}) {
    auto record = make_record_with_room<Record<5>>(room, 1);
    CHECK(record->room.at == nullptr);
  }
  auto fits = make_record_with_room<Record<5>>(16, 2);
  CHECK(fits->room.at != nullptr);
  auto largest = make_record_with_room<Record<5>>(supervisor::detail::max_frame_room + 1, 3);
  CHECK(largest->room.at != nullptr);
}

TEST_CASE("block cache: a block whose room tag does not check is freed, not cached",
          "[block_cache]") {
  using Allocator = RecordWithRoomAllocator<Plain<3>>;
  Allocator allocator;
  constexpr std::size_t room = 64;
  constexpr std::size_t align = __STDCPP_DEFAULT_NEW_ALIGNMENT__;
  constexpr std::size_t bytes = (sizeof(Plain<3>) + align - 1) / align * align + room;
  auto make = [&] {
    supervisor::detail::PendingRoom pending(room);
    Plain<3>* block = allocator.allocate(1);
    REQUIRE(pending.room.at == reinterpret_cast<std::byte*>(block) + (bytes - room));
    return block;
  };

  SECTION("tagged: cached") {
    Plain<3>* block = make();
    allocator.deallocate(block, 1);
    void* taken = BlockCache<Plain<3>>::take(bytes);
    if constexpr (caching) {
      CHECK(taken == block);
    } else {
      CHECK(taken == nullptr);
    }
    ::operator delete(taken);
  }
  SECTION("overwritten, as by a frame the record did not tag again: freed") {
    Plain<3>* block = make();
    // Opaque to the optimizer, which would otherwise follow a "checks" path with a known address.
    const volatile unsigned char garbage = 0x3C;
    std::memset(reinterpret_cast<std::byte*>(block) + (bytes - room), garbage, room);
    allocator.deallocate(block, 1);
    // Neither under its real size nor under the one the garbage would claim.
    std::size_t claimed = 0;
    std::memset(&claimed, garbage, sizeof claimed);
    void* const as_claimed = BlockCache<Plain<3>>::take(bytes - room + claimed);
    CHECK(as_claimed == nullptr);
    ::operator delete(as_claimed);
    CHECK(BlockCache<Plain<3>>::take(bytes) == nullptr);
  }
}

TEST_CASE("block cache: blocks given and taken by several threads at once", "[block_cache]") {
  // For ThreadSanitizer: the ring hands each block over with its size and contents.
  constexpr int threads = 4;
  constexpr int rounds = 2'000;
  std::atomic<int> changed{0};
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([t, &changed] {
      for (int i = 0; i < rounds; ++i) {
        auto record = make_record_with_room<Record<4>>(96, t * rounds + i);
        std::memset(record->room.at, t, 96);
        if (record->value != t * rounds + i) {
          changed.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& worker : workers) {
    worker.join();
  }
  CHECK(changed.load() == 0);
}

TEST_CASE("block cache: a thread keeps one freed block for itself, the next goes to all",
          "[block_cache]") {
  using Cache = BlockCache<Plain<6>>;
  constexpr std::size_t bytes = 64;
  void* const mine = ::operator new(bytes);
  void* const shared = ::operator new(bytes);
  std::latch given(1);
  std::latch checked(1);
  void* taken_there = nullptr;
  std::thread worker([&] {
    Cache::give(mine, bytes);    // kept by this thread
    Cache::give(shared, bytes);  // its slot is full: to the ring
    given.count_down();
    checked.wait();
    taken_there = Cache::take(bytes);
  });
  given.wait();
  void* const taken_here = Cache::take(bytes);
  CHECK(Cache::take(bytes) == nullptr);  // `mine` is not where this thread can reach it
  checked.count_down();
  worker.join();
  if constexpr (caching) {
    CHECK(taken_here == shared);
    CHECK(taken_there == mine);
  } else {
    CHECK(taken_here == nullptr);
    CHECK(taken_there == nullptr);
  }
  ::operator delete(taken_here);
  ::operator delete(taken_there);
}

namespace {

/// Gives a block from a thread-local's destructor, run during the thread's exit after the
/// cache's own (made later) has emptied the thread's slot.
struct GivesAtExit {
  void* block = nullptr;
  ~GivesAtExit() {
    if (block != nullptr) {
      BlockCache<Plain<7>>::give(block, 64);
    }
  }
};

}  // namespace

TEST_CASE("block cache: a block given while a thread exits still reaches the next thread",
          "[block_cache]") {
  using Cache = BlockCache<Plain<7>>;
  void* const kept = ::operator new(64);
  void* const late = ::operator new(64);
  std::thread([&] {
    thread_local GivesAtExit at_exit;  // made first, destroyed last
    at_exit.block = late;
    Cache::give(kept, 64);  // makes the cache's own thread-local, destroyed first
  }).join();
  void* const first = Cache::take(64);
  void* const second = Cache::take(64);
  if constexpr (caching) {
    // Both in the ring, in the order they went there: the slot's at the exit, then the late one.
    CHECK(first == kept);
    CHECK(second == late);
  } else {
    CHECK(first == nullptr);
    CHECK(second == nullptr);
  }
  ::operator delete(first);
  ::operator delete(second);
}
