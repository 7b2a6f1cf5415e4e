package netns_test

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"tandem/hal/netns"
)

// interfaceNames lists the interfaces the calling thread sees.
func interfaceNames() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	return names, nil
}

func TestDo(t *testing.T) {
	// No namespace: fn runs as it is, its error comes back.
	want := errors.New("from fn")
	if err := netns.Do("", func() error { return want }); err != want {
		t.Errorf("Do(\"\") returned %v, want fn's error", err)
	}
	err := netns.Do("/nonexistent/netns", func() error { t.Error("fn ran without its namespace"); return nil })
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/netns") {
		t.Errorf("a missing namespace: %v, want an error naming its path", err)
	}

	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("entering a network namespace needs root, and CI runs as root")
		}
		t.Skip("entering a network namespace needs root")
	}
	name := "tdm-netns-test"
	exec.Command("ip", "netns", "del", name).Run() // a crashed run's leftover
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })

	outside, err := interfaceNames()
	if err != nil {
		t.Fatal(err)
	}
	var inside []string
	if err := netns.Do("/run/netns/"+name, func() error {
		var err error
		inside, err = interfaceNames()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(inside) != 1 || inside[0] != "lo" {
		t.Errorf("inside a new namespace fn sees %v, want only lo", inside)
	}
	after, err := interfaceNames()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(after, ",") != strings.Join(outside, ",") {
		t.Errorf("after Do the process sees %v, before %v", after, outside)
	}
}
