# CUDA kernels (csrc/cuda). OV2_CUDA=ON requires a CUDA compiler, AUTO builds them when one is found.
# They need neither FFmpeg nor libtorch (raw device pointers), so -DOV2_FFMPEG=OFF -DOV2_CUDA=ON builds and tests
# them on a GPU machine without FFmpeg. The CUDA runtime is linked statically: _core imports on machines with no
# NVIDIA driver and reports "no device" at run time (core.cuda.available()).
file(GLOB OV2_CUDA_SRC CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*.cu)
if(OV2_CUDA STREQUAL "OFF" OR NOT OV2_CUDA_SRC)
  return()
endif()
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(OV2_CUDA STREQUAL "ON")
    message(FATAL_ERROR "OV2_CUDA=ON but no CUDA compiler was found")
  endif()
  message(STATUS "ov2: no CUDA compiler, CUDA kernels not built")
  return()
endif()
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80 90)  # SASS + PTX for sm_80 (A100) and sm_90 (H100); newer GPUs JIT the PTX
endif()
set(CMAKE_CUDA_RUNTIME_LIBRARY Static)
enable_language(CUDA)
add_library(ov2_cuda STATIC ${OV2_CUDA_SRC})
target_include_directories(ov2_cuda PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/csrc)
find_package(CUDAToolkit REQUIRED)
target_link_libraries(ov2_cuda PUBLIC ov2_tokenize CUDA::cudart_static)
set_target_properties(ov2_cuda PROPERTIES CUDA_SEPARABLE_COMPILATION OFF CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                                          CUDA_RUNTIME_LIBRARY Static POSITION_INDEPENDENT_CODE ON)
# Bit-identical to csrc/tokenize (-ffp-contract=off): no FMA contraction on the device (-fmad=false) nor in the
# host code of the .cu files, IEEE division and square root. 1675: nvcc does not know GCC's fp-contract pragma.
target_compile_options(ov2_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-fmad=false --prec-div=true --prec-sqrt=true -diag-suppress=1675 -Xcompiler=-ffp-contract=off>
  $<$<COMPILE_LANGUAGE:CXX>:-ffp-contract=off>)
message(STATUS "ov2: CUDA kernels for ${CMAKE_CUDA_ARCHITECTURES} (nvcc ${CMAKE_CUDA_COMPILER_VERSION})")
