package sender

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"tandem/uplink/adts"
	"tandem/uplink/media"
	"tandem/uplink/streamid"
)

// Config describes one feed's uplink.
type Config struct {
	// Role is the feed's place in its stream: streamid.RolePrimary or
	// streamid.RoleFallback.
	Role streamid.Role
	// App, Name, Session and Key build the SRT stream id
	// (#!::r=<App>/<Name>[_fallback],m=publish,s=<Session>,k=<Key>).
	// Feeds of one capture session share Session (aligned mode).
	App, Name, Session, Key string
	// Passphrase is the SRT AES passphrase (10..79 characters, "" = none).
	// For Icecast it is the source password when the URL has none.
	Passphrase string

	// Dest is where the feed goes:
	//
	//	srt://host:port                    a Tandem switcher or any SRT listener; the
	//	                                   stream id is built from App/Name/Role/Session/Key
	//	srt://host:port?streamid=...       the given stream id is sent verbatim
	//	icecast://user:pass@host:port/mnt  HTTP PUT of ADTS to an Icecast 2.4+ server;
	//	                                   user defaults to "source", port to 8000, the
	//	                                   mount to /<Name>.aac (primary) or
	//	                                   /<Name>_fallback.aac (fallback)
	//
	// A host name is resolved on every connect (outside Netns, if set).
	Dest string

	// LocalAddr pins the feed to a link: the source IP ("10.0.0.2" or
	// "10.0.0.2:port") the connection is bound to. With the appliance's
	// policy routing (hal/netlink) that selects the link's routing table.
	LocalAddr string
	// Device additionally binds to an interface (SO_BINDTODEVICE; needs
	// root). Not enough on its own to pin traffic (design.md).
	Device string
	// Netns, if set, is the path of a network namespace (e.g.
	// /var/run/netns/x) in which the connection's socket is opened. Tests
	// use it to send from the lab's appliance namespace.
	Netns string

	// Latency is the SRT latency (default 120 ms).
	Latency time.Duration
	// ConnectTimeout bounds one connection attempt (default 3 s).
	ConnectTimeout time.Duration

	// Audio describes the frames given to Send (AAC: it fills the ADTS
	// headers).
	Audio media.AudioConfig

	// MaxPackDelay packs several frames into one SRT message (up to seven
	// TS packets, 1316 bytes) when more than 0: a message goes when the
	// next frame would not fit, or when its oldest frame has waited
	// MaxPackDelay (a timer sends it; no frame waits longer). Fewer
	// messages cost libsrt fewer wake-ups on both ends; each frame may
	// arrive up to MaxPackDelay later. 0 (the default) sends every frame
	// in its own message. At most MaxPackDelayLimit. Icecast ignores it.
	MaxPackDelay time.Duration

	// Queue is how many frames may wait for the connection (default 100,
	// about 2 s at 48 kHz). When it is full the oldest frame is dropped.
	Queue int
	// StallTimeout: a connection whose peer has acknowledged nothing for
	// this long while data was being sent is closed and redialled (default
	// 500 ms). SRT uses libsrt's ACK counter, Icecast the kernel's TCP
	// ACK clock (TCP_INFO).
	StallTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause between connection attempts
	// (default 100 ms and 5 s). It doubles per failure with ±20 % jitter
	// and is reset by a connection that lasted more than 10 s.
	MinBackoff, MaxBackoff time.Duration

	Log *slog.Logger
	// OnEvent receives connected, disconnected, connect-failed, ack-stall
	// and dropped events, one call at a time, from Run's goroutines. It
	// must not block.
	OnEvent func(Event)
}

// Defaults.
const (
	DefaultLatency        = 120 * time.Millisecond
	DefaultConnectTimeout = 3 * time.Second
	DefaultQueue          = 100
	DefaultStallTimeout   = 500 * time.Millisecond
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 5 * time.Second
	// StableAfter: a connection that lasted this long resets the backoff.
	StableAfter = 10 * time.Second
	// MaxPackDelayLimit bounds MaxPackDelay: a frame held longer would eat
	// most of the switcher's default hold (100 ms), its margin for jitter.
	MaxPackDelayLimit = 100 * time.Millisecond
	// DefaultIcecastPort is used when an icecast:// URL has no port.
	DefaultIcecastPort = 8000
)

// Protocols.
const (
	ProtoSRT     = "srt"
	ProtoIcecast = "icecast"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("sender: bad config")

// target is a parsed Dest.
type target struct {
	proto    string
	host     string // host name or IP literal, no brackets
	port     int
	streamID string // srt
	mount    string // icecast, starts with "/"
	user     string // icecast
	password string // icecast
	display  string // Dest without credentials, for logs and events
}

func (t target) hostPort() string { return net.JoinHostPort(t.host, strconv.Itoa(t.port)) }

func cfgErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

// validate fills defaults and checks every field; errors name the field.
func (c *Config) validate() (target, error) {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Latency == 0 {
		c.Latency = DefaultLatency
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Queue == 0 {
		c.Queue = DefaultQueue
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	switch {
	case c.Role != streamid.RolePrimary && c.Role != streamid.RoleFallback:
		return target{}, cfgErr("Role", "%q (want primary or fallback)", c.Role)
	case c.Latency < 0 || c.Latency > time.Minute:
		return target{}, cfgErr("Latency", "%v out of range (0..1m)", c.Latency)
	case c.ConnectTimeout < 0 || c.ConnectTimeout > time.Minute:
		return target{}, cfgErr("ConnectTimeout", "%v out of range (0..1m)", c.ConnectTimeout)
	case c.MaxPackDelay < 0 || c.MaxPackDelay > MaxPackDelayLimit:
		return target{}, cfgErr("MaxPackDelay", "%v out of range (0..%v)", c.MaxPackDelay, MaxPackDelayLimit)
	case c.Queue < 0:
		return target{}, cfgErr("Queue", "%d is negative", c.Queue)
	case c.StallTimeout < 0:
		return target{}, cfgErr("StallTimeout", "%v is negative", c.StallTimeout)
	case c.MinBackoff < 0 || c.MaxBackoff < 0:
		return target{}, cfgErr("MinBackoff/MaxBackoff", "negative (%v, %v)", c.MinBackoff, c.MaxBackoff)
	case c.MinBackoff > c.MaxBackoff:
		return target{}, cfgErr("MinBackoff", "%v is more than MaxBackoff %v", c.MinBackoff, c.MaxBackoff)
	}
	if c.Audio.Codec != media.CodecAAC {
		return target{}, cfgErr("Audio", "codec %v: only AAC is sent", c.Audio.Codec)
	}
	if _, err := adts.HeaderBytes(c.Audio, 1); err != nil {
		return target{}, cfgErr("Audio", "%v cannot be framed as ADTS: %v", c.Audio, err)
	}
	if c.LocalAddr != "" {
		if _, err := parseLocal(c.LocalAddr); err != nil {
			return target{}, cfgErr("LocalAddr", "%v", err)
		}
	}
	if len(c.Device) >= 16 || strings.ContainsAny(c.Device, "/ \t") {
		return target{}, cfgErr("Device", "%q is not an interface name", c.Device)
	}
	if c.Passphrase != "" && (len(c.Passphrase) < 10 || len(c.Passphrase) > 79) {
		return target{}, cfgErr("Passphrase", "must be 10..79 characters (got %d)", len(c.Passphrase))
	}
	return c.parseDest()
}

func parseLocal(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: want an IP address (\"ip\" or \"ip:port\")", s)
	}
	return netip.AddrPortFrom(a.Unmap(), 0), nil
}

func (c *Config) parseDest() (target, error) {
	if c.Dest == "" {
		return target{}, cfgErr("Dest", "empty (want srt://host:port or icecast://user:pass@host:port/mount)")
	}
	u, err := url.Parse(c.Dest)
	if err != nil {
		// url's error repeats the whole URL, password included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return target{}, cfgErr("Dest", "not a URL: %v", err)
	}
	t := target{proto: strings.ToLower(u.Scheme), host: u.Hostname()}
	t.display = u.Redacted()
	if t.host == "" {
		return target{}, cfgErr("Dest", "%s: no host", t.display)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return target{}, cfgErr("Dest", "%s: bad port %q", t.display, p)
		}
		t.port = n
	}
	switch t.proto {
	case ProtoSRT:
		if t.port == 0 {
			return target{}, cfgErr("Dest", "%s: srt needs a port", t.display)
		}
		if u.User != nil {
			return target{}, cfgErr("Dest", "%s: srt URLs take no user (use Passphrase)", t.display)
		}
		if u.Path != "" && u.Path != "/" {
			return target{}, cfgErr("Dest", "%s: srt URLs have no path (got %q)", t.display, u.Path)
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return target{}, cfgErr("Dest", "%s: query: %v", t.display, err)
		}
		for k := range q {
			if k != "streamid" {
				return target{}, cfgErr("Dest", "%s: unknown parameter %q (only streamid is understood)", t.display, k)
			}
		}
		if q.Has("streamid") {
			t.streamID = q.Get("streamid")
			if t.streamID == "" && u.Fragment != "" && strings.HasSuffix(u.RawQuery, "streamid=") {
				// "?streamid=#!::r=..." as pasted from ffmpeg examples: the
				// unescaped '#' made the id a URL fragment.
				t.streamID = "#" + u.Fragment
			}
			if t.streamID == "" || len(t.streamID) > 512 {
				return target{}, cfgErr("Dest", "%s: streamid must be 1..512 bytes", t.display)
			}
			return t, nil
		}
		id := streamid.ID{App: c.App, Name: c.Name, Mode: streamid.ModePublish, Role: c.Role, Session: c.Session, Key: c.Key}
		if c.App == "" || c.Name == "" {
			return target{}, cfgErr("App/Name", "required for %s without ?streamid=", t.display)
		}
		if strings.HasSuffix(c.Name, streamid.FallbackSuffix) {
			return target{}, cfgErr("Name", "%q: give the stream's name; Role says which feed this is", c.Name)
		}
		// String() says role=primary for a primary, so a primary that
		// reconnects while its old connection still holds the slot never
		// lands in the fallback slot.
		t.streamID = id.String()
		back, err := streamid.Parse(t.streamID)
		if err != nil {
			return target{}, cfgErr("App/Name/Session/Key", "%v", err)
		}
		if back.App != c.App || back.Name != c.Name || back.Session != c.Session || back.Key != c.Key || back.Role != c.Role {
			return target{}, cfgErr("Key", "%q cannot be carried in a stream id (',' or '=')", c.Key)
		}
		return t, nil
	case ProtoIcecast:
		if t.port == 0 {
			t.port = DefaultIcecastPort
		}
		if u.RawQuery != "" {
			return target{}, cfgErr("Dest", "%s: icecast URLs take no query", t.display)
		}
		t.user, t.password = "source", c.Passphrase
		if u.User != nil {
			if n := u.User.Username(); n != "" {
				t.user = n
			}
			if p, ok := u.User.Password(); ok {
				t.password = p
			}
		}
		if t.password == "" {
			return target{}, cfgErr("Dest", "%s: no password (icecast://source:PASSWORD@host:port/mount)", t.display)
		}
		t.mount = u.EscapedPath()
		if t.mount == "" || t.mount == "/" {
			if c.Name == "" {
				return target{}, cfgErr("Name", "required for %s without a mount", t.display)
			}
			name := c.Name
			if c.Role == streamid.RoleFallback {
				name += streamid.FallbackSuffix
			}
			t.mount = "/" + url.PathEscape(name) + ".aac"
			t.display = strings.TrimSuffix(t.display, "/") + t.mount
		}
		return t, nil
	case "":
		return target{}, cfgErr("Dest", "%s: no scheme (want srt:// or icecast://)", t.display)
	}
	return target{}, cfgErr("Dest", "%s: unknown scheme %q (want srt or icecast)", t.display, u.Scheme)
}
