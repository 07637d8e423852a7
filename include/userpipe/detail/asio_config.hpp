// userpipe/detail/asio_config.hpp — which Asio the stream adapters are
// written against. The detail headers name Asio only through the alias
// `net` (and open its namespace for the associator only through
// USERPIPE_ASIO_NAMESPACE), so that one implementation can later be compiled
// against another Asio (Boost.Asio) by choosing them here. Today: standalone
// Asio, the one the adapters are tested with.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/associated_allocator.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/associator.hpp>
#include <asio/async_result.hpp>
#include <asio/buffer.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/dispatch.hpp>
#include <asio/error.hpp>
#include <asio/execution.hpp>
#include <asio/execution_context.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>

/// The namespace the associator specialisations are opened in.
#define USERPIPE_ASIO_NAMESPACE asio

namespace userpipe::asio_detail {

namespace net = ::USERPIPE_ASIO_NAMESPACE;

}  // namespace userpipe::asio_detail
