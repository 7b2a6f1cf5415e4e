package capture

import (
	"fmt"
	"time"
)

// Format is the PCM format of a source and of the blocks a Capture
// publishes: interleaved signed 16-bit samples.
type Format struct {
	SampleRate int // 44100 or 48000
	Channels   int // 1 or 2
}

// Validate reports a format Tandem cannot carry.
func (f Format) Validate() error {
	if f.SampleRate != 44100 && f.SampleRate != 48000 {
		return fmt.Errorf("capture: sample rate %d Hz (want 44100 or 48000)", f.SampleRate)
	}
	if f.Channels != 1 && f.Channels != 2 {
		return fmt.Errorf("capture: %d channels (want 1 or 2)", f.Channels)
	}
	return nil
}

func (f Format) String() string { return fmt.Sprintf("%d Hz %dch", f.SampleRate, f.Channels) }

// Duration is the time n frames last in this format.
func (f Format) Duration(frames int64) time.Duration {
	if f.SampleRate <= 0 {
		return 0
	}
	sr := int64(f.SampleRate)
	// Split so long timelines (days of samples) do not overflow.
	return time.Duration(frames/sr)*time.Second + time.Duration(frames%sr*int64(time.Second)/sr)
}

// Frames is the number of whole frames in d (rounded toward zero).
func (f Format) Frames(d time.Duration) int64 {
	sr := int64(f.SampleRate)
	sec := int64(d / time.Second)
	return sec*sr + int64(d%time.Second)*sr/int64(time.Second)
}
