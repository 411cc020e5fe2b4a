#include "catch_shim.hpp"  // first: it picks the Catch2 v2 or v3 header
#include "support.hpp"

// Standard headers after the test support.
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

// MapTable and the Table / TableCursor concepts.

namespace {

using StringTable = supervisor::MapTable<std::string, int>;

/// Drains a cursor through the next/get protocol, then closes it.
template <class Cursor>
std::map<std::string, int> drain(Cursor cursor) {
  std::map<std::string, int> rows;
  while (cursor.next()) {
    rows.insert(cursor.get());
  }
  cursor.close();
  return rows;
}

struct NoClose {
  bool next() { return false; }
  std::pair<std::string, int> get() { return {}; }
};
struct WrongRow {
  bool next() { return false; }
  std::string get() { return {}; }
  void close() {}
};
struct GoodCursor {
  bool next() { return false; }
  std::pair<std::string, int> get() { return {}; }
  void close() {}
};
struct NoIterate {
  std::optional<int> get(const std::string& /*key*/) { return {}; }
};
struct BadGet {
  std::vector<int> get(const std::string& /*key*/) { return {}; }
  GoodCursor iterate() { return {}; }
};
struct BadCursor {
  std::optional<int> get(const std::string& /*key*/) { return {}; }
  NoClose iterate() { return {}; }
};
struct GoodTable {
  std::optional<int> get(const std::string& /*key*/) { return {}; }
  GoodCursor iterate() { return {}; }
};

}  // namespace

static_assert(supervisor::TableCursor<StringTable::Cursor, std::string, int>);
static_assert(supervisor::TableCursor<GoodCursor, std::string, int>);
static_assert(!supervisor::TableCursor<NoClose, std::string, int>);
static_assert(!supervisor::TableCursor<WrongRow, std::string, int>);

static_assert(supervisor::Table<StringTable, std::string, int>);
static_assert(supervisor::Table<const StringTable, std::string, int>);
static_assert(supervisor::Table<GoodTable, std::string, int>);
static_assert(supervisor::Table<supervisor::MapTable<int, test::Probe>, int, test::Probe>);
static_assert(!supervisor::Table<StringTable, int, int>);  // the key type does not match
static_assert(!supervisor::Table<NoIterate, std::string, int>);
static_assert(!supervisor::Table<BadGet, std::string, int>);
static_assert(!supervisor::Table<BadCursor, std::string, int>);
static_assert(!supervisor::Table<int, std::string, int>);

TEST_CASE("Table: MapTable get, insert_or_assign, erase, contains, size", "[table]") {
  StringTable table;
  CHECK(table.size() == 0);
  CHECK_FALSE(table.contains("a"));
  CHECK(table.get("a") == std::nullopt);

  table.insert_or_assign("a", 1);
  table.insert_or_assign("b", 2);
  CHECK(table.size() == 2);
  CHECK(table.contains("a"));
  CHECK(table.get("a") == std::optional<int>(1));
  CHECK(table.get("b") == std::optional<int>(2));

  table.insert_or_assign("a", 10);  // replaces
  CHECK(table.size() == 2);
  CHECK(table.get("a") == std::optional<int>(10));

  CHECK(table.erase("a"));
  CHECK_FALSE(table.erase("a"));
  CHECK_FALSE(table.contains("a"));
  CHECK(table.get("a") == std::nullopt);
  CHECK(table.size() == 1);

  const StringTable listed{{"x", 1}, {"y", 2}};
  CHECK(listed.size() == 2);
  CHECK(listed.get("y") == std::optional<int>(2));
}

TEST_CASE("Table: MapTable iterate follows the cursor protocol", "[table]") {
  StringTable table{{"a", 1}, {"b", 2}, {"c", 3}};

  SECTION("every row once") {
    CHECK(drain(table.iterate()) == std::map<std::string, int>{{"a", 1}, {"b", 2}, {"c", 3}});
  }
  SECTION("an empty table has no rows") {
    StringTable empty;
    auto cursor = empty.iterate();
    CHECK_FALSE(cursor.next());
    CHECK_FALSE(cursor.next());
    cursor.close();
  }
  SECTION("next stays false at the end") {
    auto cursor = table.iterate();
    int rows = 0;
    while (cursor.next()) {
      ++rows;
    }
    CHECK(rows == 3);
    CHECK_FALSE(cursor.next());
    cursor.close();
  }
  SECTION("the cursor is a copy: later changes do not show") {
    auto cursor = table.iterate();
    table.erase("a");
    table.insert_or_assign("d", 4);
    CHECK(drain(std::move(cursor)) == std::map<std::string, int>{{"a", 1}, {"b", 2}, {"c", 3}});
    CHECK(drain(table.iterate()) == std::map<std::string, int>{{"b", 2}, {"c", 3}, {"d", 4}});
  }
  SECTION("close releases the rows") {
    auto cursor = table.iterate();
    REQUIRE(cursor.next());
    cursor.close();
    CHECK_FALSE(cursor.next());
  }
}

TEST_CASE("MapTable destroys replaced and erased rows outside its lock", "[table]") {
  // A runnable whose destructor reads the table: under the table's lock, that would deadlock.
  struct Reader {
    std::shared_ptr<std::function<void()>> on_destroy;
    void run(const std::stop_token& /*force*/, supervisor::Ready& ready) const { ready(); }
    Reader() = default;
    explicit Reader(std::shared_ptr<std::function<void()>> f) : on_destroy(std::move(f)) {}
    Reader(const Reader&) = default;
    Reader(Reader&&) noexcept = default;
    Reader& operator=(const Reader&) = default;
    Reader& operator=(Reader&&) noexcept = default;
    ~Reader() {
      if (on_destroy && on_destroy.use_count() == 1 && *on_destroy) {
        (*on_destroy)();
      }
    }
  };
  supervisor::MapTable<std::string, Reader> table;
  std::size_t seen = 99;
  auto hook = [&] { seen = table.size(); };
  table.insert_or_assign("a", Reader(std::make_shared<std::function<void()>>(hook)));
  table.insert_or_assign("a", Reader());  // The replaced row's last copy dies here.
  CHECK(seen == 1);
  seen = 99;
  table.insert_or_assign("b", Reader(std::make_shared<std::function<void()>>(hook)));
  CHECK(table.erase("b"));
  CHECK(seen == 1);
}
