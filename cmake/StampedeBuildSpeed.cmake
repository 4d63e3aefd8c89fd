# cmake/StampedeBuildSpeed.cmake: compiles through ccache and links with mold when they are installed
# (Debian packages ccache and mold; scripts/lib/deps.sh installs both). Included by the top-level
# CMakeLists.txt only when stampede is the top-level project, so add_subdirectory() users keep their
# own launcher and linker.
#
#   -DSTAMPEDE_CCACHE=OFF   compile without ccache    (a CMAKE_CXX_COMPILER_LAUNCHER of yours wins)
#   -DSTAMPEDE_MOLD=OFF     link with the default linker
#
# ccache runs with base_dir = the source tree (which holds build/<preset>), so two checkouts or
# worktrees of stampede share cache hits, and with the sloppiness precompiled headers need; a
# CCACHE_BASEDIR or CCACHE_SLOPPINESS of your own wins. Its cache is ccache's default
# (~/.cache/ccache, or CCACHE_DIR).

option(STAMPEDE_CCACHE "Compile through ccache when it is installed" ON)
option(STAMPEDE_MOLD "Link with mold when it is installed" ON)

if(STAMPEDE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  find_program(STAMPEDE_CCACHE_PROGRAM ccache)
  if(STAMPEDE_CCACHE_PROGRAM)
    set(ccache_env)
    if(NOT DEFINED ENV{CCACHE_BASEDIR})
      list(APPEND ccache_env CCACHE_BASEDIR=${PROJECT_SOURCE_DIR})
    endif()
    # The tests' precompiled header (tests/CMakeLists.txt): ccache caches the files that use it only
    # with these (its manual, "Precompiled headers"); the header is made just before its users.
    if(NOT DEFINED ENV{CCACHE_SLOPPINESS})
      list(APPEND ccache_env CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime)
    endif()
    set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env ${ccache_env} ${STAMPEDE_CCACHE_PROGRAM})
  endif()
endif()

if(STAMPEDE_MOLD AND NOT CMAKE_LINKER_TYPE)
  find_program(STAMPEDE_MOLD_PROGRAM mold)
  if(STAMPEDE_MOLD_PROGRAM)
    include(CheckLinkerFlag)
    check_linker_flag(CXX "-fuse-ld=mold" STAMPEDE_HAVE_FUSE_LD_MOLD)
    if(STAMPEDE_HAVE_FUSE_LD_MOLD)
      add_link_options(-fuse-ld=mold)
    endif()
  endif()
endif()
