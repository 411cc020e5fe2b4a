#pragma once

/// \file
/// `EpochDomain`: epoch-based reclamation, the one piece of program-wide state, so that lookups
/// write no shared memory and writers free nothing a reader may still hold; kept consistent across
/// `fork()`.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <utility>

#include "supervisor/detail/prefetch.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define SUPERVISOR_DETAIL_EPOCH_ATFORK 1
#endif

namespace supervisor::detail {

/// Epoch-based reclamation: lets readers walk a structure without writing any shared cache line,
/// while writers unlink nodes and free them only once no reader can still hold them.
///
/// A reader brackets its walk with a `Pin`: it publishes the global epoch it saw in a record its
/// thread holds (its own cache line; on a thread without one, a `Spare`'s, lent for the pin), and
/// clears it when done. A writer that unlinks a node retires it with the global epoch of that
/// moment; the node may be freed once the global epoch has advanced twice past it. The epoch
/// advances only when every pinned reader has seen the current one, so a reader that could have
/// reached the node holds it back.
///
/// One domain per program (per shared object: it is a function-local static of an inline
/// function), which every map shares. Writers never wait for readers; a reader that stays
/// pinned only delays reclamation.
///
/// All orderings are sequentially consistent but one, the store that ends a pin (a release: what
/// the reader did before happens-before whatever reads its record cleared): on x86 that costs one
/// locked store per pin, and it keeps the proof to the single total order (and ThreadSanitizer
/// models it exactly).
///
/// A writer that finds no reader pinned at all (`none_pinned`) may free at once what it unlinked
/// before, with a sequentially consistent store, without advancing the epoch: a reader pins (a
/// sequentially consistent store) before it reads any link, so either the writer saw its pin, or
/// the reader's loads come after the unlink in the single total order and cannot reach the node.
/// A thread whose record joins the list after the scan began pins after that too.
///
/// `fork()` (POSIX): a child has only the thread that forked, but inherits the records of all
/// the parent's threads; a record left pinned would stop the epoch for good, and the list's lock
/// held by another thread would block the child's first new thread. So `pthread_atfork` handlers
/// hold the lock across the fork, and in the child hand back every record but the forking
/// thread's (which keeps its pins: fork may be called from a lookup's callback). What a child of a
/// process that uses the library may do, then: use the library afresh (new maps, supervisors and
/// processes, lookups, threads), and let the forking thread's pins end as in the parent. It must
/// not use, nor destroy, the maps, supervisors or processes inherited from the parent that other
/// threads were using (a running supervisor always has some): those threads did not survive the
/// fork, and their locks may be held for good. A map only the forking thread used is as it was.
/// POSIX allows only async-signal-safe calls in the child of a multithreaded parent (glibc allows
/// more, such as `malloc`); what this library guarantees is that the epoch domain is consistent in
/// the child.
class EpochDomain {
  struct Record;

 public:
  static EpochDomain& instance() {
    // Never destroyed: threads may still pin while static destructors run.
    static EpochDomain* const domain = create();
    return *domain;
  }

  class Pin;

  /// A record held back for a walk on a thread that may have none yet (a stop callback runs on
  /// whichever thread requests the stop): acquired where failing for memory is allowed, so that
  /// the pin made with it later allocates nothing and cannot throw. One pin at a time uses it.
  class Spare {
   public:
    Spare() : domain_(instance()), record_(domain_.acquire_record()) {}
    ~Spare() { domain_.release_record(record_); }
    Spare(const Spare&) = delete;
    Spare& operator=(const Spare&) = delete;

   private:
    friend class EpochDomain::Pin;
    EpochDomain& domain_;
    Record* record_;
  };

  /// Keeps every node reachable at its construction from being freed until its destruction.
  /// Nests on one thread. Not movable: it belongs to the thread that made it.
  class Pin {
   public:
    /// Pins with this thread's record, or, if it has none, with `spare`'s, which the thread's
    /// nested pins then use too: never allocates, never throws.
    explicit Pin(Spare& spare) noexcept : domain_(spare.domain_) {
      record_ = this_thread_.record;
      if (record_ == nullptr) {
        record_ = spare.record_;
        lent_ = true;
        this_thread_.record = record_;
      }
      if (record_->depth++ == 0) {
        record_->pinned.store(domain_.epoch_.load());
      }
    }
    Pin() : domain_(instance()) {
      record_ = domain_.this_thread_record();
      if (record_ == nullptr) {
        // The thread is exiting and its own record is gone: borrow one for this pin, and make it
        // the thread's while the pin lasts, for nested pins and for a fork in its scope.
        record_ = domain_.acquire_record();
        borrowed_ = true;
        this_thread_.record = record_;
      }
      if (record_->depth++ == 0) {
        record_->pinned.store(domain_.epoch_.load());
      }
    }
    ~Pin() {
      if (--record_->depth == 0) {
        // A release is enough to end a pin (no later load of this thread must be ordered
        // before it), and saves a locked instruction on every lookup.
        record_->pinned.store(0, std::memory_order_release);
      }
      if (borrowed_ || lent_) {
        this_thread_.record = nullptr;
      }
      if (borrowed_) {
        domain_.release_record(record_);
      }
    }
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;

   private:
    EpochDomain& domain_;
    Record* record_ = nullptr;
    bool borrowed_ = false;  // acquired for this pin (the thread's own is gone)
    bool lent_ = false;      // a `Spare`'s
  };

  /// The current global epoch: what a writer tags a node it has just unlinked with.
  [[nodiscard]] std::uint64_t epoch() const noexcept { return epoch_.load(); }

  /// Whether a node retired at `retired` can be freed now.
  [[nodiscard]] bool reclaimable(std::uint64_t retired) const noexcept {
    return epoch_.load() >= retired + 2;
  }

  /// Whether this thread holds a record, so that a `Pin` made now allocates nothing (and so
  /// cannot throw).
  [[nodiscard]] static bool thread_has_record() noexcept { return this_thread_.record != nullptr; }

  /// How many records `try_advance` reads: one per live thread that has pinned, and one per
  /// `Spare` held.
  [[nodiscard]] std::size_t records() const noexcept { return record_count_.load(); }

  /// Whether no thread is pinned: then what the caller unlinked before, with a sequentially
  /// consistent store, can be freed at once (see the class). Reads every record, as
  /// `try_advance`, and stops at the first pinned one.
  [[nodiscard]] bool none_pinned() const noexcept {
    for (const Record* r = records_.load(); r != nullptr; r = r->next.load()) {
      if (r->pinned.load() != 0) {
        return false;
      }
    }
    return true;
  }

  /// Advances the global epoch by one if every pinned reader has seen the current one. Returns
  /// whether the epoch is past the one this call read (false may still mean that a concurrent
  /// call advanced it, and a reader has already pinned the new epoch).
  bool try_advance() noexcept {
    std::uint64_t current = epoch_.load();
    for (const Record* r = records_.load(); r != nullptr; r = r->next.load()) {
      const std::uint64_t seen = r->pinned.load();
      if (seen != 0 && seen != current) {
        return false;
      }
    }
    // A failure means a concurrent call advanced it: moved all the same.
    epoch_.compare_exchange_strong(current, current + 1);
    return true;
  }

 private:
  struct alignas(64) Record {
    std::atomic<std::uint64_t> pinned{0};  // 0 when not pinned, else the epoch seen at pinning
    unsigned depth = 0;                    // touched only by the thread that pins with it
    // The list of owned records: `next` is read by `try_advance` without the lock, and stays as
    // it is when the record leaves, so a scan standing on it goes on. The rest: under `mutex_`.
    std::atomic<Record*> next{nullptr};
    Record* prev = nullptr;
    Record* next_free = nullptr;
  };
  /// This thread's claim on the domain: trivially destructible, so readable at any point of the
  /// thread's exit, and a class member rather than a function's, so the fork handler can read the
  /// forking thread's. (One domain per program, so one record per thread.)
  /// (No default member initialisers: GCC wants them complete before the class is.)
  struct ThreadSlot {
    Record* record;  // the record this thread pins, or null
    bool released;   // the thread's exit has handed its own record back
  };
  static inline thread_local ThreadSlot this_thread_{nullptr, false};

  EpochDomain() = default;

  static EpochDomain* create() {
    auto* domain = new EpochDomain;  // NOLINT(cppcoreguidelines-owning-memory)
#if defined(SUPERVISOR_DETAIL_EPOCH_ATFORK)
    // Set before registering: a fork on another thread may run the handlers from here on, while
    // `instance()` is still initialising (and would block them).
    forking_domain_.store(domain);
    if (::pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child) != 0) {
      forking_domain_.store(nullptr);
      delete domain;           // NOLINT(cppcoreguidelines-owning-memory)
      throw std::bad_alloc();  // ENOMEM is its only error
    }
#endif
    return domain;
  }

  /// This thread's record, claimed on first use and handed back when the thread exits. Null
  /// once the thread's exit has released it (unless a pin has borrowed one).
  Record* this_thread_record() {
    // An owner whose destructor returns the record for another thread to reuse.
    struct Owner {
      EpochDomain& domain;
      ~Owner() {
        ThreadSlot& slot = this_thread_;
        if (slot.record->depth != 0) {
          // The thread ends inside a pin (`exit` called from a lookup's callback): the pin may
          // still be in use by whatever runs next, so the record stays owned, and pinned, for
          // good rather than go to a thread that would inherit its depth.
          return;
        }
        domain.release_record(slot.record);
        slot.record = nullptr;
        slot.released = true;
      }
    };
    ThreadSlot& slot = this_thread_;
    if (slot.record == nullptr && !slot.released) {
      slot.record = acquire_record();
      thread_local Owner owner{*this};
    }
    return slot.record;
  }

  /// Links a record (a free one if any) at the head of the list. A scan that began before
  /// misses it, harmlessly: its owner pins after this, so with the epoch the scan read or later.
  Record* acquire_record() {
    const std::lock_guard lock(mutex_);
    Record* record = free_;
    if (record != nullptr) {
      free_ = record->next_free;
    } else {
      record = new Record;  // NOLINT(cppcoreguidelines-owning-memory): kept for the program
    }
    Record* head = records_.load();
    record->prev = nullptr;
    record->next.store(head);
    if (head != nullptr) {
      head->prev = record;
    }
    records_.store(record);
    record_count_.fetch_add(1);
    return record;
  }

  /// Unlinks a record that is not pinned, so scans read only the records of live threads, and
  /// keeps it for reuse (never freed: a scan may still stand on it).
  void release_record(Record* record) noexcept {
    const std::lock_guard lock(mutex_);
    Record* next = record->next.load();
    (record->prev != nullptr ? record->prev->next : records_).store(next);
    if (next != nullptr) {
      next->prev = record->prev;
    }
    record->next_free = free_;
    free_ = record;
    record_count_.fetch_sub(1);
  }

#if defined(SUPERVISOR_DETAIL_EPOCH_ATFORK)
  // The fork handlers run inside `fork()`, the child's while it may call only async-signal-safe
  // functions: they neither allocate nor throw.

  /// Holds the lock across the fork, so that the child's copy of the list is whole.
  static void before_fork() noexcept { forking_domain_.load()->mutex_.lock(); }
  static void after_fork_in_parent() noexcept { forking_domain_.load()->mutex_.unlock(); }

  /// Only the forking thread lives on in the child: every other record (a `Spare`'s too) goes
  /// back to the free list, unpinned (their owners, and any scan standing on them, are gone; a
  /// `Spare` belongs to a running supervisor, which the child must not use), so the epoch can
  /// advance again. The forking thread keeps its record, with its pins, and unlocks the lock it
  /// took before the fork (it is the same thread in the child).
  static void after_fork_in_child() noexcept {
    EpochDomain& domain = *forking_domain_.load();
    Record* const own = this_thread_.record;
    for (Record* r = domain.records_.load(); r != nullptr;) {
      Record* const next = r->next.load();
      if (r != own) {
        r->pinned.store(0);
        r->depth = 0;
        r->next_free = domain.free_;
        domain.free_ = r;
      }
      r = next;
    }
    if (own != nullptr) {
      own->prev = nullptr;
      own->next.store(nullptr);
    }
    domain.records_.store(own);
    domain.record_count_.store(own != nullptr ? 1 : 0);
    domain.mutex_.unlock();
  }

  static inline std::atomic<EpochDomain*> forking_domain_{nullptr};
#endif

  alignas(64) std::atomic<std::uint64_t> epoch_{1};  // written only when advancing
  alignas(64) std::atomic<Record*> records_{nullptr};
  std::atomic<std::size_t> record_count_{0};
  std::mutex mutex_;  // changes to the list and the free records
  Record* free_ = nullptr;
};

/// Items unlinked from a structure read under `EpochDomain` pins, waiting until no pinned reader
/// can still hold them; oldest first, since epochs only grow along the list. `T` has
/// `std::uint64_t retired_at` and `T* next_retired`. Not thread-safe: its owner's lock guards it.
template <class T>
struct RetiredList {
  T* head = nullptr;
  T* tail = nullptr;

  void push(T* item, std::uint64_t epoch) noexcept {
    item->retired_at = epoch;
    (tail != nullptr ? tail->next_retired : head) = item;
    tail = item;
  }
  /// Detaches the oldest items that `domain` lets go, as a list ending in null.
  T* take_reclaimable(const EpochDomain& domain) noexcept {
    T* first = head;
    if (tail != nullptr && domain.reclaimable(tail->retired_at)) {
      // The newest can go, so all can: taken without walking the list, whose items lie
      // scattered (a shutdown of a million processes retires a million before `reclaim`).
      head = nullptr;
      tail = nullptr;
      return first;
    }
    T* last = nullptr;
    for (T* item = head; item != nullptr && domain.reclaimable(item->retired_at);
         item = item->next_retired) {
      last = item;
    }
    if (last == nullptr) {
      return nullptr;
    }
    head = last->next_retired;
    if (head == nullptr) {
      tail = nullptr;
    }
    last->next_retired = nullptr;
    return first;
  }
  /// Detaches every item, as a list ending in null.
  T* take_all() noexcept {
    tail = nullptr;
    return std::exchange(head, nullptr);
  }
  [[nodiscard]] bool empty() const noexcept { return head == nullptr; }
  [[nodiscard]] std::uint64_t newest() const noexcept { return tail->retired_at; }
};

/// Deletes each item of a list that `take_reclaimable` detached (null ends it). Items retire in
/// no order of address: it asks for the item `lead` places on, and for what the `value` of the
/// one half as far points at (when items have one, prefetch.hpp), so that the cache misses
/// overlap the destructors before them instead of following one another.
template <class T>
void delete_retired(T* items) noexcept {
  constexpr std::size_t lead = 8;
  const T* fetched = items;  // the next item to ask for
  const T* landed = items;   // the next item whose value to ask for
  for (std::size_t i = 0; i < lead && fetched != nullptr; ++i) {
    prefetch(fetched);
    fetched = fetched->next_retired;
    if (i < lead / 2) {
      landed = landed->next_retired;  // behind `fetched`, so not null
    }
  }
  while (items != nullptr) {
    if (fetched != nullptr) {
      prefetch(fetched);
      fetched = fetched->next_retired;
    }
    if (landed != nullptr) {
      if constexpr (requires { landed->value; }) {
        prefetch_pointee(landed->value);
      }
      landed = landed->next_retired;
    }
    delete std::exchange(items, items->next_retired);  // NOLINT(cppcoreguidelines-owning-memory)
  }
}

}  // namespace supervisor::detail
