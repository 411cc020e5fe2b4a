# Consumer tests: small CMake projects (tests/packaging/cmake_*/project) that use supervisor the
# ways a user would, each configured, built and run by CTest as a chain of fixtures, like
# nlohmann/json's tests/cmake_import and friends. They check that the package works from outside
# this build: the usage requirements (C++20, Threads, include path), and that nothing of our own
# development setup (warning flags, test and example targets) reaches the consumer.

include_guard(GLOBAL)

# supervisor_add_consumer_test(<name> [REQUIRES <fixture>] [CONFIGURE_ARGS <arg>...])
#
# Registers three tests for the project in ${CMAKE_CURRENT_SOURCE_DIR}/project, built in
# ${CMAKE_CURRENT_BINARY_DIR}/project-build:
#
#   <name>_configure  configures it (after the tests that set up <fixture>, if given), with this
#                     build's generator, compiler, flags and build type, plus CONFIGURE_ARGS;
#   <name>_build      builds it;
#   <name>_run        runs its executable `consumer`, which must exit with 0.
#
# Each step is a fixture setup of the next, so `ctest -R <name>_run` runs the whole chain, and a
# failed step skips the later ones.
function(supervisor_add_consumer_test name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "REQUIRES" "CONFIGURE_ARGS")

  set(source_dir "${CMAKE_CURRENT_SOURCE_DIR}/project")
  set(build_dir "${CMAKE_CURRENT_BINARY_DIR}/project-build")
  get_property(multi_config GLOBAL PROPERTY GENERATOR_IS_MULTI_CONFIG)

  # The same toolchain as this build: a consumer built by another compiler or standard library
  # would test something else.
  set(configure_args -G "${CMAKE_GENERATOR}" "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}"
                     "-DCMAKE_CXX_FLAGS=${CMAKE_CXX_FLAGS}")
  if(CMAKE_GENERATOR_PLATFORM)
    list(APPEND configure_args -A "${CMAKE_GENERATOR_PLATFORM}")
  endif()
  if(CMAKE_GENERATOR_TOOLSET)
    list(APPEND configure_args -T "${CMAKE_GENERATOR_TOOLSET}")
  endif()
  if(CMAKE_GENERATOR MATCHES "Ninja|Makefiles" AND CMAKE_MAKE_PROGRAM)
    list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}")
  endif()
  if(CMAKE_TOOLCHAIN_FILE)
    list(APPEND configure_args "-DCMAKE_TOOLCHAIN_FILE=${CMAKE_TOOLCHAIN_FILE}")
  endif()
  if(NOT multi_config)
    list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE}")
  endif()
  # A clean configure each time, so no cache entry of an earlier run (say, where the package was
  # found) can hide a problem.
  if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.24)
    list(APPEND configure_args --fresh)
  endif()

  add_test(NAME ${name}_configure COMMAND "${CMAKE_COMMAND}" ${configure_args} ${arg_CONFIGURE_ARGS}
                                          -S "${source_dir}" -B "${build_dir}")

  if(multi_config)
    add_test(NAME ${name}_build COMMAND "${CMAKE_COMMAND}" --build "${build_dir}" --config
                                        "$<CONFIG>")
    set(executable "${build_dir}/$<CONFIG>/consumer${CMAKE_EXECUTABLE_SUFFIX}")
  else()
    add_test(NAME ${name}_build COMMAND "${CMAKE_COMMAND}" --build "${build_dir}")
    set(executable "${build_dir}/consumer${CMAKE_EXECUTABLE_SUFFIX}")
  endif()

  add_test(NAME ${name}_run COMMAND "${executable}")

  set_tests_properties(${name}_configure PROPERTIES FIXTURES_SETUP ${name}_configured TIMEOUT 300)
  if(arg_REQUIRES)
    set_tests_properties(${name}_configure PROPERTIES FIXTURES_REQUIRED ${arg_REQUIRES})
  endif()
  set_tests_properties(${name}_build PROPERTIES FIXTURES_REQUIRED ${name}_configured
                                                FIXTURES_SETUP ${name}_built TIMEOUT 600)
  set_tests_properties(${name}_run PROPERTIES FIXTURES_REQUIRED ${name}_built TIMEOUT 60)
  set_tests_properties(${name}_configure ${name}_build ${name}_run PROPERTIES LABELS packaging)
endfunction()
