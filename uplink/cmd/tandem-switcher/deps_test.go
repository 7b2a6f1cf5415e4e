package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The appliance and the switcher do not link each other's private
// packages: the switcher binary must not contain hal, capture or firmware
// code, and the appliance binary must not contain the switcher.
func TestBinariesLinkOnlyTheirOwnSide(t *testing.T) {
	for _, c := range []struct {
		binary    string
		forbidden []string
	}{
		{"tandem/uplink/cmd/tandem-switcher", []string{"tandem/hal", "tandem/capture", "tandem/firmware", "tandem/uplink/sender"}},
		{"tandem/firmware/cmd/tandem", []string{"tandem/uplink/switcher"}},
	} {
		out, err := exec.Command("go", "list", "-deps", c.binary).CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "cannot find package") || strings.Contains(string(out), "no Go files") || strings.Contains(string(out), "is not in std") {
				t.Logf("%s not built yet: %s", c.binary, strings.TrimSpace(string(out)))
				continue
			}
			t.Fatalf("go list -deps %s: %v\n%s", c.binary, err, out)
		}
		for _, pkg := range strings.Fields(string(out)) {
			for _, f := range c.forbidden {
				if pkg == f || strings.HasPrefix(pkg, f+"/") {
					t.Errorf("%s links %s", c.binary, pkg)
				}
			}
		}
	}
}
