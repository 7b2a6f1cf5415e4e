package telemetry

import (
	"errors"
	"math"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	in := Report{Feed: "primary", Levels: []ChannelLevel{{-12, -15}, {math.Inf(-1), math.NaN()}}, SilentMs: 0,
		Encoder: "running", Link: LinkStatus{Name: "a", Up: true, RTTms: 12.5}, Video: &VideoStatus{FrozenMs: 1500}}
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Feed != "primary" || out.Levels[0].PeakDBFS != -12 || out.Levels[1].PeakDBFS != Floor || out.Levels[1].RMSDBFS != Floor || !out.Link.Up ||
		out.Video == nil || out.Video.FrozenMs != 1500 || out.Video.BlackMs != 0 {
		t.Fatalf("round trip: %+v", out)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	for _, b := range []string{``, `{`, `{"v":0}`, `[1,2]`, `{"v":1,"levels":[{},{},{},{},{},{},{},{},{}]}`,
		`{"v":1,"silent_ms":-5}`, `{"v":1,"video":{"frozen_ms":-1}}`, `{"v":1,"video":{"black_ms":-1}}`} {
		if _, err := Unmarshal([]byte(b)); !errors.Is(err, ErrInvalid) {
			t.Errorf("Unmarshal(%q) = %v, want ErrInvalid", b, err)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(`{"v":1,"feed":"primary","levels":[{"peak":-3,"rms":-9}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Unmarshal(b)
		if err != nil {
			return
		}
		if _, err := Marshal(r); err != nil && !errors.Is(err, ErrInvalid) && len(b) <= MaxSize {
			// A report we accepted must be sendable again.
			t.Fatalf("accepted %q but cannot re-marshal: %v", b, err)
		}
	})
}
