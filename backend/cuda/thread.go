package cuda

import (
	"fmt"
	"runtime"
)

// thread runs closures on one goroutine locked to its OS thread: the CUDA
// context is current on that thread only, so every call for a Device goes
// through it, one at a time.
type thread struct {
	work chan func()
	done chan struct{}
}

// startThread starts the goroutine, runs init on it and returns once init has
// finished; if init fails the goroutine exits (and its OS thread with it).
func startThread(init func() error) (*thread, error) {
	t := &thread{work: make(chan func()), done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		defer close(t.done)
		if err := safely(init); err != nil {
			errc <- err
			return
		}
		errc <- nil
		for f := range t.work {
			f()
		}
	}()
	if err := <-errc; err != nil {
		<-t.done
		return nil, err
	}
	return t, nil
}

// do runs f on the thread and returns its error; a panic in f comes back as
// an error instead of killing the thread.
func (t *thread) do(f func() error) error {
	errc := make(chan error, 1)
	t.work <- func() { errc <- safely(f) }
	return <-errc
}

// stop ends the thread after the closures already queued.
func (t *thread) stop() {
	close(t.work)
	<-t.done
}

func safely(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cuda: panic on the device thread: %v", r)
		}
	}()
	return f()
}
