package audio

import (
	"context"

	"tandem/capture"
)

// Fake is a capture.Source made of function fields, for tests. A nil
// ReadFunc blocks until ctx ends; a nil FormatFunc returns FakeFormat;
// a nil CloseFunc does nothing.
type Fake struct {
	FakeFormat capture.Format
	FormatFunc func() capture.Format
	ReadFunc   func(ctx context.Context, buf []int16) (int, error)
	CloseFunc  func() error
}

var _ capture.Source = (*Fake)(nil)

// Format returns FormatFunc() or FakeFormat.
func (f *Fake) Format() capture.Format {
	if f.FormatFunc != nil {
		return f.FormatFunc()
	}
	return f.FakeFormat
}

// Read calls ReadFunc.
func (f *Fake) Read(ctx context.Context, buf []int16) (int, error) {
	if f.ReadFunc != nil {
		return f.ReadFunc(ctx, buf)
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

// Close calls CloseFunc.
func (f *Fake) Close() error {
	if f.CloseFunc != nil {
		return f.CloseFunc()
	}
	return nil
}
