// Package config is the appliance's configuration: defaults, then a JSON
// file (unknown keys are an error), then TANDEM_* environment variables,
// then Validate. It follows the switcher's conventions (uplink/switcher
// config.go): JSON keys in snake_case, durations written as "120ms", every
// error naming the key at fault.
//
// Defaults run a test tone to a switcher on 127.0.0.1:9000 over two
// loopback "links" (127.0.0.1 and 127.0.0.2) without policy routing, so
// `tandem run` works with no file at all.
package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Config is the appliance's configuration.
type Config struct {
	// DeviceID is the stream's name: the feeds publish as <app>/<device_id>
	// and <app>/<device_id>_fallback.
	DeviceID string `json:"device_id"`
	// App is the switcher application the stream belongs to.
	App string `json:"app"`
	// Source is where audio comes from.
	Source Source `json:"source"`
	// Feeds are the two matched encodings of the source.
	Feeds Feeds `json:"feeds"`
	// Links are the uplinks by name ("a", "b", "fibre", "lte"...). A file
	// that sets "links" replaces the default links as a whole.
	Links map[string]Link `json:"links"`
	// AllowSharedLink lets both feeds use the same link (no path
	// redundancy; for tests and single-uplink sites).
	AllowSharedLink bool `json:"allow_shared_link"`
	// Key is the stream's publish key on the switcher (k= in the stream id).
	Key string `json:"key"`
	// Passphrase is the SRT encryption passphrase (10 to 79 characters),
	// empty for none.
	Passphrase string `json:"passphrase"`
	// Latency is the SRT latency.
	Latency Duration `json:"latency"`
	// MaxPackDelay lets both feeds carry several AAC frames per SRT message
	// (up to 7 TS packets): a message goes when the next frame would not
	// fit or its oldest frame has waited this long. 0 sends each frame in
	// its own message. At most 100ms (it eats into the switcher's hold).
	MaxPackDelay Duration `json:"max_pack_delay"`
	// StateDir holds the state database (tandem.db).
	StateDir string `json:"state_dir"`
	// API is where the local API listens.
	API API `json:"api"`
	// FFmpeg is the ffmpeg binary the encoders run.
	FFmpeg string `json:"ffmpeg"`
	// PolicyRouting pins each link's traffic to its interface with a
	// routing table and rule. nil (the default) means: on when any link
	// names an interface. See PolicyRoutingEnabled.
	PolicyRouting *bool `json:"policy_routing"`
}

// Source is the audio input.
type Source struct {
	// Type is "tone" (a test tone) or "device" (capture hardware).
	Type string `json:"type"`
	// Tone configures the test tone (used when type is "tone").
	Tone Tone `json:"tone"`
	// Device configures the capture device (used when type is "device").
	Device Device `json:"device"`
	// BlockFrames is how many sample frames the capture clock hands the
	// encoders at a time: a multiple of 1024 (one AAC frame), 1024..4096.
	// Every block costs the daemon, each encoder and libsrt a wake-up,
	// and on small machines the wake-ups, not the work, are most of the
	// appliance's CPU: 4096 (the default, 85 ms at 48 kHz) costs about
	// two thirds of what 1024 costs (measured side by side: 5.6 against
	// 8.8 % of a core). A frame waits for the rest of its block, and the
	// switcher's hold grows by the burst's spread, so 4096 adds about
	// 64 ms of latency over 1024 (docs/architecture.md, "Capture blocks").
	BlockFrames int `json:"block_frames"`
}

// Bounds of source.block_frames.
const (
	MinBlockFrames = 1024
	MaxBlockFrames = 4096
)

// Source types.
const (
	SourceTone   = "tone"
	SourceDevice = "device"
)

// Tone is a sine test tone.
type Tone struct {
	Frequency float64 `json:"frequency"`  // Hz
	LevelDBFS float64 `json:"level_dbfs"` // peak level, dBFS
}

// Device is an audio capture device.
type Device struct {
	// Backend is "alsa" or "pulse".
	Backend string `json:"backend"`
	// Name is the backend's device name; "" or "default" is the default
	// device.
	Name       string `json:"name"`
	SampleRate int    `json:"sample_rate"`
	Channels   int    `json:"channels"`
}

// Feeds are the primary and fallback encodings. They must match in codec,
// sample rate and channels (the switcher merges them frame by frame); the
// bitrate may differ.
type Feeds struct {
	Primary  Feed `json:"primary"`
	Fallback Feed `json:"fallback"`
}

// Feed is one encoding and where it goes.
type Feed struct {
	// Codec is "aac" (AAC-LC).
	Codec string `json:"codec"`
	// Bitrate in bits per second, 8000 to 512000.
	Bitrate    int `json:"bitrate"`
	SampleRate int `json:"sample_rate"` // 44100 or 48000
	Channels   int `json:"channels"`    // 1 or 2
	// Dest is srt://host:port or icecast://user:pass@host:port[/mount].
	Dest string `json:"dest"`
	// Link names the entry of Links this feed is sent over.
	Link string `json:"link"`
}

// Role names, as they appear in keys, the API and the stream id.
const (
	RolePrimary  = "primary"
	RoleFallback = "fallback"
)

// Link is one uplink.
type Link struct {
	// Interface is the network interface ("wana", "wwan0"); empty for a
	// link that is only a source address.
	Interface string `json:"interface"`
	// Gateway is the link's next hop for its policy routing table; empty
	// for a point-to-point interface (a default route via the device).
	Gateway string `json:"gateway"`
	// Table is the link's policy routing table (1-252 or above 255).
	Table int `json:"table"`
	// Address pins the feed's source address. With policy routing it may
	// be empty (the interface's address is used); without, it is how the
	// feed is kept on its link (e.g. 127.0.0.2 for the demo).
	Address string `json:"address"`
}

// API is where the local API listens.
type API struct {
	// Socket is the unix socket the CLI talks to (mode 0660).
	Socket string `json:"socket"`
	// HTTP is an optional TCP address for the web UI; empty disables it.
	HTTP string `json:"http"`
	// Debug is an optional TCP address serving Go's profiler
	// (/debug/pprof/) for diagnosing the daemon's CPU use; empty (the
	// default) disables it. Keep it on loopback.
	Debug string `json:"debug"`
}

// Default is what the appliance runs with when nothing is configured.
func Default() Config {
	return Config{
		DeviceID: "tandem",
		App:      "live",
		Source: Source{
			Type:        SourceTone,
			Tone:        Tone{Frequency: 440, LevelDBFS: -12},
			Device:      Device{Backend: "alsa", Name: "default", SampleRate: 48000, Channels: 2},
			BlockFrames: 4096,
		},
		Feeds: Feeds{
			Primary:  Feed{Codec: "aac", Bitrate: 128000, SampleRate: 48000, Channels: 2, Dest: "srt://127.0.0.1:9000", Link: "a"},
			Fallback: Feed{Codec: "aac", Bitrate: 64000, SampleRate: 48000, Channels: 2, Dest: "srt://127.0.0.1:9000", Link: "b"},
		},
		Links: map[string]Link{
			"a": {Address: "127.0.0.1"},
			"b": {Address: "127.0.0.2"},
		},
		Latency:  Duration(120 * time.Millisecond),
		StateDir: "/var/lib/tandem",
		API:      API{Socket: DefaultSocket, HTTP: "127.0.0.1:8080"},
		FFmpeg:   "ffmpeg",
	}
}

// DefaultSocket is the API socket's default path.
const DefaultSocket = "/run/tandem/api.sock"

// DBFile is the state database's file name inside StateDir.
const DBFile = "tandem.db"

// Feed returns the feed of a role ("primary" or "fallback").
func (c Config) Feed(role string) (Feed, bool) {
	switch role {
	case RolePrimary:
		return c.Feeds.Primary, true
	case RoleFallback:
		return c.Feeds.Fallback, true
	}
	return Feed{}, false
}

// PolicyRoutingEnabled is PolicyRouting with its default applied: on when
// any link names an interface.
func (c Config) PolicyRoutingEnabled() bool {
	if c.PolicyRouting != nil {
		return *c.PolicyRouting
	}
	for _, l := range c.Links {
		if l.Interface != "" {
			return true
		}
	}
	return false
}

// StreamName is the name a feed publishes as: <device_id> for the primary,
// <device_id>_fallback for the fallback.
func (c Config) StreamName(role string) string {
	if role == RoleFallback {
		return c.DeviceID + "_fallback"
	}
	return c.DeviceID
}

// Redacted is the config with secrets replaced, for logs and displays:
// key, passphrase, and passwords in destination URLs.
func (c Config) Redacted() Config {
	if c.Key != "" {
		c.Key = redacted
	}
	if c.Passphrase != "" {
		c.Passphrase = redacted
	}
	c.Feeds.Primary.Dest = RedactURL(c.Feeds.Primary.Dest)
	c.Feeds.Fallback.Dest = RedactURL(c.Feeds.Fallback.Dest)
	links := make(map[string]Link, len(c.Links))
	for k, v := range c.Links {
		links[k] = v
	}
	c.Links = links
	if c.PolicyRouting != nil {
		v := *c.PolicyRouting
		c.PolicyRouting = &v
	}
	return c
}

const redacted = "xxxxx"

// JSON is the config as indented JSON (secrets included: use Redacted
// first for display).
func (c Config) JSON() []byte {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		// Every field is a plain value; this cannot fail.
		panic(fmt.Sprintf("config: marshal: %v", err))
	}
	return b
}

// FieldError is one invalid setting. Validate returns these joined.
type FieldError struct {
	// Key is the setting's dotted JSON path, e.g. "feeds.fallback.link".
	Key string
	Msg string
}

func (e *FieldError) Error() string {
	if strings.HasPrefix(e.Msg, "(") {
		// "config feeds.fallback.sample_rate (44100) must equal ..."
		return "config " + e.Key + " " + e.Msg
	}
	return "config " + e.Key + ": " + e.Msg
}

// Fields lists the FieldErrors inside an error returned by Validate or
// Load (nil if there are none).
func Fields(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if fe, ok := err.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// Errors splits an error from Load or Validate into one line per problem.
func Errors(err error) []string {
	if err == nil {
		return nil
	}
	var lines []string
	var walk func(error)
	walk = func(err error) {
		if u, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range u.Unwrap() {
				walk(e)
			}
			return
		}
		lines = append(lines, strings.TrimSpace(err.Error()))
	}
	walk(err)
	return lines
}

// Duration is a time.Duration written as "120ms" in JSON.
type Duration time.Duration

// D is the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

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
