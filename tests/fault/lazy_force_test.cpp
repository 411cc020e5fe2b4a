// `LazyForce` at the moment its first `get_token` has made a source and not yet published it
// (the test seam `FaultPoint::lazy_force_made`): a request of force there, or another caller
// that makes and publishes its own source first. Both are windows a few instructions wide that
// racing threads rarely meet; here each is entered every time.

#include <stop_token>

#include "../catch_shim.hpp"
#include "supervisor/detail/fault_injection.hpp"
#include "supervisor/detail/force_signal.hpp"

namespace {

using supervisor::detail::FaultPoint;
using supervisor::detail::LazyForce;

enum class AtSeam { request, make_first };
LazyForce* g_force = nullptr;
AtSeam g_at = AtSeam::request;
int g_seams = 0;  // how many times the seam was met
std::stop_token g_inner;

void at_seam(FaultPoint point) {
  if (point != FaultPoint::lazy_force_made || g_force == nullptr) {
    return;
  }
  if (++g_seams != 1) {
    return;  // the inner maker's own seam: it publishes undisturbed
  }
  if (g_at == AtSeam::request) {
    CHECK(g_force->request_stop());
  } else {
    g_inner = g_force->get_token();
  }
}

/// Installs `at_seam` for one scenario, and puts the binary's own hook back.
struct Seam {
  decltype(supervisor::detail::fault_hook.load()) saved = supervisor::detail::fault_hook.load();
  Seam(LazyForce& force, AtSeam at) {
    g_force = &force;
    g_at = at;
    g_seams = 0;
    g_inner = {};
    supervisor::detail::fault_hook.store(&at_seam);
  }
  Seam(const Seam&) = delete;
  Seam& operator=(const Seam&) = delete;
  ~Seam() {
    supervisor::detail::fault_hook.store(saved);
    g_force = nullptr;
  }
};

}  // namespace

TEST_CASE("LazyForce: force requested while the first token's source is being made",
          "[lazy_force]") {
  LazyForce force;
  std::stop_token token;
  {
    const Seam seam(force, AtSeam::request);
    token = force.get_token();  // the request finds no source; the maker must request it
    CHECK(g_seams == 1);
  }
  CHECK(force.stop_requested());
  CHECK(token.stop_requested());
  CHECK(token == force.get_token());
}

TEST_CASE("LazyForce: another caller publishes a source first, and its is the one",
          "[lazy_force]") {
  LazyForce force;
  std::stop_token token;
  {
    const Seam seam(force, AtSeam::make_first);
    token = force.get_token();
    CHECK(g_seams == 2);  // both made a source; the inner one published
  }
  CHECK(token == g_inner);
  CHECK_FALSE(token.stop_requested());
  CHECK(force.request_stop());
  CHECK(token.stop_requested());  // the published source is the one requested
  g_inner = {};
}
