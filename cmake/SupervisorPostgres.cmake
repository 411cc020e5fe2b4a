# The optional PostgreSQL component: supervisor::postgres, the lease-backed table adapter
# (include/supervisor/postgres/). Header-only like the core, but it needs libpq (Debian:
# libpq-dev), so it is a target of its own and the core never requires it.
#
#   SUPERVISOR_BUILD_POSTGRES   ON by default at top level; OFF, or libpq not found: no target,
#                               no tests, no example, and the core is unchanged.
#
# Installed as the package's optional component `postgres`:
#   find_package(supervisor CONFIG REQUIRED COMPONENTS postgres)
#   target_link_libraries(app PRIVATE supervisor::postgres)

option(SUPERVISOR_BUILD_POSTGRES "Build the PostgreSQL component (needs libpq)"
       ${PROJECT_IS_TOP_LEVEL})

set(SUPERVISOR_HAS_POSTGRES OFF)
if(SUPERVISOR_BUILD_POSTGRES)
  find_package(PostgreSQL QUIET)
  if(PostgreSQL_FOUND)
    set(SUPERVISOR_HAS_POSTGRES ON)
  else()
    message(STATUS "supervisor: libpq not found, skipping the PostgreSQL component")
  endif()
endif()

if(SUPERVISOR_HAS_POSTGRES)
  add_library(supervisor_postgres INTERFACE)
  add_library(supervisor::postgres ALIAS supervisor_postgres)
  set_target_properties(supervisor_postgres PROPERTIES EXPORT_NAME postgres)
  target_link_libraries(supervisor_postgres INTERFACE supervisor::supervisor
                                                      PostgreSQL::PostgreSQL)
  file(GLOB_RECURSE _supervisor_postgres_headers CONFIGURE_DEPENDS
       "${PROJECT_SOURCE_DIR}/include/supervisor/postgres/*.hpp")
  target_sources(
    supervisor_postgres
    INTERFACE FILE_SET
              HEADERS
              TYPE
              HEADERS
              BASE_DIRS
              "${PROJECT_SOURCE_DIR}/include"
              FILES
              ${_supervisor_postgres_headers})
  if(SUPERVISOR_VERIFY_HEADERS)
    set_target_properties(supervisor_postgres PROPERTIES VERIFY_INTERFACE_HEADER_SETS ON)
    add_dependencies(supervisor_verify_headers supervisor_postgres_verify_interface_header_sets)
  endif()
  unset(_supervisor_postgres_headers)
endif()

# Called from the install section of the top-level CMakeLists.txt.
function(supervisor_install_postgres)
  if(NOT SUPERVISOR_HAS_POSTGRES)
    return()
  endif()
  install(
    TARGETS supervisor_postgres
    EXPORT supervisorPostgresTargets
    FILE_SET HEADERS DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
  install(
    EXPORT supervisorPostgresTargets
    NAMESPACE supervisor::
    DESTINATION "${SUPERVISOR_INSTALL_CMAKEDIR}")
endfunction()
