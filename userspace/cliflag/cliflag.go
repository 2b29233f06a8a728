// Package cliflag parses catherd's command lines on top of the standard
// flag package, with the conventions an operator sees everywhere else in
// catherd: flags written --name in help texts and in errors, an error that
// says what a value should look like ("a duration such as 5s") rather than
// "parse error", and the closest flag suggested for a misspelt one. The
// flag package's own messages name flags with one dash and say nothing of
// the expected form.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Error is a command-line error about one flag (Flag is empty when the
// error is about no flag in particular, such as a stray argument).
type Error struct {
	Flag string // without dashes
	Err  error
}

func (e *Error) Error() string {
	if e.Flag == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("--%s: %v", e.Flag, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Parse parses args with fs, whose output should be discarded (errors come
// back as one line each, as *Error, and help is printed by the caller with
// PrintDefaults). It returns flag.ErrHelp when -h or --help was given.
func Parse(fs *flag.FlagSet, args []string) error {
	var failed *badValue
	restore := map[string]flag.Value{}
	fs.VisitAll(func(f *flag.Flag) {
		restore[f.Name] = f.Value
		f.Value = watch(f, &failed)
	})
	err := fs.Parse(args)
	fs.VisitAll(func(f *flag.Flag) { f.Value = restore[f.Name] })
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return err
	case failed != nil:
		return &Error{Flag: failed.name, Err: fmt.Errorf("invalid value %q: %s", failed.value, failed.reason())}
	}
	// The flag package reports the rest only as text; these two forms
	// have been stable since Go 1.
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		e := fmt.Errorf("unknown flag --%s", name)
		if s := Suggest(fs, name); s != "" {
			e = fmt.Errorf("unknown flag --%s (did you mean --%s?)", name, s)
		}
		return &Error{Err: e}
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return &Error{Flag: name, Err: errors.New("needs a value")}
	}
	return &Error{Err: err}
}

// badValue is a flag whose value was refused.
type badValue struct {
	name, value string
	err         error
	kind        any // the flag's value before the refusal, for its type
}

// reason says what the value should have been, in catherd's words for the
// flag package's own types, or as the flag's own Set said.
func (b *badValue) reason() string {
	switch b.kind.(type) {
	case time.Duration:
		return "want a duration such as 5s, 250ms or 1m30s"
	case int, int64:
		return "want a whole number"
	case uint, uint64:
		return "want a whole number, 0 or more"
	case float64:
		return "want a number"
	case bool:
		return "want true or false"
	}
	return b.err.Error()
}

// watch wraps f's value so that a refused Set is recorded in *failed.
func watch(f *flag.Flag, failed **badValue) flag.Value {
	w := watched{Value: f.Value, name: f.Name, failed: failed}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return watchedBool{w}
	}
	return w
}

type watched struct {
	flag.Value
	name   string
	failed **badValue
}

func (w watched) Set(v string) error {
	var before any
	if g, ok := w.Value.(flag.Getter); ok {
		before = g.Get()
	}
	err := w.Value.Set(v)
	if err != nil && *w.failed == nil {
		*w.failed = &badValue{name: w.name, value: v, err: err, kind: before}
	}
	return err
}

// watchedBool keeps a boolean flag usable without a value (--nofailover).
type watchedBool struct{ watched }

func (watchedBool) IsBoolFlag() bool { return true }

// Suggest returns the name of fs's flag that name most likely meant: one
// that name is a prefix of, or one within a few typing mistakes of it; ""
// when none is close.
func Suggest(fs *flag.FlagSet, name string) string {
	best, bestDist := "", max(2, len(name)/3)+1
	var prefixed []string
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, name) {
			prefixed = append(prefixed, f.Name)
		}
		if d := distance(name, f.Name); d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	if best == "" && len(prefixed) == 1 {
		return prefixed[0]
	}
	return best
}

// distance is the Levenshtein distance between a and b: the fewest
// insertions, deletions and substitutions that turn one into the other.
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

// Flag describes one flag for help texts and generated documents (the
// man page, shell completion).
type Flag struct {
	Name    string
	Kind    string // the value's placeholder, e.g. "duration" or "ADDR"; "" for a boolean
	Usage   string // may span lines
	Default string // "" when there is none worth printing
}

// Flags lists fs's flags in the order PrintDefaults prints them.
func Flags(fs *flag.FlagSet) []Flag {
	var out []Flag
	fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		d := f.DefValue
		if slices.Contains([]string{"", "false", "[]"}, d) {
			d = ""
		}
		out = append(out, Flag{Name: f.Name, Kind: kind, Usage: usage, Default: d})
	})
	return out
}

// PrintDefaults writes fs's flags as catherd's help texts show them:
//
//	--name KIND
//	      usage (default D)
func PrintDefaults(fs *flag.FlagSet, w io.Writer) {
	for _, f := range Flags(fs) {
		fmt.Fprintf(w, "  --%s", f.Name)
		if f.Kind != "" {
			fmt.Fprintf(w, " %s", f.Kind)
		}
		fmt.Fprintf(w, "\n        %s", strings.ReplaceAll(f.Usage, "\n", "\n        "))
		if f.Default != "" {
			fmt.Fprintf(w, " (default %s)", f.Default)
		}
		fmt.Fprintln(w)
	}
}
