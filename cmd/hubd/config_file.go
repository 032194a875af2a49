package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/peterbourgon/ff/v3"
)

// defaultRaftPort is the raft port when --raft-addr is not given. Not
// 7946: that is memberlist's (Consul, Nomad, Serf), often taken on the
// same hosts.
const defaultRaftPort = "8079"

// notInFile are the flags a config file may not set: they say what to do
// with the file, not how to run.
var notInFile = []string{"config", "version", "print-config"}

// parseLayers parses args into fs, then fills every flag not given on the
// command line from its HUB_* variable, then every flag still unset from
// the TOML file named by --config (or HUB_CONFIG). ff (peterbourgon/ff/v3)
// does the layering; the TOML is ours (tomlParser) so that an unknown key
// is refused by name.
func parseLayers(fs *flag.FlagSet, args []string) error {
	return ff.Parse(fs, args,
		ff.WithEnvVarPrefix("HUB"),
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(tomlParser(fs)),
	)
}

// tomlParser reads a config file whose top-level keys are flag names. A
// value may be a string, an integer, a float or a boolean; it is set as the
// flag would be from its text. Tables, arrays and unknown keys are errors
// that name the key.
func tomlParser(fs *flag.FlagSet) ff.ConfigFileParser {
	return func(r io.Reader, set func(name, value string) error) error {
		var m map[string]any
		d := toml.NewDecoder(r)
		if err := d.Decode(&m); err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if fs.Lookup(k) == nil || slices.Contains(notInFile, k) {
				return fmt.Errorf("config file: unknown key %q (the keys are hubd's flag names, without --; see hubd --help)", k)
			}
			var s string
			switch v := m[k].(type) {
			case string:
				s = v
			case bool, int64, float64:
				s = fmt.Sprint(v)
			default:
				return fmt.Errorf("config file: key %q: a %T is not a setting: write a string, number or boolean", k, v)
			}
			if err := set(k, s); err != nil {
				return fmt.Errorf("config file: key %q: %w", k, err)
			}
		}
		return nil
	}
}

// secret says whether a flag's value must not be printed.
func secret(name string) bool {
	return strings.Contains(name, "secret") || strings.Contains(name, "token")
}

// printConfig writes the effective settings of the parsed fs as a TOML
// config file that --config reads back. A secret that is set is written
// as a comment saying so, never its value: feeding the output back keeps
// the secret unset rather than setting it to a mask.
func printConfig(w io.Writer, fs *flag.FlagSet) error {
	var b bytes.Buffer
	b.WriteString("# hubd --print-config: the effective settings (flag > HUB_* variable > config file > default)\n")
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || slices.Contains(notInFile, f.Name) {
			return
		}
		v := f.Value.String()
		if secret(f.Name) {
			if v != "" {
				fmt.Fprintf(&b, "# %s is set (masked; hubd never prints a secret)\n", f.Name)
			} else {
				fmt.Fprintf(&b, "%s = ''\n", f.Name)
			}
			return
		}
		var val any = v
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			val = v == "true"
		} else if _, ok := f.Value.(intValue); ok {
			if n, perr := strconv.ParseInt(v, 10, 64); perr == nil {
				val = n
			}
		}
		var line []byte
		if line, err = toml.Marshal(map[string]any{f.Name: val}); err == nil {
			b.Write(line)
		}
	})
	if err != nil {
		return err
	}
	_, err = w.Write(b.Bytes())
	return err
}

// newLogger is hubd's logger: --log-format's handler at --log-level.
func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
