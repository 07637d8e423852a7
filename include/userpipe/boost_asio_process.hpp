// userpipe/boost_asio_process.hpp — userpipe/asio_process.hpp over
// Boost.Asio: userpipe::boost_asio::spawn(executor, argv, opts) and
// userpipe::boost_asio::async_pump, the same implementation (see
// detail/asio_pumps.hpp) compiled against Boost.Asio; completions carry
// boost::system::error_code wrapping the std::error_code thread mode reports.
#pragma once

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/async_result.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/strand.hpp>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

#include "userpipe/boost_asio.hpp"
#include "userpipe/fd.hpp"
#include "userpipe/process.hpp"

#define USERPIPE_ASIO_BOOST 1
#include "userpipe/detail/asio_config.hpp"
#include "userpipe/detail/asio_pumps.hpp"
#include "userpipe/detail/asio_unconfig.hpp"
