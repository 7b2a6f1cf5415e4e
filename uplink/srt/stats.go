package srt

/*
#include "csrt.h"
*/
import "C"

import "time"

// Stats is a sample of libsrt's counters (srt_bstats with clear=0): totals
// since the connection started, rates as libsrt's moving averages.
type Stats struct {
	RTT                                       time.Duration
	PktSent, PktRecv, BytesSent, BytesRecv    int64
	PktSendLoss, PktRecvLoss                  int64 // totals
	PktRetrans                                int64 // pktRetransTotal
	PktSendDrop, PktRecvDrop                  int64 // PktRecvDrop includes messages a slow reader lost (see ReadMessage)
	PktRecvACK, PktSentACK                    int64 // pktRecvACKTotal / pktSentACKTotal
	SendRateMbps, RecvRateMbps, BandwidthMbps float64
	SendBufMs                                 int // msSndBuf: unacknowledged span in the send buffer

	// Time is when libsrt produced this sample. Stale is true when libsrt
	// could not give a fresh one (broken or closed socket) and this is the
	// last good sample.
	Time  time.Time
	Stale bool
}

// Stats returns a fresh sample, or the last good one (Stale set) if libsrt
// refuses (srt_bstats fails on a broken socket). The poller also samples
// every connection once a second, so a last sample exists even if Stats was
// never called before the link broke. Zero Stats if no sample ever worked.
func (c *Conn) Stats() Stats {
	if s, ok := c.sampleStats(); ok {
		return s
	}
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	s := c.last
	s.Stale = true
	return s
}

// sampleStats takes a sample and keeps it as the last good one.
func (c *Conn) sampleStats() (Stats, bool) {
	var perf C.SRT_TRACEBSTATS
	c.opMu.RLock()
	if c.closed {
		c.opMu.RUnlock()
		return Stats{}, false
	}
	enter()
	r := C.tsrt_bstats(c.sock, &perf)
	leave()
	c.opMu.RUnlock()
	if r < 0 {
		return Stats{}, false
	}
	s := Stats{
		RTT:           time.Duration(float64(perf.msRTT) * float64(time.Millisecond)),
		PktSent:       int64(perf.pktSentTotal),
		PktRecv:       int64(perf.pktRecvTotal),
		BytesSent:     int64(perf.byteSentTotal),
		BytesRecv:     int64(perf.byteRecvTotal),
		PktSendLoss:   int64(perf.pktSndLossTotal),
		PktRecvLoss:   int64(perf.pktRcvLossTotal),
		PktRetrans:    int64(perf.pktRetransTotal),
		PktSendDrop:   int64(perf.pktSndDropTotal),
		PktRecvDrop:   int64(perf.pktRcvDropTotal) + c.rx.dropped(),
		PktRecvACK:    int64(perf.pktRecvACKTotal),
		PktSentACK:    int64(perf.pktSentACKTotal),
		SendRateMbps:  float64(perf.mbpsSendRate),
		RecvRateMbps:  float64(perf.mbpsRecvRate),
		BandwidthMbps: float64(perf.mbpsBandwidth),
		SendBufMs:     int(perf.msSndBuf),
		Time:          time.Now(),
	}
	c.statsMu.Lock()
	c.last = s
	c.haveStats = true
	c.statsMu.Unlock()
	return s, true
}
