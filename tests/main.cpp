// The Catch2 v2 main, compiled once into supervisor_catch_main. With Catch2 v3 the main comes from
// Catch2::Catch2WithMain and this file is not built.
#if defined(SUPERVISOR_CATCH2_V2)
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#endif
