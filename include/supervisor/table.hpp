#pragma once

/// \file
/// `Table`: the desired state, owned by the user (`MapTable`, in `map_table.hpp`, is an in-memory
/// one, included here).
///
/// A table maps keys to runnables. It is the source of truth: the supervisor keeps the running
/// processes equal to it. A process removes itself for good by erasing its own entry before it
/// returns. To stop a process for good, erase its entry first, then call `stop`: otherwise the
/// next restart pass starts it again. Do not re-add a key while its process is shutting down
/// unless you handle those orderings yourself.

#include <concepts>
#include <cstddef>
#include <memory>
#include <optional>
#include <utility>

#include "supervisor/map_table.hpp"

namespace supervisor {

/// A cursor over a table's rows, shaped like a database cursor so that one is easy to write over
/// a real one (`sqlite3_step`, a directory listing...).
///
/// - `next()` advances to the next row and returns whether there is one. Throwing from it means
///   the iteration itself failed: the pass reports the exception and stops there.
/// - `get()` returns the current row as `std::pair<Key, R>`. Throwing from it means this one row
///   is bad: the pass reports the exception and moves on to the next row.
/// - `close()` releases the cursor. The supervisor calls it exactly once per cursor, after the
///   last `next()`, whether the iteration succeeded or failed. Throwing from it is reported.
///
/// - Optionally `size()`: about how many rows the iteration holds, called once before the first
///   `next()`. Only a hint: the supervisor sizes its map of processes for that many once, instead
///   of growing it step by step (each step copies part of the map). Throwing from it is ignored.
///
/// The rows need not be a consistent snapshot. Every call is made on one thread at a time, and
/// `get()` at most once per row (so it may move the row out). A pass reads a few rows ahead of
/// the ones it starts (up to 8): when it ends early (out of start slots, or shutting down), rows
/// it has read may go unstarted until the next pass.
template <class C, class Key, class R>
concept TableCursor = requires(C& cursor) {
  { cursor.next() } -> std::convertible_to<bool>;
  { cursor.get() } -> std::convertible_to<std::pair<Key, R>>;
  cursor.close();
};

/// The desired state: a map from keys to runnables that the user owns.
///
/// - `get(key)` returns the runnable for `key` as `std::optional<R>`: empty when the table has no
///   such key (`start` then fails with `errc::not_in_table`). Throwing means the lookup failed:
///   `start` rethrows the exception intact.
/// - `iterate()` returns a `TableCursor` over every row. Throwing means the iteration could not
///   begin: the pass reports it.
///
/// The supervisor calls `get` from the thread that calls `start`, and `iterate` from the thread
/// that calls `run` (initial pass) or from its restart-loop thread, so `get` may run concurrently
/// with `iterate` and with itself: the table must allow that.
template <class T, class Key, class R>
concept Table = requires(T& table, const Key& key) {
  { table.get(key) } -> std::convertible_to<std::optional<R>>;
  { table.iterate() } -> TableCursor<Key, R>;
};

namespace detail {

/// A `Table` behind a virtual interface, so that `Supervisor` need not be a template on the table
/// type.
template <class Key, class R>
class AnyTable {
 public:
  class Cursor {
   public:
    Cursor() = default;
    Cursor(const Cursor&) = delete;
    Cursor& operator=(const Cursor&) = delete;
    virtual ~Cursor() = default;
    virtual bool next() = 0;
    virtual std::pair<Key, R> get() = 0;
    virtual void close() = 0;
    /// The user cursor's `size()`, or 0 if it has none (or it threw).
    virtual std::size_t size_hint() noexcept { return 0; }
  };

  AnyTable() = default;
  AnyTable(const AnyTable&) = delete;
  AnyTable& operator=(const AnyTable&) = delete;
  virtual ~AnyTable() = default;
  virtual std::optional<R> get(const Key& key) = 0;
  virtual std::unique_ptr<Cursor> iterate() = 0;
};

template <class Key, class R, class T>
class TableModel final : public AnyTable<Key, R> {
 public:
  explicit TableModel(std::shared_ptr<T> table) : table_(std::move(table)) {}

  std::optional<R> get(const Key& key) override { return table_->get(key); }

  std::unique_ptr<typename AnyTable<Key, R>::Cursor> iterate() override {
    return std::make_unique<CursorModel>(table_->iterate());
  }

 private:
  using UserCursor = decltype(std::declval<T&>().iterate());

  class CursorModel final : public AnyTable<Key, R>::Cursor {
   public:
    explicit CursorModel(UserCursor cursor) : cursor_(std::move(cursor)) {}
    bool next() override { return static_cast<bool>(cursor_.next()); }
    std::pair<Key, R> get() override { return cursor_.get(); }
    void close() override { cursor_.close(); }
    std::size_t size_hint() noexcept override {
      if constexpr (requires(UserCursor & c) {
                      { c.size() } -> std::convertible_to<std::size_t>;
                    }) {
        try {
          return static_cast<std::size_t>(cursor_.size());
        } catch (...) {  // NOLINT(bugprone-empty-catch): only a hint; none then.
        }
      }
      return 0;
    }

   private:
    UserCursor cursor_;
  };

  std::shared_ptr<T> table_;
};

}  // namespace detail
}  // namespace supervisor
