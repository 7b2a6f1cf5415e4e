package netlink

import "context"

// Fake is a Router for tests of code that uses one. Nil functions behave
// like a Router with nothing to do: Run blocks until ctx ends, States is
// empty, Changes never delivers.
type Fake struct {
	RunFunc     func(ctx context.Context) error
	StatesFunc  func() []LinkState
	ChangesFunc func() <-chan LinkState
}

// Run calls RunFunc, or waits for ctx.
func (f *Fake) Run(ctx context.Context) error {
	if f.RunFunc != nil {
		return f.RunFunc(ctx)
	}
	<-ctx.Done()
	return nil
}

// States calls StatesFunc, or returns nil.
func (f *Fake) States() []LinkState {
	if f.StatesFunc != nil {
		return f.StatesFunc()
	}
	return nil
}

// Changes calls ChangesFunc, or returns a nil channel (never ready).
func (f *Fake) Changes() <-chan LinkState {
	if f.ChangesFunc != nil {
		return f.ChangesFunc()
	}
	return nil
}
