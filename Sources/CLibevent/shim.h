// libc first, with its default feature set, as Swift's Glibc and Dispatch
// modules see it. libevent's event-config.h later defines _GNU_SOURCE; were
// libc's headers read after that, fd_set would be defined differently here
// than in those modules, and Swift refuses a type with two definitions.
#include <stdio.h>
#include <sys/types.h>
#include <sys/time.h>
#include <sys/select.h>
// libevent: event loop, buffers, buffered sockets and listeners, pthread locking.
#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/util.h>
// TLS bufferevents over OpenSSL (the API's HTTPS).
#include <event2/bufferevent_ssl.h>
