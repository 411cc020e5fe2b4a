#pragma once

// Include this instead of a Catch2 header: it picks the right one for Catch2 v2 or v3.
#if defined(SUPERVISOR_CATCH2_V2)
#include <catch2/catch.hpp>
#else
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_all.hpp>
#endif
