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
	Pull(n, workers, func(next func() (int, bool)) {
		for i, ok := next(); ok; i, ok = next() {
			f(i)
		}
	})
}

// Pull runs worker on up to min(n, workers) goroutines, the caller's
// included (on the caller's alone when that is one); each worker takes the
// index of its next piece from next until next reports false, so a worker
// can set up state (scratch memory) once for all the pieces it runs.
func Pull(n, workers int, worker func(next func() (int, bool))) {
	workers = min(n, workers)
	var counter atomic.Int64
	next := func() (int, bool) {
		i := int(counter.Add(1) - 1)
		return i, i < n
	}
	if workers <= 1 {
		worker(next)
		return
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker(next)
		}()
	}
	worker(next)
	wg.Wait()
}
