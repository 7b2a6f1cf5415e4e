package sender_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/scripts/netlab"
	"tandem/uplink/sender"
	"tandem/uplink/srt"
	"tandem/uplink/streamid"
	"tandem/uplink/switcher"
)

// srtSink accepts SRT callers and reads (and discards) everything they
// send, so the receiver keeps acknowledging.
type srtSink struct {
	ln    *srt.Listener
	mu    sync.Mutex
	conns []*srt.Conn
	wg    sync.WaitGroup
}

func newSRTSink(t testing.TB, lab *netlab.Lab, ns, addr string) *srtSink {
	t.Helper()
	k := &srtSink{}
	listen := func() error {
		var err error
		k.ln, err = srt.Listen(addr, srt.ListenConfig{})
		return err
	}
	var err error
	if lab != nil {
		err = lab.Do(ns, listen)
	} else {
		err = listen()
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		for {
			c, err := k.ln.Accept(ctx)
			if err != nil {
				return
			}
			k.mu.Lock()
			k.conns = append(k.conns, c)
			k.mu.Unlock()
			k.wg.Add(1)
			go func() {
				defer k.wg.Done()
				buf := make([]byte, srt.ReadBufferSize)
				for {
					if _, err := c.ReadMessage(ctx, buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		k.ln.Close()
		k.mu.Lock()
		for _, c := range k.conns {
			c.Close()
		}
		k.mu.Unlock()
		k.wg.Wait()
	})
	return k
}

// A sender in the appliance namespace, pinned to link a, detects a cut of
// that link by its ACKs stopping, within StallTimeout + 200 ms (libsrt
// alone would take ~5 s), and is connected again within a couple of seconds
// of the link's return. Nothing leaks out of link b meanwhile. The same
// holds with frames packed into shared messages (MaxPackDelay).
func TestAckStallInLab(t *testing.T) {
	for _, pack := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run(fmt.Sprintf("max_pack_delay=%v", pack), func(t *testing.T) { ackStallInLab(t, pack) })
	}
}

func ackStallInLab(t *testing.T, maxPackDelay time.Duration) {
	frames := tone(t)
	lab := netlab.New(t, netlab.Options{})
	la, lb := lab.Links["a"], lab.Links["b"]
	sink := newSRTSink(t, lab, "cloud", net.JoinHostPort(lab.CloudAddr, "0"))

	var ev events
	s, err := sender.New(sender.Config{
		Role: streamid.RolePrimary, App: "live", Name: "lab", Session: "s1",
		Dest:         "srt://" + sink.ln.Addr().String(),
		LocalAddr:    la.AppAddr,
		Netns:        "/var/run/netns/" + lab.AppNS,
		Audio:        stereo48k,
		MaxPackDelay: maxPackDelay,
		Log:          testLogger(t),
		OnEvent:      ev.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, bTx0, _, _, err := lab.Counters("app", lb.AppIf)
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go feed(ctx, frames, 0, s)

	detections, reconnects := stallCycles(t, lab, s, &ev, 3)
	st := s.Stats()
	if st.Stalls < 3 || st.Reconnects < 3 {
		t.Errorf("stalls %d, reconnects %d; want at least 3 each%s", st.Stalls, st.Reconnects, ev.String())
	}
	_, bTx1, _, _, err := lab.Counters("app", lb.AppIf)
	if err != nil {
		t.Fatal(err)
	}
	if bTx1 != bTx0 {
		t.Errorf("link b sent %d packets: the feed pinned to link a leaked", bTx1-bTx0)
	}
	t.Logf("stall detections %v; reconnects after restore %v; stats %+v", detections, reconnects, st)
}

// steady waits until s has streamed for a second without an ack-stall
// event (up to 15 s) and returns how many stall events came first: on a
// quiet machine none, but a box whose cores are shared with other test
// runs (load 30 on 2 cores was seen) can starve the receiver's libsrt
// threads past the stall timeout.
func steady(t testing.TB, s *sender.Sender, ev *events) int {
	t.Helper()
	from := time.Now()
	deadline := from.Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if s.Stats().State != sender.StateConnected {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		mark, sent := time.Now(), s.Stats().Sent
		time.Sleep(time.Second)
		if len(ev.after(sender.EventStall, mark)) == 0 && s.Stats().Sent >= sent+30 {
			return len(ev.after(sender.EventStall, from))
		}
	}
	t.Fatalf("no second of steady streaming within 15 s: %+v%s", s.Stats(), ev.String())
	return 0
}

// stallCycles cuts link a n times while s streams over it, and returns how
// long after each cut the ack-stall event came and how long after each
// restore the sender was connected again.
//
// Every detection must be within 2 s (libsrt alone takes ~5 s) and not
// before the stall timeout could have run; the best must be within
// StallTimeout + 200 ms. On a quiet machine all are (484-549 ms measured):
// the slack is for shared CI cores, where `nft` alone was seen taking
// 270 ms and the process being descheduled for longer.
func stallCycles(t testing.TB, lab *netlab.Lab, s *sender.Sender, ev *events, n int) (det, rc []time.Duration) {
	t.Helper()
	const limit = sender.DefaultStallTimeout + 200*time.Millisecond
	for cycle := range n {
		if f := steady(t, s, ev); f > 0 {
			t.Logf("NOTE: cycle %d: %d ack stalls without a cut (machine load?)", cycle, f)
		}
		// The cut is in effect once nft has committed, at the end of the
		// command: measure from its return, and log how long it took.
		callAt := time.Now()
		if err := lab.Cut("a"); err != nil {
			t.Fatal(err)
		}
		cutAt := time.Now()
		var stall sender.Event
		if !e2e.WaitFor(3*time.Second, func() bool {
			e := ev.after(sender.EventStall, cutAt)
			if len(e) > 0 {
				stall = e[0]
			}
			return len(e) > 0
		}) {
			t.Fatalf("cycle %d: no ack-stall within 3 s of the cut: %+v%s", cycle, s.Stats(), ev.String())
		}
		d := stall.Time.Sub(cutAt)
		det = append(det, d)
		if early := sender.DefaultStallTimeout - cutAt.Sub(callAt) - 100*time.Millisecond; d > 2*time.Second || d < early {
			t.Errorf("cycle %d: stall detected %v after the cut; want %v..2s", cycle, d, early)
		}
		// Let a redial start through the cut link, then restore it.
		time.Sleep(300 * time.Millisecond)
		restoreAt := time.Now()
		if err := lab.Restore("a"); err != nil {
			t.Fatal(err)
		}
		if !e2e.WaitFor(5*time.Second, func() bool { return len(ev.after(sender.EventConnected, restoreAt)) > 0 }) {
			t.Fatalf("cycle %d: not connected again within 5 s of the restore: %+v%s", cycle, s.Stats(), ev.String())
		}
		r := ev.after(sender.EventConnected, restoreAt)[0].Time.Sub(restoreAt)
		rc = append(rc, r)
		t.Logf("cycle %d: ack stall detected %v after the cut (lab.Cut took %v; %s); connected again %v after the restore",
			cycle, d.Round(time.Millisecond), cutAt.Sub(callAt).Round(time.Millisecond), stall.Detail, r.Round(time.Millisecond))
	}
	if best := slices.Min(det); best > limit {
		t.Errorf("best stall detection %v after the cut; want within %v (all: %v)", best, limit, det)
	} else if worst := slices.Max(det); worst > limit {
		t.Logf("NOTE: worst detection %v is over %v (best %v): machine load?", worst, limit, best)
	}
	return det, rc
}

// The same cut against the real switcher in the cloud namespace: after the
// stall the sender redials at once, but the switcher keeps the old input in
// the primary slot until it notices the dead connection itself, so the new
// connection is refused ("slot taken") until then. This measures when the
// primary is back on the switcher.
func TestAckStallToSwitcherInLab(t *testing.T) {
	frames := tone(t)
	lab := netlab.New(t, netlab.Options{})
	var srv *switcher.Server
	if err := lab.Do("cloud", func() error {
		cfg := switcher.DefaultConfig()
		cfg.SRTAddr = net.JoinHostPort(lab.CloudAddr, "0")
		cfg.HTTPAddr = "127.0.0.1:0"
		var err error
		if srv, err = switcher.New(cfg, testLogger(t)); err != nil {
			return err
		}
		return srv.Start(context.Background())
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	client := &http.Client{Transport: &http.Transport{DialContext: lab.DialContext("cloud")}, Timeout: 2 * time.Second}
	base := "http://" + srv.HTTPAddr().String()
	status := func() (apiStream, error) { return streamStatusWith(client, base, "live/lab") }

	var ev [2]events
	var senders []*sender.Sender
	for i, role := range []streamid.Role{streamid.RolePrimary, streamid.RoleFallback} {
		lk := lab.Links[[]string{"a", "b"}[i]]
		s, err := sender.New(sender.Config{
			Role: role, App: "live", Name: "lab", Session: "s1",
			Dest: "srt://" + srv.SRTAddr().String(), LocalAddr: lk.AppAddr, Netns: "/var/run/netns/" + lab.AppNS,
			Audio: stereo48k, Log: testLogger(t).With("role", string(role)), OnEvent: ev[i].add,
		})
		if err != nil {
			t.Fatal(err)
		}
		run(t, s)
		senders = append(senders, s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go feed(ctx, frames, 0, senders...)
	if !e2e.WaitFor(10*time.Second, func() bool {
		st, err := status()
		return err == nil && st.State == "online" && st.Mode == "aligned" && len(st.Inputs) == 2
	}) {
		st, err := status()
		t.Fatalf("stream not online in aligned mode: %+v %v", st, err)
	}
	steady(t, senders[0], &ev[0])
	before, _ := status()

	if err := lab.Cut("a"); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	if !e2e.WaitFor(3*time.Second, func() bool { return len(ev[0].after(sender.EventStall, cutAt)) > 0 }) {
		t.Fatalf("no stall:%s", ev[0].String())
	}
	det := ev[0].after(sender.EventStall, cutAt)[0].Time.Sub(cutAt)
	time.Sleep(300 * time.Millisecond)
	restoreAt := time.Now()
	if err := lab.Restore("a"); err != nil {
		t.Fatal(err)
	}
	// The primary is back when the switcher lists a primary input that
	// receives frames from a connection made after the restore.
	var back time.Duration
	if !e2e.WaitFor(25*time.Second, func() bool {
		st, err := status()
		if err != nil {
			return false
		}
		for _, in := range st.Inputs {
			if in.Role == "primary" && in.ConnectedAt.After(restoreAt) && in.Frames.Received > 0 {
				back = time.Since(restoreAt)
				return true
			}
		}
		return false
	}) {
		st, _ := status()
		t.Fatalf("primary not back on the switcher within 25 s of the restore: %+v%s", st, ev[0].String())
	}
	st, _ := status()
	t.Logf("fallback sender: %+v", senders[1].Stats())
	t.Logf("stall detected %v after the cut; primary back on the switcher %v after the restore; sender connects %d; output holes %d; primary events:%s",
		det.Round(time.Millisecond), back.Round(time.Millisecond), senders[0].Stats().Connects, st.Output.HolesFilled, ev[0].String())
	// The fallback covers the cut in aligned mode. The switcher is not
	// this package's, and here it shares one libsrt with both senders: one
	// run in five showed the fallback's frames arriving 1.3 s late during
	// the primary's reconnect churn. Report it; do not fail on it.
	if holes := st.Output.HolesFilled - before.Output.HolesFilled; holes > 0 {
		t.Logf("NOTE: aligned output had %d holes across the cut (the fallback should have covered it)", holes)
	}
	if testing.Verbose() {
		if resp, err := client.Get(base + "/api/v1/events"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Logf("switcher events: %s", b)
		}
	}
}

// fakeIcecast accepts PUT sources the way Icecast 2.4 does ("100 Continue",
// then it reads the body forever) and counts the bytes it got.
func fakeIcecast(t testing.TB, ln net.Listener) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Method != http.MethodPut {
					c.Close()
					return
				}
				io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
				io.Copy(io.Discard, br)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// The Icecast path detects a cut link by the kernel's TCP ACK clock
// (TCP_INFO), as the SRT path does with libsrt's ACK counter; TCP alone
// would retransmit for minutes.
func TestIcecastStallInLab(t *testing.T) {
	frames := tone(t)
	lab := netlab.New(t, netlab.Options{})
	la := lab.Links["a"]
	ln, err := lab.Listen("cloud", "tcp4", net.JoinHostPort(lab.CloudAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	fakeIcecast(t, ln)
	var ev events
	s, err := sender.New(sender.Config{
		Role: streamid.RolePrimary, Name: "lab",
		Dest:      "icecast://source:pw@" + ln.Addr().String() + "/lab.aac",
		LocalAddr: la.AppAddr, Netns: "/var/run/netns/" + lab.AppNS,
		Audio: stereo48k, Log: testLogger(t), OnEvent: ev.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go feed(ctx, frames, 0, s)
	det, rc := stallCycles(t, lab, s, &ev, 2)
	t.Logf("icecast: ack stall detected %v after the cuts; connected again %v after the restores", det, rc)
}
