package capture

import (
	"context"
	"errors"
)

// Source yields PCM in its native Format. Read blocks until it has at
// least one frame (a source may fill buf only partly) and returns the
// number of whole frames written to buf; it honours ctx. A source whose
// device vanished, stopped or stalled returns an error wrapping
// ErrDeviceGone; a Capture then closes it and reopens the device.
type Source interface {
	Format() Format
	Read(ctx context.Context, buf []int16) (frames int, err error)
	Close() error
}

var (
	// ErrDeviceGone is wrapped by the error of a source whose device
	// disappeared (unplugged, sound server gone, no data any more).
	ErrDeviceGone = errors.New("capture device gone")
	// ErrClosed is returned by Read on a closed source.
	ErrClosed = errors.New("capture source closed")
)

// Indexed is implemented by sources that generate their samples from a
// sample index of their own, anchored at an epoch (the test tone).
// NextIndex is the index of the next frame Read returns. A Capture uses it
// to number its first block, so processes that anchor their sources at the
// same epoch number the same audio the same way (tandem-testpub runs one
// feed per process like that).
type Indexed interface {
	NextIndex() int64
}

// OverrunCounter is implemented by sources that can lose frames between
// the device and Read (a ring that the device callback fills): Overruns is
// the number of frames lost so far.
type OverrunCounter interface {
	Overruns() int64
}

// Buffered is implemented by sources that queue frames between the device
// and Read: Buffered is the number of frames ready to be read right now.
// A Capture uses it to date what it reads: the last frame queued was
// captured about now, so a Read's frames are that much older. Without it,
// a backlog (a sound server that hands over its first second at once)
// would be taken for fresh audio and push the timeline ahead of the
// wall clock.
type Buffered interface {
	Buffered() int
}
