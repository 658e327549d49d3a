package compresskv_test

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

// The README's Quick start is the body of Example_quickStart between the
// markers, with the profile's path taken from the repository's root.
func Example_quickStart() {
	// README begin
	profile, err := compresskv.LoadProfile("../testdata/retrieval.profile.json") // SR heads + layer weights
	if err != nil {
		log.Fatal(err)
	}
	m := profile.Model // 2 layers, 8 query heads over 2 KV heads, d = 16
	cache, err := kvcache.NewHost(kvcache.Shape{Layers: m.Layers, KVHeads: m.KVHeads, HeadDim: m.HeadDim}, kvcache.Float16)
	if err != nil {
		log.Fatal(err)
	}
	queries := make([][]float32, m.Layers)
	for l := range queries {
		// Your model's prefill: each layer's keys and values, token-major
		// [n][KVHeads][HeadDim], and the post-RoPE queries of the last 8
		// prompt positions, [8][QueryHeads][HeadDim].
		k, v := yourKeysValues(m, 1024)
		if err := cache.Append(l, k, v); err != nil {
			log.Fatal(err)
		}
		queries[l] = yourWindowQueries(m, 8)
	}
	policy, err := compresskv.New(compresskv.CompressKV, compresskv.Config{
		Budget:  64, // tokens per layer on average, the window of 8 included
		Profile: profile,
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := policy.Compress(context.Background(), cache, queries, m.QueryHeads)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d -> %d bytes; tokens per layer %v\n", res.BytesBefore, res.BytesAfter, res.Budgets)
	// Decode on: cache.Append(layer, k, v) stores the next token at position
	// cache.Seen(layer) (1024), and cpu.New().Attend(cache, layer, q,
	// m.QueryHeads, out) attends over the kept tokens.
	// README end

	// Output:
	// 278528 -> 17408 bytes; tokens per layer [58 70]
}

var quickRNG = rand.New(rand.NewPCG(1, 2))

// yourKeysValues stands in for a model's prefill: n random tokens.
func yourKeysValues(m compresskv.ModelInfo, n int) (k, v []float32) {
	k = make([]float32, n*m.KVHeads*m.HeadDim)
	v = make([]float32, len(k))
	for i := range k {
		k[i], v[i] = float32(quickRNG.NormFloat64()), float32(quickRNG.NormFloat64())
	}
	return k, v
}

// yourWindowQueries stands in for the queries of the last w prompt tokens.
func yourWindowQueries(m compresskv.ModelInfo, w int) []float32 {
	q := make([]float32, w*m.QueryHeads*m.HeadDim)
	for i := range q {
		q[i] = float32(quickRNG.NormFloat64())
	}
	return q
}

// TestReadmeQuickStart keeps the README's Quick start equal to the Example
// that runs it.
func TestReadmeQuickStart(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)## Quick start.*?```go\n(.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README has no Go block under ## Quick start")
	}
	src, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	body := regexp.MustCompile("(?s)// README begin\n(.*?)\t// README end").FindSubmatch(src)
	if body == nil {
		t.Fatal("no README markers in readme_test.go")
	}
	norm := func(s string) []string {
		s = strings.ReplaceAll(s, `"../testdata/`, `"testdata/`)
		var out []string
		for _, line := range strings.Split(s, "\n") {
			if line = strings.TrimSpace(line); line != "" {
				out = append(out, line)
			}
		}
		return out
	}
	got, want := norm(string(block[1])), norm(string(body[1]))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("README Quick start and Example_quickStart differ:\nREADME:\n%s\n\nExample:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
