package session

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/kbuild"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/pipeline"
	"github.com/firstbad/firstbad/internal/search"
)

// A build proves the commits around it on first-parent links that change
// nothing it read and nothing of the build system; the walks stop at the
// first that does, and at a commit whose changes are unknown.
func TestSameKernelAround(t *testing.T) {
	//   a - b - c - d - e - m
	//        \             /
	//         x -----------
	nodes := []search.Commit{{ID: "a"}, {ID: "b", Parents: []string{"a"}}, {ID: "c", Parents: []string{"b"}}, {ID: "d", Parents: []string{"c"}},
		{ID: "e", Parents: []string{"d"}}, {ID: "x", Parents: []string{"b"}}, {ID: "m", Parents: []string{"e", "x"}}}
	// c's makefile is another arch's: the build read nothing under it.
	files := map[string][]string{"b": {"src/x.c"}, "c": {"doc/1", "arch/arm64/boot/dts/Makefile"}, "d": {"doc/2"}, "e": {"Makefile"}, "x": {"doc/3"}, "m": {"doc/3"}}
	inputs := kbuild.NewReads(map[string]int{"src/x.c": 1, "include/y.h": 3, "arch/x86/kernel/head_64.S": 1})
	for _, tt := range []struct {
		built string
		want  []string
	}{
		{"d", []string{"c", "d"}},
		{"c", []string{"c", "d"}},
		{"b", []string{"c", "d", "x"}},
		{"m", []string{"m"}}, // e changes the build system
		{"a", nil},           // b changes src/x.c
		{"e", []string{"m"}}, // e's own change is the build system's; m changes nothing e read
	} {
		got := sameKernelAround(nodes, files, tt.built, inputs)
		slices.Sort(got)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("built %s (-want +got):\n%s", tt.built, diff)
		}
	}
}

// --strategy bayes on a kernel run: commits the builds prove to be their
// parent's kernel share its cell, so a flaky bug is found with fewer
// builds than when every commit is its own hypothesis
// (--retest-same-kernel), and the culprit is the same: the commit whose
// kernel first went bad.
func TestBayesCells(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	builds, evals := map[bool]int{}, map[bool]int{}
	for trial := range 8 {
		k := kernelHistory{n: 40 + rng.IntN(20), changes: map[int]bool{}, sources: 5}
		for c := 1; c < k.n; c++ {
			k.changes[c] = rng.IntN(4) == 0
		}
		k.a = 1 + rng.IntN(k.n-2)
		k.b = k.a + 1 + rng.IntN(k.n-k.a-1)
		k.h = k.a + rng.IntN(k.b-k.a) // a header change only builds in [a, b) read
		changes := k.kernelChanges()
		culprit := changes[rng.IntN(len(changes))]
		name := fmt.Sprintf("trial %d: %d commits, %d kernels, a=%d b=%d h=%d, culprit %d", trial, k.n, len(changes)+1, k.a, k.b, k.h, culprit)
		for _, cells := range []bool{false, true} {
			w := k.world(t)
			w.judge = func(i, call int) pipeline.Run {
				if i >= culprit && call%3 != 1 {
					return bad // two runs in three fail on a bad kernel
				}
				return good
			}
			res, err := w.run(Input{Strategy: "bayes", RetestSameKernel: !cells})
			if err != nil {
				t.Fatalf("%s, cells %v: %v", name, cells, err)
			}
			if res.Outcome != outcome.Found || res.Culprit != w.repo.SHAs[culprit] {
				t.Fatalf("%s, cells %v: outcome %s culprit c%d (%s); evaluated %v; %s; kernel changes %v", name, cells, res.Outcome, w.index[res.Culprit], res.Message, w.evaluated, shaIndex(w, res.Message), changes)
			}
			distinct := map[int]bool{}
			for _, i := range w.evaluated {
				distinct[i] = true
			}
			builds[cells] += len(distinct)
			evals[cells] += len(w.evaluated)
			t.Logf("%s, cells %v: %d commits built, %d evaluations", name, cells, len(distinct), len(w.evaluated))
		}
	}
	t.Logf("commits built: %d with cells, %d without; evaluations %d and %d", builds[true], builds[false], evals[true], evals[false])
	if builds[true] >= builds[false] {
		t.Errorf("cells built %d commits against %d without: no saving", builds[true], builds[false])
	}
}

// shaIndex names the commits of w a message mentions by their index.
func shaIndex(w *world, msg string) string {
	var out []string
	for i, s := range w.repo.SHAs {
		if strings.Contains(msg, s[:12]) {
			out = append(out, fmt.Sprintf("%s=c%d", s[:12], i))
		}
	}
	return strings.Join(out, " ")
}
