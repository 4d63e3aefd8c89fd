# cmake/StampedeBuildSpeed.cmake: compiles through ccache and links with mold when they are installed
# (Debian packages ccache and mold; scripts/lib/deps.sh installs both). Included by the top-level
# CMakeLists.txt only when stampede is the top-level project, so add_subdirectory() users keep their
# own launcher and linker.
#
#   -DSTAMPEDE_CCACHE=OFF   compile without ccache    (a CMAKE_CXX_COMPILER_LAUNCHER of yours wins)
#   -DSTAMPEDE_MOLD=OFF     link with the default linker
#
# ccache runs with base_dir = the source tree (which holds build/<preset>), so two checkouts or
# worktrees of stampede share cache hits; a CCACHE_BASEDIR of your own wins. Its cache is ccache's
# default (~/.cache/ccache, or CCACHE_DIR).

option(STAMPEDE_CCACHE "Compile through ccache when it is installed" ON)
option(STAMPEDE_MOLD "Link with mold when it is installed" ON)

if(STAMPEDE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  find_program(STAMPEDE_CCACHE_PROGRAM ccache)
  if(STAMPEDE_CCACHE_PROGRAM)
    if(DEFINED ENV{CCACHE_BASEDIR})
      set(CMAKE_CXX_COMPILER_LAUNCHER ${STAMPEDE_CCACHE_PROGRAM})
    else()
      set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env CCACHE_BASEDIR=${PROJECT_SOURCE_DIR}
          ${STAMPEDE_CCACHE_PROGRAM})
    endif()
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
