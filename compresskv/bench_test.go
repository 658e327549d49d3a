package compresskv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/compresskv/compresskv/kvcache"
)

// BenchmarkCompressLayer measures window scoring + selection + compaction of
// one layer at a Llama-3.1-8B shape (32 query heads, 8 KV heads, d=128,
// window 8), for CompressKV (4 SR heads) and SnapKV (all 32 heads), at 4K
// and 32K tokens, float32 and float16 storage, budget 1024. The cache is
// cloned, and the previous clone collected, outside the timer before every
// iteration.
func BenchmarkCompressLayer(b *testing.B) {
	const G, H, d, W, B = 8, 32, 128, 8, 1024
	for _, L := range []int{4096, 32768} {
		for _, dt := range []kvcache.DType{kvcache.Float32, kvcache.Float16} {
			rng := rand.New(rand.NewPCG(1, 2))
			s := kvcache.Shape{Layers: 1, KVHeads: G, HeadDim: d}
			base, q := fillCache(b, rng, s, dt, L, H, W)
			prof := randomProfile(rng, s, H, false)
			for _, m := range []Method{CompressKV, SnapKV} {
				b.Run(fmt.Sprintf("%s/L=%d/%v", m, L, dt), func(b *testing.B) {
					p, err := New(m, Config{Budget: B, Window: W, Profile: prof})
					if err != nil {
						b.Fatal(err)
					}
					// KV heads whose keys scoring reads (each once).
					kvRead := G
					if m == CompressKV {
						seen := map[int]bool{}
						for _, h := range prof.HeadRanking[0][:DefaultSRHeads] {
							seen[h/(H/G)] = true
						}
						kvRead = len(seen)
					}
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						b.StopTimer()
						c := base.Clone()
						runtime.GC() // the previous clone's collection stays outside the timer
						b.StartTimer()
						if _, err := p.Compress(context.Background(), c, q, H); err != nil {
							b.Fatal(err)
						}
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(sec*1e3, "ms/layer")
					b.ReportMetric(float64(kvRead*L*d*dt.Size())/sec/1e9, "GB/s-keys")
				})
			}
		}
	}
}
