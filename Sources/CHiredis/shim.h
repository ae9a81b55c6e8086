// libc first, with its default feature set, as Swift's Glibc and Dispatch
// modules see it. libevent's event-config.h later defines _GNU_SOURCE; were
// libc's headers read after that, fd_set would be defined differently here
// than in those modules, and Swift refuses a type with two definitions.
#include <stdio.h>
#include <sys/types.h>
#include <sys/time.h>
#include <sys/select.h>
// hiredis: the synchronous client, the async client, and its libevent adapter
// (the adapter is a header of static functions; it is compiled into Shared).
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
