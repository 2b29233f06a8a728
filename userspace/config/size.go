package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// sizeFlag is a number of bytes given as 65536, 64K, 64KiB, 1M, 1MiB, 1G
// or 1GiB (the suffixes are binary: K is 1024).
type sizeFlag struct{ n *int64 }

func (f sizeFlag) String() string {
	if f.n == nil {
		return ""
	}
	return formatSize(*f.n)
}

func (f sizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*f.n = n
	return nil
}

var sizeUnits = []struct {
	suffix string
	shift  uint
}{{"GIB", 30}, {"MIB", 20}, {"KIB", 10}, {"G", 30}, {"M", 20}, {"K", 10}, {"B", 0}}

func parseSize(s string) (int64, error) {
	num, shift := strings.ToUpper(strings.TrimSpace(s)), uint(0)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, shift = rest, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, errors.New("want a size such as 65536, 64KiB or 1MiB")
	}
	return n << shift, nil
}

func formatSize(n int64) string {
	for _, u := range sizeUnits[:3] {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, strings.Replace(u.suffix, "I", "i", 1))
		}
	}
	return strconv.FormatInt(n, 10)
}
