#pragma once

/// \file
/// Room for a coroutine process's frame inside its record's block: one allocation per process
/// instead of two, and one free (at a million processes, the pool threads' frees contend for
/// glibc's arena lock at shutdown, and `run`'s thread spends a third of its restore in malloc).
///
/// Every `Task` frame is followed by a byte that says where its memory came from: the heap, or
/// the room of a record. A supervisor allocates each record of a coroutine runnable type with
/// room for the size that type's root frame last asked for (`FrameRoomHint`), and arms a
/// `FrameOffer` on its thread while the runnable's `run` makes its task: the first frame of
/// exactly that size goes into the room. Freeing a frame in a room frees nothing: the room goes
/// with the record. Should that frame not be the task `run` returned (a helper of the same size
/// made first, which might outlive the process), the record is kept for good rather than freed
/// under it, and that type gets no more room.

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

#include "supervisor/detail/block_cache.hpp"

namespace supervisor::detail {

/// The byte after every `Task` frame: where the frame's memory came from.
enum class FrameHome : unsigned char { heap = 1, room = 2 };

/// Frames larger than this never take a record's room: a record may outlive its frame.
inline constexpr std::size_t max_frame_room = 4096;

/// Room for a frame at the end of a record's block.
struct FrameRoom {
  std::byte* at = nullptr;  // aligned as `operator new` aligns
  std::uint32_t bytes = 0;  // the frame and the byte after it must fit
};

/// Armed on this thread while a process's `run` makes its task. The room on offer (maybe none)
/// is sized for the root frame of its type: a frame of exactly that size takes it, the first
/// one made. Other frames go to the heap; the first of them is remembered, to learn its size if
/// it turns out to be the root. Nests (strictly: inner offers are disarmed first).
///
/// Assumes, as GCC and Clang do, that a coroutine handle's address is where `operator new` put
/// the frame; were it not, nothing would be learned and no record would get room.
class FrameOffer {
 public:
  explicit FrameOffer(FrameRoom room) noexcept : room_(room), previous_(current()) {
    current() = this;
  }
  FrameOffer(const FrameOffer&) = delete;
  FrameOffer& operator=(const FrameOffer&) = delete;
  ~FrameOffer() { disarm(); }

  /// From here, frames made on this thread are not this offer's; what it saw stays readable.
  void disarm() noexcept {
    if (armed_) {
      armed_ = false;
      current() = previous_;
    }
  }

  /// The size the task's frame (at `frame`, its handle's address) asked for, if it was the first
  /// frame made on the heap under this offer; else 0 (it is in the room, or another came first).
  [[nodiscard]] std::size_t root_frame_size(const void* frame) const noexcept {
    return first_on_heap_ == frame ? first_size_ : 0;
  }
  /// Whether a frame other than the task's (at `frame`, or null) took the room and is still
  /// there: `run` made another task of the same size first, and kept it. The record must then
  /// never be freed, since that frame may outlive it.
  [[nodiscard]] bool room_taken_by_other(const void* frame) const noexcept {
    return room_taken_ && room_.at != frame;
  }

  /// `Task`'s frame allocation: the room on offer if it is free and sized for this frame, else
  /// the heap. Throws `std::bad_alloc` as `operator new` does.
  static void* allocate(std::size_t size) {
    FrameOffer* offer = current();
    if (offer == nullptr) {
      return allocate_on_heap(size);
    }
    if (!offer->room_taken_ && size + 1 == offer->room_.bytes) {
      offer->room_taken_ = true;
      offer->room_.at[size] = static_cast<std::byte>(FrameHome::room);
      return offer->room_.at;
    }
    void* frame = allocate_on_heap(size);
    if (offer->first_on_heap_ == nullptr) {
      offer->first_on_heap_ = frame;
      offer->first_size_ = size;
    }
    return frame;
  }

  /// `Task`'s frame deallocation: frees a heap frame; a frame in a room leaves it to its record
  /// (and frees the room again if it goes while its offer is still armed).
  static void deallocate(void* frame, std::size_t size) noexcept {
    if (static_cast<std::byte*>(frame)[size] == static_cast<std::byte>(FrameHome::heap)) {
      ::operator delete(frame);
      return;
    }
    for (FrameOffer* offer = current(); offer != nullptr; offer = offer->previous_) {
      if (offer->room_.at == frame) {
        offer->room_taken_ = false;
        return;
      }
    }
  }

 private:
  static FrameOffer*& current() noexcept {
    thread_local FrameOffer* offer = nullptr;
    return offer;
  }
  static void* allocate_on_heap(std::size_t size) {
    auto* frame = static_cast<std::byte*>(::operator new(size + 1));
    frame[size] = static_cast<std::byte>(FrameHome::heap);
    return frame;
  }

  FrameRoom room_;
  FrameOffer* previous_;
  bool armed_ = true;
  bool room_taken_ = false;
  void* first_on_heap_ = nullptr;
  std::size_t first_size_ = 0;
};

/// The size the root frame of runnable type `R` asked for on the heap twice in a row (up to
/// `max_frame_room`): the room its next records get. Zero until then (a type whose root frames
/// vary in size gets room only while they keep one size), and for good once a frame other than
/// the root kept a room (`disable`).
template <class R>
class FrameRoomHint {
 public:
  /// The room the next record gets: the frame and the byte after it; 0: none.
  static std::size_t room() noexcept {
    const std::size_t known = state().known.load(std::memory_order_relaxed);
    return known == disabled || known == 0 ? 0 : known + 1;
  }
  /// A root frame of `frame_size` went to the heap (0: none did).
  static void learn(std::size_t frame_size) noexcept {
    if (frame_size == 0 || frame_size > max_frame_room) {
      return;
    }
    State& s = state();
    if (s.last.exchange(frame_size, std::memory_order_relaxed) != frame_size) {
      return;  // not twice in a row yet
    }
    std::size_t known = s.known.load(std::memory_order_relaxed);
    while (known != disabled && known != frame_size &&
           !s.known.compare_exchange_weak(known, frame_size, std::memory_order_relaxed)) {
    }
  }
  static void disable() noexcept { state().known.store(disabled, std::memory_order_relaxed); }

 private:
  static constexpr std::size_t disabled = ~std::size_t{0};
  struct State {
    std::atomic<std::size_t> known{0};
    std::atomic<std::size_t> last{0};
  };
  static State& state() noexcept {
    static State s;
    return s;
  }
};

/// The room asked for by one `make_record_with_room`, and where the block made for it put it:
/// the allocator finds it through this thread's innermost (a record's constructor runs user
/// code, a key's copy, which might make another record).
struct PendingRoom {
  explicit PendingRoom(std::size_t bytes) noexcept : outer(current()) {
    room.bytes = static_cast<std::uint32_t>(bytes);
    current() = this;
  }
  PendingRoom(const PendingRoom&) = delete;
  PendingRoom& operator=(const PendingRoom&) = delete;
  ~PendingRoom() { current() = outer; }
  static PendingRoom*& current() noexcept {
    thread_local PendingRoom* innermost = nullptr;
    return innermost;
  }

  FrameRoom room;
  PendingRoom* outer;
};

/// The allocator of a record with room for its frame: the block is the record (with its
/// `shared_ptr` control block), then the room. Stateless, so the control block carries nothing
/// for it: the room's size comes through `make_record_with_room`, on the allocating thread.
///
/// Freed blocks go to a `BlockCache` of their own kind, which needs each block's size when it is
/// freed. The room keeps it: a `RoomTag` written when the block is made and again once the record
/// is destroyed (its task's frame, the room's only other user, is gone by then: a record whose
/// room is kept by another frame is never freed). A tag that does not check (a standard library
/// that destroys the record without `destroy`) frees the block instead.
template <class T>
class RecordWithRoomAllocator {
 public:
  using value_type = T;
  RecordWithRoomAllocator() noexcept = default;
  template <class U>
  explicit RecordWithRoomAllocator(const RecordWithRoomAllocator<U>& /*other*/) noexcept {}

  /// What the room keeps of its own size; a room is at least this large.
  struct RoomTag {
    std::size_t bytes;
    std::size_t check;
  };

  T* allocate(std::size_t n) {
    PendingRoom* pending = PendingRoom::current();
    // At least room for the tag, which `deallocate` reads.
    const std::uint32_t room =
        std::max<std::uint32_t>(pending != nullptr ? pending->room.bytes : 0, sizeof(RoomTag));
    void* made = BlockCache<T>::take(body(n) + room);
    auto* block = static_cast<std::byte*>(made != nullptr ? made : ::operator new(body(n) + room));
    tag(FrameRoom{block + body(n), room});
    if (pending != nullptr) {
      pending->room.at = block + body(n);
    }
    return reinterpret_cast<T*>(block);
  }
  void deallocate(T* record, std::size_t n) noexcept {
    auto* block = reinterpret_cast<std::byte*>(record);
    RoomTag tagged{};
    std::memcpy(&tagged, block + body(n), sizeof tagged);
    if (tagged.check != check_of(block + body(n), tagged.bytes)) {
      ::operator delete(static_cast<void*>(block));
      return;
    }
    BlockCache<T>::give(block, body(n) + tagged.bytes);
  }
  /// Destroys the record, then tags its room again (see the class comment).
  template <class U>
  void destroy(U* record) noexcept {
    const FrameRoom room = record->given_frame_room();
    record->~U();
    tag(room);
  }

  template <class U>
  friend bool operator==(const RecordWithRoomAllocator& /*a*/,
                         const RecordWithRoomAllocator<U>& /*b*/) noexcept {
    return true;
  }

 private:
  static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  static constexpr std::size_t body(std::size_t n) noexcept {
    constexpr std::size_t align = __STDCPP_DEFAULT_NEW_ALIGNMENT__;
    return (n * sizeof(T) + align - 1) / align * align;
  }
  static std::size_t check_of(const std::byte* room, std::size_t bytes) noexcept {
    return bytes ^ reinterpret_cast<std::uintptr_t>(room) ^ 0x5a17c0de5a17c0deULL;
  }
  static void tag(FrameRoom room) noexcept {
    if (room.at != nullptr && room.bytes >= sizeof(RoomTag)) {
      const RoomTag tagged{room.bytes, check_of(room.at, room.bytes)};
      std::memcpy(room.at, &tagged, sizeof tagged);
    }
  }
};

/// `std::make_shared<T>(args...)` with `room` bytes after the record for its frame, given to
/// `T::give_frame_room` before anyone else can see the record.
template <class T, class... Args>
std::shared_ptr<T> make_record_with_room(std::size_t room, Args&&... args) {
  // Without it the room's tag would not be renewed, and no block would ever be cached.
  static_assert(
      requires(T & record) {
        { record.given_frame_room() } -> std::same_as<FrameRoom>;
      },
      "a record with room tells its allocator where the room is");
  // No room; too little for its tag (no frame is that small); more than any frame gets.
  if (room < sizeof(typename RecordWithRoomAllocator<T>::RoomTag) || room > max_frame_room + 1) {
    return std::make_shared<T>(std::forward<Args>(args)...);
  }
  PendingRoom pending(room);
  std::shared_ptr<T> record =
      std::allocate_shared<T>(RecordWithRoomAllocator<T>{}, std::forward<Args>(args)...);
  record->give_frame_room(pending.room);
  return record;
}

}  // namespace supervisor::detail
