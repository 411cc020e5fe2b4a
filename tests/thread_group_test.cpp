#include <supervisor/detail/thread_group.hpp>
#include <thread>

#include "catch_shim.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using test::eventually;

TEST_CASE("ThreadGroup without reuse: each thread exits after its body", "[thread_group]") {
  supervisor::detail::ThreadGroup group;
  test::Event ran;
  bool owned = false;
  for (int i = 0; i < 4; ++i) {
    group.launch([&] {
      owned = group.owns_this_thread();
      ran.notify();
    });
    REQUIRE(ran.wait(i + 1));
    // Gone, not parked. (Thread ids cannot show this: the system reuses them.)
    REQUIRE(eventually([&] { return group.threads() == 0; }));
  }
  group.join_all();
  CHECK(owned);
  CHECK_FALSE(group.owns_this_thread());
}

TEST_CASE("ThreadGroup with reuse: a parked thread takes the next body", "[thread_group]") {
  supervisor::detail::ThreadGroup group({/*enabled=*/true, /*idle_timeout=*/test::patience,
                                         /*spin=*/20us});
  std::thread::id first, second;
  test::Event ran;
  group.launch([&] {
    first = std::this_thread::get_id();
    ran.notify();
  });
  REQUIRE(ran.wait(1));
  REQUIRE(eventually([&] { return group.busy() == 0; }));  // Parked, not gone.
  CHECK(group.threads() == 1);
  group.launch([&] {
    second = std::this_thread::get_id();
    ran.notify();
  });
  REQUIRE(ran.wait(2));
  CHECK(first == second);
  CHECK(group.threads() == 1);
  group.join_all();  // Wakes the parked thread and joins it.
  CHECK(group.threads() == 0);
}

TEST_CASE("ThreadGroup with reuse: an idle thread exits after its timeout", "[thread_group]") {
  supervisor::detail::ThreadGroup group({/*enabled=*/true, /*idle_timeout=*/1ms, /*spin=*/0ns});
  test::Event ran;
  group.launch([&] { ran.notify(); });
  REQUIRE(ran.wait(1));
  REQUIRE(eventually([&] { return group.threads() == 0; }));
  group.join_all();
}

TEST_CASE("ThreadGroup: join_all waits for threads that finish while it joins others",
          "[thread_group]") {
  supervisor::detail::ThreadGroup group;
  constexpr int n = 40;
  std::atomic<int> finished{0};
  test::Event first_half;
  test::Event second_half;
  for (int i = 0; i < n; ++i) {
    group.launch([&, i] {
      (i % 2 == 0 ? first_half : second_half).wait();
      finished.fetch_add(1);
    });
  }
  first_half.notify();
  REQUIRE(eventually([&] { return finished.load() == n / 2; }));
  test::Background joiner([&] { group.join_all(); });
  // The first half is being (or has been) joined; the rest still runs.
  CHECK_FALSE(joiner.finished());
  second_half.notify();
  REQUIRE(joiner.wait());
  CHECK(finished.load() == n);
  CHECK(group.threads() == 0);
}
