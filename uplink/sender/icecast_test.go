package sender_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/adts"
	"tandem/uplink/sender"
	"tandem/uplink/streamid"
)

// A sender pushes the primary mount to a real Icecast by HTTP PUT; a
// listener reads the same ADTS frames back. A wrong password is a clear
// error naming the mount and the HTTP status, retried.
func TestIcecast(t *testing.T) {
	frames := tone(t)
	addr := e2e.StartIcecast(t, "")

	var ev events
	s, err := sender.New(sender.Config{
		Role: streamid.RolePrimary, Name: "tone",
		Dest:  "icecast://source:" + e2e.IcecastPassword + "@" + addr,
		Audio: stereo48k, Log: testLogger(t), OnEvent: ev.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go feed(ctx, frames, 0, s)
	if !e2e.WaitFor(5*time.Second, func() bool { return s.Stats().State == sender.StateConnected }) {
		t.Fatalf("not connected: %+v%s", s.Stats(), ev.String())
	}
	if d := ev.after(sender.EventConnected, time.Time{})[0].Detail; !strings.Contains(d, "PUT /tone.aac") {
		t.Errorf("connected event %q does not name the mount", d)
	}

	// Listen on the mount: Icecast relays the source's bytes, so the
	// listener's frames are the tone's frames, in order.
	var resp *http.Response
	if !e2e.WaitFor(5*time.Second, func() bool {
		r, err := http.Get("http://" + addr + "/tone.aac")
		if err != nil {
			return false
		}
		if r.StatusCode != http.StatusOK {
			r.Body.Close()
			return false
		}
		resp = r
		return true
	}) {
		t.Fatalf("no listener stream from Icecast%s", ev.String())
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "audio/aac" {
		t.Errorf("Icecast serves the mount as %q, want audio/aac", ct)
	}
	rd := adts.NewReader(bufio.NewReader(resp.Body))
	index := map[string]int{}
	for i, f := range frames {
		if _, dup := index[string(f)]; !dup {
			index[string(f)] = i
		}
	}
	prev, matched := -1, 0
	for n := range 100 {
		h, payload, err := rd.ReadFrame()
		if err != nil {
			t.Fatalf("listener frame %d: %v", n, err)
		}
		if h.Config != stereo48k {
			t.Fatalf("listener frame %d: %+v", n, h.Config)
		}
		i, ok := index[string(payload)]
		if !ok {
			t.Fatalf("listener frame %d is not a frame of the tone", n)
		}
		if prev >= 0 && i != prev+1 && len(index) == len(frames) {
			t.Errorf("listener frame %d is tone frame %d after %d", n, i, prev)
		}
		prev = i
		matched++
	}
	st := s.Stats()
	if st.Sent < 100 || st.Stalls != 0 || st.BitrateKbps < 60 {
		t.Errorf("stats: %+v", st)
	}
	t.Logf("Icecast listener got %d tone frames in order; sender %+v", matched, st)

	// Wrong password: a clear, retried error.
	var bad events
	b, err := sender.New(sender.Config{
		Role: streamid.RoleFallback, Name: "tone",
		Dest:       "icecast://source:wrong-password@" + addr,
		Audio:      stereo48k,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Log: testLogger(t), OnEvent: bad.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, b)
	if !e2e.WaitFor(5*time.Second, func() bool { return bad.count(sender.EventConnectFailed) >= 2 }) {
		t.Fatalf("wrong password: want repeated connect-failed events:%s", bad.String())
	}
	e := bad.after(sender.EventConnectFailed, time.Time{})[0]
	if msg := e.Err.Error(); !strings.Contains(msg, "/tone_fallback.aac") || !strings.Contains(msg, "401") || strings.Contains(msg, "wrong-password") {
		t.Errorf("wrong password error %q: want the mount and HTTP 401, and no password", msg)
	} else {
		t.Logf("wrong password: %v", e.Err)
	}
	if b.Stats().Connects != 0 {
		t.Errorf("connected with a wrong password: %+v", b.Stats())
	}
}
