// userpipe/boost_asio.hpp — the two ends of a userpipe as Boost.Asio async
// streams: userpipe/asio.hpp's async_reader and async_writer, the same
// implementation compiled against Boost.Asio (Boost >= 1.80, for
// per-operation cancellation) instead of standalone Asio.
//
//   boost::asio::io_context io;
//   auto [r, w] = userpipe::make_pipe();
//   userpipe::boost_asio::async_reader in(io, std::move(r));
//   userpipe::boost_asio::async_writer out(io, std::move(w));
//   boost::asio::async_write(out, boost::asio::buffer(msg), token);
//
// Everything userpipe/asio.hpp promises holds here, with Boost's names:
// completions are void(boost::system::error_code, std::size_t), errors are
// boost::asio::error::eof, broken_pipe, operation_aborted and
// bad_descriptor, and a close reason (an std::error_code) arrives wrapped in
// a boost::system::error_code that compares equal to it. So the streams
// work with Boost.Beast (e.g. as the lower layer of a composed operation).
//
// The two spellings live in different namespaces (userpipe::asio_detail and
// userpipe::boost_asio_detail), so one program may include both headers.
#pragma once

#include <memory>
#include <system_error>
#include <type_traits>
#include <utility>

#include "userpipe/pipe.hpp"

#define USERPIPE_ASIO_BOOST 1
#include "userpipe/detail/asio_config.hpp"
// clang-format off
#include "userpipe/detail/asio_service.hpp"
#include "userpipe/detail/asio_operation.hpp"
#include "userpipe/detail/asio_streams.hpp"
// clang-format on
#include "userpipe/detail/asio_unconfig.hpp"
