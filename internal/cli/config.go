package cli

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/spf13/cobra"
)

// applyConfigFile sets a command's flags from a TOML file whose keys are the
// flag names (good = ["v6.1"], guest-test = "t.sh", kconfig = [...]). Flags
// given on the command line win. An unknown key is an error naming the key
// and its line.
func applyConfigFile(c *cobra.Command, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return outcome.InputErr("--config: %v", err)
	}
	var kv map[string]any
	if _, err := toml.Decode(string(data), &kv); err != nil {
		return outcome.InputErr("--config %s: %v", path, err)
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := c.Flags().Lookup(k)
		if f == nil || k == "config" {
			return outcome.InputErr("--config %s:%d: unknown key %q (keys are %s's flag names, e.g. guest-test, kconfig, good)", path, lineOf(data, k), k, c.Name())
		}
		if f.Changed {
			continue
		}
		var vals []any
		switch v := kv[k].(type) {
		case []any:
			vals = v
		default:
			vals = []any{v}
		}
		for _, v := range vals {
			if err := c.Flags().Set(k, fmt.Sprint(v)); err != nil {
				return outcome.InputErr("--config %s:%d: %s: %v", path, lineOf(data, k), k, err)
			}
		}
	}
	return nil
}

func lineOf(data []byte, key string) int {
	re := regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(key) + `"?\s*=`)
	for i, l := range strings.Split(string(data), "\n") {
		if re.MatchString(l) {
			return i + 1
		}
	}
	return 0
}
