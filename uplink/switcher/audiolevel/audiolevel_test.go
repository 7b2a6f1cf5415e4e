package audiolevel_test

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"tandem/scripts/e2e"
	"tandem/uplink/media"
	"tandem/uplink/switcher/audiolevel"
)

var stereo48 = media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 2}

// frameDur is one 1024-sample AAC frame at 48 kHz.
const frameDur = 1024 * time.Second / 48000

// collect takes blocks until one starts at or after until.
func collect(t *testing.T, m *audiolevel.Meter, until time.Time) []audiolevel.Block {
	t.Helper()
	var got []audiolevel.Block
	if !e2e.WaitFor(20*time.Second, func() bool {
		got = m.Take(got)
		return len(got) > 0 && !got[len(got)-1].At.Before(until)
	}) {
		t.Fatalf("decoded %d blocks, not up to %v; stats %+v", len(got), until, m.Stats())
	}
	return got
}

func TestLevelsDatedByArrival(t *testing.T) {
	// Left: a loud tone for 1 s, then digital silence; right: a quiet
	// tone throughout (-26 dBFS peak, -29 dBFS RMS).
	frames := e2e.EncodeAAC(t, "aevalsrc=if(lt(t\\,1)\\,0.5*sin(2*PI*440*t)\\,0)|0.05*sin(2*PI*440*t):s=48000:d=2")
	m, err := audiolevel.Start(audiolevel.Config{Audio: stereo48, Queue: len(frames)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// Arrival times far from the wall clock: the blocks must carry them,
	// whenever the decoder gets to the audio.
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	// Frames arrive in bursts of eight (as ffmpeg's MPEG-TS muxer sends
	// them), each burst when its last frame is due: blocks are dated by
	// media time on the earliest arrivals (t0 + media time, the bursts'
	// last frames), not by their burst.
	for i, f := range frames {
		burstEnd := (i/8)*8 + 7
		m.Write(t0.Add(time.Duration(burstEnd)*frameDur), int64(i)*1920, f)
	}
	blocks := collect(t, m, t0.Add(1900*time.Millisecond))
	// (The first burst's frames are dated by it: the envelope is not
	// known before its last frame.)
	var onset time.Time
	for _, b := range blocks {
		if len(b.RMSDBFS) != 2 {
			t.Fatalf("block with %d channels", len(b.RMSDBFS))
		}
		off := b.At.Sub(t0)
		switch {
		case off > 200*time.Millisecond && off < 900*time.Millisecond:
			// 0.5 amplitude: -6 dBFS peak, -9 dBFS RMS (AAC adds a few
			// dB of ripple to a block here and there).
			if math.Abs(b.RMSDBFS[0]+9) > 3 || math.Abs(b.PeakDBFS[0]+6) > 4 {
				t.Fatalf("left at %v: rms %.1f peak %.1f dBFS, want about -9 and -6", off, b.RMSDBFS[0], b.PeakDBFS[0])
			}
		case off > 1100*time.Millisecond && off < 1900*time.Millisecond:
			if b.RMSDBFS[0] > -60 {
				t.Fatalf("left at %v: rms %.1f dBFS in the silence", off, b.RMSDBFS[0])
			}
		}
		if off > 200*time.Millisecond && off < 1900*time.Millisecond && math.Abs(b.RMSDBFS[1]+29) > 3 {
			t.Fatalf("right at %v: rms %.1f dBFS, want about -29", off, b.RMSDBFS[1])
		}
		if onset.IsZero() && b.RMSDBFS[0] < -50 && off > 200*time.Millisecond {
			onset = b.At
		}
	}
	// The silence starts at 1 s of media time, 1.021 s of decoded audio
	// (the encoder's 1024 priming samples): its first whole block starts
	// within a block (20 ms) after that.
	if d := onset.Sub(t0.Add(time.Second)); d < 0 || d > 45*time.Millisecond {
		t.Fatalf("silence dated %v after its onset, want within one block", d)
	}
	if st := m.Stats(); st.Dropped != 0 || st.Restarts != 0 {
		t.Fatalf("stats %+v: nothing should be dropped or restarted", st)
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestCloseStopsTheDecoder(t *testing.T) {
	e2e.Need(t, "ffmpeg")
	m, err := audiolevel.Start(audiolevel.Config{Audio: stereo48})
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if !e2e.WaitFor(5*time.Second, func() bool { pid = m.Stats().PID; return pid != 0 }) {
		t.Fatal("decoder never started")
	}
	m.Close()
	if alive(pid) {
		t.Fatalf("decoder process %d still exists after Close", pid)
	}
	if st := m.Stats(); st.State != "closed" || st.PID != 0 {
		t.Fatalf("stats after Close: %+v", st)
	}
}

func TestDeadDecoderRestarts(t *testing.T) {
	frames := e2e.EncodeAAC(t, "sine=f=440:sample_rate=48000:d=2")
	m, err := audiolevel.Start(audiolevel.Config{Audio: media.AudioConfig{Codec: media.CodecAAC, ObjectType: 2, SampleRate: 48000, Channels: 1}, RestartMin: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var pid int
	if !e2e.WaitFor(5*time.Second, func() bool { pid = m.Stats().PID; return pid != 0 }) {
		t.Fatal("decoder never started")
	}
	syscall.Kill(pid, syscall.SIGKILL)
	var st audiolevel.Stats
	if !e2e.WaitFor(5*time.Second, func() bool { st = m.Stats(); return st.PID != 0 && st.PID != pid }) {
		t.Fatalf("no new decoder after killing %d: %+v", pid, m.Stats())
	}
	if st.Restarts != 1 || st.LastError == "" {
		t.Fatalf("stats after one death: %+v, want 1 restart and the error", st)
	}
	t0 := time.Now()
	for i, f := range frames {
		m.Write(t0.Add(time.Duration(i)*frameDur), int64(i)*1920, f)
	}
	blocks := collect(t, m, t0.Add(time.Second))
	if b := blocks[len(blocks)/2]; len(b.RMSDBFS) != 1 || b.RMSDBFS[0] < -25 {
		t.Fatalf("the restarted decoder measured %+v, want the tone", b)
	}
}

func TestStuckDecoderNeverBlocksWrite(t *testing.T) {
	// A "decoder" that reads nothing: writes must drop, not wait.
	stuck := filepath.Join(t.TempDir(), "stuck")
	if err := os.WriteFile(stuck, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := audiolevel.Start(audiolevel.Config{FFmpeg: stuck, Audio: stereo48, Queue: 16})
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte{0x21}, 400)
	now := time.Now()
	// 2000 frames of 400 bytes are 800 kB: far more than the queue and
	// the pipe hold.
	for i := 0; i < 2000; i++ {
		m.Write(now, int64(i)*1920, payload)
	}
	if st := m.Stats(); st.Dropped < 1000 {
		t.Fatalf("stats %+v: want most frames dropped and counted", st)
	}
	pid := m.Stats().PID
	m.Close()
	if pid != 0 && alive(pid) {
		t.Fatalf("stuck decoder %d survived Close", pid)
	}
}

func TestMissingDecoder(t *testing.T) {
	_, err := audiolevel.Start(audiolevel.Config{FFmpeg: filepath.Join(t.TempDir(), "no-such-ffmpeg"), Audio: stereo48})
	if !errors.Is(err, audiolevel.ErrNoDecoder) {
		t.Fatalf("Start with a missing binary: %v, want audiolevel.ErrNoDecoder", err)
	}
	if _, err := audiolevel.Start(audiolevel.Config{Audio: media.AudioConfig{Codec: media.CodecH264}}); err == nil {
		t.Fatal("Start accepted a non-AAC input")
	}
}
