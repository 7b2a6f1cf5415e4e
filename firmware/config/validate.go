package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Limits Validate applies.
const (
	MinBitrate = 8000
	MaxBitrate = 512000
	// MaxPackDelay bounds max_pack_delay; the sender has the same bound
	// (sender.MaxPackDelayLimit: this package stays free of the sender's
	// cgo).
	MaxPackDelay = 100 * time.Millisecond
)

// Validate checks every value and returns every problem joined
// (errors.Join), each a *FieldError naming its key.
func (c Config) Validate() error {
	v := &validator{}
	c.validateIdentity(v)
	c.validateSource(v)
	c.validateFeeds(v)
	c.validateLinks(v)
	if c.Latency < Duration(20*time.Millisecond) || c.Latency > Duration(10*time.Second) {
		v.bad("latency", "%v is outside 20ms..10s", c.Latency)
	}
	if c.MaxPackDelay < 0 || c.MaxPackDelay.D() > MaxPackDelay {
		v.bad("max_pack_delay", "%v is outside 0..%v (0 sends every frame in its own message)", c.MaxPackDelay, MaxPackDelay)
	}
	if c.StateDir == "" {
		v.bad("state_dir", "must not be empty")
	}
	if c.API.Socket == "" {
		v.bad("api.socket", "must not be empty (the CLI talks to the daemon through it)")
	} else if len(c.API.Socket) > 107 {
		v.bad("api.socket", "%d bytes is longer than a unix socket path may be (107)", len(c.API.Socket))
	}
	if c.API.HTTP != "" {
		if _, port, err := net.SplitHostPort(c.API.HTTP); err != nil || port == "" {
			v.bad("api.http", "%q is not host:port (empty disables HTTP)", c.API.HTTP)
		}
	}
	if c.API.Debug != "" {
		if _, port, err := net.SplitHostPort(c.API.Debug); err != nil || port == "" {
			v.bad("api.debug", "%q is not host:port (empty disables the profiler)", c.API.Debug)
		}
	}
	if strings.TrimSpace(c.FFmpeg) == "" {
		v.bad("ffmpeg", "must not be empty")
	}
	return errors.Join(v.errs...)
}

type validator struct{ errs []error }

func (v *validator) bad(key, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// token is the stream-id alphabet (uplink/streamid): letters, digits,
// '-', '_' and '.', 1 to 64 of them.
func token(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (c Config) validateIdentity(v *validator) {
	switch {
	case !token(c.DeviceID):
		v.bad("device_id", "%q must be 1-64 letters, digits, '-', '_' or '.'", c.DeviceID)
	case strings.HasSuffix(c.DeviceID, "_fallback"):
		v.bad("device_id", "%q must not end in _fallback (the fallback feed adds it)", c.DeviceID)
	}
	if !token(c.App) {
		v.bad("app", "%q must be 1-64 letters, digits, '-', '_' or '.'", c.App)
	}
	if len(c.Key) > 128 {
		v.bad("key", "is %d characters, at most 128", len(c.Key))
	}
	for _, r := range c.Key {
		if r == ',' || r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' {
			v.bad("key", "must be printable ASCII without spaces or commas (it travels in the SRT stream id)")
			break
		}
	}
	if p := len(c.Passphrase); p != 0 && (p < 10 || p > 79) {
		v.bad("passphrase", "must be 10 to 79 characters, has %d", p)
	}
}

func (c Config) validateSource(v *validator) {
	if b := c.Source.BlockFrames; b < MinBlockFrames || b > MaxBlockFrames || b%1024 != 0 {
		v.bad("source.block_frames", "%d is not a multiple of 1024 in %d..%d (one AAC frame is 1024 samples)", b, MinBlockFrames, MaxBlockFrames)
	}
	switch c.Source.Type {
	case SourceTone:
		t := c.Source.Tone
		nyquist := float64(min(c.Feeds.Primary.SampleRate, c.Feeds.Fallback.SampleRate)) / 2
		if nyquist <= 0 {
			nyquist = 22050
		}
		if t.Frequency < 20 || t.Frequency >= nyquist {
			v.bad("source.tone.frequency", "%g Hz is outside 20..%g Hz", t.Frequency, nyquist)
		}
		if t.LevelDBFS < -96 || t.LevelDBFS > 0 {
			v.bad("source.tone.level_dbfs", "%g is outside -96..0 dBFS", t.LevelDBFS)
		}
	case SourceDevice:
		d := c.Source.Device
		switch d.Backend {
		case "alsa", "pulse":
		default:
			v.bad("source.device.backend", "%q is not alsa or pulse", d.Backend)
		}
		if d.SampleRate < 8000 || d.SampleRate > 192000 {
			v.bad("source.device.sample_rate", "%d Hz is outside 8000..192000", d.SampleRate)
		}
		if d.Channels < 1 || d.Channels > 8 {
			v.bad("source.device.channels", "%d is outside 1..8", d.Channels)
		}
	default:
		v.bad("source.type", "%q is not tone or device", c.Source.Type)
	}
}

func (c Config) validateFeeds(v *validator) {
	p, f := c.Feeds.Primary, c.Feeds.Fallback
	okP := c.validateFeed(v, "feeds.primary", p)
	okF := c.validateFeed(v, "feeds.fallback", f)
	// Matched feeds: the switcher merges them frame by frame.
	const why = "matched feeds share codec, sample rate and channels; only the bitrate may differ"
	if okP.codec && okF.codec && p.Codec != f.Codec {
		v.bad("feeds.fallback.codec", "(%q) must equal feeds.primary.codec (%q): %s", f.Codec, p.Codec, why)
	}
	if okP.rate && okF.rate && p.SampleRate != f.SampleRate {
		v.bad("feeds.fallback.sample_rate", "(%d) must equal feeds.primary.sample_rate (%d): %s", f.SampleRate, p.SampleRate, why)
	}
	if okP.channels && okF.channels && p.Channels != f.Channels {
		v.bad("feeds.fallback.channels", "(%d) must equal feeds.primary.channels (%d): %s", f.Channels, p.Channels, why)
	}
	if p.Link != "" && p.Link == f.Link && !c.AllowSharedLink {
		v.bad("feeds.fallback.link", "%q is also feeds.primary.link: the feeds need separate links for path redundancy (set allow_shared_link to allow it)", f.Link)
	}
}

type feedOK struct{ codec, rate, channels bool }

func (c Config) validateFeed(v *validator, key string, f Feed) feedOK {
	ok := feedOK{true, true, true}
	if f.Codec != "aac" {
		v.bad(key+".codec", "%q is not aac", f.Codec)
		ok.codec = false
	}
	if f.Bitrate < MinBitrate || f.Bitrate > MaxBitrate {
		v.bad(key+".bitrate", "%d bit/s is outside %d..%d", f.Bitrate, MinBitrate, MaxBitrate)
	}
	if f.SampleRate != 44100 && f.SampleRate != 48000 {
		v.bad(key+".sample_rate", "%d Hz is not 44100 or 48000", f.SampleRate)
		ok.rate = false
	}
	if f.Channels != 1 && f.Channels != 2 {
		v.bad(key+".channels", "%d is not 1 or 2", f.Channels)
		ok.channels = false
	}
	if _, err := ParseDest(f.Dest); err != nil {
		v.bad(key+".dest", "%v", err)
	}
	switch {
	case f.Link == "":
		v.bad(key+".link", "must name one of the links (%s)", c.linkNames())
	case !c.hasLink(f.Link):
		v.bad(key+".link", "%q is not in links (%s)", f.Link, c.linkNames())
	}
	return ok
}

func (c Config) hasLink(name string) bool {
	_, ok := c.Links[name]
	return ok
}

func (c Config) linkNames() string {
	if len(c.Links) == 0 {
		return "none are configured"
	}
	names := c.LinkNames()
	for i, n := range names {
		names[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(names, ", ")
}

// LinkNames are the links' names, sorted.
func (c Config) LinkNames() []string {
	names := make([]string, 0, len(c.Links))
	for n := range c.Links {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// linkName is what a link may be called: it must survive the trip through
// an environment variable name (TANDEM_LINKS_<NAME>_ADDRESS).
func linkName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (c Config) validateLinks(v *validator) {
	if len(c.Links) == 0 {
		v.bad("links", "at least one link is needed")
	}
	policy := c.PolicyRoutingEnabled()
	if c.PolicyRouting != nil && *c.PolicyRouting {
		any := false
		for _, l := range c.Links {
			any = any || l.Interface != ""
		}
		if !any {
			v.bad("policy_routing", "is true but no link names an interface")
		}
	}
	addrs := map[netip.Addr]string{}
	tables := map[int]string{}
	for _, name := range c.LinkNames() {
		l := c.Links[name]
		key := "links." + name
		if !linkName(name) {
			v.bad(key, "name %q must be 1-32 lower-case letters, digits or '_'", name)
		}
		if l.Interface != "" && (len(l.Interface) > 15 || strings.ContainsAny(l.Interface, "/ \t\n:")) {
			v.bad(key+".interface", "%q is not an interface name (at most 15 characters, no '/', ':' or spaces)", l.Interface)
		}
		if l.Address != "" {
			a, err := netip.ParseAddr(l.Address)
			switch {
			case err != nil || a.Zone() != "":
				v.bad(key+".address", "%q is not an IP address", l.Address)
			case addrs[a] != "":
				v.bad(key+".address", "%s is also links.%s.address: each link needs its own source address", a, addrs[a])
			default:
				addrs[a] = name
			}
		}
		if l.Gateway != "" {
			if _, err := netip.ParseAddr(l.Gateway); err != nil {
				v.bad(key+".gateway", "%q is not an IP address", l.Gateway)
			}
			if l.Interface == "" {
				v.bad(key+".gateway", "needs %s.interface", key)
			}
		}
		if policy {
			if l.Interface == "" {
				v.bad(key+".interface", "must be set: policy routing is on (it is on by default when any link names an interface; set policy_routing to false to turn it off)")
			}
			switch t := l.Table; {
			case t == 0:
				v.bad(key+".table", "must be set for policy routing (1-252, or above 255)")
			case t < 0 || t > 252 && t < 256:
				v.bad(key+".table", "%d is reserved or invalid (use 1-252, or above 255)", t)
			case tables[t] != "":
				v.bad(key+".table", "%d is also links.%s.table: each link needs its own table", t, tables[t])
			default:
				tables[t] = name
			}
		} else if l.Address == "" && l.Interface == "" {
			v.bad(key+".address", "must be set: without policy routing a link is its source address (or its interface)")
		}
	}
}
