package rtmp

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"tandem/uplink/media"
	"tandem/uplink/rtmp/amf0"
)

// waitGoroutines waits until the goroutine count is back to at most n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, want ≤ %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServerClose: Close ends every session — sinks get ErrServerClosed,
// players' Done closes, Serve returns — and leaves no goroutine behind.
func TestServerClose(t *testing.T) {
	before := runtime.NumGoroutine()
	ss := newSinks()
	played := make(chan *Player, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ServerConfig{OnPublish: ss.onPublish, OnPlay: func(p *Player) error { played <- p; return nil }})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	addr := ln.Addr().String()

	acfg := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}
	cl, err := Dial(context.Background(), ClientConfig{URL: "rtmp://" + addr + "/live/a", Audio: &acfg})
	if err != nil {
		t.Fatal(err)
	}
	sink := ss.wait(t, time.Second)
	if err := cl.WriteFrame(media.Frame{Kind: media.KindAudio, Data: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	// A player, via a raw connection.
	pc := rawConn(t, addr, true)
	pc.write(commandMsg(csidCommand, 0, "connect", 1.0, map[string]any{"app": "live"}),
		commandMsg(csidCommand, 0, "createStream", 2.0, nil),
		commandMsg(csidStream, 1, "play", 0.0, nil, "a"))
	var p *Player
	select {
	case p = <-played:
	case <-time.After(2 * time.Second):
		t.Fatal("no player")
	}
	// And a connection stuck in the handshake.
	hc := rawConn(t, addr, false)
	hc.nc.Write([]byte{3})

	start := time.Now()
	srv.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	if err := sink.waitClosed(t, time.Second); !errors.Is(err, ErrServerClosed) {
		t.Errorf("sink OnClose(%v), want ErrServerClosed", err)
	}
	select {
	case <-p.Done():
		if !errors.Is(p.Err(), ErrServerClosed) {
			t.Errorf("player Err %v", p.Err())
		}
	default:
		t.Error("player not done")
	}
	if err := p.WriteFrame(media.Frame{Kind: media.KindAudio}); !errors.Is(err, ErrServerClosed) {
		t.Errorf("player write after close: %v", err)
	}
	// The client notices on its next writes.
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		werr = cl.WriteFrame(media.Frame{Kind: media.KindAudio, DTS: int64(i) * 1920, PTS: int64(i) * 1920, Data: []byte{1}})
		time.Sleep(5 * time.Millisecond)
	}
	if werr == nil {
		t.Error("client writes kept succeeding after the server closed")
	}
	cl.Close()
	pc.nc.Close()
	hc.nc.Close()
	if err := srv.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
	waitGoroutines(t, before)
}

// TestIdleTimeout: a peer that sends nothing is dropped after IdleTimeout;
// one that answers the server's pings stays.
func TestIdleTimeout(t *testing.T) {
	logs, log := newLog()
	_, addr := startServer(t, ServerConfig{Logger: log, IdleTimeout: 600 * time.Millisecond})
	connect := commandMsg(csidCommand, 0, "connect", 1.0, map[string]any{"app": "live"})

	mute := rawConn(t, addr, true)
	mute.write(connect)
	alive := rawConn(t, addr, true)
	alive.write(connect)
	readErr := make(chan error, 1)
	go func() { // readMessage answers pings
		for {
			if _, err := alive.readMessage(); err != nil {
				readErr <- err
				return
			}
		}
	}()
	start := time.Now()
	expectClosed(t, mute, 3*time.Second)
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("silent peer dropped after %v", d)
	}
	logs.waitFor(t, "nothing received for 600ms", time.Second)
	select {
	case err := <-readErr:
		t.Fatalf("the pinged peer was dropped: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	alive.nc.Close()
	if !strings.Contains(logs.String(), "session timed out") {
		t.Error("timeout not logged")
	}
}

// TestPlayerClose: a Player closed by the server ends the client's
// connection; a player that disconnects ends Done.
func TestPlayerClose(t *testing.T) {
	played := make(chan *Player, 2)
	_, addr := startServer(t, ServerConfig{OnPlay: func(p *Player) error { played <- p; return nil }})
	play := func() (*conn, *Player) {
		c := rawConn(t, addr, true)
		c.write(commandMsg(csidCommand, 0, "connect", 1.0, map[string]any{"app": "live"}),
			commandMsg(csidCommand, 0, "createStream", 2.0, nil),
			commandMsg(csidStream, 1, "play", 0.0, nil, "s?key=x"))
		select {
		case p := <-played:
			return c, p
		case <-time.After(2 * time.Second):
			t.Fatal("no player")
			return nil, nil
		}
	}
	c, p := play()
	if p.Name != "s" || p.Key != "x" {
		t.Errorf("player %+v", p)
	}
	acfg := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 44100, Channels: 1}
	p.WriteAudioConfig(acfg)
	if err := p.WriteFrame(media.Frame{Kind: media.KindAudio, Data: []byte{1, 2}}); err != nil {
		t.Fatal(err)
	}
	// The client sees onStatus Play.Start, metadata, the sequence header and the frame.
	c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	var seen []string
	for len(seen) < 4 {
		m, err := c.readMessage()
		if err != nil {
			t.Fatalf("after %v: %v", seen, err)
		}
		switch m.typ {
		case typeCommandAMF0:
			name, _, args, _ := decodeCommand(m)
			if name == "onStatus" {
				seen = append(seen, infoObject(args).String("code"))
			}
		case typeDataAMF0:
			if vals, _ := amf0.DecodeAll(m.payload); len(vals) > 0 && vals[0] == "onMetaData" {
				seen = append(seen, "onMetaData")
			}
		case typeAudio:
			seen = append(seen, "audio")
		}
	}
	if strings.Join(seen, ",") != "NetStream.Play.Reset,NetStream.Play.Start,onMetaData,audio" {
		t.Errorf("player saw %v", seen)
	}
	p.Close()
	expectClosed(t, c, 2*time.Second)
	if p.Err() == nil {
		t.Error("closed player has no error")
	}
	// The client goes away: Done closes.
	c2, p2 := play()
	c2.nc.Close()
	select {
	case <-p2.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("player Done not closed after the client left")
	}
}

// TestStalledPlayer: a player that stops reading makes its writes fail
// within the idle timeout; its feeder gets an error, Done closes.
func TestStalledPlayer(t *testing.T) {
	played := make(chan *Player, 1)
	logs, log := newLog()
	_, addr := startServer(t, ServerConfig{Logger: log, IdleTimeout: 500 * time.Millisecond, OnPlay: func(p *Player) error { played <- p; return nil }})
	c := rawConn(t, addr, true)
	c.write(commandMsg(csidCommand, 0, "connect", 1.0, map[string]any{"app": "live"}),
		commandMsg(csidCommand, 0, "createStream", 2.0, nil),
		commandMsg(csidStream, 1, "play", 0.0, nil, "s"))
	p := <-played
	vcfg := testVideoConfig(t)
	p.WriteVideoConfig(vcfg)
	start := time.Now()
	var err error
	big := append(fakeAU(nil, 0, true), make([]byte, 100<<10)...)
	for i := int64(0); err == nil && time.Since(start) < 10*time.Second; i++ {
		err = p.WriteFrame(media.Frame{Kind: media.KindVideo, DTS: i * 3600, PTS: i * 3600, Key: true, Data: big})
	}
	if err == nil {
		t.Fatal("writes to a stalled player kept succeeding")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stalled player detected after %v", d)
	}
	select {
	case <-p.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("Done not closed")
	}
	t.Logf("stalled player: %v after %v", err, time.Since(start).Round(time.Millisecond))
	_ = logs
}

// TestPublisherClose: the server side can drop a publisher; only its
// connection goes.
func TestPublisherClose(t *testing.T) {
	ss := newSinks()
	_, addr := startServer(t, ServerConfig{OnPublish: ss.onPublish})
	acfg := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}
	a, err := Dial(context.Background(), ClientConfig{URL: "rtmp://" + addr + "/live/a", Audio: &acfg})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sa := ss.wait(t, time.Second)
	b, err := Dial(context.Background(), ClientConfig{URL: "rtmp://" + addr + "/live/b", Audio: &acfg})
	if err != nil {
		t.Fatal(err)
	}
	sb := ss.wait(t, time.Second)
	sa.pub.Close()
	if err := sa.waitClosed(t, 2*time.Second); !errors.Is(err, ErrKicked) {
		t.Errorf("OnClose(%v), want ErrKicked", err)
	}
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		werr = a.WriteFrame(media.Frame{Kind: media.KindAudio, DTS: int64(i) * 1920, PTS: int64(i) * 1920, Data: []byte{1}})
		time.Sleep(5 * time.Millisecond)
	}
	if werr == nil {
		t.Error("the kicked client's writes kept succeeding")
	}
	if err := b.WriteFrame(media.Frame{Kind: media.KindAudio, Data: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := sb.waitClosed(t, 2*time.Second); err != nil {
		t.Errorf("the other publisher: OnClose(%v)", err)
	}
}
