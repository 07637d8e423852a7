# Standalone Asio for userpipe::asio, at build time and in an installed
# package alike. Asio is header-only and installs no CMake package, so its
# header is searched for; found, it becomes the imported target
# userpipe::standalone_asio (GLOBAL, so that a project that adds userpipe as
# a subdirectory sees it through userpipe::asio).
if(NOT TARGET userpipe::standalone_asio)
  find_path(USERPIPE_ASIO_INCLUDE_DIR asio.hpp DOC "Directory holding standalone Asio's asio.hpp")
  if(USERPIPE_ASIO_INCLUDE_DIR)
    add_library(userpipe::standalone_asio INTERFACE IMPORTED GLOBAL)
    set_target_properties(userpipe::standalone_asio PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${USERPIPE_ASIO_INCLUDE_DIR}")
    # clang 14 with libstdc++ does not detect Asio's C++20 coroutine
    # support by itself; and UBSan's -fsanitize=function rejects the resume
    # pointers of coroutine frames (-fno-sanitize=function is a no-op when
    # UBSan is off). Evaluated for the compiler of whoever links.
    set_target_properties(userpipe::standalone_asio PROPERTIES
      INTERFACE_COMPILE_DEFINITIONS "$<$<CXX_COMPILER_ID:Clang>:ASIO_HAS_CO_AWAIT=1;ASIO_HAS_STD_COROUTINE=1>"
      INTERFACE_COMPILE_OPTIONS "$<$<CXX_COMPILER_ID:Clang>:-fno-sanitize=function>")
  endif()
endif()
