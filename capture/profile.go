package capture

import (
	"errors"
	"fmt"
	"strings"
)

// FeedProfile is what one feed is encoded as. The config file holds one
// per feed, under feeds.primary and feeds.fallback.
type FeedProfile struct {
	Codec      string // "aac" (AAC-LC); the only codec for now
	Bitrate    int    // bit/s, 8000 to 512000
	SampleRate int    // 44100 or 48000
	Channels   int    // 1 or 2
}

// Config keys of the two feeds, used in error messages.
const (
	KeyPrimary  = "feeds.primary"
	KeyFallback = "feeds.fallback"
)

// Bitrate bounds of a feed.
const (
	MinBitrate = 8000
	MaxBitrate = 512000
)

// Format is the PCM format the feed is encoded from.
func (p FeedProfile) Format() Format { return Format{SampleRate: p.SampleRate, Channels: p.Channels} }

// FieldError is a bad or mismatched feed setting; Key is the full config
// key (feeds.fallback.sample_rate).
type FieldError struct {
	Key string
	Msg string // the rest of the message, after "<key> "
}

func (e *FieldError) Error() string { return e.Key + " " + e.Msg }

// Validate checks one profile; key prefixes the field names in errors
// (KeyPrimary, KeyFallback). Every problem is reported (errors.Join).
func (p FeedProfile) Validate(key string) error {
	var errs []error
	bad := func(field, msg string, args ...any) {
		errs = append(errs, &FieldError{Key: key + "." + field, Msg: fmt.Sprintf(msg, args...)})
	}
	if !strings.EqualFold(p.Codec, "aac") {
		bad("codec", "(%q) must be \"aac\"", p.Codec)
	}
	if p.Bitrate < MinBitrate || p.Bitrate > MaxBitrate {
		bad("bitrate", "(%d) must be between %d and %d", p.Bitrate, MinBitrate, MaxBitrate)
	}
	if p.SampleRate != 44100 && p.SampleRate != 48000 {
		bad("sample_rate", "(%d) must be 44100 or 48000", p.SampleRate)
	}
	if p.Channels != 1 && p.Channels != 2 {
		bad("channels", "(%d) must be 1 or 2", p.Channels)
	}
	return errors.Join(errs...)
}

// MatchFeeds checks both profiles and that they make a matched pair: the
// same codec, sample rate and channels, so the switcher can take any frame
// from either feed. The bitrate may differ (a lower-rate fallback is
// fine). Errors name both keys:
//
//	feeds.fallback.sample_rate (44100) must equal feeds.primary.sample_rate (48000)
func MatchFeeds(primary, fallback FeedProfile) error {
	errs := []error{primary.Validate(KeyPrimary), fallback.Validate(KeyFallback)}
	mismatch := func(field string, fb, pr any) {
		errs = append(errs, &FieldError{Key: KeyFallback + "." + field,
			Msg: fmt.Sprintf("(%v) must equal %s.%s (%v)", fb, KeyPrimary, field, pr)})
	}
	if !strings.EqualFold(primary.Codec, fallback.Codec) {
		mismatch("codec", fmt.Sprintf("%q", fallback.Codec), fmt.Sprintf("%q", primary.Codec))
	}
	if primary.SampleRate != fallback.SampleRate {
		mismatch("sample_rate", fallback.SampleRate, primary.SampleRate)
	}
	if primary.Channels != fallback.Channels {
		mismatch("channels", fallback.Channels, primary.Channels)
	}
	return errors.Join(errs...)
}
