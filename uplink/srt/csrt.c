// C helpers for the Go binding to libsrt. See csrt.h.

#include <string.h>
#include <pthread.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "csrt.h"
#include "_cgo_export.h"

static void fill_err(tsrt_err* e) {
	if (e == NULL)
		return;
	int sys = 0;
	e->code = srt_getlasterror(&sys);
	e->sys = sys;
	const char* s = srt_getlasterror_str();
	if (s == NULL)
		s = "";
	strncpy(e->text, s, sizeof(e->text) - 1);
	e->text[sizeof(e->text) - 1] = 0;
}

// neg_err returns the negated last error code of this thread, never 0 or a
// positive number.
static int neg_err(void) {
	int code = srt_getlasterror(NULL);
	if (code <= 0)
		return -1;
	return -code;
}

static int to_sockaddr(const tsrt_addr* a, struct sockaddr_storage* ss) {
	memset(ss, 0, sizeof(*ss));
	if (a->family == 4) {
		struct sockaddr_in* sin = (struct sockaddr_in*)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)a->port);
		memcpy(&sin->sin_addr, a->ip, 4);
		return (int)sizeof(*sin);
	}
	struct sockaddr_in6* sin6 = (struct sockaddr_in6*)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons((uint16_t)a->port);
	memcpy(&sin6->sin6_addr, a->ip, 16);
	return (int)sizeof(*sin6);
}

static void from_sockaddr(const struct sockaddr* sa, tsrt_addr* a) {
	memset(a, 0, sizeof(*a));
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in* sin = (const struct sockaddr_in*)sa;
		a->family = 4;
		a->port = ntohs(sin->sin_port);
		memcpy(a->ip, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6* sin6 = (const struct sockaddr_in6*)sa;
		a->family = 6;
		a->port = ntohs(sin6->sin6_port);
		memcpy(a->ip, &sin6->sin6_addr, 16);
	}
}

// ---- logging ----

static void log_discard(void* opaque, int level, const char* file, int line, const char* area, const char* message) {
	(void)opaque; (void)level; (void)file; (void)line; (void)area; (void)message;
}

static void log_forward(void* opaque, int level, const char* file, int line, const char* area, const char* message) {
	(void)opaque;
	goSrtLog(level, (char*)file, line, (char*)area, (char*)message);
}

void tsrt_log_config(int forward, int level) {
	// Time and EOL are added by slog; keep libsrt's thread name, it tells
	// which socket/queue thread spoke.
	srt_setlogflags(SRT_LOGF_DISABLE_TIME | SRT_LOGF_DISABLE_EOL | SRT_LOGF_DISABLE_SEVERITY);
	srt_setloghandler(NULL, forward ? log_forward : log_discard);
	srt_setloglevel(level);
}

// ---- library ----

int tsrt_startup(tsrt_err* e) {
	// The Go side has installed a log handler already (discarding by
	// default): libsrt never writes to stderr itself.
	int r = srt_startup();
	if (r < 0)
		fill_err(e);
	return r;
}

int tsrt_cleanup(tsrt_err* e) {
	int r = srt_cleanup();
	if (r < 0)
		fill_err(e);
	return r;
}

// ---- sockets ----

SRTSOCKET tsrt_socket(tsrt_err* e) {
	SRTSOCKET s = srt_create_socket();
	if (s == -1)
		fill_err(e);
	return s;
}

int tsrt_close(SRTSOCKET s) {
	return srt_close(s);
}

int tsrt_setint(SRTSOCKET s, int opt, int v, tsrt_err* e) {
	int r = srt_setsockflag(s, (SRT_SOCKOPT)opt, &v, sizeof(v));
	if (r == -1)
		fill_err(e);
	return r;
}

int tsrt_setint64(SRTSOCKET s, int opt, int64_t v, tsrt_err* e) {
	int r = srt_setsockflag(s, (SRT_SOCKOPT)opt, &v, sizeof(v));
	if (r == -1)
		fill_err(e);
	return r;
}

int tsrt_setstr(SRTSOCKET s, int opt, const char* v, int len, tsrt_err* e) {
	int r = srt_setsockflag(s, (SRT_SOCKOPT)opt, v, len);
	if (r == -1)
		fill_err(e);
	return r;
}

int tsrt_getstr(SRTSOCKET s, int opt, char* out, int cap, tsrt_err* e) {
	int len = cap;
	int r = srt_getsockflag(s, (SRT_SOCKOPT)opt, out, &len);
	if (r == -1) {
		fill_err(e);
		return -1;
	}
	if (len < 0)
		len = 0;
	if (len > cap)
		len = cap;
	return len;
}

int tsrt_bind(SRTSOCKET s, const tsrt_addr* a, tsrt_err* e) {
	struct sockaddr_storage ss;
	int n = to_sockaddr(a, &ss);
	int r = srt_bind(s, (struct sockaddr*)&ss, n);
	if (r == -1)
		fill_err(e);
	return r;
}

int tsrt_connect(SRTSOCKET s, const tsrt_addr* a, tsrt_err* e) {
	struct sockaddr_storage ss;
	int n = to_sockaddr(a, &ss);
	int r = srt_connect(s, (struct sockaddr*)&ss, n);
	if (r == -1)
		fill_err(e);
	return r;
}

static int listen_cb(void* opaque, SRTSOCKET ns, int hsversion, const struct sockaddr* peer, const char* streamid) {
	tsrt_addr a;
	from_sockaddr(peer, &a);
	return goSrtListenCallback((uintptr_t)opaque, ns, hsversion, &a, (char*)(streamid ? streamid : ""));
}

int tsrt_listen(SRTSOCKET s, int backlog, uintptr_t handle, tsrt_err* e) {
	if (handle != 0) {
		if (srt_listen_callback(s, listen_cb, (void*)handle) == -1) {
			fill_err(e);
			return -1;
		}
	}
	int r = srt_listen(s, backlog);
	if (r == -1)
		fill_err(e);
	return r;
}

SRTSOCKET tsrt_accept(SRTSOCKET s, tsrt_addr* peer, tsrt_err* e) {
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	memset(&ss, 0, sizeof(ss));
	SRTSOCKET ns = srt_accept(s, (struct sockaddr*)&ss, &len);
	if (ns == -1) {
		fill_err(e);
		return -1;
	}
	from_sockaddr((struct sockaddr*)&ss, peer);
	return ns;
}

int tsrt_peername(SRTSOCKET s, tsrt_addr* a, tsrt_err* e) {
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	memset(&ss, 0, sizeof(ss));
	if (srt_getpeername(s, (struct sockaddr*)&ss, &len) == -1) {
		fill_err(e);
		return -1;
	}
	from_sockaddr((struct sockaddr*)&ss, a);
	return 0;
}

int tsrt_sockname(SRTSOCKET s, tsrt_addr* a, tsrt_err* e) {
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	memset(&ss, 0, sizeof(ss));
	if (srt_getsockname(s, (struct sockaddr*)&ss, &len) == -1) {
		fill_err(e);
		return -1;
	}
	from_sockaddr((struct sockaddr*)&ss, a);
	return 0;
}

int tsrt_sockstate(SRTSOCKET s) {
	return (int)srt_getsockstate(s);
}

int tsrt_rejectreason(SRTSOCKET s) {
	return srt_getrejectreason(s);
}

int tsrt_setrejectreason(SRTSOCKET s, int code) {
	return srt_setrejectreason(s, code);
}

void tsrt_rejectstr(int reason, char* out, int cap) {
	// srt_rejectreason_str returns pointers to static constant strings.
	const char* s = srt_rejectreason_str(reason);
	if (s == NULL)
		s = "";
	strncpy(out, s, cap - 1);
	out[cap - 1] = 0;
}

static pthread_mutex_t strerror_mu = PTHREAD_MUTEX_INITIALIZER;

void tsrt_strerror(int code, char* out, int cap) {
	// srt_strerror formats into a static object: serialise our callers.
	pthread_mutex_lock(&strerror_mu);
	const char* s = srt_strerror(code, 0);
	if (s == NULL)
		s = "";
	strncpy(out, s, cap - 1);
	out[cap - 1] = 0;
	pthread_mutex_unlock(&strerror_mu);
}

// ---- data ----

int tsrt_send(SRTSOCKET s, const char* buf, int len) {
	int r = srt_sendmsg2(s, buf, len, NULL);
	if (r == -1)
		return neg_err();
	return r;
}

int tsrt_bstats(SRTSOCKET s, SRT_TRACEBSTATS* out) {
	if (srt_bstats(s, out, 0) == -1)
		return neg_err();
	return 0;
}

// ---- epoll ----

int tsrt_epoll_create(tsrt_err* e) {
	int eid = srt_epoll_create();
	if (eid == -1) {
		fill_err(e);
		return -1;
	}
	// An empty set is normal (no sockets yet): wait must not fail on it.
	srt_epoll_set(eid, SRT_EPOLL_ENABLE_EMPTY);
	return eid;
}

int tsrt_epoll_add(int eid, SRTSOCKET s, int events, tsrt_err* e) {
	int r = srt_epoll_add_usock(eid, s, &events);
	if (r == -1)
		fill_err(e);
	return r;
}

int tsrt_epoll_update(int eid, SRTSOCKET s, int events, tsrt_err* e) {
	int r = srt_epoll_update_usock(eid, s, &events);
	if (r == -1)
		fill_err(e);
	return r;
}

int tsrt_epoll_remove(int eid, SRTSOCKET s) {
	return srt_epoll_remove_usock(eid, s);
}

int tsrt_epoll_wait(int eid, SRT_EPOLL_EVENT* evs, int n, int64_t ms) {
	int r = srt_epoll_uwait(eid, evs, n, ms);
	if (r == -1)
		return neg_err();
	return r;
}

int tsrt_epoll_release(int eid) {
	return srt_epoll_release(eid);
}

// ---- batched receive ----

// ready_bits returns libsrt's current IN/ERR state of s (SRTO_EVENT), or
// -1 if it cannot tell. Unlike a failing srt_recvmsg2 it throws no C++
// exception inside libsrt and does not wake the socket's TsbPd thread.
static int ready_bits(SRTSOCKET s) {
	int32_t ev = 0;
	int len = (int)sizeof(ev);
	if (srt_getsockflag(s, SRTO_EVENT, &ev, &len) == -1)
		return -1;
	return (int)ev & (SRT_EPOLL_IN | SRT_EPOLL_ERR);
}

int tsrt_drain_socks(tsrt_drain* d, int n, char* buf, int cap, int* lens, int maxmsgs, int check) {
	int off = 0, m = 0;
	for (int i = 0; i < n; i++) {
		tsrt_drain* r = &d[i];
		r->nmsg = 0;
		r->stop = 0;
		if (check && ready_bits(r->sock) == 0)
			continue;
		for (;;) {
			if (cap - off < TSRT_MSG_MAX || m >= maxmsgs) {
				r->stop = TSRT_DRAIN_FULL;
				return i + 1;
			}
			int k = srt_recvmsg2(r->sock, buf + off, cap - off, NULL);
			if (k == -1) {
				int code = srt_getlasterror(NULL);
				if (code != SRT_EASYNCRCV)
					r->stop = code > 0 ? code : -1;
				break;
			}
			if (k <= 0)
				break;
			lens[m++] = k;
			off += k;
			r->nmsg++;
			// A read that took the last ready message has already cleared
			// libsrt's IN and told the TsbPd thread to schedule the next
			// one, so the next message raises a fresh edge. Asking here
			// instead of reading until SRT_EASYNCRCV saves that failing
			// read: a C++ exception and a second TsbPd wake-up per drain.
			// A broken socket reports ERR (not IN) while data is still
			// readable: keep reading until the error.
			if (ready_bits(r->sock) == 0)
				break;
		}
	}
	return n;
}
