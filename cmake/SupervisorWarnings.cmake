# Warning and sanitizer flags for supervisor's own test, example and benchmark targets. Never call
# these on the INTERFACE target `supervisor`: they would leak into every consumer.

include_guard(GLOBAL)

# supervisor_set_sanitizers(<target>)
#
# Adds -fsanitize=${SUPERVISOR_SANITIZE} (e.g. "thread" or "address,undefined") to the compile and
# link options of <target>. Does nothing when SUPERVISOR_SANITIZE is empty.
function(supervisor_set_sanitizers target)
  if(SUPERVISOR_SANITIZE STREQUAL "")
    return()
  endif()
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang|AppleClang)$")
    message(FATAL_ERROR "SUPERVISOR_SANITIZE is only supported with GCC and Clang, "
                        "not ${CMAKE_CXX_COMPILER_ID}")
  endif()

  # Line tables only (-g1, GCC and Clang alike), except in Debug: all a sanitizer's stack trace
  # needs, at a fraction of full debug info's compile time (GCC's ASan+UBSan at -O2: 176 s instead
  # of 227 s for our largest test). A later -g level overrides an earlier one, such as the -g of
  # RelWithDebInfo.
  set(flags "-fsanitize=${SUPERVISOR_SANITIZE}" -fno-omit-frame-pointer $<IF:$<CONFIG:Debug>,-g,-g1>)
  if(SUPERVISOR_SANITIZE MATCHES "undefined")
    # Make UBSan findings fatal (and thus test failures) instead of printed-and-continued.
    list(APPEND flags -fno-sanitize-recover=undefined)
  endif()
  target_compile_options(${target} PRIVATE ${flags})
  target_link_options(${target} PRIVATE ${flags})
endfunction()

# supervisor_set_warnings(<target>)
#
# Adds the project's warning flags (and -Werror / /WX when SUPERVISOR_WARNINGS_AS_ERRORS is on) to
# <target>, then applies the sanitizers selected by SUPERVISOR_SANITIZE.
function(supervisor_set_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 $<$<BOOL:${SUPERVISOR_WARNINGS_AS_ERRORS}>:/WX>)
  elseif(CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang|AppleClang)$")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic
                                             $<$<BOOL:${SUPERVISOR_WARNINGS_AS_ERRORS}>:-Werror>)
  endif()
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # GCC 12 warns falsely inside <stop_token> (std::stop_source, std::jthread) and <regex> at -O2
    # and above, and more so under the sanitizers; the warning is noise there, not a finding.
    target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
  endif()
  supervisor_set_sanitizers(${target})
endfunction()
