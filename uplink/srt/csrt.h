// C helpers for the Go binding to libsrt (package tandem/uplink/srt).
//
// Every helper that can fail reads libsrt's last error inside the same C call
// (libsrt keeps the last error per OS thread, and a later cgo call may run on
// another thread). Setup paths fill a tsrt_err; hot paths (send/recv/stats)
// return the negated SRT error code instead, so they need no out-parameter.

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
int tsrt_recv(SRTSOCKET s, char* buf, int len);
int tsrt_send(SRTSOCKET s, const char* buf, int len);
int tsrt_bstats(SRTSOCKET s, SRT_TRACEBSTATS* out);

int tsrt_epoll_create(tsrt_err* e);
int tsrt_epoll_add(int eid, SRTSOCKET s, int events, tsrt_err* e);
int tsrt_epoll_update(int eid, SRTSOCKET s, int events, tsrt_err* e);
int tsrt_epoll_remove(int eid, SRTSOCKET s);
int tsrt_epoll_wait(int eid, SRT_EPOLL_EVENT* evs, int n, int64_t ms);
int tsrt_epoll_release(int eid);

#endif
