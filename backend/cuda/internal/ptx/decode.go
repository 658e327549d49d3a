package ptx

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

type opcode uint8

const (
	opNop opcode = iota
	// 16-bit integer
	opAdd16
	opSub16
	// 32-bit integer
	opAdd32
	opSub32
	opMulLo32
	opMulHiS32
	opMulHiU32
	opMulWideS32
	opMulWideU32
	opMadLo32
	opMadWideS32
	opMadWideU32
	opDivS32
	opDivU32
	opRemS32
	opRemU32
	opMinS32
	opMaxS32
	opMinU32
	opMaxU32
	opAnd32
	opOr32
	opXor32
	opNot32
	opNot16
	opNeg32
	opAbs32
	opShl32
	opShrU32
	opShrS32
	opPopc32
	opClz32
	opBrev32
	opBfeU32
	opBfeS32
	// 64-bit integer
	opAdd64
	opSub64
	opMulLo64
	opMadLo64
	opDivS64
	opDivU64
	opRemS64
	opRemU64
	opMinS64
	opMaxS64
	opMinU64
	opMaxU64
	opAnd64
	opOr64
	opXor64
	opNot64
	opNeg64
	opShl64
	opShrU64
	opShrS64
	opPopc64
	opClz64
	// predicates
	opAndPred
	opOrPred
	opXorPred
	opNotPred
	// float32
	opAddF32
	opSubF32
	opMulF32
	opDivF32
	opFmaF32
	opNegF32
	opAbsF32
	opMinF32
	opMaxF32
	opRcpF32
	opSqrtF32
	opRsqrtF32
	opEx2F32
	opLg2F32
	// float64
	opAddF64
	opSubF64
	opMulF64
	opDivF64
	opFmaF64
	opNegF64
	opAbsF64
	opMinF64
	opMaxF64
	opRcpF64
	opSqrtF64
	// comparisons and selection
	opSetpS32
	opSetpU32
	opSetpS64
	opSetpU64
	opSetpF32
	opSetpF64
	opSelp
	// moves and conversions
	opMov
	opPack64
	opUnpack64
	opPack32
	opUnpack32
	opCvtS64S32
	opCvtU64U32
	opCvtTrunc32
	opCvtTrunc16
	opCvtSext16
	opCvtF32F16
	opCvt
	// memory
	opLd
	opSt
	opAtom
	// control and synchronisation
	opBra
	opExit
	opBar
	opBarWarp
	opShfl
	opVote
	opMatch
)

// state spaces of ld/st/atom
const (
	spGeneric = iota
	spGlobal
	spShared
	spParam
)

// comparison codes of setp
const (
	cmpEQ = iota
	cmpNE
	cmpLT
	cmpLE
	cmpGT
	cmpGE
	cmpEQU
	cmpNEU
	cmpLTU
	cmpLEU
	cmpGTU
	cmpGEU
	cmpNUM
	cmpNAN
)

// inst is one pre-decoded instruction. Every source operand is a register
// slot: immediates and symbol addresses live in constant slots.
type inst struct {
	op     opcode
	ftz    bool
	gneg   bool  // guard negated
	guard  int32 // predicate slot, 0: none (slot 0 is never a predicate)
	d, d2  int32 // destinations (d2: second predicate or unpacked half)
	a, b   int32 // sources
	c, e   int32
	imm    int64 // address offset
	target int32 // branch target
	mem    int32 // memory cache slot
	size   uint8 // access size
	aux    uint8 // space, comparison, mode
	aux2   uint8 // bool op of setp; sign of loads; atomic type
	cneg   bool  // negated predicate operand (setp's c, vote's a)
	aop    uint8 // atomic operation
	vec    []int32
	cvt    *cvtSpec
	line   int32
	text   string
}

type cvtSpec struct {
	dst, src string // types
	rnd      string // "", rn, rz, rm, rp, rni, rzi, rmi, rpi
	sat      bool
}

type decoder struct {
	k       *Kernel
	regs    map[string]regRange
	slots   []uint64 // initial values (constants); registers start invalid
	isConst []bool
	constAt map[uint64]int32
	special map[string]int32
	labels  map[string]int32
	fixups  []fixup
}

type regRange struct{ base, n int32 }

type fixup struct {
	pc    int
	label string
}

func newDecoder(k *Kernel) *decoder {
	d := &decoder{k: k, regs: map[string]regRange{}, constAt: map[uint64]int32{}, special: map[string]int32{}, labels: map[string]int32{}}
	d.slots = []uint64{0} // slot 0: constant 0
	d.isConst = []bool{true}
	d.constAt[0] = 0
	return d
}

func (d *decoder) label(name string) { d.labels[name] = int32(len(d.k.code)) }

// declareRegs handles ".reg .f32 %f<517>;" and ".reg .b32 %r1, %r2;".
func (d *decoder) declareRegs(t string) error {
	t = strings.TrimSuffix(strings.TrimSpace(t), ";")
	f := strings.Fields(t)
	if len(f) < 3 {
		return fmt.Errorf("bad register declaration %q", t)
	}
	for _, name := range strings.Split(strings.Join(f[2:], ""), ",") {
		n := int32(1)
		if i := strings.IndexByte(name, '<'); i >= 0 {
			c, err := strconv.Atoi(strings.TrimSuffix(name[i+1:], ">"))
			if err != nil {
				return fmt.Errorf("bad register count in %q", t)
			}
			n = int32(c)
			name = name[:i]
		}
		d.regs[name] = regRange{int32(len(d.slots)), n}
		for x := int32(0); x < n; x++ {
			d.slots = append(d.slots, 0)
			d.isConst = append(d.isConst, false)
		}
	}
	return nil
}

func (d *decoder) constSlot(v uint64) int32 {
	if s, ok := d.constAt[v]; ok {
		return s
	}
	s := int32(len(d.slots))
	d.slots = append(d.slots, v)
	d.isConst = append(d.isConst, true)
	d.constAt[v] = s
	return s
}

var specialNames = map[string]bool{
	"%tid.x": true, "%tid.y": true, "%tid.z": true, "%ntid.x": true, "%ntid.y": true, "%ntid.z": true,
	"%ctaid.x": true, "%ctaid.y": true, "%ctaid.z": true, "%nctaid.x": true, "%nctaid.y": true, "%nctaid.z": true,
	"%laneid": true, "%warpid": true, "%nwarpid": true, "%lanemask_lt": true, "%lanemask_le": true,
	"%lanemask_eq": true, "%lanemask_gt": true, "%lanemask_ge": true, "%warpsize": true,
}

func (d *decoder) specialSlot(name string) int32 {
	if s, ok := d.special[name]; ok {
		return s
	}
	s := int32(len(d.slots))
	d.slots = append(d.slots, 0)
	d.isConst = append(d.isConst, true) // written at thread start
	d.special[name] = s
	d.k.special = append(d.k.special, specialReg{s, strings.TrimPrefix(name, "%")})
	return s
}

// immKind says how to read an immediate: as an integer, a float32 or a
// float64 (for the f32/f64 instruction types).
type immKind int

const (
	immInt immKind = iota
	immF32
	immF64
)

func kindOf(typ string) immKind {
	switch typ {
	case "f32":
		return immF32
	case "f64":
		return immF64
	}
	return immInt
}

// reg resolves a register name, a special register or an immediate.
func (d *decoder) src(s string, kind immKind) (int32, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("missing operand")
	}
	if s[0] == '%' {
		if specialNames[s] {
			return d.specialSlot(s), nil
		}
		return d.reg(s)
	}
	if v, ok := parseImm(s, kind); ok {
		return d.constSlot(v), nil
	}
	// a shared variable's address
	for i, v := range d.k.shared {
		if v.name == s {
			return d.constSlot(sharedBase(i)), nil
		}
	}
	return 0, fmt.Errorf("operand %q not understood", s)
}

func (d *decoder) reg(s string) (int32, error) {
	if r, ok := d.regs[s]; ok && r.n == 1 {
		return r.base, nil
	}
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	r, ok := d.regs[s[:i]]
	if !ok || i == len(s) {
		return 0, fmt.Errorf("undeclared register %q", s)
	}
	n, _ := strconv.Atoi(s[i:])
	if int32(n) >= r.n {
		return 0, fmt.Errorf("register %q beyond its declaration", s)
	}
	return r.base + int32(n), nil
}

// dst resolves a destination register (no constants).
func (d *decoder) dst(s string) (int32, error) {
	s = strings.TrimSpace(s)
	if s == "_" {
		// sink: a fresh scratch slot
		d.slots = append(d.slots, 0)
		d.isConst = append(d.isConst, false)
		return int32(len(d.slots) - 1), nil
	}
	if !strings.HasPrefix(s, "%") || specialNames[s] {
		return 0, fmt.Errorf("bad destination %q", s)
	}
	return d.reg(s)
}

func parseImm(s string, kind immKind) (uint64, bool) {
	neg := false
	t := s
	if strings.HasPrefix(t, "-") {
		neg = true
		t = t[1:]
	}
	if len(t) > 2 && (t[:2] == "0f" || t[:2] == "0F") {
		v, err := strconv.ParseUint(t[2:], 16, 32)
		if err != nil {
			return 0, false
		}
		if neg {
			v ^= 1 << 31
		}
		if kind == immF64 {
			return math.Float64bits(float64(math.Float32frombits(uint32(v)))), true
		}
		return v, true
	}
	if len(t) > 2 && (t[:2] == "0d" || t[:2] == "0D") {
		v, err := strconv.ParseUint(t[2:], 16, 64)
		if err != nil {
			return 0, false
		}
		if neg {
			v ^= 1 << 63
		}
		if kind == immF32 {
			return uint64(math.Float32bits(float32(math.Float64frombits(v)))), true
		}
		return v, true
	}
	if kind != immInt && strings.ContainsAny(t, ".eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, false
		}
		if kind == immF32 {
			return uint64(math.Float32bits(float32(f))), true
		}
		return math.Float64bits(f), true
	}
	t = strings.TrimSuffix(t, "U")
	var v uint64
	var err error
	switch {
	case strings.HasPrefix(t, "0x") || strings.HasPrefix(t, "0X"):
		v, err = strconv.ParseUint(t[2:], 16, 64)
	case strings.HasPrefix(t, "0b") || strings.HasPrefix(t, "0B"):
		v, err = strconv.ParseUint(t[2:], 2, 64)
	case len(t) > 1 && t[0] == '0':
		v, err = strconv.ParseUint(t[1:], 8, 64)
	default:
		v, err = strconv.ParseUint(t, 10, 64)
	}
	if err != nil || t == "" || t[0] < '0' || t[0] > '9' {
		return 0, false
	}
	if neg {
		v = -v
	}
	switch kind {
	case immF32:
		return uint64(math.Float32bits(float32(int64(v)))), true
	case immF64:
		return math.Float64bits(float64(int64(v))), true
	}
	return v, true
}

// addr resolves "[%rd1+8]", "[name+4]", "[%rd2+-16]" into a base slot and
// an offset; a parameter symbol gives its offset in the parameter buffer
// (param == true).
func (d *decoder) addr(s string) (base int32, off int64, param bool, err error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return 0, 0, false, fmt.Errorf("bad address %q", s)
	}
	s = strings.TrimSpace(s[1 : len(s)-1])
	sym, rest := s, ""
	if i := strings.IndexByte(s, '+'); i > 0 {
		sym, rest = strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
	} else if i := strings.LastIndexByte(s, '-'); i > 0 {
		sym, rest = strings.TrimSpace(s[:i]), "-"+strings.TrimSpace(s[i+1:])
	}
	if rest != "" {
		off, err = strconv.ParseInt(rest, 0, 64)
		if err != nil {
			return 0, 0, false, fmt.Errorf("bad address offset in %q", s)
		}
	}
	if strings.HasPrefix(sym, "%") {
		base, err = d.reg(sym)
		return base, off, false, err
	}
	for _, p := range d.k.params {
		if p.name == sym {
			return 0, off + int64(p.offset), true, nil
		}
	}
	for i, v := range d.k.shared {
		if v.name == sym {
			return 0, off + int64(sharedBase(i)), false, nil
		}
	}
	if v, ok := parseImm(sym, immInt); ok {
		return 0, off + int64(v), false, nil
	}
	return 0, 0, false, fmt.Errorf("unknown symbol %q", sym)
}

// splitOperands splits at top-level commas (not inside {} or []).
func splitOperands(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	if t := strings.TrimSpace(s[start:]); t != "" {
		out = append(out, t)
	}
	return out
}

func (d *decoder) finish() error {
	for _, f := range d.fixups {
		pc, ok := d.labels[f.label]
		if !ok {
			return fmt.Errorf("ptx: %s line %d: unknown label %s", d.k.Name, d.k.code[f.pc].line, f.label)
		}
		d.k.code[f.pc].target = pc
	}
	// a fall-through past the last instruction exits
	d.k.code = append(d.k.code, inst{op: opExit, line: -1, text: "(end of kernel)"})
	if len(d.slots) > 1<<16 {
		return fmt.Errorf("ptx: %s: %d register slots, the executor handles 65536", d.k.Name, len(d.slots))
	}
	d.k.nregs = len(d.slots)
	d.k.consts = d.slots
	d.k.constValid = d.isConst
	d.k.slotName = map[int32]string{}
	for name, r := range d.regs {
		if r.n == 1 {
			d.k.slotName[r.base] = name
			continue
		}
		for i := int32(0); i < r.n; i++ {
			d.k.slotName[r.base+i] = name + strconv.Itoa(int(i))
		}
	}
	d.k.cov = newCoverage(d.k)
	return nil
}

var (
	intTypes = map[string]bool{"s32": true, "u32": true, "b32": true, "s64": true, "u64": true, "b64": true,
		"s16": true, "u16": true, "b16": true, "s8": true, "u8": true, "b8": true}
)

func width(t string) int { return typeSize(t) * 8 }

// instruction decodes one statement.
func (d *decoder) instruction(st string, line int) error {
	in := inst{line: int32(line), text: st}
	if st[0] == '@' {
		sp := strings.IndexAny(st, " \t")
		if sp < 0 {
			return fmt.Errorf("bad guard in %q", st)
		}
		g := st[1:sp]
		if strings.HasPrefix(g, "!") {
			in.gneg = true
			g = g[1:]
		}
		r, err := d.reg(g)
		if err != nil {
			return err
		}
		in.guard = r
		st = strings.TrimSpace(st[sp:])
	}
	opText, operands := st, ""
	if sp := strings.IndexAny(st, " \t"); sp >= 0 {
		opText, operands = st[:sp], strings.TrimSpace(st[sp:])
	}
	ops := splitOperands(operands)
	parts := strings.Split(opText, ".")
	base, mods := parts[0], parts[1:]
	if err := d.decode(&in, base, mods, ops); err != nil {
		return fmt.Errorf("%s: %v", opText, err)
	}
	d.k.code = append(d.k.code, in)
	return nil
}

func (d *decoder) unimplemented(base string, mods []string) error {
	return fmt.Errorf("instruction %s not implemented", strings.Join(append([]string{base}, mods...), "."))
}

// modifier helpers
func has(mods []string, m string) bool {
	for _, x := range mods {
		if x == m {
			return true
		}
	}
	return false
}

func lastType(mods []string) string {
	for i := len(mods) - 1; i >= 0; i-- {
		if typeSize(mods[i]) > 0 {
			return mods[i]
		}
	}
	return ""
}

// only fails unless every modifier is in allowed or is the type.
func only(mods []string, allowed ...string) bool {
	for _, m := range mods {
		if typeSize(m) > 0 {
			continue
		}
		ok := false
		for _, a := range allowed {
			if m == a {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (d *decoder) operands(in *inst, ops []string, kind immKind, n int) error {
	if len(ops) != n {
		return fmt.Errorf("%d operands, want %d", len(ops), n)
	}
	var err error
	if in.d, err = d.dst(ops[0]); err != nil {
		return err
	}
	srcs := []*int32{&in.a, &in.b, &in.c}
	for i := 1; i < n; i++ {
		if *srcs[i-1], err = d.src(ops[i], kind); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) decode(in *inst, base string, mods []string, ops []string) error {
	typ := lastType(mods)
	w := width(typ)
	isF := typ == "f32" || typ == "f64"
	signed := strings.HasPrefix(typ, "s")
	kind := kindOf(typ)
	in.ftz = has(mods, "ftz")
	pick := func(o32, o64 opcode) (opcode, error) {
		switch w {
		case 32:
			return o32, nil
		case 64:
			return o64, nil
		}
		return 0, d.unimplemented(base, mods)
	}
	var err error
	switch base {
	case "add", "sub", "mul", "div", "rem", "min", "max", "mad", "fma":
		nsrc := 2
		if base == "mad" || base == "fma" {
			nsrc = 3
		}
		if isF {
			if !only(mods, "rn", "ftz", "full", "approx") || (has(mods, "approx") && base != "div") || (has(mods, "full") && base != "div") {
				return d.unimplemented(base, mods)
			}
			if (base == "div" || base == "mad") && typ == "f32" && !has(mods, "rn") && !has(mods, "full") && !has(mods, "approx") {
				return d.unimplemented(base, mods)
			}
			if base == "rem" {
				return d.unimplemented(base, mods)
			}
			f32 := map[string]opcode{"add": opAddF32, "sub": opSubF32, "mul": opMulF32, "div": opDivF32, "min": opMinF32, "max": opMaxF32, "mad": opFmaF32, "fma": opFmaF32}
			f64 := map[string]opcode{"add": opAddF64, "sub": opSubF64, "mul": opMulF64, "div": opDivF64, "min": opMinF64, "max": opMaxF64, "mad": opFmaF64, "fma": opFmaF64}
			if typ == "f32" {
				in.op = f32[base]
			} else {
				in.op = f64[base]
			}
			return d.operands(in, ops, kind, nsrc+1)
		}
		if intTypes[typ] && w == 16 && (base == "add" || base == "sub") && len(mods) == 1 {
			in.op = map[string]opcode{"add": opAdd16, "sub": opSub16}[base]
			return d.operands(in, ops, kind, 3)
		}
		if !intTypes[typ] || w < 32 {
			return d.unimplemented(base, mods)
		}
		mode := ""
		for _, m := range mods {
			if m == "lo" || m == "hi" || m == "wide" {
				mode = m
			} else if typeSize(m) == 0 {
				return d.unimplemented(base, mods)
			}
		}
		switch base {
		case "add":
			in.op, err = pick(opAdd32, opAdd64)
		case "sub":
			in.op, err = pick(opSub32, opSub64)
		case "div":
			if signed {
				in.op, err = pick(opDivS32, opDivS64)
			} else {
				in.op, err = pick(opDivU32, opDivU64)
			}
		case "rem":
			if signed {
				in.op, err = pick(opRemS32, opRemS64)
			} else {
				in.op, err = pick(opRemU32, opRemU64)
			}
		case "min":
			if signed {
				in.op, err = pick(opMinS32, opMinS64)
			} else {
				in.op, err = pick(opMinU32, opMinU64)
			}
		case "max":
			if signed {
				in.op, err = pick(opMaxS32, opMaxS64)
			} else {
				in.op, err = pick(opMaxU32, opMaxU64)
			}
		case "mul", "mad":
			switch {
			case mode == "wide" && w == 32 && base == "mul":
				in.op = map[bool]opcode{true: opMulWideS32, false: opMulWideU32}[signed]
			case mode == "wide" && w == 32 && base == "mad":
				in.op = map[bool]opcode{true: opMadWideS32, false: opMadWideU32}[signed]
			case mode == "lo" && base == "mul":
				in.op, err = pick(opMulLo32, opMulLo64)
			case mode == "lo" && base == "mad":
				in.op, err = pick(opMadLo32, opMadLo64)
			case mode == "hi" && base == "mul" && w == 32:
				in.op = map[bool]opcode{true: opMulHiS32, false: opMulHiU32}[signed]
			default:
				return d.unimplemented(base, mods)
			}
		default:
			return d.unimplemented(base, mods)
		}
		if err != nil {
			return err
		}
		return d.operands(in, ops, kind, nsrc+1)
	case "and", "or", "xor", "not":
		n := 3
		if base == "not" {
			n = 2
		}
		if len(mods) != 1 {
			return d.unimplemented(base, mods)
		}
		switch typ {
		case "pred":
			in.op = map[string]opcode{"and": opAndPred, "or": opOrPred, "xor": opXorPred, "not": opNotPred}[base]
		case "b16", "b32":
			in.op = map[string]opcode{"and": opAnd32, "or": opOr32, "xor": opXor32, "not": opNot32}[base]
			if typ == "b16" && base == "not" {
				in.op = opNot16
			}
		case "b64":
			in.op = map[string]opcode{"and": opAnd64, "or": opOr64, "xor": opXor64, "not": opNot64}[base]
		default:
			return d.unimplemented(base, mods)
		}
		return d.operands(in, ops, immInt, n)
	case "neg", "abs":
		if !only(mods, "ftz") {
			return d.unimplemented(base, mods)
		}
		switch typ {
		case "f32":
			in.op = map[string]opcode{"neg": opNegF32, "abs": opAbsF32}[base]
		case "f64":
			in.op = map[string]opcode{"neg": opNegF64, "abs": opAbsF64}[base]
		case "s32":
			in.op = map[string]opcode{"neg": opNeg32, "abs": opAbs32}[base]
		case "s64":
			if base == "abs" {
				return d.unimplemented(base, mods)
			}
			in.op = opNeg64
		default:
			return d.unimplemented(base, mods)
		}
		return d.operands(in, ops, kind, 2)
	case "shl", "shr":
		if len(mods) != 1 {
			return d.unimplemented(base, mods)
		}
		switch {
		case base == "shl":
			in.op, err = pick(opShl32, opShl64)
		case signed:
			in.op, err = pick(opShrS32, opShrS64)
		default:
			in.op, err = pick(opShrU32, opShrU64)
		}
		if err != nil {
			return err
		}
		return d.operands(in, ops, immInt, 3)
	case "popc", "clz", "brev":
		if len(mods) != 1 {
			return d.unimplemented(base, mods)
		}
		switch base {
		case "popc":
			in.op, err = pick(opPopc32, opPopc64)
		case "clz":
			in.op, err = pick(opClz32, opClz64)
		case "brev":
			if w != 32 {
				return d.unimplemented(base, mods)
			}
			in.op = opBrev32
		}
		if err != nil {
			return err
		}
		return d.operands(in, ops, immInt, 2)
	case "bfe":
		if len(mods) != 1 || w != 32 {
			return d.unimplemented(base, mods)
		}
		in.op = map[bool]opcode{true: opBfeS32, false: opBfeU32}[signed]
		return d.operands(in, ops, immInt, 4)
	case "rcp", "sqrt", "rsqrt", "ex2", "lg2":
		approx := has(mods, "approx")
		if !only(mods, "rn", "approx", "ftz") {
			return d.unimplemented(base, mods)
		}
		switch {
		case base == "rcp" && typ == "f32" && (has(mods, "rn") || approx):
			in.op = opRcpF32
		case base == "rcp" && typ == "f64" && has(mods, "rn"):
			in.op = opRcpF64
		case base == "sqrt" && typ == "f32" && (has(mods, "rn") || approx):
			in.op = opSqrtF32
		case base == "sqrt" && typ == "f64" && has(mods, "rn"):
			in.op = opSqrtF64
		case base == "rsqrt" && typ == "f32" && approx:
			in.op = opRsqrtF32
		case base == "ex2" && typ == "f32" && approx:
			in.op = opEx2F32
		case base == "lg2" && typ == "f32" && approx:
			in.op = opLg2F32
		default:
			return d.unimplemented(base, mods)
		}
		return d.operands(in, ops, kind, 2)
	case "setp":
		return d.decodeSetp(in, base, mods, ops)
	case "selp":
		if len(mods) != 1 || typ == "" {
			return d.unimplemented(base, mods)
		}
		in.op = opSelp
		return d.operands(in, ops, kind, 4)
	case "mov":
		if len(mods) != 1 || typ == "" {
			return d.unimplemented(base, mods)
		}
		if len(ops) != 2 {
			return fmt.Errorf("%d operands, want 2", len(ops))
		}
		if strings.HasPrefix(ops[1], "{") { // pack
			parts := splitOperands(strings.Trim(ops[1], "{}"))
			if len(parts) != 2 || (w != 64 && w != 32) {
				return d.unimplemented(base, mods)
			}
			in.op = opPack64
			if w == 32 {
				in.op = opPack32
			}
			if in.d, err = d.dst(ops[0]); err != nil {
				return err
			}
			if in.a, err = d.src(parts[0], immInt); err != nil {
				return err
			}
			in.b, err = d.src(parts[1], immInt)
			return err
		}
		if strings.HasPrefix(ops[0], "{") { // unpack
			parts := splitOperands(strings.Trim(ops[0], "{}"))
			if len(parts) != 2 || (w != 64 && w != 32) {
				return d.unimplemented(base, mods)
			}
			in.op = opUnpack64
			if w == 32 {
				in.op = opUnpack32
			}
			if in.d, err = d.dst(parts[0]); err != nil {
				return err
			}
			if in.d2, err = d.dst(parts[1]); err != nil {
				return err
			}
			in.a, err = d.src(ops[1], immInt)
			return err
		}
		in.op = opMov
		if err := d.operands(in, ops, kind, 2); err != nil {
			return err
		}
		if d.isConst[in.a] && w <= 32 && !specialSlot(d, in.a) {
			in.a = d.constSlot(d.slots[in.a] & (1<<w - 1))
		}
		return nil
	case "cvta":
		// Generic and state-space addresses are the same numbers here.
		if !only(mods, "to", "global", "shared", "local", "const", "param") || has(mods, "local") {
			return d.unimplemented(base, mods)
		}
		in.op = opMov
		return d.operands(in, ops, immInt, 2)
	case "cvt":
		return d.decodeCvt(in, mods, ops)
	case "ld", "st":
		return d.decodeMem(in, base, mods, ops)
	case "atom", "red":
		return d.decodeAtom(in, base, mods, ops)
	case "bra":
		if !only(mods, "uni") || len(ops) != 1 {
			return d.unimplemented(base, mods)
		}
		in.op = opBra
		d.fixups = append(d.fixups, fixup{len(d.k.code), ops[0]})
		return nil
	case "ret", "exit":
		if len(ops) != 0 {
			return d.unimplemented(base, mods)
		}
		in.op = opExit
		return nil
	case "bar", "barrier":
		if len(ops) == 1 && (has(mods, "sync") && only(mods, "sync", "aligned")) {
			in.op = opBar
			in.a, err = d.src(ops[0], immInt)
			if err == nil && (!d.isConst[in.a] || d.slots[in.a] != 0) {
				return fmt.Errorf("only barrier 0 of the whole block is implemented")
			}
			return err
		}
		if base == "bar" && len(mods) == 2 && mods[0] == "warp" && mods[1] == "sync" && len(ops) == 1 {
			in.op = opBarWarp
			in.a, err = d.src(ops[0], immInt)
			return err
		}
		return d.unimplemented(base, mods)
	case "shfl":
		if len(mods) != 3 || mods[0] != "sync" || mods[2] != "b32" || len(ops) != 5 {
			return d.unimplemented(base, mods)
		}
		m := map[string]uint8{"up": 0, "down": 1, "bfly": 2, "idx": 3}
		mode, ok := m[mods[1]]
		if !ok {
			return d.unimplemented(base, mods)
		}
		in.op, in.aux = opShfl, mode
		dst := ops[0]
		in.d2 = 0
		if i := strings.IndexByte(dst, '|'); i >= 0 {
			if in.d2, err = d.dst(dst[i+1:]); err != nil {
				return err
			}
			dst = dst[:i]
		}
		if in.d, err = d.dst(dst); err != nil {
			return err
		}
		for i, p := range []*int32{&in.a, &in.b, &in.c, &in.e} {
			if *p, err = d.src(ops[i+1], immInt); err != nil {
				return err
			}
		}
		return nil
	case "match":
		// match.any.sync.b32 d, a, membermask: the lanes of the mask whose a
		// equals this lane's.
		if len(mods) != 3 || mods[0] != "any" || mods[1] != "sync" || mods[2] != "b32" || len(ops) != 3 {
			return d.unimplemented(base, mods)
		}
		in.op = opMatch
		if in.d, err = d.dst(ops[0]); err != nil {
			return err
		}
		if in.a, err = d.src(ops[1], immInt); err != nil {
			return err
		}
		in.e, err = d.src(ops[2], immInt)
		return err
	case "vote":
		if len(mods) != 3 || mods[0] != "sync" || len(ops) != 3 {
			return d.unimplemented(base, mods)
		}
		m := map[string]uint8{"ballot": 0, "all": 1, "any": 2, "uni": 3}
		mode, ok := m[mods[1]]
		if !ok || (mode == 0) != (mods[2] == "b32") || (mode != 0 && mods[2] != "pred") {
			return d.unimplemented(base, mods)
		}
		in.op, in.aux = opVote, mode
		if in.d, err = d.dst(ops[0]); err != nil {
			return err
		}
		p := ops[1]
		if strings.HasPrefix(p, "!") {
			in.cneg = true
			p = p[1:]
		}
		if in.a, err = d.src(p, immInt); err != nil {
			return err
		}
		in.e, err = d.src(ops[2], immInt)
		return err
	}
	return d.unimplemented(base, mods)
}

func specialSlot(d *decoder, s int32) bool {
	for _, v := range d.special {
		if v == s {
			return true
		}
	}
	return false
}

func (d *decoder) decodeSetp(in *inst, base string, mods []string, ops []string) error {
	if len(mods) < 2 {
		return d.unimplemented(base, mods)
	}
	cmps := map[string]uint8{"eq": cmpEQ, "ne": cmpNE, "lt": cmpLT, "le": cmpLE, "gt": cmpGT, "ge": cmpGE,
		"lo": cmpLT, "ls": cmpLE, "hi": cmpGT, "hs": cmpGE,
		"equ": cmpEQU, "neu": cmpNEU, "ltu": cmpLTU, "leu": cmpLEU, "gtu": cmpGTU, "geu": cmpGEU, "num": cmpNUM, "nan": cmpNAN}
	c, ok := cmps[mods[0]]
	if !ok {
		return d.unimplemented(base, mods)
	}
	typ := ""
	in.aux2 = 0
	nops := 3
	for _, m := range mods[1:] {
		switch {
		case m == "ftz":
			in.ftz = true
		case m == "and" || m == "or" || m == "xor":
			if in.aux2 != 0 {
				return d.unimplemented(base, mods)
			}
			in.aux2 = map[string]uint8{"and": 1, "or": 2, "xor": 3}[m]
			nops = 4
		case typeSize(m) > 0 && typ == "":
			typ = m
		default:
			return d.unimplemented(base, mods)
		}
	}
	switch typ {
	case "s32", "s16":
		in.op = opSetpS32
	case "u32", "b32", "u16", "b16":
		in.op = opSetpU32
	case "s64":
		in.op = opSetpS64
	case "u64", "b64":
		in.op = opSetpU64
	case "f32":
		in.op = opSetpF32
	case "f64":
		in.op = opSetpF64
	default:
		return d.unimplemented(base, mods)
	}
	if typ == "s16" || typ == "u16" || typ == "b16" {
		return d.unimplemented(base, mods)
	}
	if in.op != opSetpF32 && in.op != opSetpF64 && c > cmpGE {
		return d.unimplemented(base, mods)
	}
	in.aux = c
	if len(ops) != nops {
		return fmt.Errorf("%d operands, want %d", len(ops), nops)
	}
	var err error
	dst := ops[0]
	if i := strings.IndexByte(dst, '|'); i >= 0 {
		if in.d2, err = d.dst(dst[i+1:]); err != nil {
			return err
		}
		dst = dst[:i]
	}
	if in.d, err = d.dst(dst); err != nil {
		return err
	}
	k := kindOf(typ)
	if in.a, err = d.src(ops[1], k); err != nil {
		return err
	}
	if in.b, err = d.src(ops[2], k); err != nil {
		return err
	}
	if nops == 4 {
		p := ops[3]
		if strings.HasPrefix(p, "!") {
			in.cneg = true
			p = p[1:]
		}
		if in.c, err = d.src(p, immInt); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) decodeCvt(in *inst, mods []string, ops []string) error {
	var types []string
	spec := &cvtSpec{}
	for _, m := range mods {
		switch m {
		case "rn", "rz", "rm", "rp", "rni", "rzi", "rmi", "rpi":
			spec.rnd = m
		case "sat":
			spec.sat = true
		case "ftz":
			in.ftz = true
		default:
			if typeSize(m) == 0 {
				return d.unimplemented("cvt", mods)
			}
			types = append(types, m)
		}
	}
	if len(types) != 2 {
		return d.unimplemented("cvt", mods)
	}
	spec.dst, spec.src = types[0], types[1]
	dF, sF := isFloat(spec.dst), isFloat(spec.src)
	// rounding rules: float->float narrowing and int->float need a mode;
	// float->int needs an integer mode; integer ones take none.
	switch {
	case !dF && !sF:
		if spec.rnd != "" {
			return d.unimplemented("cvt", mods)
		}
	case dF && sF:
		narrowing := typeSize(spec.dst) < typeSize(spec.src)
		if narrowing && spec.rnd != "rn" {
			return d.unimplemented("cvt", mods)
		}
		if !narrowing && spec.rnd != "" && spec.rnd != "rni" && spec.rnd != "rzi" && spec.rnd != "rmi" && spec.rnd != "rpi" {
			return d.unimplemented("cvt", mods)
		}
		if spec.dst == "f16" && spec.src == "f64" {
			return d.unimplemented("cvt", mods)
		}
	case dF && !sF:
		if spec.rnd != "rn" || spec.dst == "f16" {
			return d.unimplemented("cvt", mods)
		}
	default:
		if spec.rnd != "rzi" && spec.rnd != "rni" && spec.rnd != "rmi" && spec.rnd != "rpi" {
			return d.unimplemented("cvt", mods)
		}
		if spec.src == "f16" {
			return d.unimplemented("cvt", mods)
		}
	}
	in.cvt = spec
	switch {
	case spec.dst == "s64" && spec.src == "s32" && !spec.sat:
		in.op = opCvtS64S32
	case spec.dst == "u64" && spec.src == "u32" && !spec.sat:
		in.op = opCvtU64U32
	case (spec.dst == "u32" || spec.dst == "s32") && (spec.src == "u64" || spec.src == "s64") && !spec.sat:
		in.op = opCvtTrunc32
	case (spec.dst == "u16" || spec.dst == "s16") && (typeSize(spec.src) >= 2 && !isFloat(spec.src)) && !spec.sat:
		in.op = opCvtTrunc16
	case (spec.dst == "u32" || spec.dst == "u64") && spec.src == "u16" && !spec.sat:
		in.op = opCvtTrunc16
	case (spec.dst == "s32") && spec.src == "s16" && !spec.sat:
		in.op = opCvtSext16
	case spec.dst == "f32" && spec.src == "f16" && !spec.sat && !in.ftz:
		in.op = opCvtF32F16
	default:
		in.op = opCvt
	}
	return d.operands(in, ops, kindOf(spec.src), 2)
}

func isFloat(t string) bool { return t == "f16" || t == "f32" || t == "f64" }

func (d *decoder) decodeMem(in *inst, base string, mods []string, ops []string) error {
	space := spGeneric
	nvec := 1
	typ := ""
	for _, m := range mods {
		switch m {
		case "global":
			space = spGlobal
		case "shared":
			space = spShared
		case "param":
			space = spParam
		case "v2":
			nvec = 2
		case "v4":
			nvec = 4
		case "nc", "ca", "cg", "cs", "lu", "cv", "wb", "wt", "relaxed", "weak", "volatile":
		default:
			if typeSize(m) == 0 || typ != "" {
				return d.unimplemented(base, mods)
			}
			typ = m
		}
	}
	if typ == "" || typ == "pred" || (space == spParam && base == "st") {
		return d.unimplemented(base, mods)
	}
	if len(ops) != 2 {
		return fmt.Errorf("%d operands, want 2", len(ops))
	}
	in.aux = uint8(space)
	in.size = uint8(typeSize(typ))
	if strings.HasPrefix(typ, "s") && typeSize(typ) < 8 {
		in.aux2 = 1 // sign-extend
	}
	if typ == "f32" || typ == "f64" || typ == "f16" {
		in.aux2 = 0
	}
	if in.size < 4 && !strings.HasPrefix(typ, "s") {
		in.aux2 = 0
	}
	regOp, addrOp := ops[0], ops[1]
	in.op = opLd
	if base == "st" {
		in.op = opSt
		regOp, addrOp = ops[1], ops[0]
	}
	b, off, isParam, err := d.addr(addrOp)
	if err != nil {
		return err
	}
	if (space == spParam) != isParam {
		return fmt.Errorf("address %s in the wrong state space", addrOp)
	}
	in.a, in.imm = b, off
	if space != spParam {
		in.mem = int32(d.k.nmem)
		d.k.nmem++
	}
	var regs []int32
	if nvec > 1 {
		parts := splitOperands(strings.Trim(regOp, "{}"))
		if len(parts) != nvec {
			return fmt.Errorf("vector of %d, want %d", len(parts), nvec)
		}
		for _, p := range parts {
			var r int32
			if base == "ld" {
				r, err = d.dst(p)
			} else {
				r, err = d.src(p, kindOf(typ))
			}
			if err != nil {
				return err
			}
			regs = append(regs, r)
		}
		in.vec = regs
		return nil
	}
	if base == "ld" {
		in.d, err = d.dst(regOp)
	} else {
		in.b, err = d.src(regOp, kindOf(typ))
	}
	return err
}

func (d *decoder) decodeAtom(in *inst, base string, mods []string, ops []string) error {
	space := spGeneric
	opName, typ := "", ""
	for _, m := range mods {
		switch m {
		case "global":
			space = spGlobal
		case "shared":
			space = spShared
		case "relaxed", "gpu", "cta", "sys":
		case "add", "min", "max", "exch", "and", "or", "xor", "cas":
			opName = m
		default:
			if typeSize(m) == 0 || typ != "" {
				return d.unimplemented(base, mods)
			}
			typ = m
		}
	}
	types := map[string]uint8{"u32": 1, "s32": 2, "b32": 1, "u64": 3, "s64": 4, "b64": 3, "f32": 5, "f64": 6}
	t, ok := types[typ]
	ops2 := map[string]uint8{"add": 1, "min": 2, "max": 3, "exch": 4, "and": 5, "or": 6, "xor": 7, "cas": 8}
	o := ops2[opName]
	if !ok || o == 0 || ((o == 5 || o == 6 || o == 7) && t >= 5) || ((o == 2 || o == 3) && t >= 5) {
		return d.unimplemented(base, mods)
	}
	in.op, in.aux, in.aux2 = opAtom, uint8(space), t
	in.size = uint8(typeSize(typ))
	in.aop = o
	n := 3
	if o == 8 {
		n = 4
	}
	if base == "red" {
		n--
		ops = append([]string{"_"}, ops...)
	}
	if len(ops) != n {
		return fmt.Errorf("%d operands, want %d", len(ops), n)
	}
	var err error
	if in.d, err = d.dst(ops[0]); err != nil {
		return err
	}
	b, off, isParam, err := d.addr(ops[1])
	if err != nil || isParam {
		return fmt.Errorf("bad atomic address %s", ops[1])
	}
	in.a, in.imm = b, off
	in.mem = int32(d.k.nmem)
	d.k.nmem++
	if in.b, err = d.src(ops[2], kindOf(typ)); err != nil {
		return err
	}
	if o == 8 {
		in.c, err = d.src(ops[3], kindOf(typ))
	}
	return err
}
