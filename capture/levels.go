package capture

import "math"

// Levels are per-channel levels in dBFS: 0 dBFS is a full-scale square
// wave's peak, so a full-scale sine peaks at 0 and has an RMS of −3.01.
// Digital silence is −Inf.
type Levels struct {
	PeakDBFS []float64
	RMSDBFS  []float64
}

// DBFS converts a linear amplitude (1 = full scale) to dBFS.
func DBFS(lin float64) float64 {
	if lin <= 0 {
		return math.Inf(-1)
	}
	return 20 * math.Log10(lin)
}

// accum collects per-channel peak and energy.
type accum struct {
	peak   []int32 // largest |sample|
	energy []float64
	frames int64
}

func newAccum(ch int) accum {
	return accum{peak: make([]int32, ch), energy: make([]float64, ch)}
}

func (a *accum) reset() {
	clear(a.peak)
	clear(a.energy)
	a.frames = 0
}

func (a *accum) add(samples []int16) {
	ch := len(a.peak)
	for i, s := range samples {
		c := i % ch
		v := int32(s)
		if v < 0 {
			v = -v
		}
		if v > a.peak[c] {
			a.peak[c] = v
		}
		a.energy[c] += float64(s) * float64(s)
	}
	a.frames += int64(len(samples) / ch)
}

func (a *accum) merge(b *accum) {
	for c := range a.peak {
		a.peak[c] = max(a.peak[c], b.peak[c])
		a.energy[c] += b.energy[c]
	}
	a.frames += b.frames
}

func (a *accum) levels() Levels {
	ch := len(a.peak)
	l := Levels{PeakDBFS: make([]float64, ch), RMSDBFS: make([]float64, ch)}
	for c := 0; c < ch; c++ {
		l.PeakDBFS[c] = DBFS(float64(a.peak[c]) / 32768)
		if a.frames > 0 {
			l.RMSDBFS[c] = DBFS(math.Sqrt(a.energy[c]/float64(a.frames)) / 32768)
		} else {
			l.RMSDBFS[c] = math.Inf(-1)
		}
	}
	return l
}

// MeasureLevels returns the levels of interleaved samples.
func MeasureLevels(samples []int16, channels int) Levels {
	if channels <= 0 {
		return Levels{}
	}
	a := newAccum(channels)
	a.add(samples)
	return a.levels()
}
