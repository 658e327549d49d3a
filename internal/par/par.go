// Package par is the library's one worker pool: it runs independent pieces
// of work on up to GOMAXPROCS goroutines.
package par

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For runs f(0), ..., f(n-1), on up to GOMAXPROCS goroutines (the caller's
// included) when there is more than one piece and more than one core, else
// in order on the caller's goroutine. Pieces must be independent; For
// returns when all have run.
func For(n int, f func(i int)) {
	Workers(n, runtime.GOMAXPROCS(0), f)
}

// Workers is For with at most workers goroutines.
func Workers(n, workers int, f func(i int)) {
	workers = min(n, workers)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var next atomic.Int64
	run := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			f(i)
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run()
		}()
	}
	run()
	wg.Wait()
}
