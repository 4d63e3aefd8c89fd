# cmake/StampedePackaging.cmake: install rules, the CMake package config (installed and in the build
# tree) and the pkg-config files. Included by the top-level CMakeLists.txt when STAMPEDE_INSTALL is ON,
# after the library targets exist; STAMPEDE_LIBRARY_TARGETS names them (stampede, and the Redis
# backend's target when it is built).
#
# Installed layout (prefix P):
#   P/include/stampede/...                       headers, with the generated version.hpp and export.hpp
#                                                (and redis/export.hpp); redis/ only when the Redis
#                                                backend is built, asio.hpp only with the Asio layer
#   P/<libdir>/libstampede.a (.so.*)             and libstampede_redis.a (.so.*)
#   P/<libdir>/cmake/stampede/                   stampedeConfig.cmake, ...ConfigVersion, ...Targets
#   P/<libdir>/pkgconfig/stampede.pc             and stampede-redis.pc
# Build tree (find_package with stampede_DIR or CMAKE_PREFIX_PATH = the build dir):
#   <build>/stampedeConfig.cmake, stampedeConfigVersion.cmake, stampedeTargets.cmake (export())
# Install components: stampede_libraries (the library files) and stampede_development (everything
# else: headers, CMake and pkg-config files), e.g. `cmake --install build --component stampede_development`.
set(STAMPEDE_CONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/stampede)
set(STAMPEDE_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The optional components this build has; stampedeConfig.cmake checks requested ones against it.
set(STAMPEDE_COMPONENTS)
if(TARGET stampede::redis)
  list(APPEND STAMPEDE_COMPONENTS redis)
endif()
if(TARGET stampede::asio)
  list(APPEND STAMPEDE_COMPONENTS asio)
endif()

# ---- libraries and headers ------------------------------------------------------------------------
install(TARGETS ${STAMPEDE_LIBRARY_TARGETS} ${STAMPEDE_INTERFACE_TARGETS} EXPORT stampedeTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT stampede_libraries
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT stampede_libraries
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT stampede_libraries)
set(stampede_header_excludes)
if(NOT TARGET stampede::redis)
  # Headers of a library that was not built would only fail to link.
  list(APPEND stampede_header_excludes REGEX "/include/stampede/redis$" EXCLUDE)
endif()
if(NOT TARGET stampede::asio)
  list(APPEND stampede_header_excludes REGEX "/include/stampede/asio\\.hpp$" EXCLUDE)
endif()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/stampede DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        COMPONENT stampede_development ${stampede_header_excludes})
install(FILES ${PROJECT_BINARY_DIR}/include/stampede/version.hpp ${PROJECT_BINARY_DIR}/include/stampede/export.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/stampede COMPONENT stampede_development)
if(TARGET stampede::redis)
  install(FILES ${PROJECT_BINARY_DIR}/include/stampede/redis/export.hpp
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/stampede/redis COMPONENT stampede_development)
endif()

# ---- CMake package: find_package(stampede [COMPONENTS redis asio]) ----------------------------------
# One stampedeConfig.cmake serves the install and the build tree: it only includes the
# stampedeTargets.cmake next to it (no paths relative to the prefix).
install(EXPORT stampedeTargets NAMESPACE stampede:: DESTINATION ${STAMPEDE_CONFIG_DIR}
        COMPONENT stampede_development)
export(TARGETS ${STAMPEDE_LIBRARY_TARGETS} ${STAMPEDE_INTERFACE_TARGETS} NAMESPACE stampede::
       FILE ${PROJECT_BINARY_DIR}/stampedeTargets.cmake)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/stampedeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/stampedeConfig.cmake
  INSTALL_DESTINATION ${STAMPEDE_CONFIG_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/stampedeConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/stampedeConfig.cmake ${PROJECT_BINARY_DIR}/stampedeConfigVersion.cmake
  DESTINATION ${STAMPEDE_CONFIG_DIR} COMPONENT stampede_development)

# ---- pkg-config: pkg-config --cflags --libs stampede (stampede-redis) --------------------------------
# Relocatable: prefix is derived from the .pc file's own place (${pcfiledir}), so the files stay right
# for `cmake --install build --prefix DIR` whatever CMAKE_INSTALL_PREFIX was at configure time.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(STAMPEDE_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(STAMPEDE_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  string(REGEX REPLACE "[^/]+" ".." stampede_pc_up "${STAMPEDE_PKGCONFIG_DIR}")  # lib/pkgconfig -> ../..
  set(STAMPEDE_PC_PREFIX "\${pcfiledir}/${stampede_pc_up}")
  set(STAMPEDE_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(STAMPEDE_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(STAMPEDE_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
# What a user of a static library must link too goes to Requires/Libs (pkg-config users seldom pass
# --static); a shared library already records it, so it goes to Requires.private/Libs.private.
# The headers include nlohmann/json.hpp, so nlohmann_json is always a public requirement.
# A static library's users define its *_STATIC_DEFINE (see stampede_export_header()).
if(BUILD_SHARED_LIBS)
  set(STAMPEDE_PC_CFLAGS "")
  set(STAMPEDE_PC_REDIS_CFLAGS "")
  set(STAMPEDE_PC_THREADS "")
  set(STAMPEDE_PC_THREADS_PRIVATE " -pthread")
  set(STAMPEDE_PC_HIREDIS "")
  set(STAMPEDE_PC_HIREDIS_PRIVATE " hiredis")
else()
  set(STAMPEDE_PC_CFLAGS " -DSTAMPEDE_STATIC_DEFINE")
  set(STAMPEDE_PC_REDIS_CFLAGS " -DSTAMPEDE_REDIS_STATIC_DEFINE")
  set(STAMPEDE_PC_THREADS " -pthread")
  set(STAMPEDE_PC_THREADS_PRIVATE "")
  set(STAMPEDE_PC_HIREDIS ", hiredis")
  set(STAMPEDE_PC_HIREDIS_PRIVATE "")
endif()
set(stampede_pc_files stampede)
if(TARGET stampede::redis)
  list(APPEND stampede_pc_files stampede-redis)
endif()
foreach(pc IN LISTS stampede_pc_files)
  # configure_file fills the @VARIABLES@; file(GENERATE) then turns $<TARGET_FILE_BASE_NAME:...>
  # into the libraries' file names.
  configure_file(${PROJECT_SOURCE_DIR}/cmake/${pc}.pc.in ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc.configured @ONLY)
  file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc
       INPUT ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc.configured)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc DESTINATION ${STAMPEDE_PKGCONFIG_DIR}
          COMPONENT stampede_development)
endforeach()
