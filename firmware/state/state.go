// Package state is the appliance's durable state: the last good config and
// the event log, in one bbolt database (<state_dir>/tandem.db).
//
// Every write is a bbolt transaction committed with fsync before it
// returns, so an event that Append has returned survives kill -9 and power
// loss. The log keeps the newest MaxEvents events.
package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MaxEvents is how many events the log keeps.
const MaxEvents = 100_000

// trimEvery is how often (in appended events) the log drops its oldest.
const trimEvery = 1000

// Event kinds.
const (
	KindStart          = "start"
	KindStop           = "stop"
	KindConfig         = "config"
	KindLinkUp         = "link-up"
	KindLinkDown       = "link-down"
	KindEncoderRestart = "encoder-restart"
	KindReconnect      = "reconnect"
	KindCaptureReopen  = "capture-reopen"
)

// Event is one entry of the event log.
type Event struct {
	// Seq is assigned by Append: 1, 2, 3... in the order of appends.
	Seq uint64 `json:"seq"`
	// Time is when it happened; Append sets it to now if it is zero.
	Time time.Time `json:"time"`
	// Kind is one of the Kind constants (others are allowed).
	Kind string `json:"kind"`
	// Subject is what it happened to: "feed primary", "link a".
	Subject string `json:"subject,omitempty"`
	// Reason is why, in words a person can act on.
	Reason string `json:"reason,omitempty"`
}

var (
	// ErrCorrupt is wrapped by Open when the file is not a readable
	// database (truncated, overwritten, not bbolt). Recover moves it aside.
	ErrCorrupt = errors.New("state database is corrupt")
	// ErrLocked is wrapped by Open when another process holds the
	// database (another tandem daemon).
	ErrLocked = errors.New("state database is in use by another process")
	// ErrNoConfig is returned by LoadConfig when no config was saved.
	ErrNoConfig = errors.New("no config saved")
)

var (
	bucketEvents = []byte("events")
	bucketConfig = []byte("config")
	keyLastGood  = []byte("last-good")
)

// Store is the open state database. Its methods are safe for concurrent
// use (bbolt serialises writers).
type Store struct {
	db   *bolt.DB
	path string
	// keep and every are MaxEvents and trimEvery (smaller in tests).
	keep, every uint64
}

// lockTimeout is how long Open waits for another process's lock.
var lockTimeout = 2 * time.Second

// Open opens or creates the database at path, creating its directory. A
// file that is not a sound database fails with an error that wraps
// ErrCorrupt and names the file; one held by another process wraps
// ErrLocked.
func Open(path string) (*Store, error) {
	return open(path, MaxEvents, trimEvery)
}

func open(path string, keep, every uint64) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("state: create directory: %w", err)
	}
	if err := check(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return nil, openError(path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEvents, bucketConfig} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("state %s: initialise: %w", path, err)
	}
	return &Store{db: db, path: path, keep: keep, every: every}, nil
}

func openError(path string, err error) error {
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return fmt.Errorf("state %s: %w (is another tandem daemon running?)", path, ErrLocked)
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrVersionMismatch), errors.Is(err, bolt.ErrChecksum):
		return fmt.Errorf("state %s: %w: %v", path, ErrCorrupt, err)
	case errors.Is(err, os.ErrPermission), errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("state: open: %w", err)
	}
	// bbolt's other open errors ("file size too small", bad page
	// references) are all about the file's contents.
	return fmt.Errorf("state %s: %w: %v", path, ErrCorrupt, err)
}

// check opens an existing file read-only and verifies it before the
// read-write open: bbolt maps the file and trusts its pages, so a
// truncated file would otherwise crash the daemon with SIGBUS on first
// access instead of failing with an error.
func check(path string) (err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if fi.Size() == 0 {
		return nil // a crash during creation; bbolt initialises it
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("state %s: %w: not a regular file", path, ErrCorrupt)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		return openError(path, err)
	}
	defer db.Close()
	// A fault reading a mapped page beyond the end of the file becomes a
	// panic here instead of killing the process.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("state %s: %w: %v", path, ErrCorrupt, r)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		if need := tx.Size(); need > fi.Size() {
			return fmt.Errorf("state %s: %w: the file is %d bytes but its pages reach %d (truncated)", path, ErrCorrupt, fi.Size(), need)
		}
		for cerr := range tx.Check() {
			// Drain the channel so Check's goroutine ends.
			if err == nil {
				err = fmt.Errorf("state %s: %w: %v", path, ErrCorrupt, cerr)
			}
		}
		if err != nil {
			return err
		}
		// Read every event: what Check verifies is the page structure,
		// not that the values decode.
		if b := tx.Bucket(bucketEvents); b != nil {
			return b.ForEach(func(k, v []byte) error {
				if len(k) != 8 {
					return fmt.Errorf("state %s: %w: event key of %d bytes", path, ErrCorrupt, len(k))
				}
				var e Event
				if err := json.Unmarshal(v, &e); err != nil {
					return fmt.Errorf("state %s: %w: event %d: %v", path, ErrCorrupt, binary.BigEndian.Uint64(k), err)
				}
				return nil
			})
		}
		return nil
	})
}

// Recover moves a corrupt database aside (to <path>.corrupt-<time>) so the
// next Open starts a fresh one, and returns where it went.
func Recover(path string) (movedTo string, err error) {
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("state: recover: %w", err)
	}
	movedTo = fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405.000Z"))
	if err := os.Rename(path, movedTo); err != nil {
		return "", fmt.Errorf("state: recover: %w", err)
	}
	return movedTo, nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("state: close: %w", err)
	}
	return nil
}

// SaveConfig stores c (JSON) as the last good config.
func (s *Store) SaveConfig(c []byte) error {
	if !json.Valid(c) {
		return errors.New("state: save config: not valid JSON")
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketConfig).Put(keyLastGood, c)
	})
	if err != nil {
		return fmt.Errorf("state: save config: %w", err)
	}
	return nil
}

// LoadConfig returns the last good config, or ErrNoConfig.
func (s *Store) LoadConfig() ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketConfig).Get(keyLastGood); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: load config: %w", err)
	}
	if out == nil {
		return nil, ErrNoConfig
	}
	return out, nil
}

// Append adds an event and returns its sequence number once it is on
// disk. Every trimEvery appends it also drops events older than the newest
// MaxEvents, in the same transaction.
func (s *Store) Append(e Event) (uint64, error) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		// Keys only ever grow: fill pages instead of splitting them in half.
		b.FillPercent = 0.95
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		e.Seq = seq
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := b.Put(key(seq), v); err != nil {
			return err
		}
		if seq%s.every == 0 && seq > s.keep {
			return trim(b, seq-s.keep)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("state: append event: %w", err)
	}
	return e.Seq, nil
}

// trim deletes events with seq <= upTo.
func trim(b *bolt.Bucket, upTo uint64) error {
	c := b.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func key(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// Events returns events with Seq > since in order. With limit > 0 they are
// the oldest limit of them (to page forward); with limit < 0 the newest
// -limit of them (Events(0, -10) is the last ten); 0 means all.
func (s *Store) Events(since uint64, limit int) ([]Event, error) {
	out := []Event{}
	if since == math.MaxUint64 {
		return out, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		decode := func(k, v []byte) error {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
			return nil
		}
		if limit < 0 {
			for k, v := c.Last(); k != nil && binary.BigEndian.Uint64(k) > since && len(out) < -limit; k, v = c.Prev() {
				if err := decode(k, v); err != nil {
					return err
				}
			}
			for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
				out[i], out[j] = out[j], out[i]
			}
			return nil
		}
		for k, v := c.Seek(key(since + 1)); k != nil && (limit == 0 || len(out) < limit); k, v = c.Next() {
			if err := decode(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: read events: %w", err)
	}
	return out, nil
}
