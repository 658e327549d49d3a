package cli

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Progress counts the prompts of a run that several goroutines share and
// prints a line every so many, and at the last: "needle: 20/132 prompts,
// 14s".
type Progress struct {
	w           io.Writer
	name        string
	total, each int
	start       time.Time
	mu          sync.Mutex
	done        int
}

// NewProgress returns a Progress of total prompts that prints to w every
// each prompts, its lines beginning with name; the clock starts now.
func NewProgress(w io.Writer, name string, total, each int) *Progress {
	return &Progress{w: w, name: name, total: total, each: max(each, 1), start: time.Now()}
}

// Done counts one prompt finished. It is safe for concurrent use.
func (p *Progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if p.done%p.each == 0 || p.done == p.total {
		fmt.Fprintf(p.w, "%s: %d/%d prompts, %.0fs\n", p.name, p.done, p.total, time.Since(p.start).Seconds())
	}
}

// Elapsed returns the time since the Progress was made.
func (p *Progress) Elapsed() time.Duration { return time.Since(p.start) }
