# Writes ${CMAKE_CURRENT_BINARY_DIR}/generated/ov2_build_info.h from csrc/bindings/ov2_build_info.h.in: the build
# configuration that ov2_tokenizer.build_info() reports (version, compiler, build type, options, the FFmpeg that
# pkg-config found). Included from the Python-bindings part of CMakeLists.txt, after Ov2FFmpeg and Ov2Cuda.
if(SKBUILD_PROJECT_VERSION)
  set(OV2_BUILD_VERSION ${SKBUILD_PROJECT_VERSION})
  set(OV2_BUILD_FRONTEND "scikit-build-core ${SKBUILD_CORE_VERSION} (${SKBUILD_STATE})")
else()
  file(STRINGS ${CMAKE_CURRENT_SOURCE_DIR}/pyproject.toml OV2_BUILD_VERSION REGEX "^version = " LIMIT_COUNT 1)
  string(REGEX REPLACE "^version = \"([^\"]*)\".*" "\\1" OV2_BUILD_VERSION "${OV2_BUILD_VERSION}")
  set(OV2_BUILD_FRONTEND "cmake")
endif()
string(TOUPPER "${CMAKE_BUILD_TYPE}" OV2_BUILD_TYPE_UC)
string(STRIP "${CMAKE_CXX_FLAGS} ${CMAKE_CXX_FLAGS_${OV2_BUILD_TYPE_UC}}" OV2_BUILD_CXX_FLAGS)
string(REPLACE "\"" "\\\"" OV2_BUILD_CXX_FLAGS "${OV2_BUILD_CXX_FLAGS}")
set(OV2_BUILD_CUDA_ARCHITECTURES "")
if(TARGET ov2_cuda)
  set(OV2_BUILD_CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
endif()
string(REPLACE ";" ":" OV2_BUILD_FFMPEG_LIBDIRS "${OV2_AV_LIBRARY_DIRS}")
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/csrc/bindings/ov2_build_info.h.in
               ${CMAKE_CURRENT_BINARY_DIR}/generated/ov2_build_info.h @ONLY)
