package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Destination schemes.
const (
	SchemeSRT     = "srt"
	SchemeIcecast = "icecast"
)

// Dest is a parsed feed destination.
type Dest struct {
	Scheme string // "srt" or "icecast"
	Host   string
	Port   int
	// User and Password are the icecast source credentials.
	User, Password string
	// Mount is the icecast mount ("/x.aac"), empty for the default
	// (see Config.Mount).
	Mount string
}

// Addr is host:port.
func (d Dest) Addr() string { return net.JoinHostPort(d.Host, strconv.Itoa(d.Port)) }

// ParseDest reads srt://host:port or icecast://user:pass@host:port[/mount].
// Errors never contain the password.
func ParseDest(s string) (Dest, error) {
	if s == "" {
		return Dest{}, errors.New("must not be empty (srt://host:port or icecast://user:pass@host:port[/mount])")
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Parse's error quotes the input: it may hold a password.
		return Dest{}, fmt.Errorf("%s is not a URL (srt://host:port or icecast://user:pass@host:port[/mount])", RedactURL(s))
	}
	d := Dest{Scheme: u.Scheme, Host: u.Hostname()}
	shown := RedactURL(s)
	switch u.Scheme {
	case SchemeSRT, SchemeIcecast:
	default:
		return Dest{}, fmt.Errorf("%s: scheme %q is not srt or icecast", shown, u.Scheme)
	}
	if u.Opaque != "" || d.Host == "" {
		return Dest{}, fmt.Errorf("%s: no host (want %s://host:port)", shown, u.Scheme)
	}
	p := u.Port()
	if p == "" {
		return Dest{}, fmt.Errorf("%s: no port (want %s://host:port)", shown, u.Scheme)
	}
	d.Port, err = strconv.Atoi(p)
	if err != nil || d.Port < 1 || d.Port > 65535 {
		return Dest{}, fmt.Errorf("%s: port %q is not 1-65535", shown, p)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Dest{}, fmt.Errorf("%s: query and fragment are not used (the stream id, latency and passphrase come from device_id, app, key, latency and passphrase)", shown)
	}
	switch u.Scheme {
	case SchemeSRT:
		if u.User != nil {
			return Dest{}, fmt.Errorf("%s: srt takes no user (set key and passphrase instead)", shown)
		}
		if u.Path != "" && u.Path != "/" {
			return Dest{}, fmt.Errorf("%s: srt takes no path (the stream id is built from app and device_id)", shown)
		}
	case SchemeIcecast:
		pw, ok := u.User.Password()
		if u.User == nil || !ok || pw == "" || u.User.Username() == "" {
			return Dest{}, fmt.Errorf("%s: needs a source user and password (icecast://source:PASSWORD@host:port)", shown)
		}
		d.User, d.Password = u.User.Username(), pw
		if u.Path != "" && u.Path != "/" {
			if strings.HasSuffix(u.Path, "/") {
				return Dest{}, fmt.Errorf("%s: mount %q must not end with /", shown, u.Path)
			}
			d.Mount = u.Path
		}
	}
	return d, nil
}

// RedactURL replaces the password of a URL, if it has one. Anything that
// does not parse is returned with everything between "://" and "@"
// hidden.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err == nil {
		return u.Redacted()
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return scheme + "://" + redacted + rest[at:]
	}
	return s
}

// Mount is the icecast mount a feed publishes to: the one in its dest, or
// /<device_id>.aac and /<device_id>_fallback.aac.
func (c Config) Mount(role string) string {
	f, _ := c.Feed(role)
	if d, err := ParseDest(f.Dest); err == nil && d.Mount != "" {
		return d.Mount
	}
	return "/" + c.StreamName(role) + ".aac"
}
