package llama

import (
	"context"
	"os"
	"testing"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/kvcache"
)

// BenchmarkDecode measures end-to-end decoding with the project's model at
// the longest context it retrieves at (1,024 tokens; see testdata/retrieval.json):
// a prompt of 1,024 tokens is prefilled once, the cache compressed by the policy, and every iteration
// decodes 32 tokens over a fresh copy of that cache. It reports tokens/s and
// the bytes the cache holds after compression.
//
//	go test -run XXX -bench Decode ./examples/llama/
func BenchmarkDecode(b *testing.B) {
	m, err := Load("../../" + DefaultModel)
	if err != nil {
		b.Fatal(err)
	}
	prof, err := compresskv.LoadProfile("../../" + DefaultProfile)
	if err != nil {
		b.Fatal(err)
	}
	text, err := os.ReadFile("../../testdata/haystack/eval.txt")
	if err != nil {
		b.Fatal(err)
	}
	const steps, n = 32, 1024
	prompt := ByteTokenizer().Encode(string(text[:n-1]), true, false)
	for _, tc := range []struct {
		name   string
		method compresskv.Method
		budget int
	}{{"full", compresskv.Full, 0}, {"compresskv-64", compresskv.CompressKV, 64}} {
		b.Run(tc.name, func(b *testing.B) {
			for _, dt := range []kvcache.DType{kvcache.Float32, kvcache.Float16} {
				b.Run(dt.String(), func(b *testing.B) {
					pol, err := compresskv.New(tc.method, compresskv.Config{Budget: tc.budget, Kernel: DefaultKernel, Profile: prof})
					if err != nil {
						b.Fatal(err)
					}
					cache, err := m.NewCache(dt)
					if err != nil {
						b.Fatal(err)
					}
					s, _ := m.NewSession(cache, nil)
					logits, q, err := s.Prefill(prompt, 256)
					if err != nil {
						b.Fatal(err)
					}
					res, err := s.Compress(context.Background(), pol, q)
					if err != nil {
						b.Fatal(err)
					}
					first := Argmax(logits)
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						b.StopTimer()
						c := cache.Clone()
						cs, _ := m.NewSession(c, nil)
						b.StartTimer()
						id := first
						for range steps {
							lg, err := cs.Forward([]int{id})
							if err != nil {
								b.Fatal(err)
							}
							id = Argmax(lg)
						}
					}
					b.ReportMetric(float64(steps*b.N)/b.Elapsed().Seconds(), "tokens/s")
					b.ReportMetric(float64(res.BytesAfter), "cache-bytes")
					b.ReportMetric(float64(len(prompt)), "context")
				})
			}
		})
	}
}

// BenchmarkPrefill measures prefilling 1,024 tokens of the project's model
// in chunks of 256 (each weight multiplies a whole chunk at once) into a
// fresh cache, and reports tokens/s.
//
//	go test -run XXX -bench Prefill ./examples/llama/
func BenchmarkPrefill(b *testing.B) {
	m, err := Load("../../" + DefaultModel)
	if err != nil {
		b.Fatal(err)
	}
	text, err := os.ReadFile("../../testdata/haystack/eval.txt")
	if err != nil {
		b.Fatal(err)
	}
	const n = 1024
	prompt := ByteTokenizer().Encode(string(text[:n-1]), true, false)
	for _, dt := range []kvcache.DType{kvcache.Float32, kvcache.Float16} {
		b.Run(dt.String(), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				cache, err := m.NewCache(dt)
				if err != nil {
					b.Fatal(err)
				}
				s, _ := m.NewSession(cache, nil)
				if _, _, err := s.Prefill(prompt, 256); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
