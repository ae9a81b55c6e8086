// hiredis: the synchronous client, the async client, and its libevent adapter
// (the adapter is a header of static functions; it is compiled into Shared).
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
