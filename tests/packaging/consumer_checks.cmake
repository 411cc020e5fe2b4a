# Checks and the consumer program shared by the three packaging projects (cmake_import,
# cmake_fetch_content, cmake_add_subdirectory): whichever way a user consumes supervisor, they get
# the library and nothing else.

# None of supervisor's own targets (tests, benchmarks, header checks, examples) may come along.
function(supervisor_check_no_leaked_targets)
  foreach(target IN ITEMS supervisor_tests supervisor_stress_tests supervisor_catch_main
                          supervisor_bench supervisor_verify_headers supervisor_example_quickstart)
    if(TARGET ${target} OR TARGET supervisor::${target})
      message(FATAL_ERROR "supervisor: the consumer sees the target ${target}")
    endif()
  endforeach()
endfunction()

# As a subproject below `dir`, supervisor adds the target `supervisor` and no other target or test
# (and `supervisor_postgres`, the optional PostgreSQL component, if the consumer turned it on).
function(supervisor_check_subproject_adds_only_library dir)
  set(targets "")
  set(tests "")
  set(pending "${dir}")
  while(pending)
    list(POP_FRONT pending current)
    get_property(more_targets DIRECTORY "${current}" PROPERTY BUILDSYSTEM_TARGETS)
    get_property(more_tests DIRECTORY "${current}" PROPERTY TESTS)
    get_property(subdirs DIRECTORY "${current}" PROPERTY SUBDIRECTORIES)
    list(APPEND targets ${more_targets})
    list(APPEND tests ${more_tests})
    list(APPEND pending ${subdirs})
  endwhile()
  list(REMOVE_ITEM targets supervisor_postgres)
  if(NOT targets STREQUAL "supervisor" OR tests)
    message(FATAL_ERROR "supervisor: the subproject adds targets ${targets} and tests ${tests}; "
                        "expected only the target supervisor")
  endif()
endfunction()

# Builds the consumer program with its own strict warnings. The INTERFACE target must carry no
# compile or link options (our warnings and sanitizers stay on our own targets), and no
# CMAKE_CXX_STANDARD is set: the target's cxx_std_20 requirement must be enough.
function(supervisor_add_consumer)
  foreach(property IN ITEMS INTERFACE_COMPILE_OPTIONS INTERFACE_LINK_OPTIONS)
    get_target_property(value supervisor::supervisor ${property})
    if(value)
      message(FATAL_ERROR "supervisor: supervisor::supervisor has ${property} ${value}")
    endif()
  endforeach()
  add_executable(consumer "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/consumer_main.cpp")
  target_link_libraries(consumer PRIVATE supervisor::supervisor)
  if(MSVC)
    target_compile_options(consumer PRIVATE /W4 /WX)
  else()
    target_compile_options(consumer PRIVATE -Wall -Wextra -Wpedantic -Werror)
  endif()
endfunction()
