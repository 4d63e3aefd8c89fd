# cmake/expect_exit.cmake: runs a program and checks its exit code and output (a CTest helper for
# command-line tests; see stampede_add_cli_test in cmake/StampedeCliTest.cmake).
#
#   cmake -DEXPECT_EXIT=2 "-DEXPECT_STDERR=not in range" -P expect_exit.cmake -- prog --workers 0
#
# EXPECT_EXIT: the exit code the program must return. EXPECT_STDOUT / EXPECT_STDERR (optional):
# regular expressions its stdout / stderr must match. Fails with both streams shown otherwise.
# An argument <empty> is passed as an empty argument (CMake lists, and so add_test(), drop those).
# The command as bracket arguments, so that empty arguments survive.
set(command)
set(shown)
set(after_separator FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(after_separator)
    if(CMAKE_ARGV${i} STREQUAL "<empty>")
      set(CMAKE_ARGV${i} "")
    endif()
    string(APPEND command " [==[${CMAKE_ARGV${i}}]==]")
    string(APPEND shown " '${CMAKE_ARGV${i}}'")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(after_separator TRUE)
  endif()
endforeach()
if(command STREQUAL "")
  message(FATAL_ERROR "expect_exit.cmake: no command after --")
endif()
if(NOT DEFINED EXPECT_EXIT)
  message(FATAL_ERROR "expect_exit.cmake: EXPECT_EXIT is not set")
endif()

cmake_language(EVAL CODE "execute_process(COMMAND ${command} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)")
set(problems)
if(NOT rc STREQUAL EXPECT_EXIT)
  list(APPEND problems "exit code ${rc}, expected ${EXPECT_EXIT}")
endif()
if(DEFINED EXPECT_STDOUT AND NOT out MATCHES "${EXPECT_STDOUT}")
  list(APPEND problems "stdout does not match '${EXPECT_STDOUT}'")
endif()
if(DEFINED EXPECT_STDERR AND NOT err MATCHES "${EXPECT_STDERR}")
  list(APPEND problems "stderr does not match '${EXPECT_STDERR}'")
endif()
if(problems)
  string(REPLACE ";" "\n  " problems "${problems}")
  message(FATAL_ERROR "${shown}:\n  ${problems}\n--- stdout:\n${out}--- stderr:\n${err}")
endif()
message(STATUS "${shown}: exit ${rc} as expected")
