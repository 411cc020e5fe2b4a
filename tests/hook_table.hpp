#pragma once

// `HookTable`: a `MapTable` of `HeldKey` rows whose reads the test can hold at chosen steps: a
// pass before each row it reads, a pass in `close()` (after it marked every row it read, before
// it prunes or forgets), and `get(key)` before and after it reads the row.

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "held_key.hpp"
#include "support.hpp"

namespace test {

/// A `MapTable` whose cursor calls a hook before each `next()` (holds a pass before it prunes)
/// and one in `close()` (after the pass has marked every row it read, before it prunes), and
/// whose `get` calls hooks before and after it reads the row.
struct HookTable {
  using Rows = supervisor::MapTable<HeldKey, Probe, HeldKeyHash>;
  std::shared_ptr<Rows> rows = std::make_shared<Rows>();
  std::function<void(std::size_t position)> on_next;
  std::function<void()> on_close;
  std::function<void()> before_get;
  std::function<void(bool found)> after_get;

  struct Cursor {
    Rows::Cursor inner;
    HookTable* table;
    std::size_t position = 0;
    bool next() {
      if (table->on_next) {
        table->on_next(position);
      }
      ++position;
      return inner.next();
    }
    std::pair<HeldKey, Probe> get() { return inner.get(); }
    void close() {
      if (table->on_close) {
        table->on_close();
      }
      inner.close();
    }
  };

  std::optional<Probe> get(const HeldKey& key) {
    if (before_get) {
      before_get();
    }
    std::optional<Probe> row = rows->get(key);
    if (after_get) {
      after_get(row.has_value());
    }
    return row;
  }
  Cursor iterate() { return Cursor{rows->iterate(), this}; }
};

}  // namespace test
