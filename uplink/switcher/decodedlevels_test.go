package switcher_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/switcher"
	"tandem/uplink/testpub"
)

// inputStatus is the stream's input in role, or nil.
func inputStatus(st *switcher.StreamStatus, role string) *switcher.InputStatus {
	if st == nil {
		return nil
	}
	for i := range st.Inputs {
		if st.Inputs[i].Role == role {
			return &st.Inputs[i]
		}
	}
	return nil
}

// Content of a 10 ms block of the output.
const (
	blockUnclear = iota
	blockSilent
	blockA
	blockB
)

// classify labels each 10 ms block of 48 kHz mono PCM: silent (below
// -50 dBFS RMS), tone a, tone b (ten times stronger than the other), or
// unclear (a transition).
func classify(pcm []float64, a, b float64) []int {
	const n = 480
	var out []int
	for blk := 0; (blk+1)*n <= len(pcm); blk++ {
		x := pcm[blk*n : (blk+1)*n]
		var e float64
		for _, v := range x {
			e += v * v
		}
		pa, pb := power(x, a), power(x, b)
		switch {
		case math.Sqrt(e/n) < math.Pow(10, -50.0/20):
			out = append(out, blockSilent)
		case pa > 10*pb:
			out = append(out, blockA)
		case pb > 10*pa:
			out = append(out, blockB)
		default:
			out = append(out, blockUnclear)
		}
	}
	return out
}

// TestDecodedSilenceOnThirdPartyPrimary: two plain ffmpeg publishers (no
// in-band telemetry, no shared session: splice mode). The primary's tone
// goes silent for 2.5 s; the switcher, decoding its audio, goes to the
// fallback once the silence has lasted silence_for, and returns once the
// primary has had sound for the stability window. When the primary goes
// away its decoder process goes too.
func TestDecodedSilenceOnThirdPartyPrimary(t *testing.T) {
	const silenceFor = time.Second
	const stable = 1500 * time.Millisecond
	srv := startSwitcher(t, func(c *switcher.Config) {
		c.Stable = switcher.Duration(stable)
		c.Health.SilenceFor = switcher.Duration(silenceFor)
	})
	base := "http://" + srv.HTTPAddr().String()
	addr := srv.SRTAddr().String()
	primary := lavfiSource(t, fmt.Sprintf("srt://%s?streamid=#!::r=live/dq,m=publish&latency=120000", addr),
		"sine=frequency=440:sample_rate=48000,volume=0:enable='between(t,5,7.5)'", "mpegts")
	time.Sleep(300 * time.Millisecond)
	ffmpegPublisher(t, addr, "#!::r=live/dq_fallback,m=publish", 660)
	if !e2e.WaitFor(10*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/dq")
		in := inputStatus(st, "primary")
		return st != nil && st.Mode == "splice" && st.Active == "primary" && len(st.Inputs) == 2 &&
			in.Levels != nil && in.Levels.Source == "decoder" && len(in.Levels.RMSDBFS) == 2
	}) {
		t.Fatalf("not spliced on the primary with decoded levels: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/dq"))
	}
	if m, err := e2e.HTTPGet(base + "/metrics"); err != nil {
		t.Fatal(err)
	} else {
		for _, want := range []string{
			`tandem_input_level_decoder_restarts_total{input="primary",stream="live/dq"} 0`,
			`tandem_input_audio_rms_dbfs{channel="1",input="primary",stream="live/dq"}`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	}
	started := time.Now()
	l := e2e.Listen(t, base+"/live/dq.aac", nil)

	// Away: dated against the silence's onset as the decoded levels date it.
	var away, back time.Time
	var awayReason string
	var silentSince time.Time
	var decoderPID int
	if !e2e.WaitFor(12*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/dq")
		if in := inputStatus(st, "primary"); in != nil && in.Levels != nil {
			if !in.Levels.SilentSince.IsZero() {
				silentSince = in.Levels.SilentSince
			}
			if in.Levels.Decoder != nil && in.Levels.Decoder.PID != 0 {
				decoderPID = in.Levels.Decoder.PID
			}
		}
		for _, e := range e2e.GetEvents(t, base, nil) {
			if e.Stream == "live/dq" && e.Kind == "switch" && e.Time.After(started) {
				if e.To == "fallback" && away.IsZero() {
					away, awayReason = e.Time, e.Reason
				}
				if e.To == "primary" && !away.IsZero() && back.IsZero() {
					back = e.Time
				}
			}
		}
		return !back.IsZero()
	}) {
		t.Fatalf("want a switch to the fallback and back: away %v back %v; events %+v", away, back, e2e.GetEvents(t, base, nil))
	}
	time.Sleep(500 * time.Millisecond)
	frames, _, err := l.Stop()
	if err != nil {
		t.Fatalf("the listener dropped: %v", err)
	}
	if !strings.Contains(awayReason, "silence") {
		t.Errorf("switch reason %q does not name silence", awayReason)
	}
	if silentSince.IsZero() || silentSince.After(away) {
		t.Fatalf("the primary's levels never dated the silence before the switch (silent since %v, switch %v)", silentSince, away)
	}
	detect := away.Sub(silentSince)
	t.Logf("decoded silence: switched %v after its onset (silence_for %v); back %v later (2.5 s silence, stability window %v)",
		detect.Round(time.Millisecond), silenceFor, back.Sub(away).Round(time.Millisecond), stable)
	if detect < silenceFor || detect > silenceFor+100*time.Millisecond {
		t.Errorf("switched %v after the silence began, want silence_for (%v) + at most 100 ms", detect, silenceFor)
	}
	// The silence lasts 2.5 s, 1 s of it before the switch: back after the
	// other 1.5 s and the stability window.
	if r := back.Sub(away); r < 2500*time.Millisecond || r > 3500*time.Millisecond {
		t.Errorf("returned %v after leaving, want about 1.5 s of remaining silence + %v stability", r, stable)
	}

	// What a listener heard: the primary's tone, a silence no longer than
	// the threshold + 100 ms, the fallback's tone, the primary's again.
	var all []byte
	for _, f := range frames {
		all = append(all, f...)
	}
	pcm, err := testpub.DecodeToMono(context.Background(), e2e.Need(t, "ffmpeg"), all, 48000)
	if err != nil {
		t.Fatalf("output does not decode cleanly: %v", err)
	}
	blocks := classify(pcm, 440, 660)
	const (
		wantTone = iota
		inSilence
		onFallback
		done
	)
	phase, silent := wantTone, 0
	var seq []string
	for _, b := range blocks {
		switch {
		case phase == wantTone && b == blockSilent:
			phase, silent = inSilence, 1
		case phase == inSilence && b == blockSilent:
			silent++
		case phase == inSilence && b == blockB:
			phase = onFallback
			seq = append(seq, fmt.Sprintf("silence %d ms", silent*10))
		case phase == onFallback && b == blockA:
			phase = done
		}
	}
	if phase != done {
		t.Fatalf("the output did not go tone → silence → fallback tone → primary tone (reached phase %d, %v)", phase, seq)
	}
	heard := time.Duration(silent) * 10 * time.Millisecond
	t.Logf("a listener heard %v of silence before the fallback", heard)
	if heard > silenceFor+100*time.Millisecond || heard < silenceFor-400*time.Millisecond {
		t.Errorf("the output was silent for %v, want about silence_for (%v), at most + 100 ms", heard, silenceFor)
	}

	// The primary goes away: its decoder must not outlive it.
	if decoderPID == 0 {
		t.Fatal("the API never showed the decoder's process")
	}
	primary.Process.Signal(syscall.SIGKILL)
	if !e2e.WaitFor(10*time.Second, func() bool {
		return inputStatus(e2e.FindStream(e2e.GetStreams(t, base, nil), "live/dq"), "primary") == nil
	}) {
		t.Fatal("the killed primary never detached")
	}
	// The decoder is reaped off the stream goroutine: give it a moment.
	if !e2e.WaitFor(3*time.Second, func() bool { return syscall.Kill(decoderPID, 0) != nil }) {
		t.Fatalf("decoder process %d still runs 3 s after its input detached", decoderPID)
	}
}

// TestMissingLevelDecoderIsANote: without the decoder binary the switcher
// still serves a third-party input, and says why it cannot judge silence.
func TestMissingLevelDecoderIsANote(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-ffmpeg-here")
	srv := startSwitcher(t, func(c *switcher.Config) { c.LevelDecoder = missing })
	base := "http://" + srv.HTTPAddr().String()
	ffmpegPublisher(t, srv.SRTAddr().String(), "#!::r=live/nodec,m=publish", 440)
	var in *switcher.InputStatus
	if !e2e.WaitFor(10*time.Second, func() bool {
		st := e2e.FindStream(e2e.GetStreams(t, base, nil), "live/nodec")
		in = inputStatus(st, "primary")
		return st != nil && st.State == "online" && in != nil && in.HealthNote != ""
	}) {
		t.Fatalf("stream not online with a health note: %+v", e2e.FindStream(e2e.GetStreams(t, base, nil), "live/nodec"))
	}
	if !strings.Contains(in.HealthNote, missing) || !strings.Contains(in.HealthNote, "not found") {
		t.Errorf("health note %q does not name the missing decoder", in.HealthNote)
	}
	if in.Levels != nil {
		t.Errorf("levels %+v without a decoder", in.Levels)
	}
}
