package capture_test

import (
	"errors"
	"strings"
	"testing"

	"tandem/capture"
)

func TestMatchFeeds(t *testing.T) {
	good := capture.FeedProfile{Codec: "aac", Bitrate: 128000, SampleRate: 48000, Channels: 2}
	low := good
	low.Bitrate = 32000
	if err := capture.MatchFeeds(good, low); err != nil {
		t.Fatalf("a lower-bitrate fallback is refused: %v", err)
	}
	mod := func(f func(*capture.FeedProfile)) capture.FeedProfile {
		p := good
		f(&p)
		return p
	}
	for _, tc := range []struct {
		name              string
		primary, fallback capture.FeedProfile
		want              []string
	}{
		{"sample rate", good, mod(func(p *capture.FeedProfile) { p.SampleRate = 44100 }),
			[]string{"feeds.fallback.sample_rate (44100) must equal feeds.primary.sample_rate (48000)"}},
		{"channels", mod(func(p *capture.FeedProfile) { p.Channels = 1 }), good,
			[]string{"feeds.fallback.channels (2) must equal feeds.primary.channels (1)"}},
		{"codec", good, mod(func(p *capture.FeedProfile) { p.Codec = "mp3" }),
			[]string{`feeds.fallback.codec ("mp3") must be "aac"`, `feeds.fallback.codec ("mp3") must equal feeds.primary.codec ("aac")`}},
		{"bitrate low", mod(func(p *capture.FeedProfile) { p.Bitrate = 4000 }), good,
			[]string{"feeds.primary.bitrate (4000) must be between 8000 and 512000"}},
		{"bitrate high", good, mod(func(p *capture.FeedProfile) { p.Bitrate = 640000 }),
			[]string{"feeds.fallback.bitrate (640000) must be between 8000 and 512000"}},
		{"bad rate on both", mod(func(p *capture.FeedProfile) { p.SampleRate = 22050 }), mod(func(p *capture.FeedProfile) { p.SampleRate = 22050 }),
			[]string{"feeds.primary.sample_rate (22050) must be 44100 or 48000", "feeds.fallback.sample_rate (22050) must be 44100 or 48000"}},
		{"channels 6", good, mod(func(p *capture.FeedProfile) { p.Channels = 6 }),
			[]string{"feeds.fallback.channels (6) must be 1 or 2", "feeds.fallback.channels (6) must equal feeds.primary.channels (2)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := capture.MatchFeeds(tc.primary, tc.fallback)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			var fe *capture.FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Key, "feeds.") {
				t.Errorf("error %v is not a *FieldError with a key", err)
			}
		})
	}
}
