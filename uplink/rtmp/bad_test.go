package rtmp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/scripts/testenv"
	"tandem/uplink/flv"
	"tandem/uplink/media"
)

// rawConn dials the server and, unless skipHandshake, does the client
// handshake; messages can then be written with c.write.
func rawConn(t *testing.T, addr string, handshake bool) *conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := newConn(nc, 1<<24, nil)
	if handshake {
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := clientHandshake(c.br, c.bw, time.Now()); err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Time{})
	}
	return c
}

// expectClosed waits for the server to close the connection.
func expectClosed(t *testing.T, c *conn, within time.Duration) {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(within))
	// A reset is a close too (the server closed with our bytes unread).
	if _, err := io.Copy(io.Discard, c.br); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("server did not close the connection within %v: %v", within, err)
	}
}

// goodPublisher publishes an A/V stream (a frame every 4 ms) until stopped.
type goodPublisher struct {
	cl   *Client
	sink *recSink
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	sent []media.Frame
	err  error
}

func startGoodPublisher(t *testing.T, addr string, ss *sinks) *goodPublisher {
	acfg := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}
	vcfg := testVideoConfig(t)
	cl, err := Dial(context.Background(), ClientConfig{URL: "rtmp://" + addr + "/live/good?key=good", Audio: &acfg, Video: &vcfg})
	if err != nil {
		t.Fatal(err)
	}
	g := &goodPublisher{cl: cl, sink: ss.wait(t, time.Second), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		rng := rand.New(rand.NewPCG(9, 9))
		tick := time.NewTicker(4 * time.Millisecond)
		defer tick.Stop()
		for i := int64(0); ; i++ {
			select {
			case <-g.stop:
				return
			case <-tick.C:
			}
			f := media.Frame{Kind: media.KindAudio, DTS: i * 4 * 90, PTS: i * 4 * 90, Key: true, Data: rawAU(rng, 300)}
			if i%2 == 1 {
				f = media.Frame{Kind: media.KindVideo, DTS: i * 4 * 90, PTS: i * 4 * 90, Key: i%50 == 1, Data: fakeAU(rng, 3000, i%50 == 1)}
			}
			if err := cl.WriteFrame(f); err != nil {
				g.mu.Lock()
				g.err = err
				g.mu.Unlock()
				return
			}
			g.mu.Lock()
			g.sent = append(g.sent, f)
			g.mu.Unlock()
		}
	}()
	return g
}

// progress checks the good publisher is still flowing: frames keep
// arriving, nothing closed.
func (g *goodPublisher) progress(t *testing.T, step string) {
	t.Helper()
	n := g.sink.count()
	deadline := time.Now().Add(2 * time.Second)
	for g.sink.count() < n+10 {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: the good publisher stalled at %d frames", step, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-g.sink.closed:
		t.Fatalf("after %s: the good publisher was closed: %v", step, g.sink.closeErr)
	default:
	}
}

func (g *goodPublisher) finish(t *testing.T) {
	t.Helper()
	close(g.stop)
	<-g.done
	if g.err != nil {
		t.Fatalf("good publisher: %v", g.err)
	}
	if err := g.cl.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.sink.waitClosed(t, 5*time.Second); err != nil {
		t.Fatalf("good publisher closed with %v", err)
	}
	_, _, got := g.sink.snapshot()
	if len(got) != len(g.sent) {
		t.Fatalf("good publisher: sent %d frames, received %d", len(g.sent), len(got))
	}
	for i := range got {
		if got[i].DTS != g.sent[i].DTS || !bytes.Equal(got[i].Data, g.sent[i].Data) {
			t.Fatalf("good publisher frame %d differs", i)
		}
	}
	t.Logf("good publisher: %d frames intact while the bad inputs ran", len(got))
}

// TestBadInputs throws bad input at a server while a good publisher runs:
// each bad session ends with a logged error naming what was wrong, the
// good publisher is not disturbed.
func TestBadInputs(t *testing.T) {
	logs, log := newLog()
	ss := newSinks()
	_, addr := startServer(t, ServerConfig{
		Logger:           log,
		HandshakeTimeout: time.Second, // generous: the race detector and parallel ffmpeg runs load the machine
		MaxMessageSize:   1 << 20,
		Authorize: func(app, name, key string, _ net.Addr) error {
			if key != "good" {
				return errors.New("wrong stream key")
			}
			return nil
		},
		OnPublish: ss.onPublish,
	})
	good := startGoodPublisher(t, addr, ss)

	t.Run("garbage handshake", func(t *testing.T) {
		c := rawConn(t, addr, false)
		c.nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		expectClosed(t, c, time.Second)
		logs.waitFor(t, `C0 version byte 0x47, want 0x03 ('G': looks like a text protocol such as HTTP)`, time.Second)
		good.progress(t, "garbage handshake")
	})
	t.Run("TLS on the RTMP port", func(t *testing.T) {
		c := rawConn(t, addr, false)
		c.nc.Write([]byte{0x16, 3, 1, 0, 5})
		expectClosed(t, c, time.Second)
		logs.waitFor(t, "looks like TLS", time.Second)
	})
	t.Run("short handshake", func(t *testing.T) {
		c := rawConn(t, addr, false)
		c.nc.Write(append([]byte{3}, make([]byte, 100)...))
		c.nc.(*net.TCPConn).CloseWrite()
		expectClosed(t, c, time.Second)
		logs.waitFor(t, "connection closed after 100 of 1536 bytes of C1", time.Second)
		good.progress(t, "short handshake")
	})
	t.Run("silent client", func(t *testing.T) {
		c := rawConn(t, addr, false)
		start := time.Now()
		expectClosed(t, c, 3*time.Second)
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Errorf("closed after %v, before the handshake timeout", d)
		}
		logs.waitFor(t, "reading C0 (0 of 1 bytes): read tcp", time.Second)
		logs.waitFor(t, "i/o timeout", time.Second)
		good.progress(t, "silent client")
	})
	t.Run("truncated FLV audio tag", func(t *testing.T) {
		cl := sendRaw(t, addr, "bad?key=good", flv.TagAudio, [][]byte{{0xAF}}, []uint32{0})
		defer cl.Close()
		sink := ss.wait(t, time.Second)
		err := sink.waitClosed(t, 2*time.Second)
		if !errors.Is(err, flv.ErrTruncated) || !strings.Contains(err.Error(), "AAC audio tag of 1 byte(s), needs 2") {
			t.Errorf("OnClose(%v)", err)
		}
		logs.waitFor(t, "AAC audio tag of 1 byte(s)", time.Second)
		good.progress(t, "truncated audio tag")
	})
	t.Run("truncated FLV video tag", func(t *testing.T) {
		cl := sendRaw(t, addr, "bad?key=good", flv.TagVideo, [][]byte{{0x17, 1, 0}}, []uint32{0})
		defer cl.Close()
		sink := ss.wait(t, time.Second)
		if err := sink.waitClosed(t, 2*time.Second); !errors.Is(err, flv.ErrTruncated) || !strings.Contains(err.Error(), "AVC video tag of 3 byte(s)") {
			t.Errorf("OnClose(%v)", err)
		}
	})
	t.Run("bad AAC sequence header", func(t *testing.T) {
		cl := sendRaw(t, addr, "bad?key=good", flv.TagAudio, [][]byte{{0xAF, 0, 0xF8, 0}}, []uint32{0})
		defer cl.Close()
		sink := ss.wait(t, time.Second)
		if err := sink.waitClosed(t, 2*time.Second); err == nil || !strings.Contains(err.Error(), "AAC sequence header") {
			t.Errorf("OnClose(%v)", err)
		}
	})
	t.Run("16 MiB message over the 1 MiB limit", func(t *testing.T) {
		// The 24-bit length field cannot say more than 16 MiB − 1.
		c := rawConn(t, addr, true)
		c.nc.Write(append(hdr0(6, 0, 0xFFFFFF, 9, 1), make([]byte, 4096)...))
		expectClosed(t, c, time.Second)
		logs.waitFor(t, "video message of 16777215 bytes on chunk stream 6 exceeds the limit of 1048576 bytes", time.Second)
		good.progress(t, "oversized message")
	})
	t.Run("media before publish", func(t *testing.T) {
		c := rawConn(t, addr, true)
		c.write(commandMsg(csidCommand, 0, "connect", 1.0, map[string]any{"app": "live"}),
			commandMsg(csidCommand, 0, "createStream", 2.0, nil),
			message{csid: csidAudio, typ: typeAudio, streamID: 1, payload: []byte{0xAF, 1, 1, 2, 3}})
		expectClosed(t, c, time.Second)
		logs.waitFor(t, "audio message on message stream 1 before publish", time.Second)
	})
	t.Run("command before connect", func(t *testing.T) {
		c := rawConn(t, addr, true)
		c.write(commandMsg(csidCommand, 0, "createStream", 2.0, nil))
		expectClosed(t, c, time.Second)
		logs.waitFor(t, `command \"createStream\" before connect`, time.Second)
	})
	t.Run("garbage AMF command", func(t *testing.T) {
		c := rawConn(t, addr, true)
		c.write(message{csid: csidCommand, typ: typeCommandAMF0, payload: []byte{0x02, 0, 7, 'c', 'o', 'n', 'n', 'e', 'c', 't', 0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x03, 0x00, 0x03, 'a', 'p'}})
		expectClosed(t, c, time.Second)
		logs.waitFor(t, "amf0: truncated", time.Second)
	})
	t.Run("first chunk with a type 1 header", func(t *testing.T) {
		c := rawConn(t, addr, true)
		c.nc.Write([]byte{0x40 | 7, 0, 0, 1, 0, 0, 4, 8, 1, 2, 3, 4})
		expectClosed(t, c, time.Second)
		logs.waitFor(t, "chunk stream 7 starts with a type 1 chunk header", time.Second)
	})
	t.Run("set chunk size 0", func(t *testing.T) {
		c := rawConn(t, addr, true)
		c.write(controlMsg(typeSetChunkSize, be32(0)))
		expectClosed(t, c, time.Second)
		logs.waitFor(t, "set chunk size to 0", time.Second)
	})
	t.Run("unknown message types are ignored", func(t *testing.T) {
		c := rawConn(t, addr, true)
		c.write(message{csid: 9, typ: 99, payload: []byte{1, 2, 3}},
			message{csid: 9, typ: typeSharedObjectAMF0, payload: []byte{1}},
			commandMsg(csidCommand, 0, "connect", 1.0, map[string]any{"app": "live"}))
		// The session is alive: the connect is answered.
		c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			m, err := c.readMessage()
			if err != nil {
				t.Fatalf("no answer to connect: %v", err)
			}
			if name, _, _, _ := decodeCommand(m); name == "_result" {
				break
			}
		}
	})
	t.Run("Authorize refuses ffmpeg", func(t *testing.T) {
		ffmpeg := testenv.Need(t, "ffmpeg")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := runCmd(ctx, ffmpeg, "-hide_banner", "-v", "error", "-nostdin",
			"-f", "lavfi", "-i", "sine=f=440", "-t", "1", "-c:a", "aac", "-f", "flv", "rtmp://"+addr+"/live/x?key=bad")
		if err == nil {
			t.Fatalf("ffmpeg published with a bad key:\n%s", out)
		}
		if !strings.Contains(out, "wrong stream key") {
			t.Errorf("ffmpeg does not report the reason:\n%s", out)
		}
		logs.waitFor(t, `stream=live/x code=NetStream.Publish.Unauthorized reason="wrong stream key"`, time.Second)
		t.Logf("ffmpeg said: %s", strings.TrimSpace(out))
		good.progress(t, "refused publisher")
	})
	good.finish(t)
}
