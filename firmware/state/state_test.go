package state

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The kill -9 test re-runs this test binary as a child that appends events
// in a loop; these variables tell it so.
const (
	childEnv      = "TANDEM_TEST_STATE_CHILD" // the database path
	childKeepEnv  = "TANDEM_TEST_STATE_KEEP"
	childEveryEnv = "TANDEM_TEST_STATE_EVERY"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(appendForever(path))
	}
	os.Exit(m.Run())
}

// appendForever appends events and writes each committed seq on its own
// line, until it is killed.
func appendForever(path string) int {
	keep, _ := strconv.ParseUint(os.Getenv(childKeepEnv), 10, 64)
	every, _ := strconv.ParseUint(os.Getenv(childEveryEnv), 10, 64)
	if keep == 0 {
		keep, every = MaxEvents, trimEvery
	}
	s, err := open(path, keep, every)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 3
	}
	for i := 0; ; i++ {
		seq, err := s.Append(Event{Kind: KindReconnect, Subject: "feed primary", Reason: fmt.Sprintf("child append %d", i)})
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 4
		}
		// os.Stdout is unbuffered: the line is out before the next append.
		fmt.Printf("%d\n", seq)
	}
}

func TestKill9KeepsEveryCommittedEvent(t *testing.T) {
	for _, tc := range []struct {
		name        string
		keep, every uint64
	}{
		{"no-trim", 0, 0},
		{"trimming", 40, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sub", "tandem.db")
			var all []uint64
			for round := range 3 {
				reported := killChildAfter(t, path, tc.keep, tc.every, 30+round*37)
				if len(reported) == 0 {
					t.Fatalf("round %d: the child reported nothing", round)
				}
				all = append(all, reported...)

				s, err := Open(path)
				if err != nil {
					t.Fatalf("round %d: reopen after kill -9: %v", round, err)
				}
				evs, err := s.Events(0, 0)
				s.Close()
				if err != nil {
					t.Fatal(err)
				}
				have := map[uint64]bool{}
				for i, e := range evs {
					have[e.Seq] = true
					if i > 0 && e.Seq != evs[i-1].Seq+1 {
						t.Fatalf("round %d: events jump from %d to %d", round, evs[i-1].Seq, e.Seq)
					}
				}
				last := all[len(all)-1]
				newest := evs[len(evs)-1].Seq
				// The child may have committed one more than it printed.
				if newest != last && newest != last+1 {
					t.Fatalf("round %d: newest event %d, child reported %d", round, newest, last)
				}
				missing := 0
				for _, seq := range all {
					if tc.keep != 0 && seq+tc.keep <= last {
						continue // trimmed on purpose
					}
					if !have[seq] {
						missing++
						t.Errorf("round %d: reported seq %d is missing", round, seq)
					}
				}
				if tc.keep != 0 && uint64(len(evs)) > tc.keep+tc.every {
					t.Errorf("round %d: %d events kept, want at most %d", round, len(evs), tc.keep+tc.every)
				}
				t.Logf("round %d: child reported %d (up to seq %d) before SIGKILL; %d events in the reopened db, %d missing", round, len(reported), last, len(evs), missing)
			}
		})
	}
}

// killChildAfter runs the appending child against path, SIGKILLs it once
// it has reported n events, and returns every seq it reported.
func killChildAfter(t *testing.T, path string, keep, every uint64, n int) []uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path,
		fmt.Sprintf("%s=%d", childKeepEnv, keep), fmt.Sprintf("%s=%d", childEveryEnv, every))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var seqs []uint64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		seq, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			// A line cut by the kill is not a report.
			continue
		}
		seqs = append(seqs, seq)
		if len(seqs) == n && !killed {
			// Mid-loop: the child is inside its next transaction.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed by SIGKILL; stderr: %s", err, stderr.String())
	}
	if !killed {
		t.Fatalf("child reported only %d events; stderr: %s", len(seqs), stderr.String())
	}
	return seqs
}

func TestEventsPaging(t *testing.T) {
	s := openTemp(t)
	t0 := time.Date(2025, 11, 21, 11, 7, 0, 0, time.UTC)
	for i := 1; i <= 25; i++ {
		seq, err := s.Append(Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: KindLinkDown, Subject: "link b", Reason: fmt.Sprint("r", i)})
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i) {
			t.Fatalf("seq %d, want %d", seq, i)
		}
	}
	seqs := func(evs []Event) string {
		var s []string
		for _, e := range evs {
			s = append(s, fmt.Sprint(e.Seq))
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		since uint64
		limit int
		want  string
	}{
		{0, 3, "1,2,3"},
		{10, 3, "11,12,13"},
		{23, 10, "24,25"},
		{25, 10, ""},
		{0, -3, "23,24,25"},
		{23, -5, "24,25"},
		{20, 0, "21,22,23,24,25"},
		{^uint64(0), 5, ""},
	} {
		evs, err := s.Events(tc.since, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqs(evs); got != tc.want {
			t.Errorf("Events(%d, %d) = %s, want %s", tc.since, tc.limit, got, tc.want)
		}
	}
	evs, _ := s.Events(4, 1)
	if e := evs[0]; !e.Time.Equal(t0.Add(5*time.Second)) || e.Kind != KindLinkDown || e.Subject != "link b" || e.Reason != "r5" {
		t.Errorf("event 5 read back as %+v", e)
	}
	// Append stamps a zero time.
	before := time.Now()
	seq, _ := s.Append(Event{Kind: KindStart})
	evs, _ = s.Events(seq-1, 1)
	if evs[0].Time.Before(before) {
		t.Errorf("Append left time %v, want now", evs[0].Time)
	}
}

func TestTrimKeepsNewest(t *testing.T) {
	s, err := open(filepath.Join(t.TempDir(), "tandem.db"), 20, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 203 {
		if _, err := s.Append(Event{Kind: KindReconnect}); err != nil {
			t.Fatal(err)
		}
	}
	evs, _ := s.Events(0, 0)
	if len(evs) < 20 || len(evs) > 25 {
		t.Fatalf("%d events kept, want 20..25", len(evs))
	}
	if evs[len(evs)-1].Seq != 203 || evs[0].Seq != 203-uint64(len(evs))+1 {
		t.Fatalf("kept %d..%d", evs[0].Seq, evs[len(evs)-1].Seq)
	}
}

func TestConfigRoundTrip(t *testing.T) {
	s := openTemp(t)
	if _, err := s.LoadConfig(); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("LoadConfig on a new store: %v, want ErrNoConfig", err)
	}
	if err := s.SaveConfig([]byte("{not json")); err == nil {
		t.Fatal("SaveConfig accepted invalid JSON")
	}
	want := `{"device_id":"studio1"}`
	if err := s.SaveConfig([]byte(want)); err != nil {
		t.Fatal(err)
	}
	path := s.Path()
	s.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.LoadConfig()
	if err != nil || string(got) != want {
		t.Fatalf("LoadConfig = %q, %v; want %q", got, err, want)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	old := lockTimeout
	lockTimeout = 100 * time.Millisecond
	defer func() { lockTimeout = old }()
	s := openTemp(t)
	_, err := Open(s.Path())
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), s.Path()) {
		t.Fatalf("second Open: %v, want ErrLocked naming the file", err)
	}
}

func TestTruncatedFileIsCorruptAndRecovers(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(size int64) int64
	}{
		{"half", func(size int64) int64 { return size / 2 }},
		{"three-pages", func(int64) int64 { return 3 * 4096 }},
		{"tiny", func(int64) int64 { return 100 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tandem.db")
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 250 {
				if _, err := s.Append(Event{Kind: KindReconnect, Reason: strings.Repeat("x", 2000+i)}); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, tc.cut(fi.Size())); err != nil {
				t.Fatal(err)
			}
			expectCorruptThenRecover(t, path)
		})
	}
}

func TestGarbageFileIsCorruptAndRecovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tandem.db")
	garbage := []byte(strings.Repeat("this is not a bolt database\n", 2000))
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	expectCorruptThenRecover(t, path)
}

func TestOverwrittenPagesAreCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tandem.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		s.Append(Event{Kind: KindReconnect, Reason: strings.Repeat("some reason text ", 100)})
	}
	s.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Scribble over the data pages, leaving the meta pages (0 and 1).
	fi, _ := f.Stat()
	junk := []byte(strings.Repeat("\xff\x00\x13", 4096/3+1))[:4096]
	for off := int64(2 * 4096); off < fi.Size(); off += 4096 {
		f.WriteAt(junk, off)
	}
	f.Close()
	expectCorruptThenRecover(t, path)
}

func expectCorruptThenRecover(t *testing.T, path string) {
	t.Helper()
	_, err := Open(path)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a damaged file: %v, want ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	t.Logf("Open: %v", err)
	moved, err := Recover(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(moved); err != nil || !strings.HasPrefix(moved, path+".corrupt-") {
		t.Fatalf("Recover moved it to %q (%v)", moved, err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open after Recover: %v", err)
	}
	defer s.Close()
	if seq, err := s.Append(Event{Kind: KindStart}); err != nil || seq != 1 {
		t.Fatalf("fresh store: Append = %d, %v", seq, err)
	}
}

func TestRecoverMissingFile(t *testing.T) {
	if _, err := Recover(filepath.Join(t.TempDir(), "nope.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Recover of a missing file: %v, want ErrNotExist", err)
	}
}

func TestEmptyFileStartsFresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tandem.db")
	os.WriteFile(path, nil, 0o600)
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open of an empty file (crash during creation): %v", err)
	}
	s.Close()
}

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "tandem.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
