# SPDX-License-Identifier: Apache-2.0
# The default CUDA architectures: machine code for every data-centre and workstation generation
# the kernels support (bf16 tensor cores start at sm_80), plus PTX of the newest the compiler knows
# so that later GPUs JIT-compile it:
#   80 Ampere A100 / A30;  86 Ampere RTX 30xx, A10, A40 (99 KiB shared memory per block);
#   89 Ada L4, L40S, RTX 40xx (99 KiB);  90 Hopper H100, H200;  100 Blackwell B100, B200,
#   whose PTX also runs, JIT-compiled, on sm_120 (RTX 50xx, 99 KiB).
# Blackwell (compute_100) came with CUDA 12.8: an older nvcc gets 80, 86, 89 and 90 with PTX of
# 90 (which a Blackwell GPU JIT-compiles), instead of failing to configure.

# promptdistill_default_cuda_architectures(NVCC OUT): the list for the compiler NVCC, asking it
# which virtual architectures it knows (nvcc --list-gpu-arch; a compiler that cannot answer is
# taken not to know compute_100).
function(promptdistill_default_cuda_architectures nvcc out)
  execute_process(COMMAND "${nvcc}" --list-gpu-arch OUTPUT_VARIABLE known RESULT_VARIABLE failed ERROR_QUIET)
  if(NOT failed AND known MATCHES "compute_100([^0-9]|$)")
    set(${out} 80-real 86-real 89-real 90-real 100 PARENT_SCOPE)
  else()
    set(${out} 80-real 86-real 89-real 90 PARENT_SCOPE)
  endif()
endfunction()
