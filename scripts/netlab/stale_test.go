package netlab

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// New removes the namespaces of labs whose owner died (here: a marker naming an
// exited process, and namespaces with no marker at all) and leaves live labs alone.
func TestNewRemovesStaleLabs(t *testing.T) {
	Require(t)
	ctx := context.Background()

	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadID, _ := newID()
	orphanID, _ := newID()
	liveID, _ := newID()
	if err := writeMarker(deadID, os.Getpid()); err != nil { // pid alive: fix it up below
		t.Fatal(err)
	}
	// Same format, but the pid of the exited process.
	if err := os.WriteFile(markerPath(deadID), []byte(strconv.Itoa(dead.Process.Pid)+" 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeMarker(liveID, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	var made []string
	for _, id := range []string{deadID, orphanID, liveID} {
		for _, s := range []string{"-app", "-cloud"} {
			ns := "tdm-" + id + s
			if err := run(ctx, "", "ip", "netns", "add", ns); err != nil {
				t.Fatal(err)
			}
			made = append(made, ns)
		}
	}
	t.Cleanup(func() {
		for _, ns := range made {
			deleteNS(ctx, ns)
		}
		for _, id := range []string{deadID, orphanID, liveID} {
			os.Remove(markerPath(id))
		}
	})

	New(t, Options{})

	list := netnsList(t)
	for _, id := range []string{deadID, orphanID} {
		for _, s := range []string{"-app", "-cloud"} {
			if hasNS(list, "tdm-"+id+s) {
				t.Errorf("stale namespace tdm-%s%s survived New", id, s)
			}
		}
		if _, err := os.Stat(markerPath(id)); !os.IsNotExist(err) {
			t.Errorf("stale marker %s survived New: %v", id, err)
		}
	}
	for _, s := range []string{"-app", "-cloud"} {
		if !hasNS(list, "tdm-"+liveID+s) {
			t.Errorf("live lab's namespace tdm-%s%s was removed", liveID, s)
		}
	}
}
