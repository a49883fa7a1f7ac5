# Finds FFmpeg (libavformat, libavcodec, libavutil, libswscale) with pkg-config and exposes ov2::ffmpeg.
# Supported: FFmpeg 4.4 – 7.x.
find_package(PkgConfig REQUIRED)
pkg_check_modules(OV2_AV REQUIRED IMPORTED_TARGET libavformat>=58.76 libavcodec>=58.134 libavutil>=56.70 libswscale>=5.9)
add_library(ov2_ffmpeg INTERFACE)
target_link_libraries(ov2_ffmpeg INTERFACE PkgConfig::OV2_AV)
add_library(ov2::ffmpeg ALIAS ov2_ffmpeg)
message(STATUS "ov2: FFmpeg libavcodec ${OV2_AV_libavcodec_VERSION}, libavformat ${OV2_AV_libavformat_VERSION}")
