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
// thread in libsrt). The poller never blocks on a channel.
//
//   - Receiving is done by the poller, not by ReadMessage. For every
//     connection that a wait reports IN or ERR, it reads every message
//     libsrt has ready, for all those connections in one C call
//     (tsrt_drain_socks), into a buffer of its own, and appends them to each
//     Conn's queue in Go. It then wakes that Conn's reader, if one waits,
//     with a token on a channel of capacity 1.
//   - ReadMessage takes the oldest queued message and makes no libsrt call.
//     With an empty queue it parks on the wake channel, ctx.Done() and the
//     Conn's close channel, and holds no OS thread while parked. Close
//     releases a parked reader at once. A buffer shorter than the message
//     fails with SRT error 5009 and the message stays queued, as libsrt
//     itself would do.
//   - An error that ends a connection (ErrConnectionLost, SRT 2001, when the
//     peer closes or the link breaks) is kept with the queue and returned
//     once the messages read before it have been taken.
//   - The queue holds at most 1024 messages. A reader that falls further
//     behind loses the oldest, and the loss is counted in Stats.PktRecvDrop
//     (with libsrt's own too-late drops). Live mode does the same: what
//     cannot be delivered in time is dropped, not delayed. 1024 messages are
//     about 20 s of one AAC stream at a frame per message, or 2 s of a
//     5 Mbit/s TS. Slots keep their memory while in use, and an emptied
//     queue that grew past 64 slots gives it back.
//   - Accept parks on the listener's channel, which IN or ERR fills, and
//     then calls srt_accept.
//   - Dial calls srt_connect non-blocking and parks on the write channel
//     (OUT = connected, ERR = failed), on ctx (cancel aborts the connect at
//     once) and on a backstop timer (ConnectTimeout + 2s).
//   - WriteMessage never blocks. If libsrt's send buffer is full, the
//     message is dropped and the error matches ErrSendBufferFull; in live
//     mode that means the link cannot keep up.
//
// Subscriptions are edge-triggered (SRT_EPOLL_ET). A level-triggered
// subscription would report a socket again on every wait while unread
// data sits in it, and re-arming per read would cost a libsrt call per
// message. With ET, a socket is reported once each time libsrt signals
// new readiness, so the poller must leave nothing ready behind: it reads
// until libsrt has nothing more ready. It does not read until
// SRT_EASYNCRCV to find that out. After each message it asks SRTO_EVENT,
// which reads libsrt's own readiness under the socket's receive lock. The
// read that takes the last ready message has already cleared libsrt's IN
// and told the socket's TsbPd thread to schedule the next one, so the next
// message raises a fresh edge. A failing read would cost a C++ exception
// inside libsrt and another kick of the TsbPd thread, per message at low
// rates. With 200 connections at 47 messages/s each, this receive path
// takes 14% less CPU per message than readers that read until
// SRT_EASYNCRCV, and more than half of that comes from dropping the
// failing read (BenchmarkIngest200Conns).
//
// A broken socket reports ERR rather than IN while data is still
// readable, so the poller reads on until the read fails. A Conn becomes
// its entry's owner before IN is subscribed, and Dial and Accept drain it
// once right after, so nothing that was ready earlier waits for an event
// (nor an error that came before). TestNoLostEdges proves, with the safety net below switched
// off, that libsrt 1.5.1 loses no edge under bursty writers and slow
// readers. Connected sockets subscribe IN|ERR only: OUT would fire on
// every ACK.
//
// As a safety net the poller drains every connection once a second, asking
// SRTO_EVENT first (about a lock or two per socket when nothing is ready).
// It also refreshes every connection's Stats then. A lost edge would cost
// at most a one-second delay instead of a hang.
//
// Reads and srt_close never overlap. Every drain runs under the poller's
// lock and only on sockets in its table, and Close takes a socket out of
// that table before it calls srt_close. When libsrt stalls its calls (see
// the gate below), the poller's reads stall with them, and so does every
// connection's delivery. The old readers stalled too, each in its own read
// waiting for the same lock.
//
// Every libsrt call from a goroutine other than the poller passes a gate
// of max(4, GOMAXPROCS) slots. The calls are "non-blocking", but libsrt
// serialises them on internal locks. While its GC thread reaps closed
// sockets, a single srt_recvmsg2 was measured taking 250ms. Without the
// gate, each such stalled call pinned an OS thread and 200 connections
// grew the process by 160 Go threads (that was when readers still called
// srt_recvmsg2 themselves). With it, goroutines wait on a channel instead,
// and the Go side stayed at about 10 OS threads with 200 connections and
// 400 parked readers (TestManyConnections).
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
// # What receiving costs
//
// libsrt's own threads do most of the work per received message, and no
// call or option of ours changes it. Measured with Debian's 1.5.1, 200
// connections at 47 messages a second each (BenchmarkIngest200Conns; perf
// and /proc context-switch counts):
//
//   - The socket's SRT:TsbPd thread wakes about twice per message (2.3
//     measured). It sleeps until the message's delivery time and signals
//     IN, then sleeps until a read tells it to schedule the next one
//     (srt_recvmsg2 kicks it whenever it takes the last ready message).
//     Reading on until SRT_EASYNCRCV kicked it again: 2.6 per message.
//   - The port's SRT:RcvQ thread receives the data packet, sends an ACK
//     (0.9 per packet at this rate: ACKs go out every 10 ms when new data
//     came) and receives the ACKACK: three UDP packets per message.
//   - Neither thread's wake-ups are in our hands. The ACK period is fixed,
//     and in 1.5.1 every receiving socket gets its own TsbPd thread while
//     TSBPD is on (it must be for live TS). SRTO_RCVLATENCY changes when
//     a message is delivered, not how often the thread wakes.
//     SRTO_NAKREPORT costs nothing without loss, SRTO_DRIFTTRACER only
//     changes what an ACKACK does (and is needed for long sessions), and
//     SRTO_RCVBUF and SRTO_FC only size memory. No 1.5.1 option batches
//     TsbPd wake-ups.
//
// The Go side's share is one wake-up of the poller per wait, libsrt's read
// itself on the poller's thread, and one goroutine wake-up per message for
// the reader. Fewer, larger messages cut every one of these costs at once:
// all of them are per message, not per byte. So a sender that puts two
// AAC frames into one message (at most 7 TS packets, 1316 bytes) should
// about halve the receiver's cost per stream (an estimate, not measured).
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
