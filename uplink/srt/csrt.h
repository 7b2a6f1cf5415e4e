// C helpers for the Go binding to libsrt (package tandem/uplink/srt).
//
// Every helper that can fail reads libsrt's last error inside the same C call
// (libsrt keeps the last error per OS thread, and a later cgo call may run on
// another thread). Setup paths fill a tsrt_err; hot paths (send/stats)
// return the negated SRT error code instead, so they need no out-parameter,
// and the receive drain reports a code per socket.

#ifndef TANDEM_CSRT_H
#define TANDEM_CSRT_H

#include <stdint.h>
#include <srt/srt.h>

typedef struct {
	int code;       // SRT error code (srt_getlasterror)
	int sys;        // errno, or 0
	char text[256]; // srt_getlasterror_str, truncated
} tsrt_err;

typedef struct {
	int family; // 4 or 6, 0 = unknown
	int port;
	uint8_t ip[16];
} tsrt_addr;

int tsrt_startup(tsrt_err* e);
int tsrt_cleanup(tsrt_err* e);
void tsrt_log_config(int forward, int level);

SRTSOCKET tsrt_socket(tsrt_err* e);
int tsrt_close(SRTSOCKET s);
int tsrt_setint(SRTSOCKET s, int opt, int v, tsrt_err* e);
int tsrt_setint64(SRTSOCKET s, int opt, int64_t v, tsrt_err* e);
int tsrt_setstr(SRTSOCKET s, int opt, const char* v, int len, tsrt_err* e);
int tsrt_getstr(SRTSOCKET s, int opt, char* out, int cap, tsrt_err* e);
int tsrt_bind(SRTSOCKET s, const tsrt_addr* a, tsrt_err* e);
int tsrt_connect(SRTSOCKET s, const tsrt_addr* a, tsrt_err* e);
int tsrt_listen(SRTSOCKET s, int backlog, uintptr_t handle, tsrt_err* e);
SRTSOCKET tsrt_accept(SRTSOCKET s, tsrt_addr* peer, tsrt_err* e);
int tsrt_peername(SRTSOCKET s, tsrt_addr* a, tsrt_err* e);
int tsrt_sockname(SRTSOCKET s, tsrt_addr* a, tsrt_err* e);
int tsrt_sockstate(SRTSOCKET s);
int tsrt_rejectreason(SRTSOCKET s);
int tsrt_setrejectreason(SRTSOCKET s, int code);
void tsrt_rejectstr(int reason, char* out, int cap);
void tsrt_strerror(int code, char* out, int cap);

// Hot paths: return >= 0 on success, -code on failure (-1 if unknown).
int tsrt_send(SRTSOCKET s, const char* buf, int len);
int tsrt_bstats(SRTSOCKET s, SRT_TRACEBSTATS* out);

int tsrt_epoll_create(tsrt_err* e);
int tsrt_epoll_add(int eid, SRTSOCKET s, int events, tsrt_err* e);
int tsrt_epoll_update(int eid, SRTSOCKET s, int events, tsrt_err* e);
int tsrt_epoll_remove(int eid, SRTSOCKET s);
int tsrt_epoll_wait(int eid, SRT_EPOLL_EVENT* evs, int n, int64_t ms);
int tsrt_epoll_release(int eid);

// ---- batched receive (the poller's drain) ----

// A message is at most one live-mode payload; 1500 holds any of them.
#define TSRT_MSG_MAX 1500
// tsrt_drain.stop when buf or lens filled up before the socket was drained.
#define TSRT_DRAIN_FULL (-2)

typedef struct {
	SRTSOCKET sock; // in
	int nmsg;       // out: messages appended for this socket
	int stop;       // out: 0 = nothing more ready, TSRT_DRAIN_FULL, else the
	                //      SRT error code that ended the drain (-1 = unknown)
} tsrt_drain;

// tsrt_drain_socks reads every message that is ready on each socket of
// d[0..n) into buf (cap bytes, packed one after another) and their lengths
// into lens (at most maxmsgs), in order of d. check != 0 asks libsrt whether
// anything is ready before the first read of a socket. Returns how many
// entries of d it went through; the last one may have stop ==
// TSRT_DRAIN_FULL.
int tsrt_drain_socks(tsrt_drain* d, int n, char* buf, int cap, int* lens, int maxmsgs, int check);

#endif
