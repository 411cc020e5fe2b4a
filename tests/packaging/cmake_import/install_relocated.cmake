# cmake -DBUILD_DIR=<build> -DSTAGING=<dir> -DPREFIX=<dir> -DSOURCE_DIR=<src>
#       -DINCLUDEDIR=<rel> -DCMAKEDIR=<rel> [-DCONFIG=<config>] -P install_relocated.cmake
#
# Installs the build in BUILD_DIR into STAGING, moves STAGING to PREFIX, and fails if an installed
# CMake file names SOURCE_DIR, BUILD_DIR or STAGING: the package must find itself relative to
# where it is, not where it was built or first installed. (STAGING is gone after the move, so a
# consumer of PREFIX would fail on such a path anyway; the check says which file has it.)

cmake_minimum_required(VERSION 3.21)

foreach(var IN ITEMS BUILD_DIR STAGING PREFIX SOURCE_DIR INCLUDEDIR CMAKEDIR)
  if(NOT ${var})
    message(FATAL_ERROR "install_relocated.cmake: -D${var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${STAGING}" "${PREFIX}")

set(config_args "")
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${STAGING}"
                        ${config_args} COMMAND_ERROR_IS_FATAL ANY)

file(RENAME "${STAGING}" "${PREFIX}")

foreach(expected IN ITEMS "${INCLUDEDIR}/supervisor/supervisor.hpp"
                         "${CMAKEDIR}/supervisorConfig.cmake")
  if(NOT EXISTS "${PREFIX}/${expected}")
    message(FATAL_ERROR "install_relocated.cmake: ${PREFIX}/${expected} does not exist")
  endif()
endforeach()

file(GLOB_RECURSE cmake_files "${PREFIX}/*.cmake")
set(leaks "")
foreach(file IN LISTS cmake_files)
  file(READ "${file}" content)
  foreach(path IN ITEMS "${SOURCE_DIR}" "${BUILD_DIR}" "${STAGING}")
    string(FIND "${content}" "${path}" at)
    if(at GREATER_EQUAL 0)
      string(APPEND leaks "\n  ${file} names ${path}")
    endif()
  endforeach()
endforeach()
if(leaks)
  message(FATAL_ERROR "install_relocated.cmake: the installed package is not relocatable:${leaks}")
endif()

list(LENGTH cmake_files count)
message(STATUS "Installed to ${STAGING}, moved to ${PREFIX}; ${count} CMake files checked")
