package srt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
)

func TestListenAddrForms(t *testing.T) {
	cases := []struct {
		listen string
		dial   []string // "%d" is the port
	}{
		{":0", []string{"127.0.0.1:%d", "localhost:%d"}},
		{"127.0.0.1:0", []string{"127.0.0.1:%d"}},
		{"[::]:0", []string{"[::1]:%d", "127.0.0.1:%d"}}, // dual stack
	}
	for _, tc := range cases {
		l, err := Listen(tc.listen, ListenConfig{})
		if err != nil {
			if strings.Contains(tc.listen, "::") {
				t.Logf("no IPv6 here? %v", err)
				continue
			}
			t.Fatalf("Listen %s: %v", tc.listen, err)
		}
		port := l.Addr().(*net.UDPAddr).Port
		if port == 0 {
			t.Errorf("Listen %s: Addr %v has no port", tc.listen, l.Addr())
		}
		for _, d := range tc.dial {
			addr := fmt.Sprintf(d, port)
			ch := acceptOne(t, l)
			c, err := Dial(context.Background(), addr, Options{})
			if err != nil {
				t.Errorf("listen %s, dial %s: %v", tc.listen, addr, err)
				<-ch // Accept times out
				continue
			}
			s := <-ch
			if s == nil || s.RemoteAddr().(*net.UDPAddr).Port != c.LocalAddr().(*net.UDPAddr).Port {
				t.Errorf("listen %s, dial %s: accepted %v", tc.listen, addr, s)
			}
			t.Logf("listen %s (%v), dial %s: ok, %v -> %v", tc.listen, l.Addr(), addr, c.LocalAddr(), c.RemoteAddr())
			c.Close()
			if s != nil {
				s.Close()
			}
		}
		l.Close()
	}
	for _, bad := range []string{"9000", "host:9000", "127.0.0.1:x"} {
		if l, err := Listen(bad, ListenConfig{}); err == nil {
			l.Close()
			t.Errorf("Listen %q accepted", bad)
		}
	}
	for _, bad := range []string{"127.0.0.1", "127.0.0.1:0", ":9000", "no-such-host.invalid:9000"} {
		c, err := Dial(context.Background(), bad, Options{})
		if err == nil {
			c.Close()
			t.Errorf("Dial %q accepted", bad)
			continue
		}
		t.Logf("Dial %q: %v", bad, err)
		if !strings.HasPrefix(err.Error(), "srt dial "+bad) {
			t.Errorf("Dial %q: error does not name the action: %v", bad, err)
		}
	}
}

func TestErrorClassification(t *testing.T) {
	cases := []struct {
		err  *Error
		is   []error
		isnt []error
	}{
		{&Error{Op: "read", Code: 2001}, []error{ErrConnectionLost}, []error{ErrClosed, ErrTimeout, ErrRejected}},
		{&Error{Op: "read", Code: 2002}, []error{ErrConnectionLost}, nil},
		{&Error{Op: "read", Code: 5004}, []error{ErrClosed}, []error{ErrConnectionLost}},
		{&Error{Op: "write", Code: 6001}, []error{ErrSendBufferFull}, []error{ErrConnectionLost}},
		{&Error{Op: "connect x", Code: 1001, Reject: RejectTimeoutHS}, []error{ErrTimeout}, []error{ErrRejected}},
		{&Error{Op: "connect x", Code: 1002, Reject: RejectBadSecret}, []error{ErrRejected, ErrBadPassphrase}, []error{ErrTimeout}},
		{&Error{Op: "connect x", Code: 1002, Reject: RejectUnsecure}, []error{ErrRejected, ErrBadPassphrase}, nil},
		{&Error{Op: "connect x", Code: 1002, Reject: RejectConflict}, []error{ErrRejected}, []error{ErrBadPassphrase}},
	}
	for _, tc := range cases {
		wrapped := fmt.Errorf("outer: %w", tc.err)
		for _, target := range tc.is {
			if !errors.Is(wrapped, target) {
				t.Errorf("%v should match %v", tc.err, target)
			}
		}
		for _, target := range tc.isnt {
			if errors.Is(wrapped, target) {
				t.Errorf("%v should not match %v", tc.err, target)
			}
		}
		var se *Error
		if !errors.As(wrapped, &se) || se != tc.err {
			t.Errorf("errors.As failed for %v", tc.err)
		}
		if errors.Is(wrapped, io.EOF) {
			t.Errorf("%v matches io.EOF", tc.err)
		}
	}
	if got := (&Error{Op: "connect 1.2.3.4:5", Code: 1002, Reject: 1401}).Error(); !strings.HasPrefix(got, "srt connect 1.2.3.4:5: rejected: 1401 unauthorized (") {
		t.Errorf("format: %s", got)
	}
	if got := (&RejectError{Code: 1404, Reason: "no stream x"}).Error(); got != "srt: refused: 1404 not found: no stream x" {
		t.Errorf("RejectError format: %s", got)
	}
}
