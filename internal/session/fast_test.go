package session

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/firstbad/firstbad/internal/git"
	"github.com/firstbad/firstbad/internal/gittest"
	"github.com/firstbad/firstbad/internal/outcome"
	"github.com/firstbad/firstbad/internal/pipeline"
	"github.com/firstbad/firstbad/internal/search"
)

// kernelHistory is a history whose commits change the kernel or not, as a
// build would see it. Every build reads src/includer and the src/cK files
// of the commits K in changes (each adds its own); the others add doc/dI,
// which no build reads. The includer starts including hdr at commit a and
// stops at b (both change the includer), so hdr is read only by builds in
// [a, b): commit h, which changes hdr, changes the kernel only if a <= h < b,
// and a build outside that stretch (the bad endpoint's) does not know.
//
// With sources > 0 the kernel changes edit one of that many source files,
// all there from commit 0 and read by every build, instead of adding a
// file the builds then read: what kbuild needs for a build's inputs to say
// what a later tree builds (a new file is built only when a Makefile or a
// file already read names it).
type kernelHistory struct {
	n       int
	changes map[int]bool
	a, b, h int
	sources int
}

// source is the file kernel change c writes.
func (k kernelHistory) source(c int) string {
	if k.sources > 0 {
		return fmt.Sprintf("src/s%d", c%k.sources)
	}
	return fmt.Sprintf("src/c%d", c)
}

// version is the last commit at or before i that wrote file.
func (k kernelHistory) version(file string, i int) int {
	v := 0
	for c := 1; c <= i; c++ {
		if slices.Contains(k.writes(c), file) {
			v = c
		}
	}
	return v
}

// writes lists the files commit c writes.
func (k kernelHistory) writes(c int) []string {
	if c == 0 {
		w := []string{"src/includer", "hdr", "src/c0"}
		for i := range k.sources {
			w = append(w, k.source(i))
		}
		return w
	}
	var w []string
	if k.changes[c] {
		w = append(w, k.source(c))
	}
	if c == k.a || c == k.b {
		w = append(w, "src/includer")
	}
	if c == k.h {
		w = append(w, "hdr")
	}
	if len(w) == 0 {
		w = append(w, fmt.Sprintf("doc/d%d", c))
	}
	return w
}

func (k kernelHistory) inputs(i int) []string {
	in := []string{"src/includer", "src/c0"}
	for c := 0; c < k.sources; c++ {
		in = append(in, k.source(c))
	}
	for c := 1; c <= i && k.sources == 0; c++ {
		if k.changes[c] {
			in = append(in, k.source(c))
		}
	}
	if k.a <= i && i < k.b {
		in = append(in, "hdr")
	}
	return in
}

// image is the kernel commit i builds: what its build reads, at the
// versions it reads.
func (k kernelHistory) image(i int) string {
	var parts []string
	for _, f := range k.inputs(i) {
		parts = append(parts, fmt.Sprintf("%s@%d", f, k.version(f, i)))
	}
	return strings.Join(parts, " ")
}

// kernelChanges are the commits whose kernel differs from their parent's.
func (k kernelHistory) kernelChanges() []int {
	var out []int
	for i := 1; i < k.n; i++ {
		if k.image(i) != k.image(i-1) {
			out = append(out, i)
		}
	}
	return out
}

func (k kernelHistory) world(t *testing.T) *world {
	var b gittest.Builder
	for c := range k.n {
		files := map[string]string{}
		for _, f := range k.writes(c) {
			files[f] = fmt.Sprint(c)
		}
		if c == 0 {
			b.CommitFiles("commit 0", files)
		} else {
			b.CommitFiles(fmt.Sprintf("commit %d", c), files, c-1)
		}
	}
	w := &world{t: t, repo: b.Write(t), index: map[string]int{}, calls: map[int]int{}, dir: t.TempDir()}
	for i, s := range w.repo.SHAs {
		w.index[s] = i
	}
	w.image, w.inputs, w.kernel = k.image, k.inputs, &pipeline.KernelConfig{}
	return w
}

// The search over kernels finds the commit whose kernel first went bad —
// the same answer as classic's on a deterministic test — in fewer steps,
// never building a commit that cannot change the kernel. On random
// histories, with the culprit anywhere, including a change to a header
// that the bad endpoint's build does not read (its marks are wrong there:
// the end's proof catches it).
func TestFastSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var fastSteps, plannedSteps, classicSteps, marked int
	for trial := range 24 {
		k := kernelHistory{n: 40 + rng.IntN(40), changes: map[int]bool{}}
		for c := 1; c < k.n; c++ {
			k.changes[c] = rng.IntN(4) == 0
		}
		k.a = 1 + rng.IntN(k.n-2)
		k.b = k.a + 1 + rng.IntN(k.n-k.a-1)
		k.h = 1 + rng.IntN(k.n-1)
		if trial%3 == 0 { // the culprit is the hidden header change
			k.h = k.a + rng.IntN(k.b-k.a)
			k.changes[k.h] = false
		}
		changes := k.kernelChanges()
		culprit := changes[rng.IntN(len(changes))]
		if trial%3 == 0 && k.h > 0 && k.image(k.h) != k.image(k.h-1) {
			culprit = k.h
		}
		name := fmt.Sprintf("trial %d: %d commits, %d kernels, a=%d b=%d h=%d, culprit %d", trial, k.n, len(changes)+1, k.a, k.b, k.h, culprit)
		steps := map[string]int{}
		// "marks": fast without its plan, which trades steps for cheaper
		// builds (here every build costs the same second, every test
		// nothing: it takes more steps, to no gain; TestPlanSearch weighs
		// it where builds cost what they recompile).
		for _, strategy := range []string{"fast", "marks", "classic"} {
			w := k.world(t)
			w.judge = from(culprit)
			no := false
			planning = strategy != "marks"
			res, err := w.run(Input{Strategy: strings.Replace(strategy, "marks", "fast", 1), Confirm: &no, RevertCheck: "off"})
			planning = true
			if err != nil {
				t.Fatalf("%s, %s: %v", name, strategy, err)
			}
			if res.Outcome != outcome.Found || res.Culprit != w.repo.SHAs[culprit] {
				t.Fatalf("%s, %s: outcome %s culprit c%d (%s); evaluated %v", name, strategy, res.Outcome, w.index[res.Culprit], res.Message, w.evaluated)
			}
			steps[strategy] = len(w.evaluated)
			if strategy == "marks" {
				r, err := w.last.Report(t.Context(), res.RunID)
				if err != nil {
					t.Fatal(err)
				}
				marked += r.SameKernel
			}
		}
		fastSteps += steps["marks"]
		plannedSteps += steps["fast"]
		classicSteps += steps["classic"]
		t.Logf("%s: fast %d evaluations (%d planned), classic %d", name, steps["marks"], steps["fast"], steps["classic"])
	}
	t.Logf("all trials: fast %d evaluations (%d planned), classic %d; %d candidates never built", fastSteps, plannedSteps, classicSteps, marked)
	if fastSteps >= classicSteps || marked == 0 {
		t.Errorf("fast took %d evaluations against classic's %d, %d candidates never built: no saving", fastSteps, classicSteps, marked)
	}
}

// On merge-heavy graphs: commits write src/a, src/b (what every build
// reads) or doc files (what none reads), merges mostly only join trees, and
// a commit is bad when its src/a is at least a given version — a verdict
// of its kernel alone, possibly with several first bad commits. Every
// strategy must name a valid one: bad, with every parent in the range
// good (bayes with its cells of proven same kernels).
func TestFastSearchMerges(t *testing.T) {
	ctx := t.Context()
	var fastSteps, classicSteps int
	for seed := range uint64(6) {
		b := gittest.Builder{Files: []string{"src/a", "src/b", "doc/x", "doc/y", "doc/z", "doc/w"}, FileSeed: seed}
		b.CommitFiles("commit 0", map[string]string{"src/a": "0", "src/b": "0", "doc/x": "0"})
		b.MergeHeavy(0, 60, seed)
		repo := b.Write(t)
		r := &git.Repo{Dir: repo.Dir}
		version := make([]int, len(repo.SHAs))
		image := make([]string, len(repo.SHAs))
		var writers []int
		for i, sha := range repo.SHAs {
			a, err := r.Run(ctx, "show", sha+":src/a")
			bv, err2 := r.Run(ctx, "show", sha+":src/b")
			if err != nil || err2 != nil {
				t.Fatal(err, err2)
			}
			fmt.Sscan(string(a), &version[i])
			image[i] = "a=" + strings.TrimSpace(string(a)) + " b=" + strings.TrimSpace(string(bv))
			if version[i] == i && i > 0 {
				writers = append(writers, i)
			}
		}
		parents := map[string][]string{}
		out, _ := r.Run(ctx, "rev-list", "--parents", repo.SHAs[len(repo.SHAs)-1])
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(l)
			parents[f[0]] = f[1:]
		}
		for _, threshold := range writers[:min(4, len(writers))] {
			name := fmt.Sprintf("seed %d, bad from src/a version %d", seed, threshold)
			bad := func(i int) bool { return version[i] >= threshold }
			for _, strategy := range []string{"fast", "classic", "bayes"} {
				if strategy == "bayes" && seed >= 2 {
					continue // the slowest search: two graphs are enough for its validity
				}
				w := &world{t: t, repo: repo, index: map[string]int{}, calls: map[int]int{}, dir: t.TempDir()}
				for i, s := range repo.SHAs {
					w.index[s] = i
				}
				w.image = func(i int) string { return image[i] }
				w.inputs = func(int) []string { return []string{"src/a", "src/b"} }
				w.kernel = &pipeline.KernelConfig{}
				w.judge = func(i, _ int) pipeline.Run {
					if bad(i) {
						return pipeline.Run{Verdict: outcome.Bad, ExitCode: 1, Reason: "exit 1"}
					}
					return pipeline.Run{Verdict: outcome.Good, Reason: "exit 0"}
				}
				no := false
				res, err := w.run(Input{Strategy: strategy, Confirm: &no, RevertCheck: "off"})
				if err != nil {
					t.Fatalf("%s, %s: %v", name, strategy, err)
				}
				c := w.index[res.Culprit]
				if res.Outcome != outcome.Found || !bad(c) {
					t.Fatalf("%s, %s: outcome %s culprit %d (%s)", name, strategy, res.Outcome, c, res.Message)
				}
				for _, p := range parents[res.Culprit] {
					if pi, ok := w.index[p]; ok && pi != 0 && bad(pi) {
						t.Errorf("%s, %s: culprit %d has a bad parent %d", name, strategy, c, pi)
					}
				}
				switch strategy {
				case "fast":
					fastSteps += len(w.evaluated)
				case "classic":
					classicSteps += len(w.evaluated)
				}
			}
		}
	}
	t.Logf("fast %d evaluations, classic %d", fastSteps, classicSteps)
	if fastSteps >= classicSteps {
		t.Errorf("fast took %d evaluations against classic's %d", fastSteps, classicSteps)
	}
}

// On a line of kernels where one commit changes a header most objects
// include, planning the tests by their builds' costs (plan.go) spends
// fewer build seconds than git's midpoints over the same kernels, and
// finds the same culprits: after the bad endpoint's build, the kernels on
// its side of that commit are cheap to reach, the others cost a whole
// build each time the search crosses it.
func TestPlanSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var with, without time.Duration
	var stepsWith, stepsWithout int
	for trial := range 12 {
		n := 60 + rng.IntN(30)
		heavy := 5 + rng.IntN(n-10)
		writes := make([][]string, n)
		writes[0] = []string{"include/big.h", "src/s0", "src/s1", "src/s2", "src/s3", "src/s4", "src/s5"}
		var changes []int
		for c := 1; c < n; c++ {
			switch {
			case c == heavy:
				writes[c] = []string{"include/big.h"}
			case rng.IntN(3) == 0:
				writes[c] = []string{fmt.Sprintf("src/s%d", rng.IntN(6))}
			default:
				writes[c] = []string{fmt.Sprintf("doc/d%d", c)}
				continue
			}
			changes = append(changes, c)
		}
		// version[i][f]: the commit that last wrote file f at commit i.
		version := make([]map[string]int, n)
		for i := range n {
			version[i] = map[string]int{}
			if i > 0 {
				maps.Copy(version[i], version[i-1])
			}
			for _, f := range writes[i] {
				version[i][f] = i
			}
		}
		targets := func(f string) int {
			if f == "include/big.h" {
				return 300
			}
			return 1
		}
		culprit := changes[rng.IntN(len(changes))]
		name := fmt.Sprintf("trial %d: %d commits, %d kernels, big.h at %d, culprit %d", trial, n, len(changes)+1, heavy, culprit)
		for _, plan := range []bool{true, false} {
			var b gittest.Builder
			for c := range n {
				files := map[string]string{}
				for _, f := range writes[c] {
					files[f] = fmt.Sprint(c)
				}
				if c == 0 {
					b.CommitFiles("commit 0", files)
				} else {
					b.CommitFiles(fmt.Sprintf("commit %d", c), files, c-1)
				}
			}
			w := &world{t: t, repo: b.Write(t), index: map[string]int{}, calls: map[int]int{}, dir: t.TempDir(), kernel: &pipeline.KernelConfig{}}
			for i, s := range w.repo.SHAs {
				w.index[s] = i
			}
			w.image = func(i int) string { return fmt.Sprint(version[i]) }
			w.inputs = func(int) []string {
				var in []string
				for _, f := range writes[0] {
					in = append(in, fmt.Sprintf("%s\t%d", f, targets(f)))
				}
				return in
			}
			// make's walk and the link, and half a second an object.
			w.buildCost = func(from, to int) time.Duration {
				objects := 0
				for _, f := range writes[0] {
					if from < 0 || version[from][f] != version[to][f] {
						objects += targets(f)
					}
				}
				return 20*time.Second + time.Duration(objects)*time.Second/2
			}
			w.judge = from(culprit)
			planning = plan
			no := false
			res, err := w.run(Input{Strategy: "fast", Confirm: &no, RevertCheck: "off"})
			planning = true
			if err != nil {
				t.Fatalf("%s, plan %v: %v", name, plan, err)
			}
			if res.Outcome != outcome.Found || res.Culprit != w.repo.SHAs[culprit] {
				t.Fatalf("%s, plan %v: outcome %s culprit c%d (%s); evaluated %v", name, plan, res.Outcome, w.index[res.Culprit], res.Message, w.evaluated)
			}
			t.Logf("%s, plan %v: %d evaluations %v, builds %v", name, plan, len(w.evaluated), w.evaluated, w.buildTime)
			if plan {
				with += w.buildTime
				stepsWith += len(w.evaluated)
			} else {
				without += w.buildTime
				stepsWithout += len(w.evaluated)
			}
		}
	}
	t.Logf("all trials: builds %v planned (%d evaluations), %v at the midpoints (%d evaluations)", with, stepsWith, without, stepsWithout)
	if with >= without {
		t.Errorf("planned builds took %v, the midpoints' %v: no saving", with, without)
	}
}

// A plan needs a line: the range oldest first, or nil with a merge in it —
// unless the search walks first parents, whose chain is the line.
func TestLine(t *testing.T) {
	//   a - b - c - m - d
	//    \         /
	//     x ------
	linear := []search.Commit{{ID: "b", Parents: []string{"a"}}, {ID: "c", Parents: []string{"b"}}, {ID: "d", Parents: []string{"c"}}}
	merged := []search.Commit{{ID: "b", Parents: []string{"a"}}, {ID: "c", Parents: []string{"b"}}, {ID: "x", Parents: []string{"a"}},
		{ID: "m", Parents: []string{"c", "x"}}, {ID: "d", Parents: []string{"m"}}}
	for _, c := range []struct {
		name        string
		nodes       []search.Commit
		firstParent bool
		want        []string
	}{
		{"linear", linear, false, []string{"b", "c", "d"}},
		{"a merge", merged, false, nil},
		{"a merge, first parents", merged, true, []string{"b", "c", "m", "d"}},
	} {
		if diff := cmp.Diff(c.want, line(c.nodes, "d", c.firstParent)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
}
