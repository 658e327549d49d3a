package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/internal/cli"
	"github.com/compresskv/compresskv/examples/llama"
	"github.com/compresskv/compresskv/examples/niah"
)

// diagStats gathers, for one policy, budget and prompt length, what the
// plans kept and what putting the first token back changes.
type diagStats struct {
	n, ok   int
	withAll int     // right answers when every KV head of every layer also keeps position 0
	withAt  [][]int // [layer][KV head]: right answers when only that head also keeps it
	first   [][]int // [layer][KV head]: prompts whose plan kept position 0
	value   [][]int // [layer][KV head]: prompts whose plan kept the needle's whole value
}

// sinkStats gathers, per prompt length, the attention that reaches position
// 0 (the first token) in each layer and KV head: from the observation
// window's queries, which the scorers read, and from the first answer
// token's query, which decoding uses.
type sinkStats struct {
	n              int
	window, answer [][]float64 // [layer][KV head]: summed mean weight per query head
	// headWindow and headAnswer are the same per query head, [layer][head].
	headWindow, headAnswer [][]float64
}

// diagnose runs every prompt under every compressing policy and budget and
// prints, per length: how much attention the first token gets from the
// window and from the answer, which layers and KV heads kept it and the
// needle's value, and the accuracy when the first token is put back into
// every head, or into one head at a time.
func diagnose(m *cli.Model, o *options, jobs []job, policies map[string]map[int]*compresskv.Policy, w, progress io.Writer) error {
	type key struct {
		policy string
		budget int
		length int
	}
	var mu sync.Mutex
	stats := map[key]*diagStats{}
	sinks := map[int]*sinkStats{}
	G, nl := m.KVHeads, m.Layers
	grid := func() [][]int {
		g := make([][]int, nl)
		for l := range g {
			g[l] = make([]int, G)
		}
		return g
	}
	var names []string
	for name := range policies {
		if name != string(compresskv.Full) {
			names = append(names, name)
		}
	}
	sort.Strings(names)

	work := make(chan job)
	errs := make(chan error, len(jobs))
	var wg sync.WaitGroup
	done := 0
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				L := o.lengths[j.li]
				pre, err := cli.Prefill(m.Model, o.dtype, j.p.Tokens)
				if err != nil {
					errs <- err
					continue
				}
				sk, err := firstTokenAttention(pre)
				if err != nil {
					errs <- err
					continue
				}
				type result struct {
					key key
					st  diagStats
				}
				var results []result
				for _, name := range names {
					for b, pol := range policies[name] {
						if err != nil {
							break
						}
						var st diagStats
						st, err = diagnosePrompt(m, pre, j.p, pol, grid)
						results = append(results, result{key{name, b, L}, st})
					}
				}
				if err != nil {
					errs <- err // one per prompt at most: the channel holds one per prompt
					continue
				}
				mu.Lock()
				ss := sinks[L]
				if ss == nil {
					ss = &sinkStats{window: make([][]float64, nl), answer: make([][]float64, nl),
						headWindow: make([][]float64, nl), headAnswer: make([][]float64, nl)}
					for l := range ss.window {
						ss.window[l], ss.answer[l] = make([]float64, G), make([]float64, G)
						ss.headWindow[l], ss.headAnswer[l] = make([]float64, m.Heads), make([]float64, m.Heads)
					}
					sinks[L] = ss
				}
				ss.n++
				for l := range nl {
					for g := range G {
						ss.window[l][g] += sk.window[l][g]
						ss.answer[l][g] += sk.answer[l][g]
					}
					for h := range m.Heads {
						ss.headWindow[l][h] += sk.headWindow[l][h]
						ss.headAnswer[l][h] += sk.headAnswer[l][h]
					}
				}
				for _, r := range results {
					d := stats[r.key]
					if d == nil {
						d = &diagStats{withAt: grid(), first: grid(), value: grid()}
						stats[r.key] = d
					}
					d.n += r.st.n
					d.ok += r.st.ok
					d.withAll += r.st.withAll
					for l := range nl {
						for g := range G {
							d.withAt[l][g] += r.st.withAt[l][g]
							d.first[l][g] += r.st.first[l][g]
							d.value[l][g] += r.st.value[l][g]
						}
					}
				}
				done++
				if done%10 == 0 || done == len(jobs) {
					fmt.Fprintf(progress, "diagnose: %d/%d prompts\n", done, len(jobs))
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}

	heads := make([]string, 0, nl*G)
	for l := range nl {
		for g := range G {
			heads = append(heads, fmt.Sprintf("%d.%d", l, g))
		}
	}
	fmt.Fprintf(w, "diagnosis: lengths %v, %d depths, %d needle(s) per cell, %v cache, pooling kernel %d; layer.KV head columns %s\n",
		o.lengths, o.depths, o.needles, o.dtype, o.kernel, strings.Join(heads, " "))
	fmt.Fprintln(w, "attention weight on the first token (position 0), mean per query head: window queries (what the scorers read) / first answer token (what decoding reads):")
	tw := cli.NewTable(w, []string{"length", "prompts"}, heads)
	for _, L := range o.lengths {
		s := sinks[L]
		fmt.Fprintf(tw, "%d\t%d\t", L, s.n)
		for l := range nl {
			for g := range G {
				fmt.Fprintf(tw, "%.3f / %.3f\t", s.window[l][g]/float64(s.n), s.answer[l][g]/float64(s.n))
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w, "the same per query head (KV head = head / query heads per KV head):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "length\tlayer\t")
	for h := range m.Heads {
		fmt.Fprintf(tw, "head %d\t", h)
	}
	fmt.Fprintln(tw)
	for _, L := range o.lengths {
		s := sinks[L]
		for l := range nl {
			fmt.Fprintf(tw, "%d\t%d\t", L, l)
			for h := range m.Heads {
				fmt.Fprintf(tw, "%.3f / %.3f\t", s.headWindow[l][h]/float64(s.n), s.headAnswer[l][h]/float64(s.n))
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "right answers: as planned; with position 0 put back into every KV head; into one KV head only. Then the prompts whose plan kept position 0, and the needle's whole value, per KV head:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "policy\tbudget\tlength\tright\t+pos 0 all\t")
	for _, h := range heads {
		fmt.Fprintf(tw, "+pos 0 at %s\t", h)
	}
	fmt.Fprint(tw, "pos 0 kept\tvalue kept\t")
	fmt.Fprintln(tw)
	for _, name := range names {
		for _, b := range o.budgets {
			for _, L := range o.lengths {
				d := stats[key{name, b, L}]
				if d == nil {
					continue
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d/%d\t%d\t", name, b, L, d.ok, d.n, d.withAll)
				for l := range nl {
					for g := range G {
						fmt.Fprintf(tw, "%d\t", d.withAt[l][g])
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t", joinGrid(d.first), joinGrid(d.value))
				fmt.Fprintln(tw)
			}
		}
	}
	return tw.Flush()
}

func joinGrid(g [][]int) string {
	var parts []string
	for _, row := range g {
		for _, v := range row {
			parts = append(parts, fmt.Sprint(v))
		}
	}
	return strings.Join(parts, " ")
}

// firstTokenAttention measures, over the prefilled cache of a prompt, the
// attention weight on position 0 per layer and KV head (mean over its query
// heads): from the window's queries (mean over them) and from the first
// answer token's query.
func firstTokenAttention(pre *cli.Prefilled) (sinkStats, error) {
	m, cache, logits, q := pre.Model, pre.Cache, pre.Logits, pre.Queries
	s := pre.Full()
	var answerQ [][]float32
	s.Hooks.Query = func(layer, _ int, x []float32) { answerQ = append(answerQ, append([]float32(nil), x...)) }
	if _, err := s.Forward([]int{llama.Argmax(logits)}); err != nil {
		return sinkStats{}, err
	}
	b := cpu.New()
	H, G, per := m.Heads, m.KVHeads, m.Heads*m.HeadDim()
	Wn := compresskv.DefaultWindow
	L := cache.Len(0, 0)
	heads := make([]int, H)
	for h := range heads {
		heads[h] = h
	}
	st := sinkStats{n: 1, window: make([][]float64, m.Layers), answer: make([][]float64, m.Layers),
		headWindow: make([][]float64, m.Layers), headAnswer: make([][]float64, m.Layers)}
	for l := range m.Layers {
		st.window[l], st.answer[l] = make([]float64, G), make([]float64, G)
		st.headWindow[l], st.headAnswer[l] = make([]float64, H), make([]float64, H)
		out := make([][]float32, H)
		for h := range out {
			out[h] = make([]float32, L)
		}
		if err := b.WindowScores(cache, l, q[l][(L-Wn)*per:], Wn, H, heads, out); err != nil {
			return sinkStats{}, err
		}
		aw, err := b.AttentionWeights(s.Cache(), l, answerQ[l], H, nil)
		if err != nil {
			return sinkStats{}, err
		}
		for h := range H {
			g := h / (H / G)
			st.window[l][g] += float64(out[h][0]) / float64(Wn) / float64(H/G)
			st.answer[l][g] += float64(aw[h][0]) / float64(H/G)
			st.headWindow[l][h] = float64(out[h][0]) / float64(Wn)
			st.headAnswer[l][h] = float64(aw[h][0])
		}
	}
	return st, nil
}

// diagnosePrompt compresses p's prefilled cache with pol, decodes, and then
// decodes again with position 0 added to the plan: in every KV head of every
// layer, then in one KV head at a time.
func diagnosePrompt(mod *cli.Model, pre *cli.Prefilled, p niah.Prompt, pol *compresskv.Policy, grid func() [][]int) (diagStats, error) {
	st := diagStats{n: 1, withAt: grid(), first: grid(), value: grid()}
	m, cache, logits := pre.Model, pre.Cache, pre.Logits
	cs, res, err := pre.Compress(context.Background(), pol)
	if err != nil {
		return st, err
	}
	answer := func(s *llama.Session) (int, error) {
		ok, err := mod.Answer(s, logits, p)
		if err != nil || !ok {
			return 0, err
		}
		return 1, nil
	}
	if st.ok, err = answer(cs); err != nil {
		return st, err
	}
	plan := res.Plan
	for l, hs := range plan.Keep {
		for g, rows := range hs {
			if len(rows) > 0 && rows[0] == 0 {
				st.first[l][g]++
			}
			if keptWhole([][]int{rows}, p.ValueStart, p.ValueEnd) {
				st.value[l][g]++
			}
		}
		if hs == nil { // the layer kept everything
			for g := range st.first[l] {
				st.first[l][g]++
				st.value[l][g]++
			}
		}
	}
	withFirst := func(at func(l, g int) bool) (int, error) {
		keep := make([][][]int, len(plan.Keep))
		for l, hs := range plan.Keep {
			if hs == nil {
				continue
			}
			keep[l] = make([][]int, len(hs))
			for g, rows := range hs {
				keep[l][g] = rows
				if at(l, g) && (len(rows) == 0 || rows[0] != 0) {
					keep[l][g] = append([]int{0}, rows...)
				}
			}
		}
		c := cache.Clone()
		if err := pol.Apply(c, &compresskv.Plan{Keep: keep}); err != nil {
			return 0, err
		}
		ds, _ := m.NewSession(c, nil)
		return answer(ds)
	}
	if st.withAll, err = withFirst(func(int, int) bool { return true }); err != nil {
		return st, err
	}
	for l := range st.withAt {
		for g := range st.withAt[l] {
			if st.withAt[l][g], err = withFirst(func(ll, gg int) bool { return ll == l && gg == g }); err != nil {
				return st, err
			}
		}
	}
	return st, nil
}
