package srt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// freeUDPPort returns a UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func startCmd(t *testing.T, name string, args ...string) (*exec.Cmd, *logBuf) {
	t.Helper()
	cmd := exec.Command(name, args...)
	stderr := new(logBuf)
	cmd.Stderr = stderr
	t.Cleanup(func() {
		if cmd.Process != nil && cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, stderr
}

// srt-live-transmit as a caller (reading stdin) into our listener, with a
// stream id and a passphrase handed out by Authorize.
func TestInteropSLTCaller(t *testing.T) {
	slt := tool(t, "srt-live-transmit")
	const pass = "interop-passphrase"
	sids := make(chan string, 4)
	l := listen(t, ListenConfig{Authorize: func(sid string, _ net.Addr) (string, error) {
		sids <- sid
		return pass, nil
	}})
	port := l.Addr().(*net.UDPAddr).Port
	uri := fmt.Sprintf("srt://127.0.0.1:%d?streamid=%s&passphrase=%s&latency=50", port, "slt-feed", pass)
	cmd, stderr := startCmd(t, slt, "-q", "-a:no", "-chunk:1316", "file://con", uri)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := l.Accept(ctx)
	if err != nil {
		t.Fatalf("accept: %v (srt-live-transmit: %s)", err, stderr)
	}
	defer s.Close()
	if got := <-sids; got != "slt-feed" || s.StreamID() != "slt-feed" {
		t.Errorf("stream id: Authorize %q, Conn %q", got, s.StreamID())
	}
	const n = 200
	go func() {
		for i := 0; i < n; i++ {
			if _, err := stdin.Write(message(i, MaxMessageSize)); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	buf := make([]byte, ReadBufferSize)
	for i := 0; i < n; i++ {
		k, err := s.ReadMessage(ctx, buf)
		if err != nil {
			t.Fatalf("read %d: %v (srt-live-transmit: %s)", i, err, stderr)
		}
		if want := message(i, MaxMessageSize); !bytes.Equal(buf[:k], want) {
			t.Fatalf("message %d differs (%d bytes)", i, k)
		}
	}
	// srt-live-transmit does not exit at EOF of stdin while connected;
	// SIGINT makes it close its socket, and we see the peer go.
	cmd.Process.Signal(os.Interrupt)
	start := time.Now()
	if _, err := s.ReadMessage(ctx, buf); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("after srt-live-transmit exit: %v", err)
	}
	t.Logf("peer close seen %v after SIGINT", time.Since(start).Round(time.Millisecond))
	stdin.Close()
}

// Our Dial into srt-live-transmit as a listener (writing stdout).
func TestInteropSLTListener(t *testing.T) {
	slt := tool(t, "srt-live-transmit")
	port := freeUDPPort(t)
	cmd, stderr := startCmd(t, slt, "-q", "-a:no", fmt.Sprintf("srt://:%d?mode=listener&latency=50", port), "file://con")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Drain stdout from the start: a full pipe would stall it.
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() { b, err := io.ReadAll(stdout); done <- result{b, err} }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var c *Conn
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err = Dial(context.Background(), addr, Options{ConnectTimeout: 300 * time.Millisecond, StreamID: "to-slt"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial srt-live-transmit: %v (%s)", err, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer c.Close()
	const n = 200
	var want bytes.Buffer
	for i := 0; i < n; i++ {
		m := message(i, MaxMessageSize)
		want.Write(m)
		if err := c.WriteMessage(m); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		time.Sleep(time.Millisecond)
	}
	// srt-live-transmit block-buffers stdout and exits (flushing) when its
	// source disconnects (-a:no): wait for the data to be delivered
	// (latency 50ms), then close.
	var st Stats
	waitFor(3*time.Second, func() bool { st = c.Stats(); return st.SendBufMs == 0 && st.PktRecvACK > 0 })
	time.Sleep(200 * time.Millisecond)
	c.Close()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("reading srt-live-transmit's output: %v (%s)", r.err, stderr)
		}
		if !bytes.Equal(r.b, want.Bytes()) {
			t.Fatalf("srt-live-transmit output %d bytes, want %d identical bytes (%s)", len(r.b), want.Len(), stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("srt-live-transmit did not exit after we closed (%s)", stderr)
	}
	t.Logf("sent %d packets to srt-live-transmit, RTT %v, %d ACKs", st.PktSent, st.RTT, st.PktRecvACK)
}

// ffmpeg pushing MPEG-TS as a publisher with an access-control stream id.
func TestInteropFFmpegCaller(t *testing.T) {
	ff := tool(t, "ffmpeg")
	const sid = "#!::r=live/ffmpeg,m=publish"
	var mu sync.Mutex
	var seen []string
	l := listen(t, ListenConfig{Authorize: func(s string, _ net.Addr) (string, error) {
		mu.Lock()
		seen = append(seen, s)
		mu.Unlock()
		if !strings.HasPrefix(s, "#!::") {
			return "", &RejectError{Code: RejectBadRequest, Reason: "want access-control syntax"}
		}
		return "", nil
	}})
	port := l.Addr().(*net.UDPAddr).Port
	// Debian's ffmpeg 5.1 passes streamid through literally (no %-decoding).
	uri := fmt.Sprintf("srt://127.0.0.1:%d?streamid=%s&pkt_size=1316&latency=50000", port, sid)
	cmd, stderr := startCmd(t, ff, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", "2",
		"-c:a", "aac", "-b:a", "128k", "-f", "mpegts", uri)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := l.Accept(ctx)
	if err != nil {
		t.Fatalf("accept: %v (ffmpeg: %s)", err, stderr)
	}
	defer s.Close()
	if s.StreamID() != sid {
		t.Errorf("stream id %q, want %q (Authorize saw %q)", s.StreamID(), sid, seen)
	}
	buf := make([]byte, ReadBufferSize)
	msgs, tsPackets := 0, 0
	for {
		k, err := s.ReadMessage(ctx, buf)
		if err != nil {
			if !errors.Is(err, ErrConnectionLost) {
				t.Errorf("read ended with %v", err)
			}
			break
		}
		msgs++
		if k%188 != 0 {
			t.Fatalf("message of %d bytes is not whole TS packets", k)
		}
		for off := 0; off < k; off += 188 {
			if buf[off] != 0x47 {
				t.Fatalf("TS sync byte missing at %d", off)
			}
			tsPackets++
		}
	}
	cmd.Wait()
	if msgs < 20 {
		t.Errorf("only %d messages from ffmpeg (%s)", msgs, stderr)
	}
	t.Logf("ffmpeg: %d messages, %d TS packets", msgs, tsPackets)
}
