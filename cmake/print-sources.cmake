# cmake -P cmake/print-sources.cmake: prints the lists CMakeLists.txt builds (for the drift test).
include("${CMAKE_CURRENT_LIST_DIR}/sources.cmake")
foreach(_f IN LISTS SEQFUSE_COMMON_SOURCES SEQFUSE_KERNEL_SOURCES SEQFUSE_NOCUDA_SOURCES)
  message("${_f}")
endforeach()
