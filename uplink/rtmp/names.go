package rtmp

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// splitQuery splits "name?query" into the name and its parsed query. A
// malformed query is kept as far as it parses.
func splitQuery(s string) (string, url.Values) {
	name, q, ok := strings.Cut(s, "?")
	if !ok {
		return s, url.Values{}
	}
	v, _ := url.ParseQuery(q)
	if v == nil {
		v = url.Values{}
	}
	return name, v
}

// rtmpURL is a parsed rtmp:// or rtmps:// publish URL.
type rtmpURL struct {
	scheme string
	addr   string // host:port
	host   string // for TLS server name
	app    string
	name   string // stream name, with its query
	tcURL  string
}

// parseURL parses rtmp[s]://host[:port]/app/stream[?query]. The first path
// segment is the application; the rest (which may contain slashes) and
// the query form the stream name, as FFmpeg splits it.
func parseURL(s string) (rtmpURL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return rtmpURL{}, fmt.Errorf("rtmp: URL %q: %w", s, err)
	}
	var r rtmpURL
	r.scheme = strings.ToLower(u.Scheme)
	port := "1935"
	switch r.scheme {
	case "rtmp":
	case "rtmps":
		port = "443"
	default:
		return r, fmt.Errorf("rtmp: URL %q: scheme %q, want rtmp or rtmps", s, u.Scheme)
	}
	if u.Hostname() == "" {
		return r, fmt.Errorf("rtmp: URL %q has no host", s)
	}
	r.host = u.Hostname()
	if p := u.Port(); p != "" {
		port = p
	}
	r.addr = net.JoinHostPort(r.host, port)
	path := strings.TrimPrefix(u.Path, "/")
	app, name, _ := strings.Cut(path, "/")
	if app == "" || name == "" {
		return r, fmt.Errorf("rtmp: URL %q needs an application and a stream name: rtmp://host[:port]/app/stream", s)
	}
	r.app = app
	r.name = name
	if u.RawQuery != "" {
		r.name += "?" + u.RawQuery
	}
	r.tcURL = r.scheme + "://" + u.Host + "/" + app
	return r, nil
}

// redact shortens a stream name for logs and errors: platforms use the
// stream key as the name (rtmp://host/live2/<key>), and a query may hold
// one too. The query is dropped and names longer than 8 characters keep
// their first 4.
func redact(name string) string {
	name, _, _ = strings.Cut(name, "?")
	if len(name) > 8 {
		return fmt.Sprintf("%q", name[:4]+"…")
	}
	return fmt.Sprintf("%q", name)
}
