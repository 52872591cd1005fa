package pipeline

import (
	"testing"

	"github.com/firstbad/firstbad/internal/search"
)

func TestExitVerdict(t *testing.T) {
	cases := []struct {
		code   int
		invert bool
		want   search.Verdict
		abort  bool
	}{
		{0, false, search.Good, false},
		{1, false, search.Bad, false},
		{124, false, search.Bad, false},
		{125, false, search.Skip, false},
		{126, false, search.Bad, false},
		{127, false, search.Bad, false},
		{128, false, search.Skip, true},
		{255, false, search.Skip, true},
		{-1, false, search.Skip, true},
		{0, true, search.Bad, false},
		{1, true, search.Good, false},
		{125, true, search.Skip, false},
	}
	for _, c := range cases {
		v, abort := ExitVerdict(c.code, c.invert)
		if v != c.want || abort != c.abort {
			t.Errorf("ExitVerdict(%d, %v) = %v, %v; want %v, %v", c.code, c.invert, v, abort, c.want, c.abort)
		}
	}
}

func TestCombine(t *testing.T) {
	G, B, S := search.Good, search.Bad, search.Skip
	cases := []struct {
		runs  []search.Verdict
		want  search.Verdict
		flaky bool
	}{
		{[]search.Verdict{G}, G, false},
		{[]search.Verdict{B}, B, false},
		{[]search.Verdict{S, S}, S, false},
		{[]search.Verdict{G, S}, G, false},
		{[]search.Verdict{G, B, G}, B, true},
		{[]search.Verdict{S, B}, B, false},
		{nil, S, false},
	}
	for _, c := range cases {
		var runs []Run
		for _, v := range c.runs {
			runs = append(runs, Run{Verdict: v})
		}
		v, flaky := Combine(runs)
		if v != c.want || flaky != c.flaky {
			t.Errorf("Combine(%v) = %v, %v; want %v, %v", c.runs, v, flaky, c.want, c.flaky)
		}
	}
}
