package audio_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"tandem/capture"
	"tandem/hal/audio"
)

var f48 = capture.Format{SampleRate: 48000, Channels: 2}

func TestFake(t *testing.T) {
	var closed bool
	f := &audio.Fake{FakeFormat: f48,
		ReadFunc: func(ctx context.Context, buf []int16) (int, error) {
			for i := range buf {
				buf[i] = 7
			}
			return len(buf) / 2, nil
		},
		CloseFunc: func() error { closed = true; return nil }}
	var src capture.Source = f
	buf := make([]int16, 64)
	if n, err := src.Read(context.Background(), buf); n != 32 || err != nil || buf[63] != 7 {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if src.Format() != f48 || src.Close() != nil || !closed {
		t.Fatal("Format or Close not passed through")
	}
	// Zero fields: blocks until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := (&audio.Fake{}).Read(ctx, buf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("empty Fake Read = %v", err)
	}
}

// The null backend needs no sound server: it exercises the miniaudio path
// (context, device, callback, ring, Read, Close) on any machine.
func TestNullBackend(t *testing.T) {
	names, err := audio.Devices(audio.BackendNull)
	if err != nil || len(names) != 1 {
		t.Fatalf("Devices(null) = %q, %v", names, err)
	}
	src, err := audio.Open(context.Background(), audio.DeviceConfig{Backend: audio.BackendNull, Format: f48}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if src.Format() != f48 {
		t.Fatalf("format %v", src.Format())
	}
	buf := make([]int16, 4096)
	var frames int
	opened := time.Now()
	var start time.Time
	for start.IsZero() || time.Since(start) < 500*time.Millisecond {
		n, err := src.Read(context.Background(), buf)
		if err != nil {
			t.Fatal(err)
		}
		if start.IsZero() {
			start = time.Now()
			t.Logf("first %d frames after %v", n, start.Sub(opened))
			continue
		}
		for _, s := range buf[:n*2] {
			if s != 0 {
				t.Fatal("the null device delivered a non-zero sample")
			}
		}
		frames += n
	}
	rate := float64(frames) / time.Since(start).Seconds()
	if rate < 30000 || rate > 70000 {
		t.Errorf("null device delivered %.0f frames/s", rate)
	}
	t0 := time.Now()
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 3500*time.Millisecond {
		t.Errorf("Close took %v", d)
	}
	if _, err := src.Read(context.Background(), buf); !errors.Is(err, capture.ErrClosed) {
		t.Errorf("Read after Close = %v", err)
	}
	if src.Close() != nil {
		t.Error("second Close failed")
	}
	t.Logf("null backend: %.0f frames/s, close %v", rate, time.Since(t0).Round(time.Millisecond))
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	_, err := audio.Open(ctx, audio.DeviceConfig{Backend: "oss", Format: f48}, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown backend "oss"`) {
		t.Errorf("unknown backend: %v", err)
	}
	_, err = audio.Open(ctx, audio.DeviceConfig{Backend: audio.BackendNull, Device: "usb", Format: capture.Format{SampleRate: 32000, Channels: 2}}, nil)
	if err == nil || !strings.Contains(err.Error(), "32000") || !strings.Contains(err.Error(), `"usb"`) {
		t.Errorf("bad format: %v", err)
	}
	_, err = audio.Open(ctx, audio.DeviceConfig{Backend: audio.BackendNull, Device: "Scarlett 2i2", Format: f48}, nil)
	if !errors.Is(err, audio.ErrNoDevice) || !strings.Contains(err.Error(), `null capture device "Scarlett 2i2"`) ||
		!strings.Contains(err.Error(), "NULL Capture Device") {
		t.Errorf("missing device: %v", err)
	}
	// An ending ctx abandons a slow open.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := audio.Open(cctx, audio.DeviceConfig{Backend: audio.BackendNull, Format: f48}, nil); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled open: %v", err)
	}
}
