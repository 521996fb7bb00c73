# SPDX-License-Identifier: Apache-2.0
# The exactness tiers and nvcc's FMA contraction (cmake -P, on any machine with nvcc):
# 1. The Tier B kernels compiled with --fmad=true (what an engine embedding the kernel headers
#    may use) contain no f32 fused multiply-add in their PTX, so their bits do not depend on the
#    flag (tests/cuda/fmad_probe.cu).
# 2. In this build (Ninja), the library's Tier A/B translation units are compiled with
#    --fmad=false and the Tier C one (flash prefill, split-KV decode) without it.
# Arguments: NVCC, SOURCE_DIR, WORK_DIR, BUILD_DIR, GENERATOR, MAKE_PROGRAM.
file(MAKE_DIRECTORY ${WORK_DIR})
execute_process(COMMAND ${NVCC} -std=c++17 -arch=sm_90 --fmad=true -ptx -I${SOURCE_DIR}/include
                        ${SOURCE_DIR}/tests/cuda/fmad_probe.cu -o ${WORK_DIR}/fmad_probe.ptx
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "compiling the PTX probe failed (${rc}): ${err}")
endif()
file(READ ${WORK_DIR}/fmad_probe.ptx ptx)
foreach(kernel score_last_token_kernel softmax_row_stats_kernel softmax_column_sums_kernel group_mean_kernel
               rmsnorm_kernel rope_kernel swiglu_kernel attention_exact_kernel pool_kernel
               normalise_summed_kernel)
  string(FIND "${ptx}" "${kernel}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the probe's PTX holds no ${kernel}: the check would prove nothing")
  endif()
endforeach()
string(REGEX MATCHALL "fma\\.rn(\\.ftz)?\\.f32" fmas "${ptx}")
list(LENGTH fmas fma_count)
if(NOT fma_count EQUAL 0)
  message(FATAL_ERROR "Tier B kernels compiled with --fmad=true hold ${fma_count} f32 FMAs: some arithmetic "
                      "bypasses num::add/mul (their bits would depend on the compiler flags)")
endif()
message(STATUS "Tier B kernels: no f32 FMA in their PTX at --fmad=true")

if(NOT GENERATOR STREQUAL "Ninja")
  message(STATUS "generator ${GENERATOR}: the per-translation-unit flags are checked with Ninja only")
  return()
endif()
function(compile_command object out)
  execute_process(COMMAND ${MAKE_PROGRAM} -C ${BUILD_DIR} -t commands ${object} OUTPUT_VARIABLE commands RESULT_VARIABLE rc)
  string(REGEX MATCH "[^\n]*-c [^\n]*${object}[^\n]*" line "${commands}")
  if(NOT rc EQUAL 0 OR line STREQUAL "")
    message(FATAL_ERROR "no compile command for ${object} in ${BUILD_DIR}")
  endif()
  set(${out} "${line}" PARENT_SCOPE)
endfunction()
foreach(tu score_instances attention_exact_instances blocks_instances)
  compile_command(CMakeFiles/promptdistill_cuda.dir/cuda/${tu}.cu.o line)
  string(FIND "${line}" "--fmad=false" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "Tier B translation unit cuda/${tu}.cu is compiled without --fmad=false")
  endif()
endforeach()
compile_command(CMakeFiles/promptdistill_cuda.dir/cuda/attention_instances.cu.o line)
string(FIND "${line}" "--fmad=false" at)
if(NOT at EQUAL -1)
  message(FATAL_ERROR "cuda/attention_instances.cu (flash prefill, split-KV decode: Tier C) is compiled with --fmad=false")
endif()
message(STATUS "library: Tier A/B translation units at --fmad=false, Tier C with fused multiply-adds")
