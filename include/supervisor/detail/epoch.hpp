#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace supervisor::detail {

/// Epoch-based reclamation: lets readers walk a structure without writing any shared cache line,
/// while writers unlink nodes and free them only once no reader can still hold them.
///
/// A reader brackets its walk with a `Pin`: it publishes the global epoch it saw in a record of
/// its own thread (its own cache line), and clears it when done. A writer that unlinks a node
/// retires it with the global epoch of that moment; the node may be freed once the global epoch
/// has advanced twice past it. The epoch advances only when every pinned reader has seen the
/// current one, so a reader that could have reached the node holds it back.
///
/// One domain per program (per shared object: it is a function-local static of an inline
/// function), which every map shares. Writers never wait for readers; a reader that stays
/// pinned only delays reclamation.
///
/// All orderings are sequentially consistent: on x86 that costs one locked store per pin, and it
/// keeps the proof to the single total order (and ThreadSanitizer models it exactly).
class EpochDomain {
  struct Record;

 public:
  static EpochDomain& instance() {
    // Never destroyed: threads may still pin while static destructors run.
    static EpochDomain* const domain = new EpochDomain;  // NOLINT(cppcoreguidelines-owning-memory)
    return *domain;
  }

  /// Keeps every node reachable at its construction from being freed until its destruction.
  /// Nests on one thread. Not movable: it belongs to the thread that made it.
  class Pin {
   public:
    Pin() : domain_(instance()) {
      record_ = domain_.this_thread_record();
      if (record_ == nullptr) {
        // The thread is exiting and its cached record is gone: borrow one for this pin.
        record_ = domain_.acquire_record();
        borrowed_ = true;
      }
      if (record_->depth++ == 0) {
        record_->pinned.store(domain_.epoch_.load());
      }
    }
    ~Pin() {
      if (--record_->depth == 0) {
        record_->pinned.store(0);
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
    bool borrowed_ = false;
  };

  /// The current global epoch: what a writer tags a node it has just unlinked with.
  [[nodiscard]] std::uint64_t epoch() const noexcept { return epoch_.load(); }

  /// Whether a node retired at `retired` can be freed now.
  [[nodiscard]] bool reclaimable(std::uint64_t retired) const noexcept {
    return epoch_.load() >= retired + 2;
  }

  /// How many records `try_advance` reads: one per live thread that has pinned.
  [[nodiscard]] std::size_t records() const noexcept { return record_count_.load(); }

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
    unsigned depth = 0;                    // touched only by the owning thread
    // The list of owned records: `next` is read by `try_advance` without the lock, and stays as
    // it is when the record leaves, so a scan standing on it goes on. The rest: under `mutex_`.
    std::atomic<Record*> next{nullptr};
    Record* prev = nullptr;
    Record* next_free = nullptr;
  };
  EpochDomain() = default;

  /// This thread's record, claimed on first use and handed back when the thread exits. Null
  /// once the thread's exit has released it. (One domain per program, so one record per thread.)
  Record* this_thread_record() {
    // A trivially destructible cache, readable at any point of the thread's exit, and an owner
    // whose destructor returns the record for another thread to reuse.
    thread_local Record* cached = nullptr;
    thread_local bool released = false;
    struct Owner {
      EpochDomain& domain;
      Record*& cached;
      bool& released;
      ~Owner() {
        if (cached->depth != 0) {
          // The thread ends inside a pin (`exit` called from a lookup's callback): the pin may
          // still be in use by whatever runs next, so the record stays owned, and pinned, for
          // good rather than go to a thread that would inherit its depth.
          return;
        }
        domain.release_record(cached);
        cached = nullptr;
        released = true;
      }
    };
    if (cached == nullptr && !released) {
      cached = acquire_record();
      thread_local Owner owner{*this, cached, released};
    }
    return cached;
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

  alignas(64) std::atomic<std::uint64_t> epoch_{1};  // written only when advancing
  alignas(64) std::atomic<Record*> records_{nullptr};
  std::atomic<std::size_t> record_count_{0};
  std::mutex mutex_;  // changes to the list and the free records
  Record* free_ = nullptr;
};

}  // namespace supervisor::detail
