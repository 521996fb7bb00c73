# SPDX-License-Identifier: Apache-2.0
# Installs the built package into a scratch prefix, then configures, builds and runs an outside
# project that uses find_package(promptdistill CONFIG REQUIRED).
#
# The package's config calls find_dependency(Eigen3 / nlohmann_json / ...): the consumer gets the
# install prefix *and* wherever the parent build found those (its CMAKE_PREFIX_PATH and the
# packages' _DIR entries), as a real user's project would. The system prefixes are ignored, so a
# dependency that is only found system-wide by luck fails here instead of on a machine where the
# dependencies live elsewhere (a GPU machine with unpacked packages, a conda prefix).
# Lists arrive with '|' for ';' (a ';' would split the ctest command line); a quoted argument
# below keeps its ';' and reaches the consumer's cmake as one list.
foreach(var PARENT_PREFIX_PATH CUDA_ARCHITECTURES)
  string(REPLACE "|" ";" ${var} "${${var}}")
endforeach()
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
set(prefix_path ${WORK_DIR}/prefix ${PARENT_PREFIX_PATH})
set(dependency_dirs)
foreach(pkg Eigen3 nlohmann_json)
  if(${pkg}_DIR)
    list(APPEND dependency_dirs -D${pkg}_DIR=${${pkg}_DIR})
  endif()
endforeach()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR}
                        "-DCMAKE_PREFIX_PATH=${prefix_path}" ${dependency_dirs}
                        "-DCMAKE_IGNORE_PREFIX_PATH=/usr;/usr/local"
                        -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DCMAKE_CUDA_COMPILER=${CMAKE_CUDA_COMPILER}
                        -DEXPECT_CUDA=${HAS_CUDA} "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the consumer project failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the consumer project failed (${rc})")
endif()
foreach(program consumer consumer_umbrella)
  execute_process(COMMAND ${WORK_DIR}/build/${program} RESULT_VARIABLE rc OUTPUT_VARIABLE out)
  message(STATUS "${program}: ${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "the consumer program ${program} failed (${rc})")
  endif()
endforeach()
if(HAS_CUDA)
  # Exit code 77: compiled and linked, no device to run on (the program says so).
  execute_process(COMMAND ${WORK_DIR}/build/header_only_select RESULT_VARIABLE rc OUTPUT_VARIABLE out)
  message(STATUS "${out}")
  if(NOT rc EQUAL 0 AND NOT rc EQUAL 77)
    message(FATAL_ERROR "the header-only CUDA consumer failed (${rc})")
  endif()
endif()
