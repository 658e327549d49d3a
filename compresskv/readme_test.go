package compresskv_test

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/printer"
	"go/token"
	"log"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compresskv/compresskv/backend/cpu"
	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

// The README's Quick start is a whole program: its main is the body of
// Example_quickStart between the markers, its helpers are the ones below,
// and it imports what they use. TestReadmeQuickStart keeps them equal; CI
// builds the README's program in a module of its own (.ci/install).
func Example_quickStart() {
	defer func(args []string) { os.Args = args }(os.Args)
	os.Args = []string{"quickstart", "../testdata/retrieval.profile.json"}
	// README begin
	if len(os.Args) != 2 {
		log.Fatal("usage: quickstart PROFILE (the project's model's: ../compresskv/testdata/retrieval.profile.json)")
	}
	// A profile names each layer's semantic retrieval heads and weighs the
	// layers; this one is the project's small model's (make your model's
	// with package calibrate).
	profile, err := compresskv.LoadProfile(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	m := profile.Model // compresskv.ModelInfo: 2 layers, 8 query heads over 2 KV heads, HeadDim 16
	cache, err := kvcache.NewHost(kvcache.Shape{Layers: m.Layers, KVHeads: m.KVHeads, HeadDim: m.HeadDim}, kvcache.Float16)
	if err != nil {
		log.Fatal(err)
	}
	// Prefill: every layer's keys and values of the 1,024 prompt tokens, and
	// the queries of the last 8 (the observation window), all flat
	// []float32, token-major.
	queries := make([][]float32, m.Layers) // per layer: [8][QueryHeads][HeadDim]
	for l := range m.Layers {
		k, v := yourKeysValues(m, 1024) // [1024][KVHeads][HeadDim] each
		if err := cache.Append(l, k, v); err != nil {
			log.Fatal(err)
		}
		queries[l] = yourQueries(m, 8)
	}
	policy, err := compresskv.New(compresskv.CompressKV, compresskv.Config{
		Budget:  64, // tokens kept per layer on average, the window of 8 included
		Profile: profile,
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := policy.Compress(context.Background(), cache, queries, m.QueryHeads)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d -> %d bytes; tokens kept per layer %v\n", res.BytesBefore, res.BytesAfter, res.Budgets)
	// Decode on: the next token is stored at position cache.Seen(layer),
	// 1024, and attends over the tokens kept.
	attention := cpu.New()
	out := make([]float32, m.QueryHeads*m.HeadDim) // [QueryHeads][HeadDim]
	for l := range m.Layers {
		k, v := yourKeysValues(m, 1)
		if err := cache.Append(l, k, v); err != nil {
			log.Fatal(err)
		}
		if err := attention.Attend(cache, l, yourQueries(m, 1), m.QueryHeads, out); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("token %d decoded over %d cached tokens in layer 0\n", cache.Seen(0)-1, cache.Len(0, 0))
	// README end

	// Output:
	// 278528 -> 17408 bytes; tokens kept per layer [58 70]
	// token 1024 decoded over 59 cached tokens in layer 0
}

var quickRNG = rand.New(rand.NewPCG(1, 2))

// yourKeysValues stands in for your model's prefill of one layer: the
// post-RoPE keys and the values of n tokens, [n][KVHeads][HeadDim] each.
func yourKeysValues(m compresskv.ModelInfo, n int) (k, v []float32) {
	k = make([]float32, n*m.KVHeads*m.HeadDim)
	v = make([]float32, len(k))
	for i := range k {
		k[i], v[i] = float32(quickRNG.NormFloat64()), float32(quickRNG.NormFloat64())
	}
	return k, v
}

// yourQueries stands in for the post-RoPE queries of your model's last n
// tokens in one layer, [n][QueryHeads][HeadDim].
func yourQueries(m compresskv.ModelInfo, n int) []float32 {
	q := make([]float32, n*m.QueryHeads*m.HeadDim)
	for i := range q {
		q[i] = float32(quickRNG.NormFloat64())
	}
	return q
}

// TestReadmeQuickStart keeps the README's Quick start equal to the code
// the Example runs: the program's main is the Example's body between the
// markers, its yourKeysValues and yourQueries are this file's, and it
// imports exactly the packages they use.
func TestReadmeQuickStart(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)## Quick start.*?```go\n(.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README has no Go block under ## Quick start")
	}
	if formatted, err := format.Source(block[1]); err != nil || !bytes.Equal(formatted, block[1]) {
		t.Errorf("the README's Quick start is not gofmt'd (%v)", err)
	}
	fset := token.NewFileSet()
	prog, err := parser.ParseFile(fset, "README.md", block[1], parser.ParseComments)
	if err != nil {
		t.Fatalf("the README's Quick start is not a Go program: %v", err)
	}
	if prog.Name.Name != "main" {
		t.Fatalf("the README's Quick start is package %s, want main", prog.Name.Name)
	}
	src, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	here, err := parser.ParseFile(fset, "readme_test.go", src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	body := regexp.MustCompile("(?s)// README begin\n(.*?)\t// README end").FindSubmatch(src)
	if body == nil {
		t.Fatal("no README markers in readme_test.go")
	}
	lines := func(s string) string {
		var out []string
		for _, line := range strings.Split(s, "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				out = append(out, strings.Join(f, " "))
			}
		}
		return strings.Join(out, "\n")
	}
	text := func(f *ast.File, n ast.Node) string {
		var b bytes.Buffer
		if err := printer.Fprint(&b, fset, &printer.CommentedNode{Node: n, Comments: f.Comments}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	funcs := func(f *ast.File) map[string]*ast.FuncDecl {
		out := map[string]*ast.FuncDecl{}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok {
				out[fd.Name.Name] = fd
			}
		}
		return out
	}
	pf, hf := funcs(prog), funcs(here)
	main := pf["main"]
	if main == nil {
		t.Fatal("the README's program has no main")
	}
	got := text(prog, main.Body)
	got = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(got), "{"), "}")
	if lines(got) != lines(string(body[1])) {
		t.Errorf("README main and Example_quickStart differ:\nREADME:\n%s\n\nExample:\n%s", lines(got), lines(string(body[1])))
	}
	for _, name := range []string{"yourKeysValues", "yourQueries"} {
		if pf[name] == nil {
			t.Errorf("the README's program lacks %s", name)
			continue
		}
		if a, b := lines(text(prog, pf[name])), lines(text(here, hf[name])); a != b {
			t.Errorf("README %s differs from the test's:\n%s\n\n%s", name, a, b)
		}
	}
	if len(pf) != 3 {
		t.Errorf("the README's program has %d functions, want main, yourKeysValues and yourQueries", len(pf))
	}
	// The imports: what the program's code names, no more.
	var imports []string
	for _, im := range prog.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		imports = append(imports, p)
	}
	want := []string{"context", "fmt", "log", "math/rand/v2", "os",
		"github.com/compresskv/compresskv/backend/cpu", "github.com/compresskv/compresskv/compresskv", "github.com/compresskv/compresskv/kvcache"}
	slices.Sort(imports)
	slices.Sort(want)
	if !slices.Equal(imports, want) {
		t.Errorf("the README's program imports %v, want %v", imports, want)
	}
	// The random source of the stand-ins.
	if !strings.Contains(string(block[1]), "var quickRNG = rand.New(rand.NewPCG(1, 2))") {
		t.Error("the README's program does not seed its stand-ins as the Example does")
	}
}
