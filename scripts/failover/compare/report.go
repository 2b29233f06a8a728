package main

// The report: per phase and side, the medians of the runs, as text and
// Markdown.

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/catherd/catherd/scripts/failover"
)

type rendered struct{ text, markdown string }

var metrics = []struct {
	name string
	get  func(failover.Report) int64
}{
	{"requests", func(r failover.Report) int64 { return r.Requests }},
	{"failed", func(r failover.Report) int64 { return r.Failed }},
	{"lost", func(r failover.Report) int64 { return r.Lost }},
	{"recounted", func(r failover.Report) int64 { return r.Recounted }},
	{"moves", func(r failover.Report) int64 { return r.Moves }},
	{"split", func(r failover.Report) int64 { return r.Split }},
	{"back", func(r failover.Report) int64 { return r.Back }},
}

// table is phases x metrics; every cell holds one value per side.
type table struct {
	phases []string
	cells  map[string][][]string // phase -> metric -> side -> value
}

// tableOf builds a table from one value source per side; value returns
// the cell for a phase ("" for the totals row) and metric, or "-".
func tableOf(phases []string, sides []string, value func(side, phase string, metric int) string) table {
	t := table{phases: append(append([]string(nil), phases...), "total"), cells: map[string][][]string{}}
	for _, p := range t.phases {
		row := make([][]string, len(metrics))
		for m := range metrics {
			for _, s := range sides {
				key := p
				if p == "total" {
					key = ""
				}
				row[m] = append(row[m], value(s, key, m))
			}
		}
		t.cells[p] = row
	}
	return t
}

func (t table) text(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-18s\t", "phase")
	for _, m := range metrics {
		fmt.Fprintf(tw, "%s\t", m.name)
	}
	fmt.Fprintln(tw)
	for _, p := range t.phases {
		fmt.Fprintf(tw, "%-18s\t", p) // padded: left-aligned in a right-aligned table
		for _, vals := range t.cells[p] {
			fmt.Fprintf(tw, "%s\t", strings.Join(vals, " / "))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func (t table) markdown(w io.Writer) {
	fmt.Fprint(w, "| phase |")
	for _, m := range metrics {
		fmt.Fprintf(w, " %s |", m.name)
	}
	fmt.Fprint(w, "\n| --- |")
	for range metrics {
		fmt.Fprint(w, " ---: |")
	}
	fmt.Fprintln(w)
	for _, p := range t.phases {
		name := p
		if p == "total" {
			name = "**total**"
		}
		fmt.Fprintf(w, "| %s |", name)
		for _, vals := range t.cells[p] {
			fmt.Fprintf(w, " %s |", strings.Join(vals, " / "))
		}
		fmt.Fprintln(w)
	}
}

// value of metric m in phase p of reps ("" p: the sum over all phases).
func value(reps []failover.Report, p string, m int) (int64, bool) {
	var sum int64
	found := false
	for _, r := range reps {
		if p == "" || r.Phase == p {
			sum += metrics[m].get(r)
			found = true
		}
	}
	return sum, found
}

func median(v []int64) string {
	if len(v) == 0 {
		return "-"
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	if len(v)%2 == 1 {
		return strconv.FormatInt(v[len(v)/2], 10)
	}
	a, b := v[len(v)/2-1], v[len(v)/2]
	if (a+b)%2 == 0 {
		return strconv.FormatInt((a+b)/2, 10)
	}
	return strconv.FormatFloat(float64(a+b)/2, 'f', 1, 64)
}

func renderAll(sides []string, results map[string][]result, runs int) rendered {
	// The phase names, in order, from the first side and run that has them all.
	var phases []string
	for _, s := range sides {
		for _, r := range results[s] {
			if len(r.reports) > len(phases) {
				phases = nil
				for _, rep := range r.reports {
					phases = append(phases, rep.Phase)
				}
			}
		}
	}
	var txt, md strings.Builder
	legend := "each cell: " + strings.Join(sides, " / ")
	runNote := func(r int) string {
		var bad []string
		for _, s := range sides {
			if r < len(results[s]) && results[s][r].err != nil {
				bad = append(bad, s)
			}
		}
		if len(bad) == 0 {
			return ""
		}
		return " (scenario did not complete for " + strings.Join(bad, ", ") + ")"
	}
	for r := 0; r < runs; r++ {
		t := tableOf(phases, sides, func(side, p string, m int) string {
			if r >= len(results[side]) || results[side][r].reports == nil {
				return "-"
			}
			v, ok := value(results[side][r].reports, p, m)
			if !ok {
				return "-"
			}
			return strconv.FormatInt(v, 10)
		})
		fmt.Fprintf(&txt, "\nRun %d%s; %s\n", r+1, runNote(r), legend)
		t.text(&txt)
		fmt.Fprintf(&md, "\nRun %d%s; %s:\n\n", r+1, runNote(r), legend)
		t.markdown(&md)
	}
	if runs > 1 {
		t := tableOf(phases, sides, func(side, p string, m int) string {
			var vs []int64
			for _, res := range results[side] {
				if res.err != nil {
					continue
				}
				if v, ok := value(res.reports, p, m); ok {
					vs = append(vs, v)
				}
			}
			return median(vs)
		})
		fmt.Fprintf(&txt, "\nMedian of %d runs (completed runs only); %s\n", runs, legend)
		t.text(&txt)
		fmt.Fprintf(&md, "\nMedian of %d runs (completed runs only); %s:\n\n", runs, legend)
		t.markdown(&md)
	}
	return rendered{text: txt.String(), markdown: md.String()}
}
