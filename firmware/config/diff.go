package config

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Diff lists the keys whose values differ between two configs, as dotted
// JSON paths in sorted order ("feeds.primary.bitrate", "links.c.table"): what a
// change touches. Values are not included, so secrets never show.
func Diff(old, cur Config) []string {
	a, b := flatten(old), flatten(cur)
	var keys []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			keys = append(keys, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func flatten(c Config) map[string]string {
	var tree any
	json.Unmarshal(c.JSON(), &tree)
	out := map[string]string{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, e := range m {
				p := k
				if path != "" {
					p = path + "." + k
				}
				walk(p, e)
			}
			return
		}
		out[path] = fmt.Sprintf("%v", v)
	}
	walk("", tree)
	return out
}
