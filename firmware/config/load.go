package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxFileSize bounds a config file.
const maxFileSize = 1 << 20

// Load reads a JSON config file over the defaults, then the environment
// (TANDEM_* variables, see EnvVars), then validates. An empty path skips
// the file. Errors from the file name the file and the key; errors from
// the environment name the variable; Validate's name the key.
func Load(path string, environ []string) (Config, error) {
	c := Default()
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
		f.Close()
		if err != nil {
			return c, fmt.Errorf("read config %s: %w", path, err)
		}
		if len(data) > maxFileSize {
			return c, fmt.Errorf("config %s: larger than %d bytes", path, maxFileSize)
		}
		if err := c.decode(data); err != nil {
			return c, eachError(err, func(e error) error { return fmt.Errorf("config %s: %w", path, e) })
		}
	}
	if err := c.applyEnv(environ); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Parse reads a JSON config over the defaults (no environment) and
// validates it: for a config stored elsewhere (the state store's last good
// config).
func Parse(data []byte) (Config, error) {
	c := Default()
	if err := c.decode(data); err != nil {
		return c, eachError(err, func(e error) error { return fmt.Errorf("config: %w", e) })
	}
	return c, c.Validate()
}

// eachError applies wrap to every error joined in err.
func eachError(err error, wrap func(error) error) error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range u.Unwrap() {
			out = append(out, wrap(e))
		}
		return errors.Join(out...)
	}
	return wrap(err)
}

// decode applies a JSON document over c. Every unknown key is reported
// with its full path ("unknown key feeds.primary.bitrat").
func (c *Config) decode(data []byte) error {
	var raw any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return syntaxError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	top, ok := raw.(map[string]any)
	if !ok {
		return fmt.Errorf("must be a JSON object, not %s", jsonKind(raw))
	}
	if errs := checkKeys(raw, reflect.TypeFor[Config](), ""); len(errs) > 0 {
		return errors.Join(errs...)
	}
	// A file that lists links replaces the default links: merging them
	// would leave the demo's loopback links next to real ones.
	if _, ok := top["links"]; ok {
		c.Links = nil
	}
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("%s: must be %s, not %s", te.Field, typeName(te.Type), article(te.Value))
		}
		return err
	}
	return nil
}

var durationType = reflect.TypeFor[Duration]()

// checkKeys walks a decoded JSON value against the Go type it will be
// decoded into and reports keys the type does not have, and durations
// that do not parse, by their full path.
func checkKeys(v any, t reflect.Type, path string) []error {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		s, ok := v.(string)
		if v == nil {
			return nil
		}
		if !ok {
			return []error{fmt.Errorf("%s: must be a duration string like \"120ms\", not %s", path, jsonKind(v))}
		}
		if _, err := time.ParseDuration(s); err != nil {
			return []error{fmt.Errorf("%s: %q is not a duration like \"120ms\"", path, s)}
		}
		return nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil // encoding/json reports type errors with the path
	}
	var errs []error
	switch t.Kind() {
	case reflect.Struct:
		fields := map[string]reflect.Type{}
		for f := range t.Fields() {
			if name := jsonName(f); name != "" {
				fields[name] = f.Type
			}
		}
		for _, k := range sortedKeys(obj) {
			ft, ok := fields[k]
			if !ok {
				errs = append(errs, fmt.Errorf("unknown key %s%s", join(k), suggest(k, fields)))
				continue
			}
			errs = append(errs, checkKeys(obj[k], ft, join(k))...)
		}
	case reflect.Map:
		for _, k := range sortedKeys(obj) {
			errs = append(errs, checkKeys(obj[k], t.Elem(), join(k))...)
		}
	}
	return errs
}

// suggest names a known key close to an unknown one.
func suggest(k string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for name := range fields {
		d := distance(strings.ToLower(k), name)
		if d < bestD || d == bestD && name < best {
			best, bestD = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// distance is the Levenshtein distance of two short strings.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func article(jsonType string) string {
	switch {
	case strings.HasPrefix(jsonType, "number"):
		return "a " + jsonType
	case jsonType == "array" || jsonType == "object":
		return "an " + jsonType
	case jsonType == "bool":
		return "a boolean"
	}
	return "a " + jsonType
}

func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return typeName(t.Elem())
	}
	return t.String()
}

// syntaxError places a JSON syntax error at its line and column.
func syntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("empty or incomplete JSON")
		}
		return err
	}
	// Offset counts the bytes read, the offending one included.
	off := min(max(int(se.Offset)-1, 0), len(data))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return fmt.Errorf("line %d, column %d: %w", line, col, err)
}

// EnvPrefix prefixes the environment variables the appliance reads.
const EnvPrefix = "TANDEM_"

// foreignPrefixes are TANDEM_* variables that belong to other programs
// (the switcher, the scripts and their tests); the appliance ignores them
// rather than calling them unknown.
var foreignPrefixes = []string{"TANDEM_SWITCHER_", "TANDEM_TEST_", "TANDEM_LAB", "TANDEM_DEMO_", "TANDEM_BENCH_"}

// EnvVar is one environment variable and the config key it sets.
type EnvVar struct {
	Name string // TANDEM_FEEDS_PRIMARY_BITRATE
	Key  string // feeds.primary.bitrate
}

// EnvVars lists the environment variables Load reads. The rule: TANDEM_
// followed by the key's dotted JSON path in upper case with '.' as '_'.
// Links are TANDEM_LINKS_<NAME>_<FIELD> (INTERFACE, GATEWAY, TABLE,
// ADDRESS), NAME in upper case for the link's lower-case name; a variable
// for a link the file does not have adds it. TANDEM_POLICY_ROUTING=""
// means automatic. Variables under TANDEM_SWITCHER_, TANDEM_TEST_,
// TANDEM_LAB, TANDEM_DEMO_ and TANDEM_BENCH_ belong to other programs
// and are ignored; any other unknown TANDEM_* variable is an error.
func EnvVars() []EnvVar {
	var out []EnvVar
	for _, f := range envFields() {
		out = append(out, EnvVar{Name: f.name, Key: f.key})
	}
	for _, f := range linkFields() {
		out = append(out, EnvVar{Name: EnvPrefix + "LINKS_<NAME>_" + f.suffix, Key: "links.<name>." + f.key})
	}
	return out
}

type envField struct {
	name, key string
	index     []int // reflect field index path from Config
}

func envFields() []envField {
	var out []envField
	var walk func(t reflect.Type, key string, index []int)
	walk = func(t reflect.Type, key string, index []int) {
		for f := range t.Fields() {
			name := jsonName(f)
			if name == "" {
				continue
			}
			k := name
			if key != "" {
				k = key + "." + name
			}
			idx := append(slices.Clone(index), f.Index...)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(f.Type, k, idx)
				continue
			}
			if f.Type.Kind() == reflect.Map {
				continue // links: see linkFields
			}
			out = append(out, envField{name: EnvPrefix + strings.ToUpper(strings.ReplaceAll(k, ".", "_")), key: k, index: idx})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

type linkField struct {
	suffix, key string
	index       []int
}

func linkFields() []linkField {
	var out []linkField
	for f := range reflect.TypeFor[Link]().Fields() {
		if name := jsonName(f); name != "" {
			out = append(out, linkField{suffix: strings.ToUpper(name), key: name, index: f.Index})
		}
	}
	return out
}

func (c *Config) applyEnv(environ []string) error {
	fields := map[string]envField{}
	for _, f := range envFields() {
		fields[f.name] = f
	}
	var errs []error
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || slices.ContainsFunc(foreignPrefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		if f, ok := fields[name]; ok {
			if err := setValue(reflect.ValueOf(c).Elem().FieldByIndex(f.index), val); err != nil {
				errs = append(errs, fmt.Errorf("environment %s (%s): %w", name, f.key, err))
			}
			continue
		}
		if rest, ok := strings.CutPrefix(name, EnvPrefix+"LINKS_"); ok {
			if err, handled := c.applyLinkEnv(rest, val); handled {
				if err != nil {
					errs = append(errs, fmt.Errorf("environment %s: %w", name, err))
				}
				continue
			}
		}
		errs = append(errs, fmt.Errorf("environment %s: unknown setting (see `tandem config env` for the list)", name))
	}
	return errors.Join(errs...)
}

// applyLinkEnv sets links.<name>.<field> from LINKS_<NAME>_<FIELD>.
func (c *Config) applyLinkEnv(rest, val string) (err error, handled bool) {
	for _, f := range linkFields() {
		upper, ok := strings.CutSuffix(rest, "_"+f.suffix)
		if !ok || upper == "" {
			continue
		}
		name := strings.ToLower(upper)
		if !linkName(name) {
			return fmt.Errorf("link name %q must be lower-case letters, digits or '_'", name), true
		}
		if c.Links == nil {
			c.Links = map[string]Link{}
		}
		l := c.Links[name]
		if err := setValue(reflect.ValueOf(&l).Elem().FieldByIndex(f.index), val); err != nil {
			return fmt.Errorf("links.%s.%s: %w", name, f.key, err), true
		}
		c.Links[name] = l
		return nil, true
	}
	return nil, false
}

func setValue(v reflect.Value, s string) error {
	if v.Type() == durationType {
		var d Duration
		if err := d.parse(s); err != nil {
			return fmt.Errorf("%q is not a duration like \"120ms\"", s)
		}
		v.Set(reflect.ValueOf(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		v.SetInt(int64(n))
	case reflect.Float64:
		n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case reflect.Pointer:
		if strings.TrimSpace(s) == "" {
			v.SetZero() // automatic
			return nil
		}
		p := reflect.New(v.Type().Elem())
		if err := setValue(p.Elem(), s); err != nil {
			return err
		}
		v.Set(p)
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}
