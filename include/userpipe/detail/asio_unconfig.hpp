// userpipe/detail/asio_unconfig.hpp — removes the macros of
// detail/asio_config.hpp once a spelling's implementation is included, so
// that the other spelling can be included after it. No include guard.
#undef USERPIPE_ASIO_NAMESPACE
#undef USERPIPE_ASIO_DETAIL
#undef USERPIPE_ASIO_PUBLIC
#undef USERPIPE_ASIO_BOOST
