package amf0

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// Encodings from the AMF0 specification's type descriptions.
var known = []struct {
	name string
	v    any
	enc  string
}{
	{"number", 1.0, "00 3ff0000000000000"},
	{"negative number", -2.5, "00 c004000000000000"},
	{"true", true, "01 01"},
	{"false", false, "01 00"},
	{"string", "connect", "02 0007 636f6e6e656374"},
	{"empty string", "", "02 0000"},
	{"object", Object{{"app", "live"}, {"n", 3.0}}, "03 0003 617070 02 0004 6c697665 0001 6e 00 4008000000000000 0000 09"},
	{"empty object", Object{}, "03 0000 09"},
	{"null", nil, "05"},
	{"undefined", Undefined{}, "06"},
	{"reference", Reference(2), "07 0002"},
	{"ECMA array", ECMAArray{{"w", 320.0}}, "08 00000001 0001 77 00 4074000000000000 0000 09"},
	{"strict array", []any{1.0, "a"}, "0a 00000002 00 3ff0000000000000 02 0001 61"},
	{"date", Date{Millis: 1e12, TimeZone: 0}, "0b 426d1a94a2000000 0000"},
	{"unsupported", Unsupported{}, "0d"},
	{"XML", XMLDocument("<a/>"), "0f 00000004 3c612f3e"},
	{"typed object", TypedObject{"C", Object{{"x", true}}}, "10 0001 43 0001 78 01 01 0000 09"},
}

func TestKnownEncodings(t *testing.T) {
	for _, k := range known {
		enc, err := Encode(k.v)
		if err != nil {
			t.Errorf("%s: encode: %v", k.name, err)
			continue
		}
		if want := unhex(k.enc); !bytes.Equal(enc, want) {
			t.Errorf("%s: encoded % x, want % x", k.name, enc, want)
		}
		v, n, err := Decode(enc)
		if err != nil || n != len(enc) {
			t.Errorf("%s: decode: %v (%d of %d bytes)", k.name, err, n, len(enc))
			continue
		}
		want := k.v
		if o, ok := want.(Object); ok && len(o) == 0 {
			want = Object(nil)
		}
		if !reflect.DeepEqual(v, want) {
			t.Errorf("%s: decoded %#v, want %#v", k.name, v, want)
		}
	}
}

func TestLongString(t *testing.T) {
	s := strings.Repeat("x", 70000)
	enc, err := Encode(s)
	if err != nil || enc[0] != MarkerLongString || len(enc) != 5+70000 {
		t.Fatalf("long string: % x… %v", enc[:5], err)
	}
	v, _, err := Decode(enc)
	if err != nil || v != s {
		t.Fatalf("decode long string: %v", err)
	}
}

func TestGoTypes(t *testing.T) {
	enc, err := Encode(map[string]any{"b": 2, "a": uint32(1), "t": time.UnixMilli(5000), "l": []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	o := v.(Object)
	if o[0].Key != "a" || o[1].Key != "b" || o[2].Key != "l" { // sorted keys
		t.Errorf("keys %v", o)
	}
	if n, _ := o.Number("b"); n != 2 {
		t.Errorf("b = %v", n)
	}
	m := ToPlain(o).(map[string]any)
	if m["t"].(time.Time).UnixMilli() != 5000 || !reflect.DeepEqual(m["l"], []any{"x"}) {
		t.Errorf("plain %v", m)
	}
	if _, err := Encode(struct{}{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("struct: %v", err)
	}
	if _, err := Encode(make(chan int)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("chan: %v", err)
	}
}

// TestTruncated: every strict prefix of a multi-value command fails with
// ErrTruncated and never panics.
func TestTruncated(t *testing.T) {
	full, err := Encode("connect", 1.0, Object{
		{"app", "live"}, {"tcUrl", "rtmp://x/live"}, {"list", []any{1.0, ECMAArray{{"k", nil}}}},
		{"d", Date{Millis: 3}}, {"x", XMLDocument("<x/>")}, {"t", TypedObject{"T", Object{{"a", Undefined{}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lens := map[int]bool{}
	for n, off := 0, 0; off < len(full); {
		_, k, err := Decode(full[off:])
		if err != nil {
			t.Fatal(err)
		}
		off += k
		n++
		lens[off] = true
	}
	for i := 1; i < len(full); i++ {
		vals, err := DecodeAll(full[:i])
		if lens[i] {
			if err != nil {
				t.Errorf("prefix %d (a value boundary): %v", i, err)
			}
			continue
		}
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("prefix %d of %d: %v (%d values)", i, len(full), err, len(vals))
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	deep := bytes.Repeat([]byte{MarkerObject, 0, 1, 'a'}, MaxDepth+2)
	cases := []struct {
		name string
		b    []byte
		is   error
		want string
	}{
		{"unknown marker", []byte{0x42}, ErrInvalid, "unknown type marker 0x42"},
		{"AMF3 switch", []byte{0x11, 0x02}, ErrUnsupported, "AMF3"},
		{"movie clip", []byte{0x04}, ErrUnsupported, "reserved type marker 0x04"},
		{"object end outside an object", []byte{0x09}, ErrInvalid, "object end marker outside an object"},
		{"string longer than input", unhex("02 ffff 41"), ErrTruncated, "string needs 65535 bytes, 1 left"},
		{"long string longer than input", unhex("0c ffffffff 41"), ErrTruncated, "long string of 4294967295 bytes"},
		{"huge strict array", unhex("0a ffffffff 05"), ErrTruncated, "strict array of 4294967295 values, 1 bytes left"},
		{"nesting", deep, ErrTooDeep, "nested"},
		{"object without end", unhex("03 0001 61 05"), ErrTruncated, "object property name length"},
		{"empty key without end marker", unhex("03 0000"), ErrTruncated, "object end marker"},
	}
	for _, c := range cases {
		_, _, err := Decode(c.b)
		if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %v %q", c.name, err, c.is, c.want)
		}
	}
	// Writers that omit the ECMA array's end marker at the end of the data.
	v, _, err := Decode(unhex("08 00000001 0001 77 00 4074000000000000"))
	if err != nil || !reflect.DeepEqual(v, ECMAArray{{"w", 320.0}}) {
		t.Errorf("ECMA array without end marker: %v %v", v, err)
	}
	// NaN survives (as bits).
	enc, _ := Encode(math.NaN())
	if v, _, _ := Decode(enc); !math.IsNaN(v.(float64)) {
		t.Errorf("NaN decoded as %v", v)
	}
}

// FuzzDecode: the decoder never panics; what it accepts re-encodes to
// bytes that decode to the same encoding again.
func FuzzDecode(f *testing.F) {
	for _, k := range known {
		f.Add(unhex(k.enc))
	}
	cmd, _ := Encode("connect", 1.0, Object{{"app", "live"}, {"flashVer", "FMLE/3.0"}, {"fourCcList", []any{"av01", "hvc1"}}})
	f.Add(cmd)
	f.Add(unhex("08 00000001 0001 77 00 4074000000000000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := DecodeAll(b)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooDeep) {
				t.Fatalf("error of no kind: %v", err)
			}
			return
		}
		enc, err := Encode(vals...)
		if err != nil {
			t.Fatalf("re-encoding %#v: %v", vals, err)
		}
		vals2, err := DecodeAll(enc)
		if err != nil {
			t.Fatalf("decoding the re-encoding: %v", err)
		}
		enc2, err := Encode(vals2...)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: % x vs % x (%v)", enc, enc2, err)
		}
		for _, v := range vals {
			ToPlain(v)
		}
	})
}
