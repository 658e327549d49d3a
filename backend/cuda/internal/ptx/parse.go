// Package ptx executes PTX kernels on the CPU, for tests: it parses a PTX
// module (directives, .entry parameters, .reg and .shared declarations,
// labels, predicated instructions), pre-decodes every instruction into
// resolved register slots and immediates, and runs a launch (grid, block,
// packed parameters, dynamic shared memory) over a caller's global memory
// with the semantics of the PTX ISA for the instructions it implements.
//
// Threads of a block interleave as a Schedule says: each alone up to its
// next synchronisation point, warp after warp (forward, reversed or in a
// seeded-random order), or warps stepped in SIMT lockstep, or threads
// interleaved at random; blocks run forward, reversed or in a random order.
// shfl.sync, vote.sync, match.any.sync and bar.warp.sync exchange among the
// lanes of a warp once every lane of the member mask has reached them,
// bar.sync releases the block once every thread has reached it. Memcheck is
// always on: an access outside an allocation or a shared variable, a
// misaligned access, the read of a register never written and a barrier not
// reached by every thread are errors naming the kernel, the PTX line and the
// thread. With Launch.Races, so are data races: two threads of a block
// touching a shared-memory granule between the same barriers, one of them
// writing (atomics among themselves excepted, bar.warp.sync ordering the
// lanes of a warp), and global-memory writes another block or another thread
// of the same barrier interval also writes or reads after. An instruction
// the executor does not implement is an error at load, naming it.
package ptx

import (
	"fmt"
	"strconv"
	"strings"
)

// Module is a parsed and decoded PTX module.
type Module struct {
	kernels map[string]*Kernel
	names   []string
	shared  []sharedVar // module-level .shared variables
}

// Kernel is one .entry of a module.
type Kernel struct {
	Name      string
	params    []param
	shared    []sharedVar // static shared variables (module level first), then dynamic
	dynIdx    int         // index of the extern (dynamic) shared variable, -1 if none
	maxTid    int         // .maxntid product, 0 if absent
	minBlocks int         // .minnctapersm, 0 if absent

	code       []inst
	nregs      int      // register slots: slot 0 is a constant zero, then registers and constants
	consts     []uint64 // initial slot values: immediates, symbol addresses
	constValid []bool   // slots valid from the start (constants, special registers)
	slotName   map[int32]string
	special    []specialReg
	nmem       int // memory instructions (cache slots)

	cov *coverage
}

type param struct {
	name        string
	offset, siz int
}

type sharedVar struct {
	name  string
	size  int
	align int
}

type specialReg struct {
	slot int32
	kind string // "tid.x", "ntid.y", "laneid", ...
}

// sharedBase is the address of shared variable i: variables live in
// separate 16 MiB windows so that an access past the end of one is caught.
func sharedBase(i int) uint64 { return uint64(i+1) << 24 }

const (
	sharedWindowLo = 1 << 24
	sharedWindowHi = 256 << 24
)

// Kernels returns the names of the module's kernels in source order.
func (m *Module) Kernels() []string { return append([]string(nil), m.names...) }

// Kernel returns the kernel called name, or nil.
func (m *Module) Kernel(name string) *Kernel { return m.kernels[name] }

// StaticShared returns the bytes of static shared memory a block of the
// kernel holds.
func (k *Kernel) StaticShared() int {
	n := 0
	for i, v := range k.shared {
		if i != k.dynIdx {
			n += v.size
		}
	}
	return n
}

// MaxThreads returns the kernel's .maxntid (or .reqntid) product, 0 if it
// declares none.
func (k *Kernel) MaxThreads() int { return k.maxTid }

// MinBlocksPerSM returns the kernel's .minnctapersm, 0 if it declares none.
func (k *Kernel) MinBlocksPerSM() int { return k.minBlocks }

// NumParams returns the number of parameters of the kernel.
func (k *Kernel) NumParams() int { return len(k.params) }

// ParamSize returns the size in bytes of parameter i.
func (k *Kernel) ParamSize(i int) int { return k.params[i].siz }

// srcLine is one statement of the source with its 1-based line number.
type srcLine struct {
	n    int
	text string
}

// Parse parses and decodes a PTX module. It fails on syntax it does not
// know and on any instruction the executor does not implement, naming the
// line and the instruction.
func Parse(src string) (*Module, error) {
	src = stripBlockComments(src)
	lines := strings.Split(src, "\n")
	m := &Module{kernels: map[string]*Kernel{}}
	var stmts []srcLine
	for i, l := range lines {
		if j := strings.Index(l, "//"); j >= 0 {
			l = l[:j]
		}
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		stmts = append(stmts, srcLine{i + 1, l})
	}
	for i := 0; i < len(stmts); i++ {
		s := stmts[i]
		t := s.text
		switch {
		case strings.HasPrefix(t, ".version"), strings.HasPrefix(t, ".target"), strings.HasPrefix(t, ".address_size"):
			if strings.HasPrefix(t, ".address_size") && !strings.Contains(t, "64") {
				return nil, fmt.Errorf("ptx: line %d: only .address_size 64 is supported", s.n)
			}
		case strings.HasPrefix(t, ".shared"), strings.HasPrefix(t, ".extern .shared"):
			v, err := parseShared(t)
			if err != nil {
				return nil, fmt.Errorf("ptx: line %d: %v", s.n, err)
			}
			m.shared = append(m.shared, v)
		case strings.Contains(t, ".entry"):
			k, next, err := m.parseEntry(stmts, i)
			if err != nil {
				return nil, err
			}
			m.kernels[k.Name] = k
			m.names = append(m.names, k.Name)
			i = next
		case strings.Contains(t, ".func"):
			return nil, fmt.Errorf("ptx: line %d: device functions (.func) are not implemented: %s", s.n, t)
		default:
			return nil, fmt.Errorf("ptx: line %d: unknown module statement %q", s.n, t)
		}
	}
	return m, nil
}

func stripBlockComments(s string) string {
	for {
		i := strings.Index(s, "/*")
		if i < 0 {
			return s
		}
		j := strings.Index(s[i:], "*/")
		if j < 0 {
			return s[:i]
		}
		// keep the line count
		s = s[:i] + strings.Repeat("\n", strings.Count(s[i:i+j], "\n")) + s[i+j+2:]
	}
}

// parseShared parses ".shared .align 4 .b8 name[8192];" (an extern one has
// no size).
func parseShared(t string) (sharedVar, error) {
	t = strings.TrimSuffix(strings.TrimSpace(t), ";")
	f := strings.Fields(t)
	v := sharedVar{align: 1}
	elem := 1
	for i := 0; i < len(f); i++ {
		switch {
		case f[i] == ".shared", f[i] == ".extern":
		case f[i] == ".align":
			i++
			if i >= len(f) {
				return v, fmt.Errorf("bad .shared %q", t)
			}
			a, err := strconv.Atoi(f[i])
			if err != nil {
				return v, fmt.Errorf("bad .align in %q", t)
			}
			v.align = a
		case strings.HasPrefix(f[i], "."):
			sz := typeSize(f[i][1:])
			if sz == 0 {
				return v, fmt.Errorf("bad type in %q", t)
			}
			elem = sz
		default:
			name := f[i]
			n := 1
			if j := strings.IndexByte(name, '['); j >= 0 {
				dim := strings.TrimSuffix(name[j+1:], "]")
				name = name[:j]
				if dim == "" {
					n = -1
				} else {
					var err error
					if n, err = strconv.Atoi(dim); err != nil {
						return v, fmt.Errorf("bad array size in %q", t)
					}
				}
			}
			v.name = name
			if n < 0 {
				v.size = -1
			} else {
				v.size = n * elem
			}
		}
	}
	if v.name == "" {
		return v, fmt.Errorf("bad .shared %q", t)
	}
	return v, nil
}

func typeSize(t string) int {
	switch t {
	case "b8", "u8", "s8":
		return 1
	case "b16", "u16", "s16", "f16":
		return 2
	case "b32", "u32", "s32", "f32":
		return 4
	case "b64", "u64", "s64", "f64":
		return 8
	case "pred":
		return 1
	}
	return 0
}

// parseEntry parses the .entry starting at stmts[i] and returns the index of
// its closing brace.
func (m *Module) parseEntry(stmts []srcLine, i int) (*Kernel, int, error) {
	head := stmts[i].text
	at := stmts[i].n
	j := strings.Index(head, ".entry")
	rest := strings.TrimSpace(head[j+len(".entry"):])
	name := rest
	if p := strings.IndexByte(rest, '('); p >= 0 {
		name = strings.TrimSpace(rest[:p])
		rest = rest[p+1:]
	} else {
		rest = ""
	}
	k := &Kernel{Name: name, dynIdx: -1}
	for _, v := range m.shared {
		if v.size < 0 {
			k.dynIdx = len(k.shared)
		}
		k.shared = append(k.shared, v)
	}
	// parameters up to ')'
	var ptext strings.Builder
	ptext.WriteString(rest)
	closed := strings.Contains(rest, ")")
	for !closed {
		i++
		if i >= len(stmts) {
			return nil, 0, fmt.Errorf("ptx: line %d: unterminated parameter list of %s", at, name)
		}
		ptext.WriteString(" " + stmts[i].text)
		closed = strings.Contains(stmts[i].text, ")")
	}
	pl := ptext.String()
	pl = pl[:strings.IndexByte(pl, ')')]
	off := 0
	for _, p := range strings.Split(pl, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		f := strings.Fields(p)
		align, size, pname := 0, 0, ""
		for x := 0; x < len(f); x++ {
			switch {
			case f[x] == ".param":
			case f[x] == ".align":
				x++
				if x < len(f) {
					align, _ = strconv.Atoi(f[x])
				}
			case f[x] == ".ptr", f[x] == ".global", f[x] == ".shared", f[x] == ".const", f[x] == ".local":
			case strings.HasPrefix(f[x], "."):
				size = typeSize(f[x][1:])
			default:
				pname = f[x]
			}
		}
		n := 1
		if b := strings.IndexByte(pname, '['); b >= 0 {
			n, _ = strconv.Atoi(strings.TrimSuffix(pname[b+1:], "]"))
			pname = pname[:b]
		}
		if size == 0 || pname == "" || n <= 0 {
			return nil, 0, fmt.Errorf("ptx: line %d: parameter %q of %s not understood", at, p, name)
		}
		if align == 0 {
			align = size
		}
		off = (off + align - 1) / align * align
		k.params = append(k.params, param{pname, off, size * n})
		off += size * n
	}
	// performance directives up to '{'
	i++
	for ; i < len(stmts) && stmts[i].text != "{"; i++ {
		t := stmts[i].text
		switch {
		case strings.HasPrefix(t, ".maxntid"), strings.HasPrefix(t, ".reqntid"):
			prod := 1
			for _, v := range strings.Split(strings.TrimSpace(t[len(".maxntid"):]), ",") {
				x, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil {
					return nil, 0, fmt.Errorf("ptx: line %d: bad %q", stmts[i].n, t)
				}
				prod *= x
			}
			k.maxTid = prod
		case strings.HasPrefix(t, ".minnctapersm"):
			x, err := strconv.Atoi(strings.TrimSpace(t[len(".minnctapersm"):]))
			if err != nil {
				return nil, 0, fmt.Errorf("ptx: line %d: bad %q", stmts[i].n, t)
			}
			k.minBlocks = x
		case strings.HasPrefix(t, ".maxnreg"), strings.HasPrefix(t, ".maxnctapersm"):
		default:
			return nil, 0, fmt.Errorf("ptx: line %d: unexpected %q before the body of %s", stmts[i].n, t, name)
		}
	}
	if i >= len(stmts) {
		return nil, 0, fmt.Errorf("ptx: line %d: %s has no body", at, name)
	}
	// body
	d := newDecoder(k)
	depth := 0
	i++
	for ; i < len(stmts); i++ {
		s := stmts[i]
		t := s.text
		switch {
		case t == "{":
			depth++
			continue
		case t == "}":
			if depth == 0 {
				if err := d.finish(); err != nil {
					return nil, 0, err
				}
				return k, i, nil
			}
			depth--
			continue
		case strings.HasSuffix(t, ":") && !strings.ContainsAny(t, " \t"):
			d.label(strings.TrimSuffix(t, ":"))
			continue
		case strings.HasPrefix(t, ".reg"):
			if err := d.declareRegs(t); err != nil {
				return nil, 0, fmt.Errorf("ptx: %s line %d: %v", name, s.n, err)
			}
			continue
		case strings.HasPrefix(t, ".shared"), strings.HasPrefix(t, ".extern .shared"):
			v, err := parseShared(t)
			if err != nil {
				return nil, 0, fmt.Errorf("ptx: %s line %d: %v", name, s.n, err)
			}
			if v.size < 0 {
				k.dynIdx = len(k.shared)
			}
			k.shared = append(k.shared, v)
			continue
		case strings.HasPrefix(t, ".local"), strings.HasPrefix(t, ".global"), strings.HasPrefix(t, ".const"):
			return nil, 0, fmt.Errorf("ptx: %s line %d: state space not implemented: %s", name, s.n, t)
		case strings.HasPrefix(t, ".pragma"), strings.HasPrefix(t, ".loc"), strings.HasPrefix(t, ".file"):
			continue
		}
		// A line may hold several statements.
		for _, st := range strings.Split(t, ";") {
			st = strings.TrimSpace(st)
			if st == "" {
				continue
			}
			if err := d.instruction(st, s.n); err != nil {
				return nil, 0, fmt.Errorf("ptx: %s line %d: %v", name, s.n, err)
			}
		}
	}
	return nil, 0, fmt.Errorf("ptx: line %d: unterminated body of %s", at, name)
}
