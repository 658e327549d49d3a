package cuda

import (
	"fmt"
	"runtime"
)

// thread runs closures on one goroutine locked to its OS thread: the CUDA
// context is current on that thread only, so every call for a Device goes
// through it, one at a time.
type thread struct {
	work chan func()   // unbuffered: a closure is handed over only when the thread takes it
	quit chan struct{} // closed by stop
	done chan struct{} // closed when the goroutine has exited
}

// startThread starts the goroutine, runs init on it and returns once init has
// finished; if init fails the goroutine exits (and its OS thread with it).
func startThread(init func() error) (*thread, error) {
	t := &thread{work: make(chan func()), quit: make(chan struct{}), done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		defer close(t.done)
		if err := safely(init); err != nil {
			errc <- err
			return
		}
		errc <- nil
		for {
			select {
			case f := <-t.work:
				f()
			case <-t.quit:
				return
			}
		}
	}()
	if err := <-errc; err != nil {
		<-t.done
		return nil, err
	}
	return t, nil
}

// do runs f on the thread and returns its error; a panic in f comes back as
// an error instead of killing the thread. Once the thread has stopped, do
// returns an error wrapping ErrClosed without running f: a do racing stop
// either runs f to completion before the thread exits or not at all.
func (t *thread) do(f func() error) error {
	errc := make(chan error, 1)
	select {
	case t.work <- func() { errc <- safely(f) }:
		return <-errc
	case <-t.done:
		return fmt.Errorf("cuda: device thread: %w", ErrClosed)
	}
}

// stop ends the thread once the closure it is running (if any) returns, and
// waits for it to exit.
func (t *thread) stop() {
	close(t.quit)
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
