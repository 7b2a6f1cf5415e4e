package rtmp

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"tandem/uplink/h264"
	"tandem/uplink/media"
)

type sent struct {
	f    media.Frame
	want media.Frame // what the Sink must receive
}

// roundTripFrames builds an A/V sequence on a ms-aligned timeline starting
// at base ticks: audio every 21–22 ms, video every 40 ms with B-frame-like
// composition offsets, keyframes every 25 frames (every other one without
// in-band SPS/PPS, which the server must insert), sizes from 1 byte to
// 60 kB (many chunks). The timeline jumps past 0xFFFFFF ms (extended
// timestamps) and past 2^32 ms (the 32-bit wrap), in steps below 2^31 ms.
func roundTripFrames(t testing.TB, rng *rand.Rand, base int64, vcfg media.VideoConfig) []sent {
	var out []sent
	ms := int64(0)
	nextAudio, nextVideo := int64(0), int64(0)
	vi := 0
	jumps := map[int]int64{120: 0xFFFFF0, 200: 1 << 30, 260: 1 << 30, 320: 1 << 30, 380: 1 << 30}
	for i := 0; len(out) < 460; i++ {
		if j, ok := jumps[len(out)]; ok {
			nextAudio += j
			nextVideo += j
			delete(jumps, len(out))
		}
		if nextAudio <= nextVideo {
			ms = nextAudio
			data := rawAU(rng, 1+rng.IntN(800))
			f := media.Frame{Kind: media.KindAudio, DTS: base + ms*90, PTS: base + ms*90, Key: true, Data: data}
			w := f
			w.DTS, w.PTS = ms*90, ms*90
			out = append(out, sent{f, w})
			nextAudio += 21 + int64(rng.IntN(2))
			continue
		}
		ms = nextVideo
		key := vi%25 == 0
		n := 1 + rng.IntN(3000)
		if rng.IntN(10) == 0 {
			n = 30000 + rng.IntN(30000)
		}
		au := fakeAU(rng, n, key)
		want := au
		if key && (vi/25)%2 == 1 {
			// Strip the in-band SPS/PPS: the server puts them back after the AUD.
			at := len(h264.AUD) + 8 + len(testSPS) + len(testPPS)
			au = append(append([]byte(nil), h264.AUD...), au[at:]...)
		}
		cts := []int64{0, 80, 40}[vi%3]
		if key {
			cts = 0
		}
		f := media.Frame{Kind: media.KindVideo, DTS: base + ms*90, PTS: base + (ms+cts)*90, Key: key, Data: au}
		w := f
		w.DTS, w.PTS, w.Data = ms*90, (ms+cts)*90, want
		out = append(out, sent{f, w})
		nextVideo += 40
		vi++
	}
	return out
}

func TestClientServerRoundTrip(t *testing.T) {
	for _, chunk := range []int{128, 4096, 1 << 20} {
		t.Run("chunk"+strconvItoa(chunk), func(t *testing.T) {
			t.Parallel()
			logs, log := newLog()
			ss := newSinks()
			_, addr := startServer(t, ServerConfig{Logger: log, OnPublish: ss.onPublish, ChunkSize: chunk})
			acfg := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}
			vcfg := testVideoConfig(t)
			rng := rand.New(rand.NewPCG(uint64(chunk), 7))
			frames := roundTripFrames(t, rng, 987654321, vcfg)

			cl, err := Dial(context.Background(), ClientConfig{
				URL: "rtmp://" + addr + "/live/rt?key=k1&x=y", Audio: &acfg, Video: &vcfg, Logger: log, ChunkSize: chunk,
			})
			if err != nil {
				t.Fatalf("Dial: %v\n%s", err, logs)
			}
			sink := ss.wait(t, time.Second)
			for _, s := range frames {
				if err := cl.WriteFrame(s.f); err != nil {
					t.Fatalf("WriteFrame: %v", err)
				}
			}
			if err := cl.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := sink.waitClosed(t, 5*time.Second); err != nil {
				t.Fatalf("OnClose(%v), want nil after Close", err)
			}
			if sink.pub.Key != "k1" || sink.pub.Name != "rt" || sink.pub.Query.Get("x") != "y" {
				t.Errorf("publisher %+v", sink.pub)
			}
			a, v, got := sink.snapshot()
			if len(a) != 1 || a[0] != acfg {
				t.Errorf("audio configs %v, want %v", a, acfg)
			}
			if len(v) != 1 || !bytes.Equal(v[0].SPS, vcfg.SPS) || !bytes.Equal(v[0].PPS, vcfg.PPS) || v[0].Width != 320 {
				t.Errorf("video configs %+v", v)
			}
			if len(got) != len(frames) {
				t.Fatalf("got %d frames, sent %d", len(got), len(frames))
			}
			for i, s := range frames {
				g, w := got[i], s.want
				if g.Kind != w.Kind || g.PTS != w.PTS || g.DTS != w.DTS || g.Key != w.Key || !bytes.Equal(g.Data, w.Data) {
					t.Fatalf("frame %d: got %s, want %s", i, describeFrame(g), describeFrame(w))
				}
			}
			last := got[len(got)-1].DTS / 90
			if last <= 1<<32 {
				t.Fatalf("timeline ends at %d ms: the test did not cross the 32-bit wrap", last)
			}
			if st := cl.Stats(); st.AudioFrames+st.VideoFrames != int64(len(frames)) || st.Clamped != 0 {
				t.Errorf("client stats %+v", st)
			}
		})
	}
}

// TestClientTimestampRounding: 90 kHz timestamps that are not whole
// milliseconds (48 kHz AAC: 1920 ticks per frame) arrive floored to the ms,
// PTS and DTS rounded alike, never accumulating error.
func TestClientTimestampRounding(t *testing.T) {
	ss := newSinks()
	_, addr := startServer(t, ServerConfig{OnPublish: ss.onPublish})
	acfg := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}
	cl, err := Dial(context.Background(), ClientConfig{URL: "rtmp://" + addr + "/live/r", Audio: &acfg})
	if err != nil {
		t.Fatal(err)
	}
	base := int64(5_000_000_017)
	const n = 3000 // 64 s
	for i := int64(0); i < n; i++ {
		pts := base + acfg.FramePTS(i)
		if err := cl.WriteFrame(media.Frame{Kind: media.KindAudio, PTS: pts, DTS: pts, Key: true, Data: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	sink := ss.wait(t, time.Second)
	sink.waitClosed(t, 5*time.Second)
	_, _, got := sink.snapshot()
	if len(got) != n {
		t.Fatalf("got %d frames", len(got))
	}
	for i, f := range got {
		want := acfg.FramePTS(int64(i)) / 90 * 90
		if f.DTS != want || f.PTS != want {
			t.Fatalf("frame %d: %s, want %d", i, describeFrame(f), want)
		}
	}
}

// TestClientErrors: refusals name the step and carry the server's code.
func TestClientErrors(t *testing.T) {
	_, addr := startServer(t, ServerConfig{
		Authorize: func(app, name, key string, _ net.Addr) error {
			if key != "good" {
				return errors.New("wrong stream key")
			}
			return nil
		},
		OnPublish: func(p *Publisher) (Sink, error) {
			return nil, &StatusError{Code: "NetStream.Publish.BadName", Description: "stream " + p.Name + " is taken"}
		},
	})
	acfg := media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 44100, Channels: 1}
	_, err := Dial(context.Background(), ClientConfig{URL: "rtmp://" + addr + "/live/a?key=bad", Audio: &acfg})
	var se *StatusError
	if !errors.As(err, &se) || se.Step != "publish" || se.Code != "NetStream.Publish.Unauthorized" || se.Description != "wrong stream key" {
		t.Errorf("Dial with a bad key: %v", err)
	}
	_, err = Dial(context.Background(), ClientConfig{URL: "rtmp://" + addr + "/live/a?key=good", Audio: &acfg})
	if !errors.As(err, &se) || se.Code != "NetStream.Publish.BadName" || !strings.Contains(err.Error(), "stream a is taken") {
		t.Errorf("Dial refused by OnPublish: %v", err)
	}
	for _, u := range []string{"http://x/a/b", "rtmp:///a/b", "rtmp://h/app", "rtmp://h/"} {
		if _, err := Dial(context.Background(), ClientConfig{URL: u}); err == nil || !strings.Contains(err.Error(), "URL") {
			t.Errorf("Dial(%q): %v", u, err)
		}
	}
	// Nobody listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	if _, err := Dial(context.Background(), ClientConfig{URL: "rtmp://" + dead + "/a/b"}); err == nil || !strings.Contains(err.Error(), "dial") {
		t.Errorf("Dial to a closed port: %v", err)
	}
	// A server that accepts and never answers: the DialTimeout ends it.
	ln, _ = net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(2 * time.Second)
		}
	}()
	start := time.Now()
	_, err = Dial(context.Background(), ClientConfig{URL: "rtmp://" + ln.Addr().String() + "/a/b", DialTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "handshake") || time.Since(start) > time.Second {
		t.Errorf("Dial to a silent server: %v after %v", err, time.Since(start))
	}
	// Audio without an audio config.
	ss := newSinks()
	_, addr2 := startServer(t, ServerConfig{OnPublish: ss.onPublish})
	cl, err := Dial(context.Background(), ClientConfig{URL: "rtmp://" + addr2 + "/live/v"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.WriteFrame(media.Frame{Kind: media.KindAudio, Data: []byte{1}}); err == nil || !strings.Contains(err.Error(), "audio config") {
		t.Errorf("audio frame without config: %v", err)
	}
}
