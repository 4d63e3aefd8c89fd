# stampede_add_cli_test(<name> EXIT <code> [STDOUT <regex>] [STDERR <regex>] [ENVIRONMENT <VAR=value>...]
#                       COMMAND <target> [<arg>...])
#
# A CTest test that runs a program of this build and passes when it exits with exactly <code> and its
# stdout / stderr match the regular expressions (CTest's WILL_FAIL cannot tell exit 2 from a crash).
# An argument <empty> stands for an empty argument. Used for the command lines of the demos and of
# tests/soak/soak_worker.
function(stampede_add_cli_test name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "EXIT;STDOUT;STDERR" "ENVIRONMENT;COMMAND")
  if(NOT DEFINED arg_EXIT OR NOT arg_COMMAND)
    message(FATAL_ERROR "stampede_add_cli_test(${name}): EXIT and COMMAND are required")
  endif()
  list(POP_FRONT arg_COMMAND program)
  set(checks -DEXPECT_EXIT=${arg_EXIT})
  if(DEFINED arg_STDOUT)
    list(APPEND checks "-DEXPECT_STDOUT=${arg_STDOUT}")
  endif()
  if(DEFINED arg_STDERR)
    list(APPEND checks "-DEXPECT_STDERR=${arg_STDERR}")
  endif()
  add_test(NAME ${name}
           COMMAND ${CMAKE_COMMAND} ${checks} -P ${PROJECT_SOURCE_DIR}/cmake/expect_exit.cmake
                   -- $<TARGET_FILE:${program}> ${arg_COMMAND})
  if(arg_ENVIRONMENT)
    set_tests_properties(${name} PROPERTIES ENVIRONMENT "${arg_ENVIRONMENT}")
  endif()
endfunction()
