// Package version is the appliance firmware's version, set at build time:
//
//	go build -ldflags "-X tandem/firmware/version.Version=1.2.3" ./firmware/cmd/tandem
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is the release; "dev" for a build without -ldflags.
var Version = "dev"

// String is the version with the Go release and, when the build recorded
// it, the source revision: "dev (go1.26.8, rev 69cc9eb+dirty)".
func String() string {
	s := Version + " (" + runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.modified":
				if kv.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if rev != "" {
			s += ", rev " + rev[:min(len(rev), 12)] + dirty
		}
	}
	return s + ")"
}
