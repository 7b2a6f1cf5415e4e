package switcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"tandem/uplink/icy"
	"tandem/uplink/media"
	"tandem/uplink/switcher/health"
	"tandem/uplink/switcher/merge"
)

// Config is the switcher's configuration. Defaults come from
// DefaultConfig, then a JSON file (unknown keys are an error), then
// TANDEM_SWITCHER_* environment variables, then Validate.
type Config struct {
	// SRTAddr is the SRT listener's UDP address.
	SRTAddr string `json:"srt_addr"`
	// SRTExtraAddrs are more SRT ports that accept the same publishers and
	// pullers. libsrt reads each port with one thread: past ~50 publishers
	// of 2 Mbit/s on one port (this 2-core machine), spread them over
	// several.
	SRTExtraAddrs []string `json:"srt_extra_addrs"`
	// HTTPAddr serves listeners and the API.
	HTTPAddr string `json:"http_addr"`
	// HLSTarget is the HLS segment duration and HLSWindow the number of
	// segments in the playlist.
	HLSTarget Duration `json:"hls_target"`
	HLSWindow int      `json:"hls_window"`
	// IcecastApp is the app of Icecast mounts given without one (/<id>.aac).
	IcecastApp string `json:"icecast_app"`
	// RTMPAddr accepts RTMP publishers; empty disables RTMP.
	RTMPAddr string `json:"rtmp_addr"`
	// Latency is the SRT receive latency negotiated with publishers.
	Latency Duration `json:"latency"`
	// SRTUDPBuffer is the UDP buffer of the SRT port in bytes. Every
	// publisher shares the port's one socket: at 100 A/V streams the 1 MiB
	// a caller uses overflowed. The kernel caps it at net.core.rmem_max.
	SRTUDPBuffer int `json:"srt_udp_buffer"`
	// PlayoutDelay is the time from a frame's send at the publisher to its
	// emission: the SRT latency plus how long the merge waits for a late
	// input. 0 derives it: Latency + 100 ms (see docs/architecture.md).
	PlayoutDelay Duration `json:"playout_delay"`
	// Grace is how long a stream with no frame from any input stays online
	// (filling silence) before it goes offline.
	Grace Duration `json:"grace"`
	// SpliceStall is how long the active input of a spliced pair may deliver
	// nothing before the switcher takes the other one.
	SpliceStall Duration `json:"splice_stall"`
	// Stable is how long a returning primary must be healthy before a
	// spliced stream returns to it.
	Stable Duration `json:"stable"`
	// Policy is the default failover policy: primary-preferred, equal or best.
	Policy string `json:"policy"`
	// Streams configures publish keys and passphrases per "<app>/<name>".
	// With no streams configured, publishing is open to any stream id.
	Streams map[string]StreamConfig `json:"streams"`
	// ListenerBuffer is how many frames a listener may fall behind before
	// it is dropped (about 21 ms each at 48 kHz).
	ListenerBuffer int `json:"listener_buffer"`
	// StateDir holds the persistent event log (events.db).
	StateDir string `json:"state_dir"`
	// Webhooks receive stream events (publish, unpublish, switch, health,
	// manual, refusals), signed with HMAC-SHA256.
	Webhooks []Webhook `json:"webhooks"`
	// Health sets the thresholds of the per-input health signals.
	Health HealthConfig `json:"health"`
	// DebugAddr, if set, serves Go's profiler (/debug/pprof/) on its own
	// listener; keep it on localhost.
	DebugAddr string `json:"debug_addr"`
	// ListenerBurst is how many frames a new listener gets at once, so a
	// player starts without waiting to fill its buffer.
	ListenerBurst int `json:"listener_burst"`
	// LevelDecoder is the ffmpeg binary (a path, or a name looked up in
	// PATH) that decodes the audio of inputs without in-band telemetry,
	// so their silence and channel imbalance are judged too; one process
	// per such input. Empty turns decoding off.
	LevelDecoder string `json:"level_decoder"`
	// MaxListeners caps the listeners (HTTP and SRT pulls) of all streams
	// together; a stream's own cap is streams.<id>.max_listeners. 0 is no
	// cap. Over a cap a player gets 403, as from Icecast, and an SRT
	// puller reject code 1402 (overload).
	MaxListeners int `json:"max_listeners"`
	// ListenerWriteInterval is how much audio an HTTP listener is sent at
	// once (rounded to whole frames; 0: every frame as it is emitted).
	// Each write costs a syscall and a wake-up per listener: with
	// thousands of listeners, fewer larger writes cost far less CPU
	// (1000 listeners: 500ms is under Icecast's CPU, 100ms twice it), and
	// players buffer seconds anyway; a listener hears the stream on
	// average half an interval later. SRT pull and HLS are not affected.
	// Keep listener_burst at least one interval long (24 frames are
	// 512 ms) so a player that starts at once never runs dry waiting.
	ListenerWriteInterval Duration `json:"listener_write_interval"`
	// ListenerBatchAbove is how many HTTP listeners the server serves
	// frame by frame; above it, listeners are written every
	// ListenerWriteInterval. Few listeners get the lowest latency; many
	// get far less CPU per listener. 0 batches always.
	ListenerBatchAbove int `json:"listener_batch_above"`
	// ICYMetaInt is the bytes of audio between two ICY metadata blocks for
	// listeners that ask for metadata (Icy-MetaData: 1).
	ICYMetaInt int `json:"icy_metaint"`
}

// Webhook is one notification receiver.
type Webhook struct {
	URL    string `json:"url"`
	Secret string `json:"secret"`
	// Streams and Kinds filter what is sent; empty sends everything.
	Streams []string `json:"streams"`
	Kinds   []string `json:"kinds"`
}

// HealthConfig sets the health thresholds; zero keeps a default, a
// negative duration turns the signal off.
type HealthConfig struct {
	Stall              Duration `json:"stall"`
	BitrateDropPercent float64  `json:"bitrate_drop_percent"`
	LossPercent        float64  `json:"loss_percent"`
	RTT                Duration `json:"rtt"`
	SilenceDBFS        float64  `json:"silence_dbfs"`
	SilenceFor         Duration `json:"silence_for"`
	ImbalanceDB        float64  `json:"imbalance_db"`
	ImbalanceFor       Duration `json:"imbalance_for"`
	// FrozenVideoFor and BlackVideoFor judge the picture where the
	// appliance's telemetry reports it.
	FrozenVideoFor Duration `json:"frozen_video_for"`
	BlackVideoFor  Duration `json:"black_video_for"`
}

// StreamConfig is one stream's access control.
type StreamConfig struct {
	// Key must appear as k=<key> in the publisher's stream id.
	Key string `json:"key"`
	// Passphrase, if set, is the AES passphrase publishers must use.
	Passphrase string `json:"passphrase"`
	// Policy overrides the default failover policy for this stream.
	Policy string `json:"policy"`
	// MaxListeners caps this stream's listeners (HTTP and SRT pulls); 0
	// is no cap of its own (the global max_listeners still applies).
	MaxListeners int `json:"max_listeners"`
}

// DefaultConfig is what the switcher runs with when nothing is configured.
func DefaultConfig() Config {
	return Config{
		SRTAddr:        ":9000",
		HTTPAddr:       ":8000",
		RTMPAddr:       ":1935",
		IcecastApp:     "live",
		HLSTarget:      Duration(2 * time.Second),
		HLSWindow:      6,
		Latency:        Duration(120 * time.Millisecond),
		SRTUDPBuffer:   16 << 20,
		Grace:          Duration(10 * time.Second),
		SpliceStall:    Duration(500 * time.Millisecond),
		Stable:         Duration(10 * time.Second),
		Policy:         "primary-preferred",
		StateDir:       "/var/lib/tandem-switcher",
		ListenerBuffer: 512,
		ListenerBurst:  24,
		LevelDecoder:   "ffmpeg",
		ICYMetaInt:     icy.DefaultMetaInt,

		ListenerWriteInterval: Duration(500 * time.Millisecond),
		ListenerBatchAbove:    100,
	}
}

// defaultHold is how long past the SRT latency the merge waits for a late
// input when PlayoutDelay is not set: enough for the difference in one-way
// delay between two ISPs (fibre vs. LTE) plus scheduling jitter.
const defaultHold = 100 * time.Millisecond

// Hold is how long the merge waits past a frame's earliest arrival.
func (c Config) Hold() time.Duration {
	if c.PlayoutDelay == 0 {
		return defaultHold
	}
	return time.Duration(c.PlayoutDelay - c.Latency)
}

// EffectivePlayoutDelay is PlayoutDelay with its default applied.
func (c Config) EffectivePlayoutDelay() time.Duration {
	return time.Duration(c.Latency) + c.Hold()
}

// Validate checks every value and names the key at fault.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config %s: "+format, append([]any{key}, args...)...))
	}
	if c.SRTAddr == "" {
		bad("srt_addr", "must not be empty")
	}
	if c.HTTPAddr == "" {
		bad("http_addr", "must not be empty")
	}
	if c.Latency < Duration(20*time.Millisecond) || c.Latency > Duration(10*time.Second) {
		bad("latency", "%v is outside 20ms..10s", time.Duration(c.Latency))
	}
	for i, a := range c.SRTExtraAddrs {
		// Port 0 (any free port) may repeat: each gets its own.
		anyPort := strings.HasSuffix(a, ":0")
		if a == "" || !anyPort && (a == c.SRTAddr || slices.Contains(c.SRTExtraAddrs[:i], a)) {
			bad("srt_extra_addrs", "%q is empty or repeats another SRT address", a)
		}
	}
	if c.SRTUDPBuffer < 64<<10 || c.SRTUDPBuffer > 1<<30 {
		bad("srt_udp_buffer", "%d bytes is outside 64 KiB..1 GiB", c.SRTUDPBuffer)
	}
	if c.PlayoutDelay != 0 && c.PlayoutDelay < c.Latency+Duration(20*time.Millisecond) {
		bad("playout_delay", "%v must exceed latency (%v) by at least 20ms, or be 0 for the default", time.Duration(c.PlayoutDelay), time.Duration(c.Latency))
	}
	if c.Grace < Duration(time.Second) {
		bad("grace", "%v is shorter than 1s", time.Duration(c.Grace))
	}
	if c.SpliceStall < Duration(50*time.Millisecond) {
		bad("splice_stall", "%v is shorter than 50ms", time.Duration(c.SpliceStall))
	}
	if c.Stable < 0 {
		bad("stable", "must not be negative")
	}
	if c.ListenerBuffer < 16 {
		bad("listener_buffer", "%d frames is fewer than 16", c.ListenerBuffer)
	}
	if c.ListenerBurst < 0 || c.ListenerBurst > c.ListenerBuffer {
		bad("listener_burst", "%d must be between 0 and listener_buffer (%d)", c.ListenerBurst, c.ListenerBuffer)
	}
	if c.ListenerBatchAbove < 0 {
		bad("listener_batch_above", "%d is negative", c.ListenerBatchAbove)
	}
	if c.ListenerWriteInterval < 0 || c.ListenerWriteInterval > Duration(time.Second) {
		bad("listener_write_interval", "%v is outside 0..1s", time.Duration(c.ListenerWriteInterval))
	}
	if c.MaxListeners < 0 {
		bad("max_listeners", "%d is negative (0 means no cap)", c.MaxListeners)
	}
	if c.ICYMetaInt < 256 || c.ICYMetaInt > 1<<20 {
		bad("icy_metaint", "%d is outside 256..1048576 bytes", c.ICYMetaInt)
	}
	if c.HLSTarget < Duration(time.Second) || c.HLSTarget > Duration(30*time.Second) {
		bad("hls_target", "%v is outside 1s..30s", time.Duration(c.HLSTarget))
	}
	if c.HLSWindow < 2 || c.HLSWindow > 100 {
		bad("hls_window", "%d is outside 2..100", c.HLSWindow)
	}
	if c.StateDir == "" {
		bad("state_dir", "must not be empty")
	}
	for i, h := range c.Webhooks {
		if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(fmt.Sprintf("webhooks[%d].url", i), "%q is not an http(s) URL", h.URL)
		}
	}
	if err := c.healthThresholds().Validate(); err != nil {
		bad("health", "%v", err)
	}
	if _, err := merge.ParsePolicy(c.Policy); err != nil {
		bad("policy", "%v", err)
	}
	for name, s := range c.Streams {
		if _, err := merge.ParsePolicy(s.Policy); err != nil {
			bad("streams."+name+".policy", "%v", err)
		}
		app, n, ok := strings.Cut(name, "/")
		if !ok || app == "" || n == "" || strings.HasSuffix(n, "_fallback") {
			bad("streams."+name, "name must be <app>/<name> without the _fallback suffix")
		}
		if s.MaxListeners < 0 {
			bad("streams."+name+".max_listeners", "%d is negative (0 means no cap of its own)", s.MaxListeners)
		}
		if p := len(s.Passphrase); p != 0 && (p < 10 || p > 79) {
			bad("streams."+name+".passphrase", "must be 10 to 79 characters, has %d", p)
		}
	}
	return errors.Join(errs...)
}

// LoadConfig reads a JSON config file over the defaults, then the
// environment. An empty path skips the file.
func LoadConfig(path string, environ []string) (Config, error) {
	c := DefaultConfig()
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		defer f.Close()
		if err := decodeStrict(f, &c); err != nil {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := c.applyEnv(environ); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func decodeStrict(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// encoding/json says `unknown field "x"`: keep it, it names the key.
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// EnvPrefix prefixes the environment variables the switcher reads.
const EnvPrefix = "TANDEM_SWITCHER_"

func (c *Config) applyEnv(environ []string) error {
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		key, ok := strings.CutPrefix(k, EnvPrefix)
		if !ok {
			continue
		}
		var err error
		switch strings.ToLower(key) {
		case "srt_addr":
			c.SRTAddr = v
		case "srt_extra_addrs":
			c.SRTExtraAddrs = nil
			for _, a := range strings.Split(v, ",") {
				if a = strings.TrimSpace(a); a != "" {
					c.SRTExtraAddrs = append(c.SRTExtraAddrs, a)
				}
			}
		case "http_addr":
			c.HTTPAddr = v
		case "rtmp_addr":
			c.RTMPAddr = v
		case "state_dir":
			c.StateDir = v
		case "debug_addr":
			c.DebugAddr = v
		case "level_decoder":
			c.LevelDecoder = v
		case "latency":
			err = c.Latency.parse(v)
		case "playout_delay":
			err = c.PlayoutDelay.parse(v)
		case "grace":
			err = c.Grace.parse(v)
		case "splice_stall":
			err = c.SpliceStall.parse(v)
		case "stable":
			err = c.Stable.parse(v)
		case "policy":
			c.Policy = v
		case "listener_buffer":
			c.ListenerBuffer, err = strconv.Atoi(v)
		case "srt_udp_buffer":
			c.SRTUDPBuffer, err = strconv.Atoi(v)
		case "listener_burst":
			c.ListenerBurst, err = strconv.Atoi(v)
		case "listener_write_interval":
			err = c.ListenerWriteInterval.parse(v)
		case "listener_batch_above":
			c.ListenerBatchAbove, err = strconv.Atoi(v)
		case "max_listeners":
			c.MaxListeners, err = strconv.Atoi(v)
		case "icy_metaint":
			c.ICYMetaInt, err = strconv.Atoi(v)
		default:
			return fmt.Errorf("environment %s: unknown setting", k)
		}
		if err != nil {
			return fmt.Errorf("environment %s: %w", k, err)
		}
	}
	return nil
}

// Duration is a time.Duration written as "120ms" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"120ms\", got %s", b)
	}
	return d.parse(s)
}

func (d *Duration) parse(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// policyFor is the failover policy of a stream (validated already).
func (c Config) policyFor(stream string) merge.Policy {
	name := c.Policy
	if sc, ok := c.Streams[stream]; ok && sc.Policy != "" {
		name = sc.Policy
	}
	p, _ := merge.ParsePolicy(name)
	return p
}

// healthThresholds maps the config onto the health package's thresholds.
func (c Config) healthThresholds() health.Thresholds {
	h := c.Health
	th := health.Thresholds{
		Stall: time.Duration(h.Stall), BitrateDropPercent: h.BitrateDropPercent, LossPercent: h.LossPercent,
		RTT: time.Duration(h.RTT), SilenceDBFS: h.SilenceDBFS, SilenceFor: time.Duration(h.SilenceFor),
		ImbalanceDB: h.ImbalanceDB, ImbalanceFor: time.Duration(h.ImbalanceFor),
		FrozenVideoFor: time.Duration(h.FrozenVideoFor), BlackVideoFor: time.Duration(h.BlackVideoFor),
	}
	if th.Stall == 0 {
		th.Stall = time.Duration(c.SpliceStall)
	}
	return th
}

// outputRing is how many packets a stream's output ring holds: the
// listener_buffer audio frames, and room for up to 60 video frames a
// second between them (at 48 kHz AAC, 1.28 video frames per audio frame)
// so an A/V stream's listeners get as much time as an audio-only one's.
func (c Config) outputRing(video bool) int {
	if !video {
		return c.ListenerBuffer
	}
	return c.ListenerBuffer + c.ListenerBuffer*128/100
}

// listenerBatch is how many frames of the given audio make up one
// ListenerWriteInterval (at least 1).
func (c Config) listenerBatch(a media.AudioConfig) int {
	if a.SampleRate <= 0 {
		return 1
	}
	frame := time.Duration(a.FrameSamples()) * time.Second / time.Duration(a.SampleRate)
	return max(1, int((time.Duration(c.ListenerWriteInterval)+frame/2)/frame))
}
