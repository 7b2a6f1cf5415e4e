// Package streamid reads and writes Tandem's SRT stream ids.
//
// The convention uses SRT's access-control syntax ("#!::" followed by
// comma-separated key=value pairs) with these keys:
//
//	r     resource "<app>/<name>" (required). A name ending in "_fallback"
//	      is the fallback input of stream "<app>/<name without the suffix>".
//	m     mode: "publish" to feed the switcher, "request" to pull from it.
//	s     capture session id. Two inputs of one stream that carry the same
//	      session share one timeline and are merged frame by frame
//	      (aligned mode); inputs without it are spliced.
//	k     the stream's publish key, when the switcher requires one.
//	role  "primary" or "fallback"; optional, must agree with the name.
//
// Unknown keys are ignored, as the access-control specification asks. A
// bare "<app>/<name>" (no "#!::") is read as a resource with mode publish,
// for encoders that can only send a path.
package streamid

import (
	"errors"
	"fmt"
	"strings"
)

// FallbackSuffix marks the fallback input of a stream.
const FallbackSuffix = "_fallback"

// Role is an input's place in its stream.
type Role string

const (
	RolePrimary  Role = "primary"
	RoleFallback Role = "fallback"
	// RoleAny is a publisher that did not say: it takes the primary slot if
	// free, else the fallback slot (two publishers on one name pair up).
	RoleAny Role = ""
)

// Mode is what the caller wants to do.
type Mode string

const (
	ModePublish Mode = "publish"
	ModeRequest Mode = "request"
)

// ID is a parsed stream id.
type ID struct {
	App     string
	Name    string // the stream's name, without the fallback suffix
	Mode    Mode
	Role    Role
	Session string
	Key     string
}

// Stream is the logical stream's path "<app>/<name>".
func (id ID) Stream() string { return id.App + "/" + id.Name }

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed stream id")

const maxLen = 512

// Parse reads a stream id.
func Parse(s string) (ID, error) {
	if len(s) > maxLen {
		return ID{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, maxLen)
	}
	if s == "" {
		return ID{}, fmt.Errorf("%w: empty (expected #!::r=<app>/<name>,m=publish)", ErrMalformed)
	}
	id := ID{}
	if !strings.HasPrefix(s, "#!::") {
		id.Mode = ModePublish
		if err := id.setResource(s); err != nil {
			return ID{}, err
		}
		return id, nil
	}
	var resource string
	seen := map[string]bool{}
	for _, kv := range strings.Split(s[4:], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return ID{}, fmt.Errorf("%w: %q is not key=value", ErrMalformed, kv)
		}
		if seen[k] {
			return ID{}, fmt.Errorf("%w: key %q given twice", ErrMalformed, k)
		}
		seen[k] = true
		switch k {
		case "r":
			resource = v
		case "m":
			switch Mode(v) {
			case ModePublish, ModeRequest:
				id.Mode = Mode(v)
			default:
				return ID{}, fmt.Errorf("%w: mode m=%q (want publish or request)", ErrMalformed, v)
			}
		case "s":
			if !validToken(v) {
				return ID{}, fmt.Errorf("%w: session s=%q (want 1-64 letters, digits, '-' or '_')", ErrMalformed, v)
			}
			id.Session = v
		case "k":
			id.Key = v
		case "role":
			switch Role(v) {
			case RolePrimary, RoleFallback:
				id.Role = Role(v)
			default:
				return ID{}, fmt.Errorf("%w: role=%q (want primary or fallback)", ErrMalformed, v)
			}
		}
	}
	if !seen["r"] {
		return ID{}, fmt.Errorf("%w: no resource (r=<app>/<name>)", ErrMalformed)
	}
	if id.Mode == "" {
		// The access-control specification's default mode.
		id.Mode = ModeRequest
	}
	explicit := id.Role
	if err := id.setResource(resource); err != nil {
		return ID{}, err
	}
	if explicit != RoleAny && id.Role != RoleAny && explicit != id.Role {
		return ID{}, fmt.Errorf("%w: role=%s contradicts the name %q", ErrMalformed, explicit, resource)
	}
	if explicit != RoleAny {
		id.Role = explicit
	}
	return id, nil
}

func (id *ID) setResource(r string) error {
	app, name, ok := strings.Cut(r, "/")
	if !ok || !validToken(app) || !validToken(name) {
		return fmt.Errorf("%w: resource %q (want <app>/<name> of letters, digits, '-' or '_')", ErrMalformed, r)
	}
	id.App = app
	id.Role = RoleAny
	if base, ok := strings.CutSuffix(name, FallbackSuffix); ok {
		if base == "" {
			return fmt.Errorf("%w: resource %q has no name before %s", ErrMalformed, r, FallbackSuffix)
		}
		name = base
		id.Role = RoleFallback
	}
	id.Name = name
	return nil
}

func validToken(s string) bool {
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

// String writes the id in the access-control syntax. A fallback input is
// written with the "_fallback" name, which every publisher understands; a
// primary says role=primary.
func (id ID) String() string {
	var b strings.Builder
	b.WriteString("#!::r=")
	b.WriteString(id.App)
	b.WriteByte('/')
	b.WriteString(id.Name)
	if id.Role == RoleFallback {
		b.WriteString(FallbackSuffix)
	}
	mode := id.Mode
	if mode == "" {
		mode = ModePublish
	}
	b.WriteString(",m=")
	b.WriteString(string(mode))
	if id.Session != "" {
		b.WriteString(",s=")
		b.WriteString(id.Session)
	}
	if id.Key != "" {
		b.WriteString(",k=")
		b.WriteString(id.Key)
	}
	if id.Role == RolePrimary {
		// Explicit, so a reconnecting primary can never be taken for a
		// second publisher and land in the fallback slot.
		b.WriteString(",role=primary")
	}
	return b.String()
}
