package media

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestFanoutReadersSeeEveryItemInOrder(t *testing.T) {
	f := NewFanout[int](64)
	const n = 10000
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		rd := f.NewReader(0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := 0
			var buf []int
			for {
				var err error
				buf, err = rd.Read(context.Background(), buf[:0])
				for _, v := range buf {
					if v != want {
						t.Errorf("got %d, want %d", v, want)
						return
					}
					want++
				}
				if errors.Is(err, ErrFanoutClosed) {
					if want != n {
						t.Errorf("reader ended at %d, want %d", want, n)
					}
					return
				}
				if errors.Is(err, ErrReaderTooSlow) {
					// Allowed under load; the test then only checks order.
					return
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		f.Write(i)
		if i%32 == 0 {
			time.Sleep(time.Microsecond)
		}
	}
	f.Close()
	wg.Wait()
}

func TestFanoutSlowReaderIsDroppedWithoutStallingOthers(t *testing.T) {
	f := NewFanout[int](8)
	slow := f.NewReader(0)
	fast := f.NewReader(0)
	for i := 0; i < 20; i++ {
		f.Write(i)
		got, err := fast.Read(context.Background(), nil)
		if err != nil || len(got) != 1 || got[0] != i {
			t.Fatalf("fast reader: %v %v", got, err)
		}
	}
	if _, err := slow.Read(context.Background(), nil); !errors.Is(err, ErrReaderTooSlow) {
		t.Fatalf("slow reader: %v, want ErrReaderTooSlow", err)
	}
}

func TestFanoutBurstAndCancel(t *testing.T) {
	f := NewFanout[int](8)
	for i := 0; i < 20; i++ {
		f.Write(i)
	}
	got, err := f.NewReader(5).Read(context.Background(), nil)
	if err != nil || len(got) != 5 || got[0] != 15 {
		t.Fatalf("burst of 5: %v %v", got, err)
	}
	got, _ = f.NewReader(100).Read(context.Background(), nil)
	if len(got) != 8 || got[0] != 12 {
		t.Fatalf("burst larger than ring: %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.NewReader(0).Read(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting read: %v, want deadline exceeded", err)
	}
}

func BenchmarkFanoutWrite1000Readers(b *testing.B) {
	f := NewFanout[[]byte](256)
	readers := make([]*Reader[[]byte], 1000)
	for i := range readers {
		readers[i] = f.NewReader(0)
	}
	item := make([]byte, 400)
	var buf [][]byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		f.Write(item)
		for _, r := range readers {
			buf, _ = r.Read(context.Background(), buf[:0])
		}
	}
}

func TestFanoutBatchedReaderWakesOncePerBatch(t *testing.T) {
	f := NewFanout[int](64)
	f.SetBatch(4)
	rd := f.NewBatchedReader(0, nil)
	got := make(chan []int, 16)
	go func() {
		var buf []int
		for {
			var err error
			buf, err = rd.Read(context.Background(), nil)
			if err != nil {
				close(got)
				return
			}
			got <- buf
		}
	}()
	time.Sleep(20 * time.Millisecond) // the reader is waiting
	for i := 0; i < 10; i++ {
		f.Write(i)
		time.Sleep(5 * time.Millisecond) // time to wake, if it were woken
	}
	f.Close()
	var reads [][]int
	for b := range got {
		reads = append(reads, b)
	}
	// Woken at writes 4 and 8 and by the close; never item by item.
	if len(reads) != 3 || len(reads[0]) != 4 || len(reads[1]) != 4 || len(reads[2]) != 2 || reads[2][1] != 9 {
		t.Fatalf("batched reads %v, want [0..3] [4..7] [8 9]", reads)
	}
	// An unbatched reader of the same fan-out is not held back.
	f2 := NewFanout[int](8)
	f2.SetBatch(4)
	plain := f2.NewReader(0)
	go func() { time.Sleep(5 * time.Millisecond); f2.Write(1) }()
	if v, err := plain.Read(context.Background(), nil); err != nil || len(v) != 1 {
		t.Fatalf("plain reader: %v %v", v, err)
	}
}

func TestFanoutBurstCountsOnlyItsKind(t *testing.T) {
	f := NewFanout[int](10)
	// Odd items are "audio", even ones "video": 0..13, the ring keeps 4..13.
	for i := 0; i < 14; i++ {
		f.Write(i)
	}
	odd := func(i int) bool { return i%2 == 1 }
	first := func(burst int) []int {
		rd := f.NewBatchedReader(burst, odd)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // read only what is there
		got, _ := rd.Read(ctx, nil)
		return got
	}
	if got := first(3); len(got) == 0 || got[0] != 9 || got[len(got)-1] != 13 {
		t.Errorf("a burst of 3 odd items starts at %v, want 9..13 (9, 11, 13 and the even ones between)", got)
	}
	// More than the ring holds: from its oldest item.
	if got := first(100); len(got) != 10 || got[0] != 4 {
		t.Errorf("an oversized burst gave %v, want the whole ring 4..13", got)
	}
	if got := first(0); len(got) != 0 {
		t.Errorf("no burst gave %v", got)
	}
}
