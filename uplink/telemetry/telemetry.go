// Package telemetry is the in-band status a Tandem appliance sends inside
// each feed's MPEG-TS, so the switcher can show levels, encoder and link
// state (and detect silence) without decoding audio. It rides as a private
// data PES (stream type 0x06, registration "TNDM", PID 0x101) about once a
// second, stamped with the PTS of the audio it describes.
package telemetry

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// PID is the elementary PID Tandem appliances send telemetry on.
const PID = 0x101

// MaxSize bounds a report on the wire.
const MaxSize = 4096

// Version is the report format version; readers ignore newer fields.
const Version = 1

// Report is one telemetry sample.
type Report struct {
	Version int `json:"v"`
	// Feed is the sending feed's role: "primary" or "fallback".
	Feed string `json:"feed"`
	// Levels are per channel over the last report interval.
	Levels []ChannelLevel `json:"levels,omitempty"`
	// SilentMs is how long every channel has been below the silence
	// threshold, 0 while there is sound.
	SilentMs int64 `json:"silent_ms"`
	// Encoder is the feed's encoder state: "running", "restarting", ...
	Encoder string `json:"encoder,omitempty"`
	// EncoderRestarts counts restarts since the daemon started.
	EncoderRestarts int64 `json:"encoder_restarts,omitempty"`
	// Link is the feed's uplink: its name, state and what the sender sees.
	Link LinkStatus `json:"link"`
	// Capture is the capture source's state ("running", "reopening", ...).
	Capture string `json:"capture,omitempty"`
	// Video is the captured picture's state; absent without video.
	Video *VideoStatus `json:"video,omitempty"`
}

// VideoStatus says how long the picture has been frozen (unchanged) or
// black, like SilentMs for audio: 0 while it is not.
type VideoStatus struct {
	FrozenMs int64 `json:"frozen_ms"`
	BlackMs  int64 `json:"black_ms"`
}

// ChannelLevel is one channel's level in dBFS (-inf is sent as -200).
type ChannelLevel struct {
	PeakDBFS float64 `json:"peak"`
	RMSDBFS  float64 `json:"rms"`
}

// LinkStatus is the sender's view of its link.
type LinkStatus struct {
	Name  string  `json:"name,omitempty"`
	Up    bool    `json:"up"`
	RTTms float64 `json:"rtt_ms,omitempty"`
	// Reconnects since the daemon started.
	Reconnects int64 `json:"reconnects,omitempty"`
}

// Floor replaces -Inf and NaN levels so reports stay valid JSON.
const Floor = -200.0

// Marshal encodes a report for the wire.
func Marshal(r Report) ([]byte, error) {
	r.Version = Version
	for i := range r.Levels {
		r.Levels[i].PeakDBFS = clamp(r.Levels[i].PeakDBFS)
		r.Levels[i].RMSDBFS = clamp(r.Levels[i].RMSDBFS)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("telemetry: report of %d bytes exceeds %d", len(b), MaxSize)
	}
	return b, nil
}

// ErrInvalid is wrapped by every decoding error.
var ErrInvalid = errors.New("invalid telemetry")

// Unmarshal decodes a report; unknown fields are ignored so newer
// appliances can add some.
func Unmarshal(b []byte) (Report, error) {
	var r Report
	if len(b) > MaxSize {
		return r, fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalid, len(b), MaxSize)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Report{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if r.Version < 1 {
		return Report{}, fmt.Errorf("%w: version %d", ErrInvalid, r.Version)
	}
	if len(r.Levels) > 8 {
		return Report{}, fmt.Errorf("%w: %d channels", ErrInvalid, len(r.Levels))
	}
	if r.SilentMs < 0 {
		return Report{}, fmt.Errorf("%w: silent_ms %d is negative", ErrInvalid, r.SilentMs)
	}
	if v := r.Video; v != nil && (v.FrozenMs < 0 || v.BlackMs < 0) {
		return Report{}, fmt.Errorf("%w: video frozen_ms %d / black_ms %d: negative", ErrInvalid, v.FrozenMs, v.BlackMs)
	}
	return r, nil
}

func clamp(v float64) float64 {
	if math.IsNaN(v) || v < Floor {
		return Floor
	}
	return v
}
