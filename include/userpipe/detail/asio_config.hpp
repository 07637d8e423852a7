// userpipe/detail/asio_config.hpp — which Asio the stream adapters are
// compiled against. One implementation, two spellings: userpipe/asio.hpp
// sets USERPIPE_ASIO_BOOST to 0 (standalone Asio, names in userpipe::),
// userpipe/boost_asio.hpp sets it to 1 (Boost.Asio, names in
// userpipe::boost_asio::), and each includes the implementation once after
// this header. The implementation names Asio only through the alias `net`,
// its error code only through `error_code`, and its own namespaces only
// through the macros below, so the two instantiations never collide and a
// program may include both headers.
//
// No include guard on purpose: included once per spelling, the macros
// removed again by detail/asio_unconfig.hpp.
#if !defined(USERPIPE_ASIO_BOOST)
#error "include userpipe/asio.hpp or userpipe/boost_asio.hpp"
#endif

#if USERPIPE_ASIO_BOOST

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/system/error_code.hpp>

/// The namespace the associator specialisations are opened in.
#define USERPIPE_ASIO_NAMESPACE boost::asio
/// The implementation's namespace, inside userpipe.
#define USERPIPE_ASIO_DETAIL boost_asio_detail
/// Where the public names (async_reader, ...) go.
#define USERPIPE_ASIO_PUBLIC userpipe::boost_asio

namespace userpipe::boost_asio_detail {
namespace net = ::boost::asio;
/// The error code of the completion signatures: Beast and every
/// Boost.Asio composed operation expect Boost's.
using error_code = ::boost::system::error_code;
}  // namespace userpipe::boost_asio_detail

#else

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
#include <asio/prefer.hpp>

#define USERPIPE_ASIO_NAMESPACE asio
#define USERPIPE_ASIO_DETAIL asio_detail
#define USERPIPE_ASIO_PUBLIC userpipe

namespace userpipe::asio_detail {
namespace net = ::asio;
using error_code = std::error_code;
}  // namespace userpipe::asio_detail

#endif
