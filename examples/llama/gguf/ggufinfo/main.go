// Command ggufinfo prints what a GGUF file holds: its header, its metadata
// and its tensors (name, type, dimensions, offset, bytes).
//
//	go run ./examples/llama/gguf/ggufinfo model.gguf
//
// With -touch it also reads every byte of every tensor through the memory
// mapping and prints how long that took and, on Linux, the resident memory
// split into file-backed pages (the mapping) and anonymous ones (copies):
// opening a model maps it without copying the weights, so the anonymous
// part stays small whatever the file's size. To measure the peak:
//
//	go build -o /tmp/ggufinfo ./examples/llama/gguf/ggufinfo
//	/usr/bin/time -v /tmp/ggufinfo -touch -quiet model.gguf
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/compresskv/compresskv/examples/llama/gguf"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ggufinfo:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ggufinfo", flag.ContinueOnError)
	touch := fs.Bool("touch", false, "read every tensor byte and report the time and resident memory")
	quiet := fs.Bool("quiet", false, "print only the header line (and -touch's report)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: ggufinfo [-touch] [-quiet] FILE.gguf")
	}
	w := bufio.NewWriter(out)
	defer w.Flush()

	before := residentMemory()
	start := time.Now()
	f, err := gguf.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	opened := time.Since(start)
	fmt.Fprintf(w, "GGUF v%d, %d bytes, %d metadata keys, %d tensors, alignment %d, data at byte %d, memory-mapped %v, opened in %v\n",
		f.Version, f.Size, len(f.KV), len(f.Tensors), f.Alignment, f.DataOffset, f.Mapped(), opened.Round(time.Microsecond))
	if !*quiet {
		for _, kv := range f.KV {
			fmt.Fprintf(w, "%s = %v\n", kv.Key, kv.Value)
		}
		for _, t := range f.Tensors {
			fmt.Fprintf(w, "%-40s %-6v %-22v offset %12d  %12d bytes\n", t.Name, t.Type, fmt.Sprint(t.Dims), t.Offset, t.Size)
		}
	}
	if !*touch {
		return nil
	}
	afterOpen := residentMemory()
	start = time.Now()
	var sum, n uint64
	for i := range f.Tensors {
		t, err := f.TensorAt(i)
		if err != nil {
			return err
		}
		for _, b := range t.Data {
			sum += uint64(b)
		}
		n += uint64(len(t.Data))
	}
	touched := time.Since(start)
	fmt.Fprintf(w, "touched %d tensor bytes in %v (byte sum %d)\n", n, touched.Round(time.Microsecond), sum)
	if before != "" {
		fmt.Fprintf(w, "resident before open: %s\nresident after open:  %s\nresident after touch: %s\n", before, afterOpen, residentMemory())
	}
	return nil
}

// residentMemory returns the process's resident memory from
// /proc/self/status (total, anonymous and file-backed), or "" where there
// is no such file.
func residentMemory() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	var parts []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, k := range []string{"VmRSS:", "RssAnon:", "RssFile:"} {
			if strings.HasPrefix(line, k) {
				parts = append(parts, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	return strings.Join(parts, ", ")
}
