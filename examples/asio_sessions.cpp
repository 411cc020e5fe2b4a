// asio_sessions: a TCP session per device, each a coroutine process resumed by an
// `asio::io_context`, never a thread of its own (standalone asio, Debian's libasio-dev).
//
//   asio_sessions          runs until SIGINT (Ctrl-C) or SIGTERM
//   asio_sessions --demo   a bounded run of about a second; prints "asio_sessions: done" last if
//                          everything happened as it should (CI checks it)
//
// What it shows:
// - `IoContextExecutor`: the few lines that let a supervisor resume its coroutines on an
//   io_context (`Options::executor`); `await_completion`: awaiting any asio operation from a
//   `supervisor::Task` with a plain completion handler;
// - a `Session` per device: connects, signals `ready` once connected (`ready.signal()`: it goes
//   on working), sends a heartbeat every 100 ms and reads its echo, says "bye" on a graceful stop
//   and drops the connection at once on force;
// - the "devices" are an echo server on the same io_context, which counts heartbeats and byes;
// - "beta" leaves the table at run time and is stopped; "delta" joins and is started; on
//   shutdown every session says "bye".
//
// One thread runs the io_context, so a session's socket is only ever touched there: the stop
// callbacks (which run on whichever thread asks for the stop) post their work to it.

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>

#include "example_support.hpp"
#include "supervisor/supervisor.hpp"

namespace {

using namespace std::chrono_literals;
using asio::ip::tcp;
using example::say;
using supervisor::Task;

// ---- asio glue -----------------------------------------------------------------------------

/// A supervisor's executor over an io_context: coroutines are resumed by whichever thread runs
/// it. Keep the io_context running (with a work guard) until the supervisor's `run` returns.
class IoContextExecutor {
 public:
  explicit IoContextExecutor(asio::io_context& io) : io_(&io) {}
  void schedule(std::coroutine_handle<> h) const {
    asio::post(*io_, [h] { h.resume(); });
  }
  [[nodiscard]] bool running_in_this_thread() const noexcept {
    return io_->get_executor().running_in_this_thread();
  }

 private:
  asio::io_context* io_;
};
static_assert(supervisor::Executor<IoContextExecutor>);

/// `co_await await_completion<Results...>(initiate)`: calls `initiate(handler)` to start an asio
/// operation, suspends, and resumes with the handler's arguments as a tuple. asio never calls a
/// handler from inside the initiating call, so the resumption always comes after the suspension.
template <class... Results, class Initiate>
auto await_completion(Initiate initiate) {
  struct Awaiter {
    Initiate initiate;
    std::optional<std::tuple<Results...>> results;  // some results have no default value
    [[nodiscard]] bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      initiate([this, h](Results... r) {
        results.emplace(std::move(r)...);
        h.resume();
      });
    }
    std::tuple<Results...> await_resume() { return std::move(*results); }
  };
  return Awaiter{std::move(initiate), std::nullopt};
}

// ---- the devices: an echo server that counts ------------------------------------------------

struct DeviceStats {
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::string, int> heartbeats;
  std::set<std::string> byes;

  void record(const std::string& line) {
    {
      const std::lock_guard lock(mutex);
      if (line.rfind("bye ", 0) == 0) {
        byes.insert(line.substr(4));
      } else if (line.rfind("ping ", 0) == 0) {
        ++heartbeats[line.substr(5, line.find(' ', 5) - 5)];
      }
    }
    changed.notify_all();
  }
  template <class Predicate>
  bool wait_until(Predicate holds, std::chrono::milliseconds patience) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, patience, [&] { return holds(*this); });
  }
};

Task<> serve_connection(tcp::socket socket, DeviceStats& stats) {
  asio::streambuf buffer;
  for (;;) {
    auto [ec, n] = co_await await_completion<std::error_code, std::size_t>(
        [&](auto handler) { asio::async_read_until(socket, buffer, '\n', std::move(handler)); });
    if (ec) {
      co_return;  // the session went away
    }
    std::string line(asio::buffers_begin(buffer.data()),
                     asio::buffers_begin(buffer.data()) + static_cast<std::ptrdiff_t>(n));
    buffer.consume(n);
    line.pop_back();
    stats.record(line);
    std::string echo = line + "\n";
    auto [write_ec, written] = co_await await_completion<std::error_code, std::size_t>(
        [&](auto handler) { asio::async_write(socket, asio::buffer(echo), std::move(handler)); });
    (void)written;
    if (write_ec) {
      co_return;
    }
  }
}

Task<> accept_devices(tcp::acceptor& acceptor, DeviceStats& stats, IoContextExecutor executor) {
  for (;;) {
    auto [ec, socket] = co_await await_completion<std::error_code, tcp::socket>(
        [&](auto handler) { acceptor.async_accept(std::move(handler)); });
    if (ec) {
      co_return;  // closed at the end
    }
    supervisor::spawn(executor, serve_connection(std::move(socket), stats),
                      [](const std::exception_ptr&) {});
  }
}

// ---- a session per device: the coroutine runnable ------------------------------------------

/// The session's connection and timer, shared with the stop callbacks that post to them.
struct Connection {
  explicit Connection(asio::io_context& io) : socket(io), timer(io) {}
  tcp::socket socket;
  asio::steady_timer timer;
  void interrupt() {
    std::error_code ignored;
    socket.cancel(ignored);
    timer.cancel();
  }
};

class Session {
 public:
  Session(asio::io_context& io, std::string device, std::uint16_t port)
      : io_(&io), device_(std::move(device)), port_(port) {}

  Task<std::error_code> run(std::stop_token force, supervisor::AsyncReady& ready) const {
    auto connection = std::make_shared<Connection>(*io_);
    // Force and the graceful stop both interrupt whatever the session waits for; each is posted
    // to the io_context's thread, the only one that touches the connection.
    auto interrupt = [io = io_, connection] {
      asio::post(*io, [connection] { connection->interrupt(); });
    };
    const std::stop_callback on_force(force, interrupt);
    auto [connect_ec] = co_await await_completion<std::error_code>([&](auto handler) {
      connection->socket.async_connect({asio::ip::address_v4::loopback(), port_},
                                       std::move(handler));
    });
    if (connect_ec) {
      co_return connect_ec;  // never ready: the start fails with this code
    }
    say(device_, ": connected");
    ready.signal();
    const std::stop_token stopping = ready.stop_token();  // graceful stop or force
    const std::stop_callback on_stop(stopping, interrupt);
    asio::streambuf echo;
    for (int beat = 1; !stopping.stop_requested(); ++beat) {
      std::string ping = "ping " + device_ + " " + std::to_string(beat) + "\n";
      auto [write_ec, written] =
          co_await await_completion<std::error_code, std::size_t>([&](auto handler) {
            asio::async_write(connection->socket, asio::buffer(ping), std::move(handler));
          });
      (void)written;
      if (write_ec) {
        break;
      }
      auto [read_ec, n] =
          co_await await_completion<std::error_code, std::size_t>([&](auto handler) {
            asio::async_read_until(connection->socket, echo, '\n', std::move(handler));
          });
      if (read_ec) {
        break;
      }
      echo.consume(n);
      if (stopping.stop_requested()) {
        break;
      }
      connection->timer.expires_after(100ms);
      (void)co_await await_completion<std::error_code>(
          [&](auto handler) { connection->timer.async_wait(std::move(handler)); });
    }
    if (force.stop_requested()) {
      say(device_, ": forced, connection dropped");
      co_return std::error_code{};
    }
    // Graceful: say goodbye, then close.
    std::string bye = "bye " + device_ + "\n";
    (void)co_await await_completion<std::error_code, std::size_t>([&](auto handler) {
      asio::async_write(connection->socket, asio::buffer(bye), std::move(handler));
    });
    say(device_, ": said bye");
    co_return std::error_code{};
  }

 private:
  asio::io_context* io_;
  std::string device_;
  std::uint16_t port_;
};
static_assert(supervisor::CoroutineRunnable<Session>);

using Devices = supervisor::MapTable<std::string, Session>;

}  // namespace

int main(int argc, char** argv) {
  const bool demo = argc > 1 && std::string_view(argv[1]) == "--demo";
  try {
    asio::io_context io;
    auto work = asio::make_work_guard(io);
    IoContextExecutor executor(io);

    DeviceStats stats;
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    const auto port = acceptor.local_endpoint().port();
    supervisor::spawn(executor, accept_devices(acceptor, stats, executor),
                      [](const std::exception_ptr&) {});
    // Joined on every way out: drained at the normal end, stopped if something threw.
    struct IoThread {
      asio::io_context& io;
      std::thread thread;
      ~IoThread() {
        if (thread.joinable()) {
          io.stop();
          thread.join();
        }
      }
    } io_thread{io, std::thread([&] { io.run(); })};

    auto devices = std::make_shared<Devices>();
    for (const char* name : {"alpha", "beta", "gamma"}) {
      devices->insert_or_assign(name, Session(io, name, port));
    }
    supervisor::Options<std::string> options;
    options.executor = executor;
    options.restart_interval = 200ms;
    options.on_error = supervisor::log_to_clog<std::string>;
    supervisor::Supervisor<std::string, Session> sessions(devices, options);

    bool ok = true;
    auto check = [&](bool holds, const char* what) {
      if (!holds) {
        say("asio_sessions: FAILED: ", what);
        ok = false;
      }
    };
    sessions.run([&](const std::stop_token& stopping) {
      auto each_beat = [](int beats) {
        return [beats](const DeviceStats& s) {
          for (const char* name : {"alpha", "beta", "gamma"}) {
            auto it = s.heartbeats.find(name);
            if (it == s.heartbeats.end() || it->second < beats) {
              return false;
            }
          }
          return true;
        };
      };
      check(stats.wait_until(each_beat(2), 10s), "every session sends heartbeats");
      devices->erase("beta");
      sessions.stop("beta");  // graceful: beta says bye before this returns
      check(stats.wait_until([](const DeviceStats& s) { return s.byes.count("beta") == 1; }, 10s),
            "beta said bye when stopped");
      devices->insert_or_assign("delta", Session(io, "delta", port));
      (void)sessions.start("delta");  // returns once delta has connected
      check(stats.wait_until(
                [](const DeviceStats& s) {
                  auto it = s.heartbeats.find("delta");
                  return it != s.heartbeats.end() && it->second >= 2;
                },
                10s),
            "delta, added at run time, sends heartbeats");
      if (!demo) {
        example::wait_for_stop(stopping);
      }
    });
    // `run` has stopped every session gracefully: each said bye.
    check(stats.wait_until([](const DeviceStats& s) { return s.byes.size() == 4; }, 10s),
          "every session said bye on shutdown");

    // Every session's socket is closed, so the echo connections end; then the acceptor.
    asio::post(io, [&] { acceptor.close(); });
    work.reset();
    io_thread.thread.join();  // returns once nothing is left to do
    if (!ok) {
      return EXIT_FAILURE;
    }
    say("asio_sessions: done");
    return EXIT_SUCCESS;
  } catch (const std::exception& e) {
    say("asio_sessions: ", e.what());
    return EXIT_FAILURE;
  }
}
