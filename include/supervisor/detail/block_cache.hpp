#pragma once

/// \file
/// `BlockCache`: a few freed blocks of one kind, kept for the next allocation of that kind.

#include <cstddef>
#include <cstring>
#include <new>
#include <utility>

#include "supervisor/detail/mpmc_ring.hpp"

// Checkers that a reused block would blind: AddressSanitizer, HWASan and MemorySanitizer (g++
// defines the first two macros; clang++ answers `__has_feature`).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_HWADDRESS__)
#define SUPERVISOR_DETAIL_BLOCK_CACHE_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(hwaddress_sanitizer) || \
    __has_feature(memory_sanitizer)
#define SUPERVISOR_DETAIL_BLOCK_CACHE_OFF 1
#endif
#endif
#if defined(SUPERVISOR_NO_BLOCK_CACHE) || defined(SUPERVISOR_FAULT_INJECTION)
#define SUPERVISOR_DETAIL_BLOCK_CACHE_OFF 1
#endif

namespace supervisor::detail {

/// Freed blocks kept for reuse, shared by every thread; one cache per `Kind`.
///
/// Why: a coroutine process's record is made on the thread that starts it and is usually freed
/// on an executor's thread. glibc's malloc then takes the starting thread's arena lock on both
/// threads, and sleeps on it when they meet: about two futex calls per start+stop cycle from an
/// outside thread, and a quarter of the cycle's time (2026-12-06). A block that goes back here
/// and comes out for the next record touches no lock.
///
/// Lock-free (`MpmcRing`), bounded: at most `capacity` blocks, more are freed at once. A block
/// is reused only for a request of exactly its size, kept in its first bytes while it waits.
/// The blocks it holds stay until the program exits, whatever made them is gone (for a record
/// type, at most 64 records with their frames' room, a few tens of KiB, and one per thread).
///
/// In front of the ring, each thread keeps one block of its own: a coroutine caller on a pool
/// thread that starts and stops processes frees a record there and makes the next one there,
/// and the ring's two locked instructions per cycle were a twentieth of its cost (2026-12-07).
/// A thread's block goes to the ring when the thread exits; a block given during the exit,
/// after that (by another thread-local's destructor), goes straight to the ring.
///
/// Off (`capacity` 0: `give` frees, `take` finds nothing) under AddressSanitizer, HWASan and
/// MemorySanitizer, so that a use of a freed record is still reported; in the fault-injection
/// build, so that every allocation its sweeps count is a real one; and wherever
/// `SUPERVISOR_NO_BLOCK_CACHE` is defined (define it for Valgrind's memcheck, which cannot be
/// told apart at compile time). The ring is made on first use and never freed (a record may be
/// freed during static destruction); if it cannot be made, nothing is cached.
template <class Kind>
class BlockCache {
 public:
#if defined(SUPERVISOR_DETAIL_BLOCK_CACHE_OFF)
  static constexpr std::size_t capacity = 0;
#else
  static constexpr std::size_t capacity = 64;
#endif

  /// A cached block of exactly `bytes`, or null: none is cached, or the one taken was made for
  /// another size (it is freed). Never throws, never blocks.
  [[nodiscard]] static void* take(std::size_t bytes) noexcept {
    void* block = std::exchange(this_thread_.block, nullptr);
    if (block == nullptr) {
      MpmcRing* cache = ring();
      block = cache != nullptr ? cache->try_pop() : nullptr;
      if (block == nullptr) {
        return nullptr;
      }
    }
    std::size_t held = 0;
    std::memcpy(&held, block, sizeof held);
    if (held != bytes) {
      ::operator delete(block);
      return nullptr;
    }
    return block;
  }

  /// Keeps `block` (from `::operator new(bytes)`, at least `sizeof(std::size_t)` bytes, nothing
  /// in it alive any more) for a later `take(bytes)`, or frees it if the cache is full. Never
  /// throws, never blocks. Happens-before: what was done with the block before `give` happens
  /// before whatever the thread that takes it does with it.
  static void give(void* block, std::size_t bytes) noexcept {
    if constexpr (capacity != 0) {
      std::memcpy(block, &bytes, sizeof bytes);
      ThreadSlot& slot = this_thread_;
      if (slot.block == nullptr && slot.state != SlotState::gone) {
        if (slot.state == SlotState::unused) {
          slot.state = SlotState::kept;
          thread_local const Flusher flusher;  // its destructor empties the slot at the exit
        }
        slot.block = block;
        return;
      }
    }
    to_ring(block);
  }

 private:
  enum class SlotState : unsigned char { unused, kept, gone };
  /// Trivially destructible, so that it can be read at any point of the thread's exit (as the
  /// epoch's `ThreadSlot`). No default member initialisers: GCC wants them complete early.
  struct ThreadSlot {
    void* block;  // with its size in its first bytes, as in the ring
    SlotState state;
  };
  struct Flusher {
    Flusher() = default;
    Flusher(const Flusher&) = delete;
    Flusher& operator=(const Flusher&) = delete;
    ~Flusher() {
      ThreadSlot& slot = this_thread_;
      slot.state = SlotState::gone;
      if (void* block = std::exchange(slot.block, nullptr)) {
        to_ring(block);
      }
    }
  };
  static inline thread_local ThreadSlot this_thread_{nullptr, SlotState::unused};

  /// Keeps `block` (its size already in its first bytes) in the ring, or frees it.
  static void to_ring(void* block) noexcept {
    MpmcRing* cache = ring();
    if (cache == nullptr || !cache->try_push(block)) {
      ::operator delete(block);
    }
  }

  static MpmcRing* ring() noexcept {
    if constexpr (capacity == 0) {
      return nullptr;
    } else {
      static MpmcRing* const made = []() noexcept -> MpmcRing* {
        try {
          return new MpmcRing(capacity);  // NOLINT(cppcoreguidelines-owning-memory): see above
        } catch (...) {
          return nullptr;
        }
      }();
      return made;
    }
  }
};

}  // namespace supervisor::detail

#undef SUPERVISOR_DETAIL_BLOCK_CACHE_OFF
