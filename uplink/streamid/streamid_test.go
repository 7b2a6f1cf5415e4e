package streamid

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want ID
	}{
		{"#!::r=live/x,m=publish", ID{App: "live", Name: "x", Mode: ModePublish, Role: RoleAny}},
		{"#!::r=live/x_fallback,m=publish,s=abc123,k=secret", ID{App: "live", Name: "x", Mode: ModePublish, Role: RoleFallback, Session: "abc123", Key: "secret"}},
		{"#!::m=publish,r=live/x,role=primary,t=stream,u=ignored", ID{App: "live", Name: "x", Mode: ModePublish, Role: RolePrimary}},
		{"#!::r=live/x", ID{App: "live", Name: "x", Mode: ModeRequest, Role: RoleAny}},
		{"live/x", ID{App: "live", Name: "x", Mode: ModePublish, Role: RoleAny}},
		{"#!::r=radio/morning-show_fallback,m=publish,role=fallback", ID{App: "radio", Name: "morning-show", Mode: ModePublish, Role: RoleFallback}},
	} {
		got, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("Parse(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

func TestParseErrorsNameTheProblem(t *testing.T) {
	for _, c := range []struct{ in, mention string }{
		{"", "empty"},
		{"#!::m=publish", "no resource"},
		{"#!::r=live,m=publish", "resource"},
		{"#!::r=live/x,m=play", "mode"},
		{"#!::r=live/x,m=publish,r=live/y", "twice"},
		{"#!::r=live/x,garbage", "key=value"},
		{"#!::r=live/x y,m=publish", "resource"},
		{"#!::r=live/_fallback,m=publish", "no name"},
		{"#!::r=live/x_fallback,role=primary,m=publish", "contradicts"},
		{"#!::r=live/x,s=has space", "session"},
		{"#!::r=live/x,m=publish," + strings.Repeat("a", 600), "longer"},
	} {
		_, err := Parse(c.in)
		if err == nil {
			t.Errorf("Parse(%q) accepted", c.in)
			continue
		}
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("Parse(%q) = %v, want ErrMalformed mentioning %q", c.in, err, c.mention)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	id := ID{App: "live", Name: "x", Mode: ModePublish, Role: RoleFallback, Session: "s1", Key: "k"}
	got, err := Parse(id.String())
	if err != nil || got != id {
		t.Fatalf("round trip %q -> %+v, %v", id.String(), got, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("#!::r=live/x_fallback,m=publish,s=abc,k=secret")
	f.Add("live/x")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(id.String())
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", id.String(), s, err)
		}
		if again.Stream() != id.Stream() || again.Role != id.Role && id.Role != RoleAny {
			t.Fatalf("round trip changed %+v to %+v", id, again)
		}
	})
}
