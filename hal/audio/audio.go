// Package audio opens capture devices through miniaudio (malgo) as
// capture.Sources, and provides Fake, a source made of function fields for
// tests.
//
// Facts this package is built on (measured on the build machine, see
// docs/design.md): malgo v0.11.24's BackendNull constant is wrong (the null
// backend is malgo.Backend(14)); capture through PulseAudio works most
// reliably through the ALSA backend and the Pulse ALSA plugin
// (pcm.!default { type pulse device "<source>" }), malgo's own Pulse
// backend dropped most of a capture one run in five; Device.Uninit can
// block for about two seconds, so Close bounds it.
//
// The miniaudio callback never blocks: it copies into a ring that Read
// drains, and counts the frames lost when the ring is full (Overruns).
package audio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/gen2brain/malgo"

	"tandem/capture"
)

// Backend names a miniaudio backend.
type Backend string

// Backends.
const (
	BackendALSA  Backend = "alsa"
	BackendPulse Backend = "pulse"
	// BackendNull is miniaudio's null device: silence paced by a timer,
	// for tests without sound hardware.
	BackendNull Backend = "null"
)

// malgoNull is miniaudio's ma_backend_null. malgo v0.11.24 declares
// BackendNull as 13, which is ma_backend_custom.
const malgoNull = malgo.Backend(14)

func (b Backend) malgo() (malgo.Backend, error) {
	switch b {
	case BackendALSA:
		return malgo.BackendAlsa, nil
	case BackendPulse:
		return malgo.BackendPulseaudio, nil
	case BackendNull:
		return malgoNull, nil
	}
	return 0, fmt.Errorf("audio: unknown backend %q (want alsa, pulse or null)", string(b))
}

// DeviceConfig says which device to open and in what format.
type DeviceConfig struct {
	Backend Backend
	// Device is a device id or name, or a case-insensitive substring of
	// one name; "" is the backend's default device. With ALSA and Pulse, a
	// name that is not listed is tried as a PCM (plughw:1,0) or source
	// name as it is.
	Device string
	// Format is what Read delivers; miniaudio converts from the device's
	// own format if they differ.
	Format capture.Format
	// StallTimeout: a device that delivered frames and then delivers none
	// for this long is reported gone (default 1 s).
	StallTimeout time.Duration
	// StartTimeout bounds how long Open waits for the device's first
	// frame (default 5 s; Open returns a device that is delivering).
	StartTimeout time.Duration
	// RingDuration is how much audio the ring between the device callback
	// and Read holds (default 2 s).
	RingDuration time.Duration
	// PeriodMillis is the device period (default 20 ms).
	PeriodMillis int
}

// ErrNoDevice is wrapped by Open's error when the device does not exist.
var ErrNoDevice = errors.New("no such capture device")

// DeviceInfo describes one capture device.
type DeviceInfo struct {
	// ID is what miniaudio identifies the device by: the ALSA PCM name
	// (hw:CARD=x,DEV=0, default, ...), the Pulse source name, or a number.
	ID      string
	Name    string
	Default bool
}

// List returns the backend's capture devices.
func List(backend Backend) ([]DeviceInfo, error) {
	mb, err := backend.malgo()
	if err != nil {
		return nil, err
	}
	mctx, err := malgo.InitContext([]malgo.Backend{mb}, malgo.ContextConfig{}, nil)
	if err != nil {
		return nil, fmt.Errorf("audio: %s backend: %w", backend, err)
	}
	defer func() {
		mctx.Uninit()
		mctx.Free()
	}()
	return list(mctx, backend)
}

func list(mctx *malgo.AllocatedContext, backend Backend) ([]DeviceInfo, error) {
	infos, err := mctx.Devices(malgo.Capture)
	if err != nil {
		return nil, fmt.Errorf("audio: listing %s capture devices: %w", backend, err)
	}
	out := make([]DeviceInfo, 0, len(infos))
	for i := range infos {
		out = append(out, DeviceInfo{ID: idString(backend, infos[i].ID), Name: infos[i].Name(), Default: infos[i].IsDefault != 0})
	}
	return out, nil
}

// Devices returns the names of the backend's capture devices, as "<id>:
// <name>"; either part (or a substring of the name) selects the device in
// DeviceConfig.Device.
func Devices(backend Backend) ([]string, error) {
	l, err := List(backend)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(l))
	for i, d := range l {
		out[i] = d.ID + ": " + d.Name
	}
	return out, nil
}

// idString renders a device id: ALSA and Pulse ids are C strings.
func idString(backend Backend, id malgo.DeviceID) string {
	if backend == BackendALSA || backend == BackendPulse {
		if i := strings.IndexByte(string(id[:]), 0); i >= 0 {
			return string(id[:i])
		}
		return string(id[:])
	}
	return id.String()
}

// findDevice resolves cfg.Device to an id (nil for the default device)
// and its name; unlisted is the list of devices when cfg.Device was not
// among them and is tried by name.
func findDevice(mctx *malgo.AllocatedContext, cfg DeviceConfig) (id *malgo.DeviceID, name string, unlisted []string, err error) {
	if cfg.Device == "" {
		return nil, "default", nil, nil
	}
	infos, err := mctx.Devices(malgo.Capture)
	if err != nil {
		return nil, "", nil, fmt.Errorf("audio: listing %s capture devices: %w", cfg.Backend, err)
	}
	names := []string{} // non-nil: marks an unlisted device
	for i := range infos {
		id, name := idString(cfg.Backend, infos[i].ID), infos[i].Name()
		names = append(names, fmt.Sprintf("%q (%s)", id, name))
		if id == cfg.Device || name == cfg.Device {
			d := infos[i].ID
			return &d, name, nil, nil
		}
	}
	var match []int
	for i := range infos {
		if strings.Contains(strings.ToLower(infos[i].Name()), strings.ToLower(cfg.Device)) {
			match = append(match, i)
		}
	}
	if len(match) == 1 {
		d := infos[match[0]].ID
		return &d, infos[match[0]].Name(), nil, nil
	}
	if len(match) > 1 {
		var m []string
		for _, i := range match {
			m = append(m, infos[i].Name())
		}
		return nil, "", nil, fmt.Errorf("audio: %s capture device %q is ambiguous: it matches %s", cfg.Backend, cfg.Device, strings.Join(m, ", "))
	}
	// Not listed: ALSA PCMs and Pulse sources can be opened by name.
	if (cfg.Backend == BackendALSA || cfg.Backend == BackendPulse) && len(cfg.Device) < len(malgo.DeviceID{}) {
		var d malgo.DeviceID
		copy(d[:], cfg.Device)
		return &d, cfg.Device, names, nil
	}
	return nil, "", nil, fmt.Errorf("audio: %s capture device %q: %w (devices: %s)", cfg.Backend, cfg.Device, ErrNoDevice, strings.Join(names, ", "))
}

// Open opens a capture device and starts it. Its error names the backend
// and the device; a device that does not exist wraps ErrNoDevice.
func Open(ctx context.Context, cfg DeviceConfig, log *slog.Logger) (capture.Source, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Format.Validate(); err != nil {
		return nil, fmt.Errorf("audio: %s device %q: %w", cfg.Backend, cfg.Device, err)
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 5 * time.Second
	}
	if cfg.RingDuration <= 0 {
		cfg.RingDuration = 2 * time.Second
	}
	if cfg.PeriodMillis <= 0 {
		cfg.PeriodMillis = 20
	}
	mb, err := cfg.Backend.malgo()
	if err != nil {
		return nil, err
	}
	// miniaudio's init calls block (a sound server that does not answer):
	// run them aside and give up when ctx ends, cleaning up behind.
	type result struct {
		d   *device
		err error
	}
	res := make(chan result, 1)
	abandoned := make(chan struct{})
	go func() {
		d, err := open(cfg, mb, log)
		select {
		case res <- result{d, err}:
		case <-abandoned:
			if d != nil {
				d.Close()
			}
		}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return nil, r.err
		}
		return r.d, nil
	case <-ctx.Done():
		close(abandoned)
		return nil, fmt.Errorf("audio: opening %s device %q: %w", cfg.Backend, cfg.Device, ctx.Err())
	}
}

func open(cfg DeviceConfig, mb malgo.Backend, log *slog.Logger) (*device, error) {
	what := fmt.Sprintf("%s capture device %q", cfg.Backend, cfg.Device)
	if cfg.Device == "" {
		what = fmt.Sprintf("%s default capture device", cfg.Backend)
	}
	d := &device{cfg: cfg, log: log, what: what, notify: make(chan struct{}, 1), ch: cfg.Format.Channels}
	d.ring = make([]int16, int(capture.Format.Frames(cfg.Format, cfg.RingDuration))*d.ch)
	mctx, err := malgo.InitContext([]malgo.Backend{mb}, malgo.ContextConfig{}, func(msg string) {
		log.Debug("miniaudio", "msg", strings.TrimSpace(msg))
	})
	if err != nil {
		return nil, fmt.Errorf("audio: %s: backend unavailable: %w", what, err)
	}
	d.mctx = mctx
	id, name, unlisted, err := findDevice(mctx, cfg)
	if err != nil {
		d.uninit()
		return nil, err
	}
	dc := malgo.DefaultDeviceConfig(malgo.Capture)
	dc.Capture.Format = malgo.FormatS16
	dc.Capture.Channels = uint32(cfg.Format.Channels)
	dc.SampleRate = uint32(cfg.Format.SampleRate)
	dc.PeriodSizeInMilliseconds = uint32(cfg.PeriodMillis)
	dc.PerformanceProfile = malgo.Conservative
	var pin runtime.Pinner
	if id != nil {
		d.id = id
		pin.Pin(d.id)
		dc.Capture.DeviceID = d.id.Pointer()
	}
	dev, err := malgo.InitDevice(mctx.Context, dc, malgo.DeviceCallbacks{Data: d.onData, Stop: d.onStop})
	pin.Unpin()
	if err != nil {
		d.uninit()
		if unlisted != nil {
			return nil, fmt.Errorf("audio: %s: %w: it is not listed and opening it by name failed (%v); devices: %s",
				what, ErrNoDevice, err, strings.Join(unlisted, ", "))
		}
		if errors.Is(err, malgo.ErrDoesNotExist) || errors.Is(err, malgo.ErrNoDevice) {
			return nil, fmt.Errorf("audio: %s: %w: %v", what, ErrNoDevice, err)
		}
		return nil, fmt.Errorf("audio: %s: open: %w", what, err)
	}
	d.dev = dev
	if f, ch, sr := dev.CaptureFormat(), dev.CaptureChannels(), dev.SampleRate(); f != malgo.FormatS16 || int(ch) != cfg.Format.Channels || int(sr) != cfg.Format.SampleRate {
		d.uninit()
		return nil, fmt.Errorf("audio: %s: device delivers format %d, %d ch, %d Hz instead of s16 %v", what, f, ch, sr, cfg.Format)
	}
	started := time.Now()
	d.lastData = started
	if err := dev.Start(); err != nil {
		d.uninit()
		return nil, fmt.Errorf("audio: %s: start: %w", what, err)
	}
	// Return a device that is delivering: a capture clock reopening a
	// device keeps its timeline running on silence until Open returns,
	// but would stall in Read while a slow device starts.
	if err := d.awaitFirst(); err != nil {
		d.Close()
		return nil, err
	}
	log.Info("audio: capture device open", "backend", cfg.Backend, "device", name, "format", cfg.Format,
		"first_frame_after", time.Since(started).Round(time.Millisecond))
	return d, nil
}

// awaitFirst waits for the device's first frame, at most StartTimeout.
func (d *device) awaitFirst() error {
	deadline := time.NewTimer(d.cfg.StartTimeout)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		got, gone := d.gotData, d.gone
		d.mu.Unlock()
		switch {
		case got:
			return nil
		case gone != nil:
			return gone
		}
		select {
		case <-d.notify:
		case <-deadline.C:
			return fmt.Errorf("audio: %s started but delivered nothing within %v: %w", d.what, d.cfg.StartTimeout, capture.ErrDeviceGone)
		}
	}
}

// device is a started miniaudio capture device.
type device struct {
	cfg  DeviceConfig
	log  *slog.Logger
	what string
	ch   int
	mctx *malgo.AllocatedContext
	dev  *malgo.Device
	id   *malgo.DeviceID

	notify chan struct{} // a frame arrived, or the device stopped

	mu       sync.Mutex
	ring     []int16
	r, n     int // read position and fill, in samples
	overruns int64
	lastData time.Time // of the last frame, or of the start
	gotData  bool
	gone     error
	closed   bool
	closing  sync.Once
	closeErr error
}

var (
	_ capture.Source         = (*device)(nil)
	_ capture.OverrunCounter = (*device)(nil)
	_ capture.Buffered       = (*device)(nil)
)

// onData runs on miniaudio's thread: copy and return.
func (d *device) onData(_, in []byte, frames uint32) {
	if len(in) == 0 {
		return
	}
	now := time.Now()
	d.mu.Lock()
	size := len(d.ring)
	k := len(in) / 2
	if k > size {
		d.overruns += int64((k - size) / d.ch)
		in = in[(k-size)*2:]
		k = size
	}
	if over := d.n + k - size; over > 0 {
		// Full: the oldest frames go, so what Read gets is the latest.
		d.r = (d.r + over) % size
		d.n -= over
		d.overruns += int64(over / d.ch)
	}
	w := (d.r + d.n) % size
	for i := 0; i < k; i++ {
		d.ring[w] = int16(uint16(in[2*i]) | uint16(in[2*i+1])<<8)
		w++
		if w == size {
			w = 0
		}
	}
	d.n += k
	d.lastData = now
	d.gotData = true
	d.mu.Unlock()
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

// onStop runs when the device stops: on Close, or on its own when the
// device failed.
func (d *device) onStop() {
	d.mu.Lock()
	if !d.closed && d.gone == nil {
		d.gone = fmt.Errorf("audio: %s stopped: %w", d.what, capture.ErrDeviceGone)
	}
	d.mu.Unlock()
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

func (d *device) Format() capture.Format { return d.cfg.Format }

// Buffered is the number of frames waiting to be read.
func (d *device) Buffered() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n / d.ch
}

func (d *device) Overruns() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.overruns
}

// Read returns the frames available (at least one), waiting for them.
func (d *device) Read(ctx context.Context, buf []int16) (int, error) {
	want := len(buf) / d.ch * d.ch
	if want == 0 {
		return 0, fmt.Errorf("audio: %s: buffer of %d samples holds no frame", d.what, len(buf))
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		d.mu.Lock()
		switch {
		case d.closed:
			d.mu.Unlock()
			return 0, capture.ErrClosed
		case d.n > 0:
			k := min(d.n, want)
			first := min(k, len(d.ring)-d.r)
			copy(buf, d.ring[d.r:d.r+first])
			copy(buf[first:k], d.ring[:k-first])
			d.r = (d.r + k) % len(d.ring)
			d.n -= k
			d.mu.Unlock()
			return k / d.ch, nil
		case d.gone != nil:
			err := d.gone
			d.mu.Unlock()
			return 0, err
		}
		idle := time.Since(d.lastData)
		limit := d.cfg.StallTimeout
		if !d.gotData {
			limit = d.cfg.StartTimeout
		}
		if idle >= limit {
			d.gone = fmt.Errorf("audio: %s delivered nothing for %v: %w", d.what, idle.Round(time.Millisecond), capture.ErrDeviceGone)
			d.mu.Unlock()
			continue
		}
		d.mu.Unlock()
		wait := limit - idle
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-d.notify:
		case <-timer.C:
		}
	}
}

// uninitTimeout bounds Close: miniaudio's Uninit can block for seconds.
const uninitTimeout = 3 * time.Second

// Close stops the device and releases it. Uninit runs aside; Close waits
// for it at most uninitTimeout and then returns an error while it
// finishes in the background.
func (d *device) Close() error {
	d.closing.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		select {
		case d.notify <- struct{}{}:
		default:
		}
		done := make(chan struct{})
		start := time.Now()
		go func() {
			defer close(done)
			d.uninit()
		}()
		select {
		case <-done:
			d.log.Debug("audio: capture device closed", "device", d.what, "took", time.Since(start).Round(time.Millisecond))
		case <-time.After(uninitTimeout):
			d.closeErr = fmt.Errorf("audio: %s: uninit still blocked after %v; left to finish in the background", d.what, uninitTimeout)
		}
	})
	return d.closeErr
}

func (d *device) uninit() {
	if d.dev != nil {
		d.dev.Uninit()
		d.dev = nil
	}
	if d.mctx != nil {
		d.mctx.Uninit()
		d.mctx.Free()
		d.mctx = nil
	}
}
