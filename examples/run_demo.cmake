# Runs one example in demo mode and checks it the way CI should:
#
#   cmake -DEXAMPLE=<path to the executable> "-DEXPECT=<name>: done" -P run_demo.cmake
#
# Fails unless the example exits with 0 and the last line of its standard output ends with
# EXPECT. The output is echoed as it comes, so `ctest -V` shows the example's progress.

if(NOT DEFINED EXAMPLE OR NOT DEFINED EXPECT)
  message(FATAL_ERROR "usage: cmake -DEXAMPLE=<exe> -DEXPECT=<final line> -P run_demo.cmake")
endif()

execute_process(
  COMMAND "${EXAMPLE}" --demo
  RESULT_VARIABLE result
  OUTPUT_VARIABLE output ECHO_OUTPUT_VARIABLE
  ERROR_VARIABLE errors ECHO_ERROR_VARIABLE)

if(NOT result STREQUAL "0")
  message(FATAL_ERROR "${EXAMPLE} --demo exited with ${result}")
endif()

string(STRIP "${output}" output)
string(FIND "${output}" "\n" last_newline REVERSE)
math(EXPR last_start "${last_newline} + 1")
string(SUBSTRING "${output}" ${last_start} -1 last_line)
string(LENGTH "${last_line}" last_length)
string(LENGTH "${EXPECT}" expect_length)
if(last_length LESS expect_length)
  set(tail "")
else()
  math(EXPR tail_start "${last_length} - ${expect_length}")
  string(SUBSTRING "${last_line}" ${tail_start} -1 tail)
endif()
if(NOT tail STREQUAL EXPECT)
  message(FATAL_ERROR "${EXAMPLE} --demo: expected the last line to end with \"${EXPECT}\", "
                      "got \"${last_line}\"")
endif()
