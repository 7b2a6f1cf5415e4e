package srt

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRoundTripEcho(t *testing.T) {
	const n = 3000
	opt := Options{Latency: 40 * time.Millisecond, StreamID: "#!::r=live/echo,m=publish"}
	c, s := pair(t, ListenConfig{Options: Options{Latency: 40 * time.Millisecond}}, opt)
	if s.StreamID() != opt.StreamID {
		t.Errorf("accepted StreamID = %q, want %q", s.StreamID(), opt.StreamID)
	}
	if got, want := s.RemoteAddr().String(), c.LocalAddr().String(); got != want {
		t.Errorf("server RemoteAddr %s != client LocalAddr %s", got, want)
	}
	if _, ok := c.RemoteAddr().(*net.UDPAddr); !ok {
		t.Errorf("RemoteAddr is %T, want *net.UDPAddr", c.RemoteAddr())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Server: echo every message back.
	go func() {
		buf := make([]byte, ReadBufferSize)
		for {
			k, err := s.ReadMessage(ctx, buf)
			if err != nil {
				return
			}
			if err := s.WriteMessage(buf[:k]); err != nil {
				t.Errorf("echo write: %v", err)
				return
			}
		}
	}()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, ReadBufferSize)
		for i := 0; i < n; i++ {
			k, err := c.ReadMessage(ctx, buf)
			if err != nil {
				done <- err
				return
			}
			if err := checkMessage(buf[:k], i); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := c.WriteMessage(message(i, messageSize(i))); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if i%50 == 49 { // ~5000 msg/s: stay inside loopback UDP buffers
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages echoed intact in %v; poller: %d events, %d safety pokes (%d found data)",
		n, time.Since(start).Round(time.Millisecond), diagnostics().Events, diagnostics().Pokes, diagnostics().PokeHits)
	st := c.Stats()
	if st.PktSent < n || st.PktRecv < n {
		t.Errorf("client stats: sent %d recv %d, want >= %d each", st.PktSent, st.PktRecv, n)
	}
}

func TestAuthorize(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // stream id -> peer
	var logs logBuf
	l := listen(t, ListenConfig{
		Logger: logs.logger(),
		Authorize: func(sid string, peer net.Addr) (string, error) {
			mu.Lock()
			seen[sid] = peer.String()
			mu.Unlock()
			switch sid {
			case "deny-401":
				return "", &RejectError{Code: RejectUnauthorized, Reason: "token expired"}
			case "deny-plain":
				return "", errors.New("no such stream")
			case "deny-wrapped":
				return "", errors.Join(errors.New("lookup"), &RejectError{Code: RejectConflict, Reason: "already publishing"})
			case "deny-user":
				return "", &RejectError{Code: 2042, Reason: "custom"}
			case "panic":
				panic("boom")
			}
			return "", nil
		},
	})
	addr := l.Addr().String()
	cases := []struct {
		sid    string
		reject int
		text   string
	}{
		{"deny-401", RejectUnauthorized, "rejected: 1401 unauthorized"},
		{"deny-plain", RejectForbidden, "rejected: 1403 forbidden"},
		{"deny-wrapped", RejectConflict, "rejected: 1409 conflict"},
		{"deny-user", 2042, "rejected: 2042 user 2042"},
		{"panic", RejectInternal, "rejected: 1500"},
	}
	for _, tc := range cases {
		start := time.Now()
		c, err := Dial(context.Background(), addr, Options{StreamID: tc.sid})
		if err == nil {
			c.Close()
			t.Errorf("%s: Dial succeeded, want refusal", tc.sid)
			continue
		}
		var se *Error
		if !errors.As(err, &se) {
			t.Errorf("%s: error %T %v is not *Error", tc.sid, err, err)
			continue
		}
		if se.Reject != tc.reject || se.Code != 1002 {
			t.Errorf("%s: Reject=%d Code=%d, want %d/1002", tc.sid, se.Reject, se.Code, tc.reject)
		}
		if !errors.Is(err, ErrRejected) || errors.Is(err, ErrBadPassphrase) || errors.Is(err, ErrTimeout) {
			t.Errorf("%s: errors.Is classification wrong for %v", tc.sid, err)
		}
		if want := "srt connect " + addr + ": " + tc.text; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: error %q, want prefix %q", tc.sid, err, want)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: refusal took %v", tc.sid, d)
		}
	}

	ch := acceptOne(t, l)
	c := dial(t, addr, Options{StreamID: "#!::r=live/ok,m=publish"})
	s := getConn(t, ch)
	if s.StreamID() != "#!::r=live/ok,m=publish" {
		t.Errorf("StreamID %q", s.StreamID())
	}
	mu.Lock()
	if got := seen["#!::r=live/ok,m=publish"]; got != c.LocalAddr().String() {
		t.Errorf("Authorize saw peer %q, caller is %s", got, c.LocalAddr())
	}
	mu.Unlock()

	out := logs.String()
	for _, want := range []string{
		`stream_id=deny-401`, `code=1401`, `reason="token expired"`,
		`stream_id=deny-plain`, `reason="no such stream"`,
		`reason="already publishing"`, `panic=boom`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("listener log lacks %q:\n%s", want, out)
		}
	}
}

func TestPassphrase(t *testing.T) {
	const pass = "correct horse battery"
	var srtLog logBuf
	SetLogger(srtLog.logger(), -4)
	defer SetLogger(nil, 0)
	l := listen(t, ListenConfig{
		Options:   Options{PBKeyLen: 16},
		Authorize: func(string, net.Addr) (string, error) { return pass, nil },
	})
	addr := l.Addr().String()

	start := time.Now()
	_, err := Dial(context.Background(), addr, Options{Passphrase: "wrong passphrase!"})
	var se *Error
	if !errors.As(err, &se) || se.Reject != RejectBadSecret || se.Code != 1002 || !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("wrong passphrase: got %v, want *Error Reject=10 Code=1002", err)
	}
	if !strings.Contains(err.Error(), "wrong passphrase") {
		t.Errorf("error does not say so clearly: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("wrong passphrase took %v, want at once", d)
	}
	t.Logf("wrong passphrase refused in %v: %v", time.Since(start).Round(time.Millisecond), err)

	_, err = Dial(context.Background(), addr, Options{})
	if !errors.As(err, &se) || se.Reject != RejectUnsecure || !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("missing passphrase: got %v, want Reject=11", err)
	}
	t.Logf("missing passphrase: %v", err)

	// The listener side logs the refusal through libsrt's log.
	if !waitFor(time.Second, func() bool { return strings.Contains(srtLog.String(), "BADSECRET") }) {
		t.Errorf("libsrt log has no BADSECRET line:\n%s", srtLog.String())
	}

	ch := acceptOne(t, l)
	c := dial(t, addr, Options{Passphrase: pass, PBKeyLen: 32})
	s := getConn(t, ch)
	if err := c.WriteMessage([]byte("secret payload")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	buf := make([]byte, ReadBufferSize)
	k, err := s.ReadMessage(ctx, buf)
	if err != nil || string(buf[:k]) != "secret payload" {
		t.Fatalf("encrypted read: %q %v", buf[:k], err)
	}
}

func TestListenerPassphrase(t *testing.T) {
	const pass = "listener-wide-secret"
	l := listen(t, ListenConfig{Options: Options{Passphrase: pass}})
	if _, err := Dial(context.Background(), l.Addr().String(), Options{Passphrase: "another-secret"}); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("got %v, want ErrBadPassphrase", err)
	}
	ch := acceptOne(t, l)
	dial(t, l.Addr().String(), Options{Passphrase: pass})
	getConn(t, ch)
}

func TestOptionValidation(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		opt  Options
		want string
	}{
		{Options{Passphrase: "short"}, "Options.Passphrase"},
		{Options{Passphrase: strings.Repeat("x", 80)}, "Options.Passphrase"},
		{Options{PBKeyLen: 20}, "Options.PBKeyLen"},
		{Options{Latency: -time.Second}, "Options.Latency"},
		{Options{StreamID: strings.Repeat("s", 513)}, "Options.StreamID"},
		{Options{LocalAddr: "example.com"}, "Options.LocalAddr"},
	}
	for _, tc := range cases {
		_, err := Dial(ctx, "127.0.0.1:9", tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want error naming %s", tc.opt, err, tc.want)
		}
	}
	if _, err := Listen("127.0.0.1:0", ListenConfig{Options: Options{Passphrase: "short"}}); err == nil ||
		!strings.Contains(err.Error(), "Options.Passphrase") {
		t.Errorf("Listen short passphrase: %v", err)
	}
	// An Authorize that returns a bad passphrase refuses (1500) instead of
	// accepting an unencrypted connection.
	var logs logBuf
	l := listen(t, ListenConfig{Logger: logs.logger(), Authorize: func(string, net.Addr) (string, error) { return "short", nil }})
	_, err := Dial(ctx, l.Addr().String(), Options{Passphrase: "short-but-valid-here"})
	var se *Error
	if !errors.As(err, &se) || se.Reject != RejectInternal {
		t.Errorf("bad Authorize passphrase: got %v, want reject 1500", err)
	}
	if !strings.Contains(logs.String(), "10..79") {
		t.Errorf("listener log: %s", logs.String())
	}
	if OpenSockets() != 1 {
		t.Errorf("OpenSockets = %d, want 1 (the listener)", OpenSockets())
	}
}

func TestStats(t *testing.T) {
	c, s := pair(t, ListenConfig{Options: Options{Latency: 40 * time.Millisecond}}, Options{Latency: 40 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 300
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, ReadBufferSize)
		k := 0
		for {
			if _, err := s.ReadMessage(ctx, buf); err != nil {
				got <- k
				return
			}
			k++
		}
	}()
	for i := 0; i < n; i++ {
		if err := c.WriteMessage(message(i, 1316)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	var cs Stats
	if !waitFor(3*time.Second, func() bool {
		cs = c.Stats()
		return cs.PktRecvACK > 0 && cs.RTT > 0 && cs.SendBufMs == 0
	}) {
		t.Errorf("sender stats never showed ACKs and RTT: %+v", cs)
	}
	if cs.PktSent < n || cs.BytesSent < n*1316 || cs.Stale || cs.Time.IsZero() {
		t.Errorf("sender stats: %+v", cs)
	}
	var ss Stats
	if !waitFor(3*time.Second, func() bool { ss = s.Stats(); return ss.PktRecv >= n }) {
		t.Errorf("receiver stats: %+v", ss)
	}
	if ss.PktSentACK == 0 || ss.BytesRecv < n*1316 {
		t.Errorf("receiver stats: %+v", ss)
	}
	t.Logf("sender: RTT %v sent %d ACKs %d rate %.2f Mb/s; receiver: recv %d loss %d",
		cs.RTT, cs.PktSent, cs.PktRecvACK, cs.SendRateMbps, ss.PktRecv, ss.PktRecvLoss)

	// The peer goes: libsrt can no longer give stats on the broken socket;
	// the last sample survives.
	c.Close()
	select {
	case k := <-got:
		if k != n {
			t.Errorf("received %d of %d messages", k, n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reader did not notice the peer close")
	}
	after := s.Stats()
	if after.PktRecv < ss.PktRecv || after.BytesRecv < ss.BytesRecv {
		t.Errorf("stats after peer close lost the last sample: before %+v after %+v", ss, after)
	}
	t.Logf("receiver stats after peer close: stale=%v recv=%d", after.Stale, after.PktRecv)
	// And after our own Close.
	s.Close()
	if final := s.Stats(); !final.Stale || final.PktRecv < ss.PktRecv {
		t.Errorf("stats after Close: %+v", final)
	}
	if final := c.Stats(); !final.Stale || final.PktSent < n {
		t.Errorf("sender stats after Close: %+v", final)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	c, s := pair(t, ListenConfig{}, Options{})
	errc := make(chan error, 1)
	go func() {
		_, err := s.ReadMessage(context.Background(), make([]byte, ReadBufferSize))
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond) // let it park
	start := time.Now()
	s.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("got %v, want ErrClosed", err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("Close released the reader after %v", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not release the blocked ReadMessage")
	}
	s.Close() // idempotent
	if err := s.WriteMessage([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}
	if _, err := s.ReadMessage(context.Background(), make([]byte, 10)); !errors.Is(err, ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
	_ = c
}

func TestReadContext(t *testing.T) {
	_, s := pair(t, ListenConfig{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.ReadMessage(ctx, make([]byte, ReadBufferSize))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("took %v", d)
	}
}

func TestListenerCloseUnblocksAccept(t *testing.T) {
	l, err := Listen("127.0.0.1:0", ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept(context.Background())
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("got %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not release Accept")
	}
	l.Close()
	if _, err := l.Accept(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
}

// blackhole is a UDP socket that swallows everything: an unresponsive peer.
func blackhole(t *testing.T) string {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

func TestDialCancel(t *testing.T) {
	addr := blackhole(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := Dial(ctx, addr, Options{ConnectTimeout: 10 * time.Second})
	d := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d > time.Second {
		t.Errorf("cancel took effect after %v", d)
	}
	if !strings.HasPrefix(err.Error(), "srt dial "+addr) {
		t.Errorf("error does not name the action: %v", err)
	}
	if n := OpenSockets(); n != 0 {
		t.Errorf("cancelled Dial left %d sockets open", n)
	}
}

func TestDialTimeout(t *testing.T) {
	addr := blackhole(t)
	start := time.Now()
	_, err := Dial(context.Background(), addr, Options{ConnectTimeout: 300 * time.Millisecond})
	d := time.Since(start)
	if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrRejected) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("timeout after %v, want ~300ms", d)
	}
	t.Logf("%v after %v", err, d.Round(time.Millisecond))
}

func TestPeerClose(t *testing.T) {
	for _, who := range []string{"caller closes", "listener side closes"} {
		t.Run(who, func(t *testing.T) {
			c, s := pair(t, ListenConfig{}, Options{})
			closer, reader := c, s
			if who != "caller closes" {
				closer, reader = s, c
			}
			errc := make(chan error, 1)
			go func() {
				buf := make([]byte, ReadBufferSize)
				for {
					if _, err := reader.ReadMessage(context.Background(), buf); err != nil {
						errc <- err
						return
					}
				}
			}()
			if err := closer.WriteMessage([]byte("last words")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			start := time.Now()
			closer.Close()
			select {
			case err := <-errc:
				var se *Error
				if !errors.Is(err, ErrConnectionLost) || !errors.As(err, &se) || se.Code != 2001 {
					t.Errorf("got %v, want ErrConnectionLost (SRT 2001)", err)
				}
				t.Logf("reader saw %v after %v", err, time.Since(start).Round(time.Millisecond))
			case <-time.After(7 * time.Second):
				t.Fatal("reader never noticed the peer close")
			}
			if err := reader.WriteMessage([]byte("x")); !errors.Is(err, ErrConnectionLost) {
				t.Errorf("write to a gone peer: %v", err)
			}
		})
	}
}

func TestWriteMessageSize(t *testing.T) {
	c, s := pair(t, ListenConfig{}, Options{})
	err := c.WriteMessage(make([]byte, MaxMessageSize+1))
	if err == nil || !strings.Contains(err.Error(), "1317") || !strings.Contains(err.Error(), "1316") {
		t.Errorf("oversize: %v", err)
	}
	if err := c.WriteMessage(nil); err == nil {
		t.Error("empty message accepted")
	}
	if err := c.WriteMessage(make([]byte, MaxMessageSize)); err != nil {
		t.Errorf("max size: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// A too-small read buffer is an error from libsrt, not a truncation,
	// and the message stays queued.
	_, err = s.ReadMessage(ctx, make([]byte, 100))
	var se *Error
	if !errors.As(err, &se) || se.Code != 5009 || !strings.Contains(err.Error(), "ReadBufferSize") {
		t.Errorf("short buffer: %v", err)
	}
	buf := make([]byte, ReadBufferSize)
	if k, err := s.ReadMessage(ctx, buf); err != nil || k != MaxMessageSize {
		t.Errorf("message after the short read: %d %v", k, err)
	}
}

func TestLocalAddrAndDevice(t *testing.T) {
	l := listen(t, ListenConfig{})
	ch := acceptOne(t, l)
	c := dial(t, l.Addr().String(), Options{LocalAddr: "127.0.0.1", Device: "lo"})
	s := getConn(t, ch)
	if s.RemoteAddr().String() != c.LocalAddr().String() || c.LocalAddr().(*net.UDPAddr).IP.String() != "127.0.0.1" {
		t.Errorf("local %v remote-seen %v", c.LocalAddr(), s.RemoteAddr())
	}
	if _, err := Dial(context.Background(), l.Addr().String(), Options{Device: "nosuchdev0"}); err == nil {
		t.Error("bogus device accepted")
	} else {
		t.Logf("bogus device: %v", err)
	}
	if _, err := Dial(context.Background(), l.Addr().String(), Options{LocalAddr: "::1"}); err == nil ||
		!strings.Contains(err.Error(), "address family") {
		t.Errorf("family mismatch: %v", err)
	}
}

func TestCleanupBusy(t *testing.T) {
	l := listen(t, ListenConfig{})
	// srt_cleanup joins libsrt's GC thread, which wakes once a second: a
	// second is not enough on a loaded machine (seen in a full run).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Cleanup(ctx); !errors.Is(err, ErrBusy) {
		t.Errorf("Cleanup with an open listener: %v, want ErrBusy", err)
	}
	l.Close()
	if err := Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	// The package starts again on demand.
	c, s := pair(t, ListenConfig{}, Options{})
	if err := c.WriteMessage([]byte("again")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, ReadBufferSize)
	if k, err := s.ReadMessage(ctx, buf); err != nil || string(buf[:k]) != "again" {
		t.Fatalf("after restart: %q %v", buf[:k], err)
	}
}

// A SendOnly caller sends like any other, cannot be read, keeps no thread
// waiting in libsrt once it is the only socket left, and still learns of
// a peer that went away on its next writes.
func TestSendOnly(t *testing.T) {
	l := listen(t, ListenConfig{})
	ch := acceptOne(t, l)
	c := dial(t, l.Addr().String(), Options{SendOnly: true})
	s := getConn(t, ch)

	for i := range 20 {
		if err := c.WriteMessage(message(i, messageSize(i))); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	buf := make([]byte, ReadBufferSize)
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		n, err := s.ReadMessage(ctx, buf)
		cancel()
		if err != nil {
			t.Fatalf("listener side, message %d: %v", i, err)
		}
		if err := checkMessage(buf[:n], i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ReadMessage(context.Background(), buf); err == nil || !strings.Contains(err.Error(), "SendOnly") {
		t.Errorf("ReadMessage on a SendOnly connection: %v, want an error naming SendOnly", err)
	}
	if st := c.Stats(); st.PktSent < 20 || st.Stale {
		t.Errorf("stats of a SendOnly connection: %d packets sent, stale %v; want >= 20, fresh", st.PktSent, st.Stale)
	}

	// The listener and its connection go: c is the poller's last socket,
	// and it is not subscribed, so the poller stops waiting in libsrt.
	s.Close()
	l.Close()
	time.Sleep(pollTick + 100*time.Millisecond) // a wait in progress ends within its tick
	w0 := diagnostics().Waits
	time.Sleep(pollTick + 200*time.Millisecond)
	if w := diagnostics().Waits - w0; w > 0 {
		t.Errorf("the poller waited in libsrt %d times in %v with only a SendOnly socket open, want none", w, pollTick+200*time.Millisecond)
	}

	// The peer closed: writes fail with ErrConnectionLost soon.
	deadline := time.Now().Add(7 * time.Second)
	for {
		err := c.WriteMessage([]byte("anyone there?"))
		if errors.Is(err, ErrConnectionLost) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes to a closed peer still return %v after 7 s, want ErrConnectionLost", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
