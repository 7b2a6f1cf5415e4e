// Package amf0 encodes and decodes Action Message Format version 0 (Adobe
// "AMF 0 File Format Specification", 2007), the value encoding of RTMP
// commands and data messages and of FLV script tags.
//
// Decoded values map to Go as follows:
//
//	number        float64
//	boolean       bool
//	string        string (long strings too)
//	object        Object (properties in wire order)
//	null          nil
//	undefined     Undefined
//	reference     Reference (not resolved)
//	ECMA array    ECMAArray (properties in wire order)
//	strict array  []any
//	date          Date
//	unsupported   Unsupported
//	XML document  XMLDocument
//	typed object  TypedObject
//
// The decoder never panics and never allocates more than the input can
// justify: lengths and counts are checked against the bytes left before
// anything is allocated, and nesting is limited to MaxDepth. The AMF3
// switch marker (0x11) and the reserved markers (movie clip, record set)
// are refused with ErrUnsupported.
package amf0

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Type markers (AMF0 spec §2.1).
const (
	MarkerNumber      = 0x00
	MarkerBoolean     = 0x01
	MarkerString      = 0x02
	MarkerObject      = 0x03
	MarkerMovieClip   = 0x04 // reserved, not supported
	MarkerNull        = 0x05
	MarkerUndefined   = 0x06
	MarkerReference   = 0x07
	MarkerECMAArray   = 0x08
	MarkerObjectEnd   = 0x09
	MarkerStrictArray = 0x0A
	MarkerDate        = 0x0B
	MarkerLongString  = 0x0C
	MarkerUnsupported = 0x0D
	MarkerRecordSet   = 0x0E // reserved, not supported
	MarkerXMLDocument = 0x0F
	MarkerTypedObject = 0x10
	MarkerAVMPlus     = 0x11 // switch to AMF3, not supported
)

// MaxDepth bounds the nesting of objects and arrays the decoder accepts.
const MaxDepth = 64

// Errors to branch on with errors.Is.
var (
	// ErrTruncated means the input ends inside a value.
	ErrTruncated = errors.New("amf0: truncated")
	// ErrInvalid means the input holds something AMF0 does not allow
	// (an unknown marker, an object end marker out of place).
	ErrInvalid = errors.New("amf0: invalid")
	// ErrUnsupported means a legal marker this package does not handle
	// (AMF3 switch, movie clip, record set) or a Go value it cannot encode.
	ErrUnsupported = errors.New("amf0: unsupported")
	// ErrTooDeep means objects or arrays nest deeper than MaxDepth.
	ErrTooDeep = errors.New("amf0: nesting too deep")
)

// Property is one name/value pair of an Object or ECMAArray.
type Property struct {
	Key   string
	Value any
}

// Object is an anonymous AMF0 object; properties keep their wire order.
type Object []Property

// ECMAArray is an associative array; properties keep their wire order.
type ECMAArray []Property

// TypedObject is an object with a registered class name.
type TypedObject struct {
	Class  string
	Object Object
}

// Undefined is the AMF0 undefined value.
type Undefined struct{}

// Unsupported is the AMF0 unsupported marker value.
type Unsupported struct{}

// Reference is a reference to an earlier complex value, by index. It is
// returned as is: the decoder does not resolve references.
type Reference uint16

// XMLDocument is an XML document carried as a long UTF-8 string.
type XMLDocument string

// Date is milliseconds since the Unix epoch (UTC); TimeZone is the
// reserved time-zone field, which writers should set to 0.
type Date struct {
	Millis   float64
	TimeZone int16
}

// Time converts a Date to a time.Time in UTC.
func (d Date) Time() time.Time {
	return time.UnixMilli(int64(d.Millis)).UTC()
}

// Get returns the value of the first property called key.
func (o Object) Get(key string) (any, bool) { return get(o, key) }

// String returns the property key if it is a string, else "".
func (o Object) String(key string) string {
	v, _ := get(o, key)
	s, _ := v.(string)
	return s
}

// Number returns the property key if it is a number.
func (o Object) Number(key string) (float64, bool) {
	v, _ := get(o, key)
	f, ok := v.(float64)
	return f, ok
}

// Map converts the object to a map, recursively (see ToMap).
func (o Object) Map() map[string]any { return toMap(o) }

// Get returns the value of the first property called key.
func (a ECMAArray) Get(key string) (any, bool) { return get(a, key) }

// Map converts the array to a map, recursively (see ToMap).
func (a ECMAArray) Map() map[string]any { return toMap(a) }

func get(props []Property, key string) (any, bool) {
	for _, p := range props {
		if p.Key == key {
			return p.Value, true
		}
	}
	return nil, false
}

func toMap(props []Property) map[string]any {
	m := make(map[string]any, len(props))
	for _, p := range props {
		if _, dup := m[p.Key]; !dup {
			m[p.Key] = ToPlain(p.Value)
		}
	}
	return m
}

// ToPlain converts a decoded value to plain Go types: Object, ECMAArray
// and TypedObject become map[string]any, strict arrays []any of plain
// values, Date a time.Time, XMLDocument a string; everything else is
// returned unchanged. The first of duplicate keys wins.
func ToPlain(v any) any {
	switch v := v.(type) {
	case Object:
		return toMap(v)
	case ECMAArray:
		return toMap(v)
	case TypedObject:
		return toMap(v.Object)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = ToPlain(e)
		}
		return out
	case Date:
		return v.Time()
	case XMLDocument:
		return string(v)
	}
	return v
}

// Decode decodes one value from the start of b and returns it with the
// number of bytes it took.
func Decode(b []byte) (v any, n int, err error) {
	d := decoder{b: b}
	v, err = d.value(0)
	if err != nil {
		return nil, d.off, err
	}
	return v, d.off, nil
}

// DecodeAll decodes values until b is used up.
func DecodeAll(b []byte) ([]any, error) {
	d := decoder{b: b}
	var vals []any
	for d.off < len(d.b) {
		v, err := d.value(0)
		if err != nil {
			return vals, err
		}
		vals = append(vals, v)
	}
	return vals, nil
}

type decoder struct {
	b   []byte
	off int
}

func (d *decoder) errf(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", kind, d.off, fmt.Sprintf(format, args...))
}

func (d *decoder) need(n int, what string) error {
	if n < 0 || len(d.b)-d.off < n {
		return d.errf(ErrTruncated, "%s needs %d bytes, %d left", what, n, len(d.b)-d.off)
	}
	return nil
}

func (d *decoder) u8(what string) (byte, error) {
	if err := d.need(1, what); err != nil {
		return 0, err
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

func (d *decoder) u16(what string) (uint16, error) {
	if err := d.need(2, what); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint16(d.b[d.off:])
	d.off += 2
	return v, nil
}

func (d *decoder) u32(what string) (uint32, error) {
	if err := d.need(4, what); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v, nil
}

func (d *decoder) f64(what string) (float64, error) {
	if err := d.need(8, what); err != nil {
		return 0, err
	}
	v := math.Float64frombits(binary.BigEndian.Uint64(d.b[d.off:]))
	d.off += 8
	return v, nil
}

func (d *decoder) str(n int, what string) (string, error) {
	if err := d.need(n, what); err != nil {
		return "", err
	}
	s := string(d.b[d.off : d.off+n])
	d.off += n
	return s, nil
}

func (d *decoder) shortString(what string) (string, error) {
	n, err := d.u16(what + " length")
	if err != nil {
		return "", err
	}
	return d.str(int(n), what)
}

func (d *decoder) longString(what string) (string, error) {
	n, err := d.u32(what + " length")
	if err != nil {
		return "", err
	}
	if uint64(n) > uint64(len(d.b)-d.off) {
		return "", d.errf(ErrTruncated, "%s of %d bytes, %d left", what, n, len(d.b)-d.off)
	}
	return d.str(int(n), what)
}

func (d *decoder) value(depth int) (any, error) {
	start := d.off
	m, err := d.u8("type marker")
	if err != nil {
		return nil, err
	}
	switch m {
	case MarkerNumber:
		return d.f64("number")
	case MarkerBoolean:
		c, err := d.u8("boolean")
		return c != 0, err
	case MarkerString:
		return d.shortString("string")
	case MarkerObject:
		props, err := d.properties(depth, "object", -1)
		return Object(props), err
	case MarkerNull:
		return nil, nil
	case MarkerUndefined:
		return Undefined{}, nil
	case MarkerReference:
		r, err := d.u16("reference")
		return Reference(r), err
	case MarkerECMAArray:
		count, err := d.u32("ECMA array count")
		if err != nil {
			return nil, err
		}
		props, err := d.properties(depth, "ECMA array", int64(count))
		return ECMAArray(props), err
	case MarkerStrictArray:
		return d.strictArray(depth)
	case MarkerDate:
		ms, err := d.f64("date")
		if err != nil {
			return nil, err
		}
		tz, err := d.u16("date time zone")
		return Date{Millis: ms, TimeZone: int16(tz)}, err
	case MarkerLongString:
		return d.longString("long string")
	case MarkerUnsupported:
		return Unsupported{}, nil
	case MarkerXMLDocument:
		s, err := d.longString("XML document")
		return XMLDocument(s), err
	case MarkerTypedObject:
		class, err := d.shortString("typed object class name")
		if err != nil {
			return nil, err
		}
		props, err := d.properties(depth, "typed object", -1)
		return TypedObject{Class: class, Object: props}, err
	case MarkerObjectEnd:
		d.off = start
		return nil, d.errf(ErrInvalid, "object end marker outside an object")
	case MarkerMovieClip, MarkerRecordSet:
		d.off = start
		return nil, d.errf(ErrUnsupported, "reserved type marker 0x%02x", m)
	case MarkerAVMPlus:
		d.off = start
		return nil, d.errf(ErrUnsupported, "AMF3 value (marker 0x11)")
	}
	d.off = start
	return nil, d.errf(ErrInvalid, "unknown type marker 0x%02x", m)
}

// properties reads name/value pairs up to the object end marker (an empty
// name followed by 0x09). For an ECMA array (count ≥ 0) a missing end
// marker is tolerated when the input ends after count properties, as some
// writers omit it.
func (d *decoder) properties(depth int, what string, count int64) ([]Property, error) {
	if depth >= MaxDepth {
		return nil, d.errf(ErrTooDeep, "%s nested %d deep", what, depth+1)
	}
	var props []Property
	for {
		if count >= 0 && int64(len(props)) >= count && d.off == len(d.b) {
			return props, nil
		}
		key, err := d.shortString(what + " property name")
		if err != nil {
			return props, err
		}
		if key == "" {
			if err := d.need(1, what+" end marker"); err != nil {
				return props, err
			}
			if d.b[d.off] == MarkerObjectEnd {
				d.off++
				return props, nil
			}
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return props, err
		}
		props = append(props, Property{Key: key, Value: v})
	}
}

func (d *decoder) strictArray(depth int) (any, error) {
	if depth >= MaxDepth {
		return nil, d.errf(ErrTooDeep, "strict array nested %d deep", depth+1)
	}
	n, err := d.u32("strict array count")
	if err != nil {
		return nil, err
	}
	// Every value takes at least one byte.
	if uint64(n) > uint64(len(d.b)-d.off) {
		return nil, d.errf(ErrTruncated, "strict array of %d values, %d bytes left", n, len(d.b)-d.off)
	}
	vals := make([]any, 0, n)
	for i := uint32(0); i < n; i++ {
		v, err := d.value(depth + 1)
		if err != nil {
			return vals, err
		}
		vals = append(vals, v)
	}
	return vals, nil
}

// Append appends the encoding of v to dst. Besides the decoded types it
// accepts Go integers and float32 (as numbers), map[string]any (as an
// object with sorted keys), []string and time.Time. Strings longer than
// 65535 bytes are written as long strings.
func Append(dst []byte, v any) ([]byte, error) {
	return appendValue(dst, v, 0)
}

// AppendAll appends the encodings of vals in order.
func AppendAll(dst []byte, vals ...any) ([]byte, error) {
	var err error
	for _, v := range vals {
		if dst, err = appendValue(dst, v, 0); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// Encode returns the encodings of vals in order.
func Encode(vals ...any) ([]byte, error) { return AppendAll(nil, vals...) }

func appendNumber(dst []byte, f float64) []byte {
	dst = append(dst, MarkerNumber)
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(f))
}

func appendKey(dst []byte, key string) ([]byte, error) {
	if len(key) > math.MaxUint16 {
		return dst, fmt.Errorf("%w: property name of %d bytes", ErrUnsupported, len(key))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(key)))
	return append(dst, key...), nil
}

func appendProps(dst []byte, props []Property, depth int) ([]byte, error) {
	var err error
	for _, p := range props {
		if dst, err = appendKey(dst, p.Key); err != nil {
			return dst, err
		}
		if dst, err = appendValue(dst, p.Value, depth+1); err != nil {
			return dst, fmt.Errorf("property %q: %w", p.Key, err)
		}
	}
	return append(dst, 0, 0, MarkerObjectEnd), nil
}

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return dst, fmt.Errorf("%w: value nested %d deep", ErrTooDeep, depth)
	}
	switch v := v.(type) {
	case nil:
		return append(dst, MarkerNull), nil
	case float64:
		return appendNumber(dst, v), nil
	case float32:
		return appendNumber(dst, float64(v)), nil
	case int:
		return appendNumber(dst, float64(v)), nil
	case int8:
		return appendNumber(dst, float64(v)), nil
	case int16:
		return appendNumber(dst, float64(v)), nil
	case int32:
		return appendNumber(dst, float64(v)), nil
	case int64:
		return appendNumber(dst, float64(v)), nil
	case uint:
		return appendNumber(dst, float64(v)), nil
	case uint8:
		return appendNumber(dst, float64(v)), nil
	case uint16:
		return appendNumber(dst, float64(v)), nil
	case uint32:
		return appendNumber(dst, float64(v)), nil
	case uint64:
		return appendNumber(dst, float64(v)), nil
	case bool:
		b := byte(0)
		if v {
			b = 1
		}
		return append(dst, MarkerBoolean, b), nil
	case string:
		if len(v) > math.MaxUint16 {
			if uint64(len(v)) > math.MaxUint32 {
				return dst, fmt.Errorf("%w: string of %d bytes", ErrUnsupported, len(v))
			}
			dst = append(dst, MarkerLongString)
			dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
			return append(dst, v...), nil
		}
		dst = append(dst, MarkerString)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
		return append(dst, v...), nil
	case Object:
		return appendProps(append(dst, MarkerObject), v, depth)
	case ECMAArray:
		dst = append(dst, MarkerECMAArray)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		return appendProps(dst, v, depth)
	case TypedObject:
		if len(v.Class) > math.MaxUint16 {
			return dst, fmt.Errorf("%w: class name of %d bytes", ErrUnsupported, len(v.Class))
		}
		dst = append(dst, MarkerTypedObject)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(v.Class)))
		dst = append(dst, v.Class...)
		return appendProps(dst, v.Object, depth)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		props := make([]Property, len(keys))
		for i, k := range keys {
			props[i] = Property{k, v[k]}
		}
		return appendProps(append(dst, MarkerObject), props, depth)
	case []any:
		dst = append(dst, MarkerStrictArray)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		var err error
		for i, e := range v {
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, fmt.Errorf("array element %d: %w", i, err)
			}
		}
		return dst, nil
	case []string:
		dst = append(dst, MarkerStrictArray)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		var err error
		for _, e := range v {
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return dst, nil
	case Undefined:
		return append(dst, MarkerUndefined), nil
	case Unsupported:
		return append(dst, MarkerUnsupported), nil
	case Reference:
		dst = append(dst, MarkerReference)
		return binary.BigEndian.AppendUint16(dst, uint16(v)), nil
	case Date:
		dst = append(dst, MarkerDate)
		dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(v.Millis))
		return binary.BigEndian.AppendUint16(dst, uint16(v.TimeZone)), nil
	case time.Time:
		dst = append(dst, MarkerDate)
		dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(float64(v.UnixMilli())))
		return append(dst, 0, 0), nil
	case XMLDocument:
		if uint64(len(v)) > math.MaxUint32 {
			return dst, fmt.Errorf("%w: XML document of %d bytes", ErrUnsupported, len(v))
		}
		dst = append(dst, MarkerXMLDocument)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		return append(dst, v...), nil
	}
	return dst, fmt.Errorf("%w: cannot encode Go type %T", ErrUnsupported, v)
}
