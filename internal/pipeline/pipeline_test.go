package pipeline

import (
	"testing"

	"github.com/firstbad/firstbad/internal/outcome"
)

func TestExitVerdict(t *testing.T) {
	cases := []struct {
		code   int
		invert bool
		want   outcome.Verdict
		abort  bool
	}{
		{0, false, outcome.Good, false},
		{1, false, outcome.Bad, false},
		{124, false, outcome.Bad, false},
		{125, false, outcome.Skip, false},
		{126, false, outcome.Bad, false},
		{127, false, outcome.Bad, false},
		{128, false, outcome.Skip, true},
		{255, false, outcome.Skip, true},
		{-1, false, outcome.Skip, true},
		{0, true, outcome.Bad, false},
		{1, true, outcome.Good, false},
		{125, true, outcome.Skip, false},
	}
	for _, c := range cases {
		v, abort := ExitVerdict(c.code, c.invert)
		if v != c.want || abort != c.abort {
			t.Errorf("ExitVerdict(%d, %v) = %v, %v; want %v, %v", c.code, c.invert, v, abort, c.want, c.abort)
		}
	}
}

func TestCombine(t *testing.T) {
	G, B, S := outcome.Good, outcome.Bad, outcome.Skip
	cases := []struct {
		runs  []outcome.Verdict
		want  outcome.Verdict
		flaky bool
	}{
		{[]outcome.Verdict{G}, G, false},
		{[]outcome.Verdict{B}, B, false},
		{[]outcome.Verdict{S, S}, S, false},
		{[]outcome.Verdict{G, S}, G, false},
		{[]outcome.Verdict{G, B, G}, B, true},
		{[]outcome.Verdict{S, B}, B, false},
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
