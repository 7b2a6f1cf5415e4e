// Command tandem is the appliance: `tandem run` is the daemon, the other
// commands are for the engineer over SSH (see package firmware/cli).
package main

import (
	"os"

	"tandem/firmware/cli"
	"tandem/firmware/daemon"
)

func main() {
	os.Exit(cli.Program{
		Run:     daemon.Run,
		Environ: os.Environ(),
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
	}.Main(os.Args[1:]))
}
