// Package srt is Tandem's cgo binding to libsrt (Debian's libsrt-openssl
// 1.5.1) for SRT live mode: Dial a listener, Listen and Accept callers,
// and move one MPEG-TS message (7×188 = 1316 bytes) per ReadMessage and
// WriteMessage.
//
// # Threading model
//
// All sockets are non-blocking (SRTO_RCVSYN=false, SRTO_SNDSYN=false) and
// registered in one package-level srt_epoll set. One poller goroutine
// waits in srt_epoll_uwait (the only call in which this package blocks a
// thread in libsrt) and turns each event into a token on a per-socket Go
// channel of capacity 1: IN or ERR fills the read channel, OUT or ERR the
// write channel. The poller never blocks on a channel.
//
//   - ReadMessage calls srt_recvmsg2. On SRT_EASYNCRCV it parks on the read
//     channel, ctx.Done() and the Conn's close channel, and holds no OS
//     thread while parked. Close releases a parked reader at once.
//   - Accept works the same way on the listener socket.
//   - Dial calls srt_connect non-blocking and parks on the write channel
//     (OUT = connected, ERR = failed), on ctx (cancel aborts the connect at
//     once) and on a backstop timer (ConnectTimeout + 2s).
//   - WriteMessage never blocks. If libsrt's send buffer is full, the
//     message is dropped and the error matches ErrSendBufferFull; in live
//     mode that means the link cannot keep up.
//
// Subscriptions are edge-triggered (SRT_EPOLL_ET). A level-triggered
// subscription would report a socket again on every wait while unread
// data sits in it, so the poller would spin whenever a reader is slow or
// absent. Re-arming per read instead would cost a libsrt call per message.
// With ET, a socket is reported once each time libsrt signals new
// readiness. That is safe because a reader always tries to read before
// it parks, and it parks only after libsrt said EASYNCRCV, which also
// re-arms libsrt's IN. A token that arrives between the failed read and
// the park stays in the channel. Stale tokens cost one extra read.
// TestNoLostEdges proves, with the safety net below switched off, that
// libsrt 1.5.1 loses no edge under bursty writers and slow readers.
// Connected sockets subscribe IN|ERR only: OUT would fire on every ACK.
//
// As a safety net the poller wakes every parked reader once a second
// (it also refreshes every connection's Stats then). A lost edge would
// cost at most a one-second stall instead of a hang.
//
// Every libsrt call from a goroutine passes a gate of max(4, GOMAXPROCS)
// slots. The calls are "non-blocking", but libsrt serialises them on
// internal locks. While its GC thread reaps closed sockets, a single
// srt_recvmsg2 was measured taking 250ms. Without the gate, each such
// stalled call pinned an OS thread and 200 connections grew the process
// by 160 Go threads. With it, goroutines wait on a channel instead, and
// the Go side stayed at about 10 OS threads with 200 connections and 400
// parked readers (TestManyConnections).
//
// libsrt's own threads are not ours and grow per socket. Measured with
// Debian's 1.5.1: one SRT:RcvQ and one SRT:SndQ thread per bound UDP port
// (so per caller, and once for a listener and all its accepted sockets),
// one SRT:TsbPd per socket that has received data, and one SRT:GC thread.
// A switcher with N ingest connections on one port therefore runs N+3
// libsrt threads; an appliance with two callers runs about 5. libsrt
// frees a closed socket's threads 2 to 5 seconds after srt_close. In the
// 200-connection test both ends share one process, and RSS grew by 1.2 to
// 1.7 MB per connection pair, most of it the callers' own per-port buffers.
//
// Callbacks from libsrt's threads into Go go through //export functions:
// the listen callback (which runs Authorize) and the log handler. No Go
// pointer is handed to C. The listener is found through a registry key,
// an integer like a cgo.Handle; a lookup after Close returns nil and the
// caller is refused, where cgo.Handle would panic on a libsrt thread.
// Authorize runs on libsrt's receive thread for the listening port, so
// keep it fast.
//
// # libsrt facts this package is built around
//
//   - srt_startup runs once, lazily, on the first Dial or Listen.
//     srt_cleanup hangs while a socket is open or a call is blocked. It is
//     called only by Cleanup, which refuses (ErrBusy) while this package
//     holds any socket, stops the poller first, and gives up after its ctx
//     instead of hanging.
//   - libsrt's last error is per OS thread, so every C helper (csrt.c)
//     reads it inside the same C call. Hot paths return the negated SRT
//     error code.
//   - SRT_ERROR and SRT_INVALID_SOCK are static consts: the helpers
//     compare with -1.
//   - srt_bstats fails on a broken socket. Stats returns the last good
//     sample (Stale set). The poller samples every connection once a
//     second, so a sample exists even if Stats was never called before
//     the break.
//   - A normal close by the peer and a broken link look alike: SRT error
//     2001, which matches ErrConnectionLost. libsrt cannot report a dead
//     link faster than about 5s; detect stalls above this package (ACKs on
//     the sender, Stats.PktRecvACK; frames on the receiver).
//   - A wrong passphrase fails Dial at once: SRT error 1002 with reject
//     reason 10 (11 if only one side has a passphrase). The error says
//     "wrong passphrase" and matches ErrBadPassphrase. On the listener
//     side libsrt logs it (route with SetLogger). Authorize's refusals
//     arrive as reject reason = RejectError.Code (default 1403) and are
//     logged on ListenConfig.Logger.
//   - On a break libsrt 1.5.1 posts IN|OUT|ERR to the epoll set whatever
//     the subscription. An unsubscribed OUT is never cleared by edge
//     triggering, so it was reported on every wait, about 3 million times
//     a second. The poller therefore unsubscribes a socket on ERR (every
//     later call on it fails at once anyway) and re-applies the
//     subscription if an event ever carries bits it did not ask for
//     (TestBrokenSocketIsQuiet).
//   - libsrt logs some normal non-blocking outcomes as errors (accept with
//     nothing pending, an epoll "IPE" after srt_epoll_remove_usock). The
//     log bridge drops those lines. By default libsrt's log goes to a
//     discarding handler, never to stderr.
//   - A read buffer shorter than the message fails with SRT error 5009 and
//     leaves the message queued: use ReadBufferSize.
//   - Debian's build has no bonding (srt_create_group is a stub).
//
// The tests use srt-live-transmit (srt-tools) and ffmpeg for interop. They
// skip when a tool is missing, unless CI=true, in which case they fail.
package srt
