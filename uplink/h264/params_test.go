package h264

import (
	"bytes"
	"testing"
)

func TestWithParameterSets(t *testing.T) {
	sps := []byte{0x67, 0x42, 0xC0, 0x1E}
	pps := []byte{0x68, 0xCE, 0x3C, 0x80}
	idr := []byte{0x65, 0x88, 0x84}
	cases := []struct {
		name string
		au   []byte
		want [][]byte // NAL units in order
	}{
		{"no delimiter", append([]byte{0, 0, 0, 1}, idr...), [][]byte{sps, pps, idr}},
		{"delimiter, 4-byte start codes", append(append([]byte{}, AUD...), append([]byte{0, 0, 0, 1}, idr...)...), [][]byte{AUD[4:], sps, pps, idr}},
		{"delimiter, 3-byte start codes", append([]byte{0, 0, 1, NALAUD, 0xF0, 0, 0, 1}, idr...), [][]byte{AUD[4:], sps, pps, idr}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := bytes.Clone(c.au)
			if HasParameterSets(c.au) {
				t.Fatal("HasParameterSets true for an access unit without them")
			}
			got := WithParameterSets(c.au, sps, pps)
			if !bytes.Equal(c.au, before) {
				t.Fatal("the input access unit was modified")
			}
			nals := SplitAnnexB(got)
			if len(nals) != len(c.want) {
				t.Fatalf("got %d NAL units % x, want %d", len(nals), got, len(c.want))
			}
			for i := range nals {
				if !bytes.Equal(nals[i], c.want[i]) {
					t.Errorf("NAL %d = % x, want % x", i, nals[i], c.want[i])
				}
			}
			if !HasParameterSets(got) || !IsKeyframe(got) {
				t.Errorf("result % x: HasParameterSets %v, IsKeyframe %v", got, HasParameterSets(got), IsKeyframe(got))
			}
		})
	}
}
